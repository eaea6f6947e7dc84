"""Rolling statistics over the last few hundred samples, for diagnostics."""

from __future__ import annotations

from collections import deque
import math


class RollingStats:
    """Keep the last ``maxlen`` finite samples; report count, mean and percentiles."""

    def __init__(self, maxlen: int = 200) -> None:
        if maxlen < 1:
            raise ValueError(f'maxlen must be >= 1, got {maxlen}')
        self._values: deque[float] = deque(maxlen=maxlen)

    def add(self, x: float) -> None:
        """Add a sample; NaN and infinities are ignored."""
        x = float(x)
        if math.isfinite(x):
            self._values.append(x)

    def clear(self) -> None:
        """Forget all samples."""
        self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    @property
    def count(self) -> int:
        """Number of samples held."""
        return len(self._values)

    @property
    def mean(self) -> float | None:
        """Mean of the samples, None when empty."""
        if not self._values:
            return None
        return math.fsum(self._values) / len(self._values)

    def percentile(self, p: float) -> float | None:
        """Return the p-th percentile (0..100, linear interpolation), None when empty."""
        if not 0.0 <= p <= 100.0:
            raise ValueError(f'percentile must be in 0..100, got {p}')
        if not self._values:
            return None
        ordered = sorted(self._values)
        rank = (len(ordered) - 1) * p / 100.0
        low = math.floor(rank)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
