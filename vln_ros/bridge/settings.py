"""What the bridge's web side needs to know; main.py fills it from the node's parameters."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MEDIA_DIR = '~/.ros/vln_ros/media'


@dataclass
class BridgeSettings:
    """Limits, timeouts and the model server of the bridge (ROS-free)."""

    api_key: str = ''  # empty: no key required
    vlm_base_url: str = 'http://127.0.0.1:23333/v1'
    vlm_api_key: str = ''
    vlm_timeout: float = 120.0  # s, per proxied request (per chunk when streaming)
    vlm_guided: str = 'regex'  # guided decoding of /analyze/video, as the perception node
    max_body_bytes: int = 10 * 1024 * 1024
    max_frame_bytes: int = 4 * 1024 * 1024
    max_frame_pixels: int = 4096 * 4096
    frame_rate_limit: float = 60.0  # frames/s per client; 0 turns the limit off
    frame_burst: float = 0.0  # frames a client may send at once; 0: one second's worth
    sync_timeout: float = 15.0  # s, POST /vln/frame/sync waits this long for its result
    service_timeout: float = 5.0  # s, task services
    max_video_frames: int = 32
    cors_origins: tuple[str, ...] = ()
    source_max_long_side: int = 1280  # px; the video source downscales larger frames
    source_open_timeout: float = 5.0  # s, opening a video URL
    media_dir: str = DEFAULT_MEDIA_DIR  # POST /vln/source plays files under here only
