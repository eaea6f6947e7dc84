"""A frame number drawn into simulated camera images, so the oracle knows the capture pose.

The model server only sees a JPEG, and with 5-8 s of latency and newest-wins queueing the
keyframe it answers about may be seconds old. The simulator draws the frame counter as a strip
of black/white cells in the top-left corner; the oracle reads it back from the (re-encoded,
possibly resized) JPEG and answers from the pose at which that frame was rendered, exactly
like a real model that only knows what its image shows.
"""
from __future__ import annotations

import numpy as np

BITS = 16
_CELLS = 2 + BITS + 1  # guard white, guard black, data bits (MSB first), even parity
_CELL = 12  # px at 640 px image width
_REF_WIDTH = 640


def _cell_size(width: int) -> float:
    return _CELL * width / _REF_WIDTH


def stamp_frame(img: np.ndarray, frame_id: int) -> np.ndarray:
    """Draw frame_id (mod 2**16) into the top-left corner of img (in place) and return it."""
    value = int(frame_id) % (1 << BITS)
    bits = [(value >> (BITS - 1 - i)) & 1 for i in range(BITS)]
    cells = [1, 0, *bits, sum(bits) % 2]
    size = max(1, int(round(_cell_size(img.shape[1]))))
    for i, bit in enumerate(cells):
        img[0:size, i * size:(i + 1) * size] = 255 if bit else 0
    return img


def read_frame_tag(img: np.ndarray) -> int | None:
    """Return the frame number drawn by stamp_frame, or None when there is no valid tag."""
    if img is None or img.ndim < 2 or img.shape[1] < _CELLS * 2:
        return None
    gray = img.mean(axis=2) if img.ndim == 3 else img
    size = _cell_size(img.shape[1])
    row = int(size / 2)
    levels = [gray[row, int((i + 0.5) * size)] for i in range(_CELLS)]
    bits = [1 if v > 127 else 0 for v in levels]
    if bits[0] != 1 or bits[1] != 0 or sum(bits[2:2 + BITS]) % 2 != bits[-1]:
        return None
    if any(40 < v < 215 for v in levels):  # not a crisp black/white strip: no tag here
        return None
    value = 0
    for bit in bits[2:2 + BITS]:
        value = (value << 1) | bit
    return value
