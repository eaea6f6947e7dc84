"""The perception node's parameters: meaning, range, live or read_only, and their builders.

Live ones apply to the next keyframe after `ros2 param set` (vlm.* to the next request);
read_only ones shape subscriptions and the scheduler and need a restart. A change is
validated by building the same objects start-up builds.
"""
from __future__ import annotations

from typing import Any

from vln_ros.core.camera_mount import CameraMount
from vln_ros.core.prompts import GUIDED_MODES
from vln_ros.core.velocity_limits import Limits
from vln_ros.core.vlm_client import VlmConfig
from vln_ros.nodes.parameters import ParamSpec

VLM_SPECS = (
    ParamSpec('vlm.base_url', 'http://127.0.0.1:23333/v1',
              'OpenAI-compatible base URL of the model server'),
    ParamSpec('vlm.model', '', 'Model name; empty: ask /v1/models'),
    ParamSpec('vlm.api_key', 'none', 'API key of the model server'),
    ParamSpec('vlm.timeout', 30.0, 'Request timeout (s)', 0.5, 600.0),
    ParamSpec('vlm.max_retries', 3, 'Retries on connection errors, 429 and 503', 0, 20),
    ParamSpec('vlm.guided', 'regex', 'Guided decoding: regex (LMDeploy), json_schema or none'),
    ParamSpec('vlm.max_tokens', 384, 'Answer token budget', 16, 8192),
    ParamSpec('vlm.temperature', 0.7, 'Sampling temperature', 0.0, 2.0),
    ParamSpec('vlm.top_p', 0.8, 'Nucleus sampling', 0.0, 1.0),
    ParamSpec('vlm.top_k', 20, 'Top-k sampling (LMDeploy extra)', 0, 1000),
    ParamSpec('vlm.repetition_penalty', 1.05, 'Repetition penalty (LMDeploy extra)', 0.5, 2.0),
    ParamSpec('vlm.max_pixels', 0,
              'Ask the server to shrink images to this many pixels (0: off)', 0, 100_000_000),
)

CAMERA_SPECS = (
    ParamSpec('camera.x', 0.0, 'Camera position ahead of the base frame origin (m)', -5.0, 5.0),
    ParamSpec('camera.y', 0.0, 'Camera position left of the base frame origin (m)', -5.0, 5.0),
    ParamSpec('camera.height', 0.5, 'Camera height above the ground (m)', 0.01, 5.0),
    ParamSpec('camera.pitch', 0.0, 'Camera pitch (rad, positive looks down)', -1.5, 1.5),
    ParamSpec('camera.use_tf', True, 'Read the mounting from TF (base_frame -> the image '
              'frame_id) when tf2_ros is importable and the transform exists; the camera.* '
              'values are the fallback'),
    ParamSpec('camera.base_height', 0.0, 'Height of base_frame above the ground (m), added to '
              'the TF height (0 for base_footprint)', -2.0, 5.0),
)

SPECS = VLM_SPECS + CAMERA_SPECS + (
    ParamSpec('image_transport', 'raw',
              'Camera input: raw (sensor_msgs/Image) or compressed', read_only=True),
    ParamSpec('max_inflight', 1, 'Model requests at once', 1, 16, read_only=True),
    ParamSpec('keyframe_threshold', 0.2, 'Frame difference that makes a keyframe (default for '
              'tasks that set none)', 0.0, 1.0),
    ParamSpec('keyframe_min_interval', 0.2, 'No keyframe sooner than this after the last one '
              '(s)', 0.0, 60.0),
    ParamSpec('keyframe_max_interval', 10.0, 'A keyframe at least this often, changed or not '
              '(s)', 0.1, 600.0),
    ParamSpec('turn_hold', 3.0, 'After a turn-in-place answer (other than a second turn the '
              'same way: a sweep), send the next keyframe once the planner has finished the '
              'turn, waiting at most this long (s); 0: no hold', 0.0, 30.0),
    ParamSpec('output_fps', 2.0, 'Rate (Hz) the linear_vel / angular_vel result fields assume, '
              'for tasks that set none', 0.01, 30.0),
    ParamSpec('image_long_side', 640, 'Long side of the JPEG sent to the model (px)', 64, 4096),
    ParamSpec('jpeg_quality', 85, 'JPEG quality', 10, 100),
    ParamSpec('history_size', 5, 'Past (environment, action) pairs in the prompt', 0, 20),
    ParamSpec('enable_visualization', False, 'Publish vln/debug_image for every result'),
    ParamSpec('base_frame', 'base_link', 'Robot base frame (frame_id of the results)'),
    ParamSpec('max_linear_vel', 0.5, 'Clamp of the result linear_vel field (m/s)', 0.01, 3.0),
    ParamSpec('max_angular_vel', 0.8, 'Clamp of the result angular_vel field (rad/s)',
              0.01, 5.0),
    ParamSpec('input_warn_after', 5.0, 'Warn (throttled) when no camera frame arrived, or the '
              'model server did not answer, for this long (s)', 0.5, 600.0),
    ParamSpec('diagnostics_window', 30.0, 'Model errors within this window (s) turn '
              '/diagnostics to WARN', 1.0, 3600.0),
)


def vlm_config(values: dict[str, Any]) -> VlmConfig:
    """The model client's settings; raises ValueError for an unknown guided mode or URL."""
    if values['vlm.guided'] not in GUIDED_MODES:
        raise ValueError(f'vlm.guided must be one of {GUIDED_MODES}, got '
                         f'{values["vlm.guided"]!r}')
    url = values['vlm.base_url'].strip()
    if not url.startswith(('http://', 'https://')):
        raise ValueError(f'vlm.base_url must be an http(s) URL, got {url!r}')
    return VlmConfig(base_url=url, **{s.name[4:]: values[s.name] for s in VLM_SPECS
                                      if s.name != 'vlm.base_url'})


def camera_mount(values: dict[str, Any]) -> CameraMount:
    """The camera.* parameters as a mount (raises ValueError when out of range)."""
    return CameraMount(x=values['camera.x'], y=values['camera.y'],
                       height=values['camera.height'], pitch=values['camera.pitch'])


def result_limits(values: dict[str, Any]) -> Limits:
    """The speed limits the result's velocity fields are clamped to."""
    return Limits(max_linear_vel=values['max_linear_vel'],
                  max_angular_vel=values['max_angular_vel'])


def check_intervals(values: dict[str, Any]) -> None:
    """The keyframe intervals must leave room between them; raises ValueError."""
    if not values['keyframe_max_interval'] > values['keyframe_min_interval']:
        raise ValueError(f'keyframe_max_interval ({values["keyframe_max_interval"]} s) must '
                         f'exceed keyframe_min_interval ({values["keyframe_min_interval"]} s)')
