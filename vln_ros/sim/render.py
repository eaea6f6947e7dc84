"""Images of the 2D world: a first-person camera by ray casting, and a top-down map.

The camera is a level pinhole camera at the robot's camera mount (``robot.camera``: x, y
ahead of and beside the base centre, height above the floor), looking along the robot's x
axis. One ray per image column is cast against the walls and landmarks (all
columns at once with numpy); floor and ceiling are textured per pixel from precomputed row
distances, so the image changes as the robot moves even in an empty room. Frames are built
as a one-channel palette index image and coloured with one ``cv2.LUT`` call; landmarks are
painted on top in their own colour.
"""

import math
from typing import Any, Iterable

import cv2
import numpy as np

from vln_ros.sim.rays import ray_circle, ray_segment
from vln_ros.sim.sim_pose import Pose
from vln_ros.sim.world import Landmark, World

# Palette index ranges of the one-channel frame (each range is a ramp of shades).
_FLOOR0, _CEIL0, _WALL0, _SHADES = 0, 86, 172, 84
_FLOOR_BGR = ((70, 95, 120), (105, 140, 170))      # two tiles, brownish
_CEIL_BGR = ((175, 170, 165), (200, 195, 190))     # two tiles, light grey
_WALL_BGR = ((150, 160, 175), (120, 128, 140))     # two stripes, beige/grey
_FAR = 1e6


