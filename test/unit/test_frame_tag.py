import cv2
import numpy as np
import pytest

from vln_ros.sim.frame_tag import read_frame_tag, stamp_frame


@pytest.mark.parametrize('frame_id', [0, 1, 1234, 65535, 70000])
@pytest.mark.parametrize('width', [640, 320])
def test_tag_survives_jpeg_and_resize(frame_id, width):
    rng = np.random.default_rng(frame_id)
    img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    stamp_frame(img, frame_id)
    small = cv2.resize(img, (width, width * 3 // 4), interpolation=cv2.INTER_AREA)
    ok, jpg = cv2.imencode('.jpg', small, [cv2.IMWRITE_JPEG_QUALITY, 75])
    decoded = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
    assert read_frame_tag(decoded) == frame_id % 65536


def test_untagged_images_give_none():
    rng = np.random.default_rng(1)
    assert read_frame_tag(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) is None
    assert read_frame_tag(np.full((480, 640, 3), 128, np.uint8)) is None
    assert read_frame_tag(np.zeros((4, 4, 3), np.uint8)) is None
