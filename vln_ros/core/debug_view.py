"""Draw what the model said onto the camera image, for the debug image topic.

Overlays: the environment description (wrapped), the action and status, the waypoint path
projected onto the ground through a pinhole model of the forward camera, a top-down
inset of the same waypoints (points closer than the camera sees still show there) and
the commanded velocities.
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Protocol

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE = (255, 255, 255)
_STATUS_COLOURS = {'ok': (80, 200, 80), 'stop': (60, 60, 230)}
_OTHER_STATUS_COLOUR = (0, 165, 255)  # orange: fallback parsing, VLM errors, ...


class WaypointLike(Protocol):
    """Anything with the fields of parser.Waypoint."""

    dx: float
    dy: float
    dtheta: float
    confidence: float


def _ascii(text: str) -> str:
    """Replace what cv2's Hershey fonts cannot draw (non-ASCII, control characters)."""
    return ''.join(ch if 32 <= ord(ch) < 127 else '?' for ch in str(text))


def _finite(value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return value if math.isfinite(value) else 0.0


def _confidence_colour(confidence: float) -> tuple[int, int, int]:
    """Red for 0 through yellow to green for 1 (BGR)."""
    c = min(max(_finite(confidence), 0.0), 1.0)
    return (0, int(255 * min(1.0, 2 * c)), int(255 * min(1.0, 2 * (1 - c))))


def _shade(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.55) -> None:
    """Darken a rectangle so text on it stays readable over any background."""
    h, w = img.shape[:2]
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        roi[:] = (roi * (1.0 - alpha)).astype(np.uint8)


def _wrap(text: str, width_px: int, scale: float, max_lines: int) -> list[str]:
    char_w = max(1, cv2.getTextSize('abcdefghijklmnopqrstuvwxyz', _FONT, scale, 1)[0][0] // 26)
    per_line = max(4, width_px // char_w)
    lines: list[str] = []
    current = ''
    for word in text.split():
        while len(word) > per_line:  # a word longer than a line is cut
            if current:
                lines.append(current)
                current = ''
            lines.append(word[:per_line])
            word = word[per_line:]
        candidate = f'{current} {word}' if current else word
        if len(candidate) > per_line:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][:per_line - 3] + '...'
    return lines


def _project(points: np.ndarray, width: int, height: int, camera_height: float,
             hfov: float, pitch: float) -> np.ndarray:
    """Project ground points (x forward, y left, on the floor) to pixels; NaN behind the camera."""
    focal = (width / 2.0) / math.tan(hfov / 2.0)
    x, y = points[:, 0], points[:, 1]
    # Camera frame: z along the (pitched down) optical axis, image v pointing down.
    z = x * math.cos(pitch) + camera_height * math.sin(pitch)
    down = -x * math.sin(pitch) + camera_height * math.cos(pitch)
    with np.errstate(divide='ignore', invalid='ignore'):
        u = width / 2.0 + focal * (-y) / z
        v = height / 2.0 + focal * down / z
    out = np.stack([u, v], axis=1)
    out[z <= 0.02] = np.nan
    return out


def _path_points(waypoints: Sequence[WaypointLike]) -> np.ndarray:
    """Robot origin followed by the waypoints, densified so the projected path bends right."""
    anchors = [(0.0, 0.0)] + [(_finite(w.dx), _finite(w.dy)) for w in waypoints]
    dense = []
    for (x0, y0), (x1, y1) in zip(anchors[:-1], anchors[1:], strict=True):
        for t in np.linspace(0.0, 1.0, 8, endpoint=False):
            dense.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
    dense.append(anchors[-1])
    return np.array(dense, dtype=np.float64)


def _draw_projected_path(img: np.ndarray, waypoints: Sequence[WaypointLike],
                         camera_height: float, hfov: float, pitch: float) -> None:
    h, w = img.shape[:2]
    limit = 4 * max(h, w)  # keep cv2's integer coordinates far from overflow
    pixels = _project(_path_points(waypoints), w, h, camera_height, hfov, pitch)
    for p0, p1 in zip(pixels[:-1], pixels[1:], strict=True):
        if np.isnan(p0).any() or np.isnan(p1).any():
            continue
        a = tuple(int(v) for v in np.clip(p0, -limit, limit))
        b = tuple(int(v) for v in np.clip(p1, -limit, limit))
        cv2.line(img, a, b, (255, 200, 0), 2, cv2.LINE_AA)
    ends = _project(np.array([[_finite(p.dx), _finite(p.dy)] for p in waypoints]).reshape(-1, 2),
                    w, h, camera_height, hfov, pitch)
    for point, (u, v) in zip(waypoints, ends, strict=True):
        if math.isfinite(u) and math.isfinite(v) and 0 <= u < w and 0 <= v < h:
            radius = 3 + int(5 * min(max(_finite(point.confidence), 0.0), 1.0))
            cv2.circle(img, (int(u), int(v)), radius, _confidence_colour(point.confidence), -1,
                       cv2.LINE_AA)


def _draw_top_view(img: np.ndarray, waypoints: Sequence[WaypointLike], size: int) -> None:
    """Inset at the bottom left: robot at the bottom centre, x up, y (left) to the left."""
    h, w = img.shape[:2]
    x0, y0 = 6, h - size - 6
    _shade(img, x0, y0, x0 + size, y0 + size)
    scale = (size - 12) / 1.2  # pixels per metre: 1.2 m ahead, +-0.6 m to the sides
    origin = (x0 + size // 2, y0 + size - 6)

    def to_px(px: float, py: float) -> tuple[int, int]:
        u = min(max(origin[0] - py * scale, x0 + 2), x0 + size - 2)
        v = min(max(origin[1] - px * scale, y0 + 2), y0 + size - 2)
        return (int(u), int(v))

    cv2.rectangle(img, (x0, y0), (x0 + size, y0 + size), (160, 160, 160), 1)
    cv2.drawMarker(img, origin, _WHITE, cv2.MARKER_TRIANGLE_UP, 8, 1)
    previous = origin
    for point in waypoints:
        dx, dy, dtheta = _finite(point.dx), _finite(point.dy), _finite(point.dtheta)
        here = to_px(dx, dy)
        cv2.line(img, previous, here, (255, 200, 0), 1, cv2.LINE_AA)
        colour = _confidence_colour(point.confidence)
        cv2.circle(img, here, 3, colour, -1, cv2.LINE_AA)
        # Heading tick: yaw counter-clockwise positive turns the tick to the left.
        tip = (int(here[0] - 10 * math.sin(dtheta)), int(here[1] - 10 * math.cos(dtheta)))
        cv2.line(img, here, tip, colour, 1, cv2.LINE_AA)
        previous = here


def _draw_velocity(img: np.ndarray, linear: float, angular: float, size: int,
                   scale: float) -> None:
    """Bottom right: a vertical bar for linear and a horizontal bar for angular velocity."""
    h, w = img.shape[:2]
    x0, y0 = w - size - 6, h - size - 6
    _shade(img, x0, y0, x0 + size, y0 + size)
    cx, cy = x0 + size // 2, y0 + size // 2
    half = size // 2 - 8
    cv2.line(img, (cx, y0 + 6), (cx, y0 + size - 6), (120, 120, 120), 1)
    cv2.line(img, (x0 + 6, cy), (x0 + size - 6, cy), (120, 120, 120), 1)
    # Full scale 1 m/s and 1 rad/s; beyond that the bar sticks at the edge.
    lin = int(half * min(max(linear, -1.0), 1.0))
    ang = int(half * min(max(angular, -1.0), 1.0))
    if lin:
        cv2.arrowedLine(img, (cx, cy), (cx, cy - lin), (80, 220, 80), 3, cv2.LINE_AA,
                        tipLength=0.3)
    if ang:
        # Counter-clockwise (positive) points left, as the robot would turn.
        cv2.arrowedLine(img, (cx, cy), (cx - ang, cy), (230, 160, 60), 3, cv2.LINE_AA,
                        tipLength=0.3)
    cv2.putText(img, f'v {linear:+.2f}', (x0 + 4, y0 + 12), _FONT, 0.35 * scale, _WHITE, 1,
                cv2.LINE_AA)
    cv2.putText(img, f'w {angular:+.2f}', (x0 + 4, y0 + size - 4), _FONT, 0.35 * scale,
                _WHITE, 1, cv2.LINE_AA)


def draw_debug_image(img_bgr: np.ndarray, environment: str, action: str,
                     waypoints: Sequence[WaypointLike], linear_vel: float, angular_vel: float,
                     status: str = 'ok', *, camera_height: float = 0.5,
                     hfov_deg: float = 90.0, camera_pitch: float = 0.0) -> np.ndarray:
    """Return a copy of ``img_bgr`` with the model's answer and the velocities drawn on it.

    The camera model (height in m, horizontal field of view, downward pitch in rad) only
    places the projected path; the defaults are a level camera 0.5 m above the floor.
    """
    if img_bgr.ndim == 2:
        out = cv2.cvtColor(img_bgr, cv2.COLOR_GRAY2BGR)
    else:
        out = np.array(img_bgr[:, :, :3], dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    scale = max(0.4, min(w, h * 4 / 3) / 640.0)  # text size follows the image size
    font_scale = 0.5 * scale
    line_h = int(cv2.getTextSize('Ag', _FONT, font_scale, 1)[0][1] * 1.9) + 1

    waypoints = list(waypoints)
    if waypoints:
        _draw_projected_path(out, waypoints, camera_height, math.radians(hfov_deg),
                             camera_pitch)

    lines = _wrap(_ascii(environment) or '(no description)', w - 16, font_scale, 3)
    box_h = line_h * len(lines) + 8
    _shade(out, 0, 0, w, box_h)
    for i, line in enumerate(lines):
        cv2.putText(out, line, (8, 4 + line_h * (i + 1) - line_h // 4), _FONT, font_scale,
                    _WHITE, 1, cv2.LINE_AA)

    status_text = _ascii(status) or 'ok'
    colour = _STATUS_COLOURS.get(status_text, _OTHER_STATUS_COLOUR)
    label = f'{(_ascii(action) or "-").upper()}  [{status_text}]'
    (text_w, _), _ = cv2.getTextSize(label, _FONT, font_scale * 1.2, 2)
    top = box_h + 4
    _shade(out, 0, top, text_w + 16, top + line_h + 8)
    cv2.rectangle(out, (0, top), (text_w + 16, top + line_h + 8), colour, 2)
    cv2.putText(out, label, (8, top + line_h + 1), _FONT, font_scale * 1.2, colour, 2,
                cv2.LINE_AA)

    inset = int(min(h, w) * 0.28)
    if inset >= 40:
        _draw_top_view(out, waypoints, inset)
        _draw_velocity(out, _finite(linear_vel), _finite(angular_vel), inset, scale)
    return out