def _palette() -> np.ndarray:
    """Build the 256-entry BGR lookup table of the palette index image."""
    lut = np.zeros((256, 1, 3), np.uint8)
    for start, pair in ((_FLOOR0, _FLOOR_BGR), (_CEIL0, _CEIL_BGR), (_WALL0, _WALL_BGR)):
        # Even offsets: first tile colour, odd: second; brightness falls with the shade level.
        for level in range(_SHADES // 2):
            bright = 1.0 - level / (_SHADES // 2)
            bright = 0.25 + 0.75 * bright
            for tile in (0, 1):
                colour = np.asarray(pair[tile], float) * bright
                lut[start + 2 * level + tile, 0] = np.clip(colour, 0, 255)
    return lut


def _shade_level(depth: np.ndarray) -> np.ndarray:
    """Map a depth in metres to an even shade offset of the palette (0 = bright)."""
    level = np.clip(depth * (1.0 / 8.0), 0.0, 1.0) * (_SHADES // 2 - 1)
    return (level.astype(np.int32) * 2).astype(np.uint8)


class CameraRenderer:
    """A first-person camera view of a World by ray casting.

    ``render(world, pose)`` returns an HxWx3 uint8 BGR image. The horizontal field of view is
    ``hfov_deg``; pixels are square, so the vertical field of view follows from the size.
    """

    def __init__(self, width: int = 640, height: int = 480, hfov_deg: float = 90.0):
        if width < 2 or height < 2:
            raise ValueError(f'image size must be at least 2x2, got {width}x{height}')
        if not 1.0 <= hfov_deg <= 170.0:
            raise ValueError(f'hfov_deg must be within 1-170, got {hfov_deg}')
        self.width, self.height, self.hfov_deg = width, height, hfov_deg
        self.focal = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
        self.cx, self.cy = 0.5 * width, 0.5 * height
        # Lateral slope of each column's ray: body direction (1, k), k > 0 on the left.
        self.slope = -((np.arange(width) + 0.5) - self.cx) / self.focal
        self.row_offset = (np.arange(height) + 0.5) - self.cy   # > 0 below the horizon
        self.rows = np.arange(height, dtype=np.float32)[:, None]
        self.lut = _palette()
        self._plane_cache: dict[tuple[float, float], tuple] = {}

    def _planes(self, cam_h: float, ceil_h: float) -> tuple:
        """Return per-row forward distance, shade and palette base for floor and ceiling."""
        key = (cam_h, ceil_h)
        if key not in self._plane_cache:
            off = self.row_offset
            above = np.maximum(ceil_h - cam_h, 1e-3)
            dist = np.where(off > 0, cam_h * self.focal / np.maximum(off, 1e-6),
                            above * self.focal / np.maximum(-off, 1e-6))
            dist = np.minimum(dist, 50.0)
            base = np.where(off > 0, _FLOOR0, _CEIL0).astype(np.uint8)
            shade = (base + _shade_level(dist)).astype(np.uint8)[:, None]
            tile = np.where(off > 0, 2.0, 1.0)      # tiles: 0.5 m floor, 1 m ceiling
            scaled = (dist * tile).astype(np.float32)[:, None]
            self._plane_cache[key] = (scaled, shade, tile.astype(np.float32)[:, None])
        return self._plane_cache[key]

    def render(self, world: World, pose: Any = None) -> np.ndarray:
        """Render the view from the base pose ``pose`` (default: the true pose) as BGR.

        The image is taken from the camera mounted on that base (World.camera_pose).
        """
        pose = world.camera_pose(world.ground_truth() if pose is None else Pose.of(pose))
        sc = world.scenario
        cam_h, ceil_h = sc.robot.camera_height, sc.wall_height
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        dx = (c - s * self.slope).astype(np.float32)
        dy = (s + c * self.slope).astype(np.float32)

        # Floor and ceiling: a checkerboard fixed in the world, so it slides as the robot moves.
        scaled, shade, tile = self._planes(cam_h, ceil_h)
        gx = scaled * dx[None, :] + np.float32(pose.x) * tile
        gy = scaled * dy[None, :] + np.float32(pose.y) * tile
        checker = (np.floor(gx).astype(np.int32) + np.floor(gy).astype(np.int32)) & 1
        index = shade + checker.astype(np.uint8)

        # Walls: full height, vertical stripes 0.25 m wide along each wall.
        depth_wall = np.full(self.width, np.inf)
        if len(world.wall_segments):
            depth_wall, _, along = ray_segment(pose.x, pose.y, dx.astype(float),
                                                dy.astype(float), world.wall_segments)
            hit = np.isfinite(depth_wall)
            if hit.any():
                stripe = (np.floor(along * 4.0).astype(np.int32) & 1).astype(np.uint8)
                col_index = _WALL0 + _shade_level(np.where(hit, depth_wall, _FAR)) + stripe
                top, bottom = self._extent(np.where(hit, depth_wall, _FAR), cam_h, ceil_h)
                mask = (self.rows >= top[None, :]) & (self.rows < bottom[None, :])
                mask &= hit[None, :]
                index = np.where(mask, col_index[None, :], index)

        image = cv2.LUT(cv2.merge([index, index, index]), self.lut)
        self._paint_landmarks(image, world, pose, dx.astype(float), dy.astype(float),
                              depth_wall, cam_h)
        return image

    def depth(self, world: World, pose: Any = None) -> np.ndarray:
        """Render the depth image aligned with ``render`` (H x W float32, metres, REP-118).

        Depth is along the optical axis (z), as a depth camera reports it; the rays are
        (1, slope) in the camera frame, so a ray parameter is already that depth. Floor and
        ceiling beyond 10 m are no return (NaN).
        """
        pose = world.camera_pose(world.ground_truth() if pose is None else Pose.of(pose))
        sc = world.scenario
        cam_h, ceil_h = sc.robot.camera_height, sc.wall_height
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        dx, dy = c - s * self.slope, s + c * self.slope
        off = self.row_offset
        plane = np.where(off > 0, cam_h * self.focal / np.maximum(off, 1e-6),
                         np.maximum(ceil_h - cam_h, 1e-3) * self.focal / np.maximum(-off, 1e-6))
        plane = np.where(plane > 10.0, np.nan, plane).astype(np.float32)
        depth = np.repeat(plane[:, None], self.width, axis=1)
        near = np.full(self.width, np.inf)
        if len(world.wall_segments):
            near, _, _ = ray_segment(pose.x, pose.y, dx, dy, world.wall_segments)
            self._fill(depth, near, cam_h, ceil_h)
        for mark in sorted(world.solids(), key=lambda m: -pose.distance_to(*m.position)):
            d, _ = self._landmark_hits(mark, pose, dx, dy)
            d = np.where(d < near, d, np.inf)
            self._fill(depth, d, cam_h, mark.height)
        return depth

    def _fill(self, depth: np.ndarray, column_depth: np.ndarray, cam_h: float,
              top_h: float) -> None:
        """Write a vertical surface's depth into the rows it spans, where it is nearer."""
        hit = np.isfinite(column_depth)
        if not hit.any():
            return
        top, bottom = self._extent(np.where(hit, column_depth, _FAR), cam_h, top_h)
        mask = (self.rows >= top[None, :]) & (self.rows < bottom[None, :]) & hit[None, :]
        surface = np.broadcast_to(column_depth.astype(np.float32)[None, :], depth.shape)
        depth[mask] = surface[mask]

    def _extent(self, depth: np.ndarray, bottom_h: float, top_h: float
                ) -> tuple[np.ndarray, np.ndarray]:
        """Return the image rows spanned by a vertical surface from the floor to ``top_h``."""
        inv = self.focal / np.maximum(depth, 1e-3)
        top = (self.cy - (top_h - bottom_h) * inv).astype(np.float32)
        bottom = (self.cy + bottom_h * inv).astype(np.float32)
        return top, bottom

    def _paint_landmarks(self, image: np.ndarray, world: World, pose: Pose, dx: np.ndarray,
                         dy: np.ndarray, depth_wall: np.ndarray, cam_h: float) -> None:
        """Paint the landmarks far to near, each where it is nearer than the walls."""
        marks = sorted(world.solids(), key=lambda m: -pose.distance_to(*m.position))
        for mark in marks:
            depth, shade = self._landmark_hits(mark, pose, dx, dy)
            cols = np.nonzero(np.isfinite(depth) & (depth < depth_wall))[0]
            if not len(cols):
                continue
            c0, c1 = cols[0], cols[-1] + 1
            d = depth[c0:c1]
            visible = np.isfinite(d) & (d < depth_wall[c0:c1])
            top, bottom = self._extent(np.where(visible, d, _FAR), cam_h, mark.height)
            mask = (self.rows >= top[None, :]) & (self.rows < bottom[None, :]) & visible[None, :]
            fog = 1.0 / (1.0 + 0.06 * np.where(visible, d, 0.0))
            colour = (np.asarray(mark.bgr, np.float32)[None, :]
                      * (shade[c0:c1] * fog)[:, None]).astype(np.uint8)
            region = image[:, c0:c1]
            region[mask] = np.broadcast_to(colour[None, :, :], region.shape)[mask]

    def _landmark_hits(self, mark: Landmark, pose: Pose, dx: np.ndarray, dy: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Return per column the depth of a landmark (inf: missed) and a shading factor."""
        if mark.is_round:
            cx, cy = mark.position
            depth, angle = ray_circle(pose.x, pose.y, dx, dy, cx, cy, 0.5 * mark.size)
            # Lambert-like shading from the camera direction gives the pillar a round look.
            view = math.atan2(pose.y - cy, pose.x - cx)
            shade = 0.55 + 0.45 * np.clip(np.cos(angle - view), 0.0, 1.0)
            # Narrow vertical grooves make a turning pillar visibly change.
            groove = (np.floor(angle * 0.5 * mark.size / 0.1).astype(np.int32) & 1) * 0.08
            return depth, shade - groove
        segs = np.asarray(mark.segments(), float)
        depth, idx, along = ray_segment(pose.x, pose.y, dx, dy, segs)
        # Faces 0 and 2 are the narrow (depth) sides, 1 and 3 the wide faces.
        wide = (idx % 2) == 1
        shade = np.where(wide, 1.0, 0.7)
        if mark.kind == 'door':
            # A darker frame at the sides of the door leaf.
            frame = wide & ((along < 0.08) | (along > mark.size - 0.08))
            shade = np.where(frame, 0.45, shade)
        else:
            # Edges of a box face drawn darker so that its outline is visible.
            length = np.where(wide, mark.size, mark.depth)
            edge = (along < 0.03) | (along > length - 0.03)
            shade = np.where(edge, 0.5, shade)
        return depth, shade


def _trail_points(trail: Iterable[Any]) -> list[tuple[float, float]]:
    """Return (x, y) of each trail item: Pose-like objects or (x, y[, yaw]) tuples."""
    points = []
    for item in trail:
        if hasattr(item, 'x'):
            points.append((float(item.x), float(item.y)))
        else:
            points.append((float(item[0]), float(item[1])))
    return points


def render_topdown(world: World, trail: Iterable[Any] = (), size: int = 480,
                   pose: Any = None) -> np.ndarray:
    """Draw a map of the world: walls, named landmarks, the robot and its trail.

    ``trail`` holds Pose-like objects or ``(x, y[, yaw])`` tuples; ``pose`` (default: the
    world's true pose) is where the robot is drawn. Returns a size x size BGR image with
    north (+y) up.
    """
    sc = world.scenario
    w, h = sc.size
    margin = 20
    scale = (size - 2 * margin) / max(w, h)
    ox = margin + 0.5 * ((size - 2 * margin) - w * scale)
    oy = margin + 0.5 * ((size - 2 * margin) - h * scale)

    def px(x: float, y: float) -> tuple[int, int]:
        return int(round(ox + x * scale)), int(round(size - oy - y * scale))

    image = np.full((size, size, 3), 250, np.uint8)
    cv2.rectangle(image, px(0.0, 0.0), px(w, h), (235, 235, 235), -1)
    # A 1 m grid helps reading distances off the plot.
    for gx in range(int(w) + 1):
        cv2.line(image, px(gx, 0.0), px(gx, h), (215, 215, 215), 1)
    for gy in range(int(h) + 1):
        cv2.line(image, px(0.0, gy), px(w, gy), (215, 215, 215), 1)
    for x1, y1, x2, y2 in world.wall_segments:
        cv2.line(image, px(x1, y1), px(x2, y2), (40, 40, 40), 3, cv2.LINE_AA)
    target = sc.success.landmark.lower() if sc.success and sc.success.landmark else None
    def fill(shape) -> None:
        if shape.is_round:
            cv2.circle(image, px(*shape.position), max(2, int(0.5 * shape.size * scale)),
                       shape.bgr, -1, cv2.LINE_AA)
        else:
            poly = np.asarray([px(*p) for p in shape.corners()], np.int32)
            cv2.fillPoly(image, [poly], shape.bgr, cv2.LINE_AA)

    for mark in sc.landmarks:
        fill(mark)
        if target == mark.name.lower() and sc.success:
            cv2.circle(image, px(*mark.position),
                       int((sc.success.tolerance + 0.5 * mark.size) * scale), mark.bgr, 1,
                       cv2.LINE_AA)
        lx, ly = px(*mark.position)
        (tw, th), _ = cv2.getTextSize(mark.name, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        # Labels stay inside the image: to the left of landmarks near the right border.
        lx = lx + 6 if lx + 6 + tw < size else lx - 6 - tw
        cv2.putText(image, mark.name, (max(lx, 0), max(ly - 6, th)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (20, 20, 20), 1, cv2.LINE_AA)
    for shape in world.obstacle_shapes:  # unnamed: drawn, not labelled
        fill(shape)
    points = _trail_points(trail)
    if len(points) > 1:
        poly = np.asarray([px(x, y) for x, y in points], np.int32)
        cv2.polylines(image, [poly], False, (200, 120, 0), 2, cv2.LINE_AA)
    pose = world.ground_truth() if pose is None else Pose.of(pose)
    centre = px(pose.x, pose.y)
    radius = max(3, int(sc.robot.radius * scale))
    cv2.circle(image, centre, radius, (60, 60, 60), 2, cv2.LINE_AA)
    nose = px(pose.x + sc.robot.radius * 1.6 * math.cos(pose.yaw),
              pose.y + sc.robot.radius * 1.6 * math.sin(pose.yaw))
    cv2.line(image, centre, nose, (0, 0, 200), 2, cv2.LINE_AA)
    cv2.putText(image, f'{sc.name}  t={world.time:.1f}s', (margin, 14),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    return image
