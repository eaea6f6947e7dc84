"""Keyframe selection: send the model a frame only when the view has changed enough.

The score of a frame is a weighted sum of three differences against the last keyframe,
each in 0..1: colour (squared Bhattacharyya distance of hue/saturation histograms), pixels (mean
absolute grayscale difference) and structure (edges that do not match an edge of the
other frame). Features are computed once per frame on a 160x120 copy, so a 640x480
frame costs well under 2 ms.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import cv2
import numpy as np

_SIZE = (160, 120)  # (width, height) all features are computed at
_HIST_BINS = (16, 8)  # hue, saturation
_HIST_RANGES = (0, 180, 0, 256)
# A mean gray difference of this many levels (out of 255) counts as a full change: real
# scene changes rarely move the mean further, while sensor noise stays near 1-3 levels.
_PIXEL_FULL_SCALE = 48.0
_CANNY_LOW, _CANNY_HIGH = 60, 150
_DILATE = np.ones((3, 3), np.uint8)  # lets edges move one pixel and still match

REASONS = ('first', 'change', 'max_interval', 'min_interval', 'below_threshold')


@dataclass
class KeyframeDecision:
    """Whether a frame is a keyframe, its difference score and why."""

    is_keyframe: bool
    score: float
    reason: str


@dataclass
class _Features:
    hist: np.ndarray
    gray: np.ndarray
    edges: np.ndarray
    edges_wide: np.ndarray
    edge_count: int


def _features(img: np.ndarray) -> _Features:
    """Compute the per-frame features on a small copy of ``img`` (BGR or gray)."""
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    small = cv2.resize(img, _SIZE, interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, list(_HIST_BINS), list(_HIST_RANGES))
    # Hue is noise for nearly gray pixels: pool the least saturated column into one bin.
    gray_share = float(hist[:, 0].sum())
    hist[:, 0] = 0.0
    hist[0, 0] = gray_share
    cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)
    edges = cv2.Canny(gray, _CANNY_LOW, _CANNY_HIGH)
    return _Features(hist=hist, gray=gray, edges=edges, edges_wide=cv2.dilate(edges, _DILATE),
                     edge_count=int(cv2.countNonZero(edges)))


def _edge_difference(a: _Features, b: _Features) -> float:
    """Return the share of edge pixels with no edge of the other frame within one pixel."""
    total = a.edge_count + b.edge_count
    if total == 0:
        return 0.0
    matched = (cv2.countNonZero(cv2.bitwise_and(a.edges, b.edges_wide))
               + cv2.countNonZero(cv2.bitwise_and(b.edges, a.edges_wide)))
    return 1.0 - matched / total


def _difference(a: _Features, b: _Features, weights: tuple[float, float, float]) -> float:
    # Squared Bhattacharyya distance (1 - coefficient): the plain distance is a square
    # root that turns a one-level brightness change into a 0.18 difference.
    hist = cv2.compareHist(a.hist, b.hist, cv2.HISTCMP_BHATTACHARYYA) ** 2
    pixel = float(cv2.norm(a.gray, b.gray, cv2.NORM_L1)) / a.gray.size / _PIXEL_FULL_SCALE
    edge = _edge_difference(a, b)
    parts = (min(max(hist, 0.0), 1.0), min(pixel, 1.0), edge)
    return float(min(max(sum(w * p for w, p in zip(weights, parts, strict=True)), 0.0), 1.0))


class KeyframeSampler:
    """Decide which camera frames are keyframes worth a model call.

    Rules, in order: the first frame is a keyframe; a frame less than ``min_interval``
    seconds after the last keyframe is not; a frame ``max_interval`` seconds or more
    after it is; otherwise a frame whose score reaches ``threshold`` is. A stamp earlier
    than the last keyframe's (a replayed bag looping, a simulator reset) starts over as
    if it were the first frame.
    """

    def __init__(self, threshold: float = 0.2, min_interval: float = 0.2,
                 max_interval: float = 10.0,
                 weights: tuple[float, float, float] = (0.4, 0.3, 0.3)) -> None:
        if len(weights) != 3 or any(not math.isfinite(w) or w < 0 for w in weights) \
                or sum(weights) <= 0:
            raise ValueError(f'weights must be three non-negative numbers, got {weights}')
        total = float(sum(weights))
        self._weights = tuple(float(w) / total for w in weights)
        self.set_intervals(min_interval, max_interval)
        self._threshold = 0.0
        self.threshold = threshold
        self._last: _Features | None = None
        self._last_stamp = 0.0

    @property
    def threshold(self) -> float:
        """Score (0..1) a frame needs to become a keyframe."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        value = float(value)
        if not (0.0 <= value <= 1.0):
            raise ValueError(f'keyframe threshold must be in 0..1, got {value}')
        self._threshold = value

    def set_intervals(self, min_interval: float, max_interval: float) -> None:
        """Set the shortest and longest time (s) between keyframes; raises ValueError."""
        if not (math.isfinite(min_interval) and min_interval >= 0.0):
            raise ValueError(f'min_interval must be >= 0, got {min_interval}')
        if not (max_interval > min_interval):
            raise ValueError(f'max_interval ({max_interval}) must exceed min_interval '
                             f'({min_interval}); use math.inf to disable it')
        self._min_interval = float(min_interval)
        self._max_interval = float(max_interval)

    @property
    def last_stamp(self) -> float | None:
        """Stamp of the last keyframe, or None before the first one."""
        return self._last_stamp if self._last is not None else None

    def reset(self) -> None:
        """Forget the last keyframe: the next frame will be a keyframe."""
        self._last = None
        self._last_stamp = 0.0

    def score(self, img: np.ndarray) -> float:
        """Return the difference (0..1) of ``img`` from the last keyframe; 1.0 without one."""
        if self._last is None:
            return 1.0
        return _difference(_features(img), self._last, self._weights)

    def update(self, img: np.ndarray, stamp: float) -> KeyframeDecision:
        """Decide whether the frame captured at ``stamp`` (seconds) is a keyframe.

        A keyframe becomes the reference for later frames. Frames inside
        ``min_interval`` are rejected without computing features (score 0.0).
        """
        if self._last is not None and stamp < self._last_stamp:
            self.reset()
        if self._last is None:
            return self._accept(_features(img), stamp, 1.0, 'first')
        elapsed = stamp - self._last_stamp
        if elapsed < self._min_interval:
            return KeyframeDecision(False, 0.0, 'min_interval')
        features = _features(img)
        score = _difference(features, self._last, self._weights)
        if elapsed >= self._max_interval:
            return self._accept(features, stamp, score, 'max_interval')
        if score >= self._threshold:
            return self._accept(features, stamp, score, 'change')
        return KeyframeDecision(False, score, 'below_threshold')

    def _accept(self, features: _Features, stamp: float, score: float,
                reason: str) -> KeyframeDecision:
        self._last = features
        self._last_stamp = float(stamp)
        return KeyframeDecision(True, score, reason)
