"""Conversions between ROS image message fields and numpy BGR images, without ROS.

The node passes the *fields* of a ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``
here, so this module never imports a ROS package and is tested with plain pytest.
"""

from __future__ import annotations

import array
import base64

import cv2
import numpy as np

# Encoding -> (channels, cv2 conversion to BGR or None when the bytes already are BGR).
_RAW_ENCODINGS: dict[str, tuple[int, int | None]] = {
    'bgr8': (3, None),
    'rgb8': (3, cv2.COLOR_RGB2BGR),
    'bgra8': (4, cv2.COLOR_BGRA2BGR),
    'rgba8': (4, cv2.COLOR_RGBA2BGR),
    'mono8': (1, cv2.COLOR_GRAY2BGR),
    # OpenCV-style names some drivers use for the same layouts.
    '8uc3': (3, None),
    '8uc1': (1, cv2.COLOR_GRAY2BGR),
}

_JPEG_MAGIC = b'\xff\xd8\xff'
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'

ImageBuffer = bytes | bytearray | memoryview | array.array


class ImageError(ValueError):
    """An image that cannot be converted; ``cause`` is a short stable key for warn-once logs."""

    def __init__(self, cause: str, message: str = '') -> None:
        super().__init__(message or cause)
        self.cause = cause


def image_to_bgr(encoding: str, width: int, height: int, step: int, data: ImageBuffer,
                 is_bigendian: int = 0) -> np.ndarray:
    """Turn the fields of a raw ``sensor_msgs/Image`` into an HxWx3 uint8 BGR array.

    Supports rgb8, bgr8, rgba8, bgra8 and mono8 (gray expanded to three channels).
    Row padding (``step`` larger than ``width * channels``) is skipped. A bgr8 image
    without padding is returned as a view on ``data`` (read-only when ``data`` is
    ``bytes``); every other case makes exactly one copy.
    ``is_bigendian`` is accepted for symmetry with the message and ignored because
    only 8-bit encodings are supported.
    """
    del is_bigendian  # 8-bit data has no byte order.
    enc = (encoding or '').strip().lower()
    if enc not in _RAW_ENCODINGS:
        raise ImageError(f'encoding:{enc or "empty"}',
                         f"unsupported image encoding '{encoding}': use rgb8, bgr8, rgba8, "
                         'bgra8 or mono8 (16-bit and float images are not supported)')
    channels, conversion = _RAW_ENCODINGS[enc]
    if width <= 0 or height <= 0:
        raise ImageError('empty', f'image has no pixels ({width}x{height})')
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageError('bad_step', f'step {step} is smaller than width*channels = {row_bytes}')
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < step * height:
        raise ImageError('size_mismatch',
                         f'{buf.size} data bytes for a {width}x{height} {enc} image with step '
                         f'{step} (need {step * height})')
    # Views only: rows of `step` bytes, cut to the pixel bytes, split into channels.
    rows = buf[:step * height].reshape(height, step)[:, :row_bytes]
    pixels = rows.reshape(height, width) if channels == 1 else rows.reshape(height, width,
                                                                             channels)
    if conversion is None:
        # ascontiguousarray copies only when rows were padded.
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, conversion)


def _compressed_kind(fmt: str, data: bytes) -> str:
    """Tell 'jpeg' from 'png' by magic bytes, falling back to the format string."""
    if data[:3] == _JPEG_MAGIC:
        return 'jpeg'
    if data[:8] == _PNG_MAGIC:
        return 'png'
    hint = fmt.lower()
    if 'png' in hint:
        return 'png'
    if 'jpeg' in hint or 'jpg' in hint:
        return 'jpeg'
    return ''


def compressed_to_bgr(fmt: str, data: bytes) -> np.ndarray:
    """Decode the fields of a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to BGR.

    ``fmt`` is the message's format string ('jpeg', 'png', 'rgb8; jpeg compressed
    bgr8', ...). The actual codec is detected from the magic bytes; the string is only a
    hint. Depth images from compressed_depth_image_transport are rejected.
    """
    fmt = fmt or ''
    if 'compresseddepth' in fmt.lower().replace(' ', ''):
        raise ImageError('encoding:compressedDepth',
                         f"compressed depth images are not supported (format '{fmt}')")
    raw = bytes(data) if not isinstance(data, bytes) else data
    if not raw:
        raise ImageError('empty', 'compressed image has no data')
    kind = _compressed_kind(fmt, raw)
    if not kind:
        raise ImageError(f'format:{fmt.strip() or "unknown"}',
                         f"unknown compressed image format '{fmt}' (expected jpeg or png)")
    magic = _JPEG_MAGIC if kind == 'jpeg' else _PNG_MAGIC
    if not raw.startswith(magic):
        raise ImageError(f'corrupt_{kind}', f'data does not start with a {kind} header')
    # libjpeg decodes a truncated file into a half-grey picture with only a warning;
    # such a frame would mislead the model, so require the end-of-image marker.
    if kind == 'jpeg' and not raw.rstrip(b'\x00').endswith(b'\xff\xd9'):
        raise ImageError('corrupt_jpeg', 'jpeg data is truncated (no end-of-image marker)')
    img = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f'corrupt_{kind}', f'{kind} data could not be decoded')
    return img


def _check_bgr(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise ImageError('bad_image', 'expected a uint8 numpy image')
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageError('bad_image', f'expected an HxWx3 BGR image, got shape {img.shape}')


def bgr_to_image_fields(img: np.ndarray, encoding: str = 'bgr8') -> dict:
    """Return the fields of a ``sensor_msgs/Image`` holding ``img`` in ``encoding``.

    Keys: encoding, width, height, step, data (bytes). Encodings: bgr8, rgb8, mono8.
    """
    _check_bgr(img)
    if encoding == 'bgr8':
        out = img
    elif encoding == 'rgb8':
        out = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif encoding == 'mono8':
        out = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    else:
        raise ImageError(f'encoding:{encoding}',
                         f"cannot publish encoding '{encoding}': use bgr8, rgb8 or mono8")
    height, width = out.shape[:2]
    channels = 1 if out.ndim == 2 else out.shape[2]
    return {
        'encoding': encoding,
        'width': int(width),
        'height': int(height),
        'step': int(width * channels),
        'data': np.ascontiguousarray(out).tobytes(),
    }


def resize_long_side(img: np.ndarray, long_side: int) -> np.ndarray:
    """Shrink ``img`` so its longer side is ``long_side`` pixels; never upscales.

    A ``long_side`` of 0 or less keeps the original size. Returns ``img`` itself when no
    resize is needed.
    """
    height, width = img.shape[:2]
    longest = max(height, width)
    if long_side <= 0 or longest <= long_side:
        return img
    scale = long_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # INTER_AREA averages source pixels: no aliasing when shrinking.
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    """Encode a BGR (or gray) image as JPEG bytes."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f'jpeg quality must be in 1..100, got {quality}')
    ok, buf = cv2.imencode('.jpg', img, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ImageError('encode_failed', 'jpeg encoding failed')
    return buf.tobytes()


def jpeg_data_url(img: np.ndarray, long_side: int = 640, quality: int = 85) -> str:
    """Return ``data:image/jpeg;base64,...`` for ``img`` shrunk to ``long_side``."""
    jpeg = encode_jpeg(resize_long_side(img, long_side), quality)
    return 'data:image/jpeg;base64,' + base64.b64encode(jpeg).decode('ascii')
