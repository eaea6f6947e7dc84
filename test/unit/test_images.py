"""Tests of the ROS-free image conversions (raw and compressed fields, JPEG data URLs)."""

import array
import base64

import cv2
import numpy as np
import pytest

from vln_ros.core.images import (
    ImageError,
    bgr_to_image_fields,
    compressed_to_bgr,
    encode_jpeg,
    image_to_bgr,
    jpeg_data_url,
    resize_long_side,
)


@pytest.fixture
def bgr():
    """A small deterministic colour image with distinct channels."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def _padded(pixels: np.ndarray, pad: int) -> tuple[int, bytes]:
    """Return (step, data) of ``pixels`` with ``pad`` junk bytes after every row."""
    h = pixels.shape[0]
    rows = pixels.reshape(h, -1)
    junk = np.full((h, pad), 0xAB, np.uint8)
    data = np.hstack([rows, junk]).tobytes()
    return rows.shape[1] + pad, data


@pytest.mark.parametrize('encoding,make', [
    ('bgr8', lambda b: b),
    ('rgb8', lambda b: b[:, :, ::-1]),
    ('bgra8', lambda b: np.dstack([b, np.full(b.shape[:2], 255, np.uint8)])),
    ('rgba8', lambda b: np.dstack([b[:, :, ::-1], np.full(b.shape[:2], 9, np.uint8)])),
])
@pytest.mark.parametrize('pad', [0, 3])
def test_colour_encodings_round_to_bgr(bgr, encoding, make, pad):
    pixels = np.ascontiguousarray(make(bgr))
    step, data = _padded(pixels, pad)
    out = image_to_bgr(encoding, bgr.shape[1], bgr.shape[0], step, data)
    assert out.shape == bgr.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, bgr)


def test_mono8_expands_to_three_equal_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    step, data = _padded(gray, 2)
    out = image_to_bgr('mono8', 4, 3, step, data)
    assert out.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


@pytest.mark.parametrize('kind', [bytes, bytearray, memoryview, 'array'])
def test_accepts_every_buffer_type_ros_uses(bgr, kind):
    raw = bgr[:, :, ::-1].tobytes()
    data = array.array('B', raw) if kind == 'array' else kind(raw)
    out = image_to_bgr('rgb8', 5, 6, 15, data)
    np.testing.assert_array_equal(out, bgr)


def test_bgr8_without_padding_is_a_view_not_a_copy(bgr):
    data = bytearray(bgr.tobytes())
    out = image_to_bgr('bgr8', 5, 6, 15, data)
    data[0] = (data[0] + 1) % 256  # writes through: proof that no copy was made
    assert out[0, 0, 0] == data[0]


def test_bgr8_with_padding_is_contiguous(bgr):
    step, data = _padded(bgr, 1)
    out = image_to_bgr('bgr8', 5, 6, step, data)
    assert out.flags['C_CONTIGUOUS']


def test_encoding_is_case_insensitive(bgr):
    out = image_to_bgr('BGR8', 5, 6, 15, bgr.tobytes())
    np.testing.assert_array_equal(out, bgr)


@pytest.mark.parametrize('encoding', ['mono16', '16UC1', '32FC1', 'rgb16', 'bayer_rggb8', ''])
def test_unsupported_encodings_raise_with_stable_cause(encoding):
    with pytest.raises(ImageError) as info:
        image_to_bgr(encoding, 2, 2, 8, bytes(16))
    assert info.value.cause == f'encoding:{encoding.lower() or "empty"}'
    assert 'unsupported' in str(info.value)
    assert isinstance(info.value, ValueError)


def test_short_data_is_a_size_mismatch():
    with pytest.raises(ImageError) as info:
        image_to_bgr('rgb8', 4, 4, 12, bytes(12 * 4 - 1))
    assert info.value.cause == 'size_mismatch'


def test_step_smaller_than_row_is_rejected():
    with pytest.raises(ImageError) as info:
        image_to_bgr('rgb8', 4, 4, 11, bytes(64))
    assert info.value.cause == 'bad_step'


@pytest.mark.parametrize('w,h', [(0, 4), (4, 0), (-1, 3)])
def test_empty_images_are_rejected(w, h):
    with pytest.raises(ImageError) as info:
        image_to_bgr('bgr8', w, h, 12, bytes(64))
    assert info.value.cause == 'empty'


def test_extra_trailing_bytes_are_ignored(bgr):
    out = image_to_bgr('bgr8', 5, 6, 15, bgr.tobytes() + b'\x00' * 7)
    np.testing.assert_array_equal(out, bgr)


# ---------------------------------------------------------------- compressed

@pytest.fixture
def scene():
    img = np.zeros((48, 64, 3), np.uint8)
    cv2.rectangle(img, (10, 10), (40, 30), (30, 90, 200), -1)
    cv2.circle(img, (50, 35), 8, (200, 220, 40), -1)
    return img


@pytest.mark.parametrize('fmt', ['jpeg', 'rgb8; jpeg compressed bgr8', 'JPEG', 'unknown'])
def test_jpeg_decodes_whatever_the_format_string(scene, fmt):
    data = encode_jpeg(scene, 95)
    out = compressed_to_bgr(fmt, data)
    assert out.shape == scene.shape
    assert np.abs(out.astype(int) - scene.astype(int)).mean() < 4


def test_png_is_lossless_and_detected_by_magic(scene):
    ok, buf = cv2.imencode('.png', scene)
    assert ok
    # The format string says jpeg, the bytes say png: the bytes win.
    out = compressed_to_bgr('bgr8; jpeg compressed bgr8', buf.tobytes())
    np.testing.assert_array_equal(out, scene)


def test_gray_jpeg_comes_back_as_three_channels(scene):
    gray = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)
    out = compressed_to_bgr('mono8; jpeg compressed mono8', encode_jpeg(gray))
    assert out.shape == scene.shape


def test_truncated_jpeg_is_corrupt(scene):
    data = encode_jpeg(scene)
    with pytest.raises(ImageError) as info:
        compressed_to_bgr('jpeg', data[: len(data) // 2])
    assert info.value.cause == 'corrupt_jpeg'


def test_garbage_after_jpeg_header_is_corrupt():
    data = b'\xff\xd8\xff' + bytes(range(256)) * 4 + b'\xff\xd9'
    with pytest.raises(ImageError) as info:
        compressed_to_bgr('jpeg', data)
    assert info.value.cause == 'corrupt_jpeg'


def test_truncated_png_is_corrupt(scene):
    ok, buf = cv2.imencode('.png', scene)
    with pytest.raises(ImageError) as info:
        compressed_to_bgr('png', buf.tobytes()[:40])
    assert info.value.cause == 'corrupt_png'


def test_format_says_jpeg_but_bytes_are_neither():
    with pytest.raises(ImageError) as info:
        compressed_to_bgr('jpeg', b'hello world, not an image')
    assert info.value.cause == 'corrupt_jpeg'


def test_unknown_format_and_bytes():
    with pytest.raises(ImageError) as info:
        compressed_to_bgr('tiff', b'II*\x00....')
    assert info.value.cause == 'format:tiff'


def test_empty_compressed_data():
    with pytest.raises(ImageError) as info:
        compressed_to_bgr('jpeg', b'')
    assert info.value.cause == 'empty'


def test_compressed_depth_is_rejected(scene):
    ok, buf = cv2.imencode('.png', scene)
    with pytest.raises(ImageError) as info:
        compressed_to_bgr('16UC1; compressedDepth png', bytes(12) + buf.tobytes())
    assert info.value.cause == 'encoding:compressedDepth'


def test_compressed_accepts_array_data(scene):
    data = array.array('B', encode_jpeg(scene))
    assert compressed_to_bgr('jpeg', data).shape == scene.shape


# ---------------------------------------------------------------- publishing and encoding

@pytest.mark.parametrize('encoding', ['bgr8', 'rgb8', 'mono8'])
def test_image_fields_round_trip(bgr, encoding):
    fields = bgr_to_image_fields(bgr, encoding)
    assert set(fields) == {'encoding', 'width', 'height', 'step', 'data'}
    assert isinstance(fields['data'], bytes)
    channels = 1 if encoding == 'mono8' else 3
    assert fields['step'] == 5 * channels and len(fields['data']) == 6 * 5 * channels
    back = image_to_bgr(fields['encoding'], fields['width'], fields['height'], fields['step'],
                        fields['data'])
    if encoding == 'mono8':
        np.testing.assert_array_equal(back[:, :, 0], cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    else:
        np.testing.assert_array_equal(back, bgr)


def test_image_fields_of_a_non_contiguous_view(bgr):
    view = bgr[:, 1:4]
    fields = bgr_to_image_fields(view)
    np.testing.assert_array_equal(
        np.frombuffer(fields['data'], np.uint8).reshape(6, 3, 3), view)


def test_image_fields_reject_bad_input(bgr):
    with pytest.raises(ImageError):
        bgr_to_image_fields(bgr, 'mono16')
    with pytest.raises(ImageError):
        bgr_to_image_fields(bgr.astype(np.float32))
    with pytest.raises(ImageError):
        bgr_to_image_fields(bgr[:, :, 0])


def test_resize_long_side_shrinks_keeping_aspect():
    img = np.zeros((480, 1280, 3), np.uint8)
    out = resize_long_side(img, 640)
    assert out.shape == (240, 640, 3)
    tall = resize_long_side(np.zeros((1000, 500, 3), np.uint8), 100)
    assert tall.shape == (100, 50, 3)


@pytest.mark.parametrize('long_side', [640, 2000, 0, -1])
def test_resize_never_upscales(long_side):
    img = np.zeros((480, 640, 3), np.uint8)
    assert resize_long_side(img, long_side) is img


def test_encode_jpeg_quality_matters_and_is_checked(scene):
    big = cv2.resize(scene, (640, 480), interpolation=cv2.INTER_NEAREST)
    noisy = cv2.add(big, np.random.default_rng(1).integers(0, 40, big.shape, dtype=np.uint8))
    assert len(encode_jpeg(noisy, 30)) < len(encode_jpeg(noisy, 95))
    for bad in (0, 101):
        with pytest.raises(ValueError):
            encode_jpeg(scene, bad)


def test_jpeg_data_url_decodes_to_the_resized_image():
    img = np.full((720, 1280, 3), (10, 120, 240), np.uint8)
    url = jpeg_data_url(img, long_side=640, quality=80)
    prefix = 'data:image/jpeg;base64,'
    assert url.startswith(prefix)
    jpeg = base64.b64decode(url[len(prefix):], validate=True)
    decoded = compressed_to_bgr('jpeg', jpeg)
    assert decoded.shape == (360, 640, 3)
    assert np.abs(decoded.astype(int) - (10, 120, 240)).max() < 6
