"""A synthetic camera for integration tests: textured frames that move, published as Image."""
import numpy as np
from sensor_msgs.msg import Image

from vln_ros.nodes.ros_common import sec_to_stamp


def textured_frame(i: int, width: int = 640, height: int = 480) -> np.ndarray:
    """RGB frame i of a scene that pans sideways a little every frame."""
    x = np.arange(width)[None, :] + 9 * i
    y = np.arange(height)[:, None]
    r = (128 + 100 * np.sin(x / 23.0) * np.cos(y / 31.0)).astype(np.uint8)
    g = ((x // 40 + y // 40) % 2 * 160 + 40).astype(np.uint8)
    b = np.broadcast_to(((x * 3 + y) % 256).astype(np.uint8), r.shape)
    return np.ascontiguousarray(np.stack([r, np.broadcast_to(g, r.shape), b], axis=-1))


def image_msg(rgb: np.ndarray, stamp: float, frame_id: str = 'camera') -> Image:
    """sensor_msgs/Image (rgb8) of an RGB array."""
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding='rgb8',
                step=rgb.shape[1] * 3, data=rgb.tobytes())
    msg.header.stamp = sec_to_stamp(stamp)
    msg.header.frame_id = frame_id
    return msg
