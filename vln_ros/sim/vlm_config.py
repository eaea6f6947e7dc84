"""The test model server's configuration: one dataclass, validated on every change.

``/_test/config`` builds a new config with :func:`dataclasses.replace`, so the checks in
``__post_init__`` guard run-time changes as well as construction: a bad value is a 400
there and a ValueError here, and the running config is never left half-changed.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

from vln_ros.sim.vlm_faults import check_fault_fields, is_number


@dataclass
class ServerConfig:
    """Behaviour of the test server; every field can be changed at run time."""

    model_name: str = 'Qwen3-VL-32B-Instruct'
    api_key: str = ''  # empty: no key required, like LMDeploy without --api-keys
    latency_min: float = 0.0  # s, each answer waits uniform(latency_min, latency_max)
    latency_max: float = 0.0
    startup_delay: float = 0.0  # s of 503 'initializing' after start
    # Faults, at most one per request, drawn in this order (see vln_ros.sim.vlm_faults):
    error_rate: float = 0.0  # 503 engine unavailable / 500 internal error, alternating
    timeout_rate: float = 0.0  # hang for TIMEOUT_FAULT_S so the client timeout fires
    garbage_rate: float = 0.0  # random non-JSON text, sometimes with control characters
    truncate_rate: float = 0.0  # valid answer JSON cut in the middle
    prose_rate: float = 0.0  # answer wrapped in chatty prose (guided: rambling environment)
    chinese_rate: float = 0.0  # Chinese prose, no JSON (guided: 'unknown scene')
    refusal_rate: float = 0.0  # a refusal, no JSON (guided: a low-confidence stop)
    # On top of any fault: this fraction waits its latency times uniform(low, high).
    latency_tail_rate: float = 0.0
    latency_tail_factor: tuple[float, float] = (1.5, 2.0)  # [low, high], 1 <= low <= high
    seed: int = 0
    max_body_bytes: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        """Reject values the server could not honour."""
        if not isinstance(self.model_name, str) or not self.model_name:
            raise ValueError('model_name must be a non-empty string')
        if not isinstance(self.api_key, str):
            raise ValueError('api_key must be a string')
        for name in ('latency_min', 'latency_max', 'startup_delay'):
            value = getattr(self, name)
            if not is_number(value) or not math.isfinite(value) or value < 0.0:
                raise ValueError(f'{name} must be a finite number >= 0, got {value!r}')
        if self.latency_min > self.latency_max:
            raise ValueError(
                f'latency_min ({self.latency_min}) must not exceed latency_max '
                f'({self.latency_max})')
        # A JSON list from /_test/config becomes the tuple the field's type says.
        self.latency_tail_factor = check_fault_fields(self)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f'seed must be an integer, got {self.seed!r}')
        if (not isinstance(self.max_body_bytes, int) or isinstance(self.max_body_bytes, bool)
                or self.max_body_bytes < 1):
            raise ValueError(f'max_body_bytes must be a positive integer, '
                             f'got {self.max_body_bytes!r}')
