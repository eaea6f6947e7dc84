"""The 2D world of the simulator: robot motion, odometry, collisions and landmark look-up.

The scenario format (YAML) is documented in :mod:`vln_ros.sim.scenario`; ``Scenario`` and
``Landmark`` are re-exported here. ``World`` holds the state of one run::

    world = World(Scenario.load('corridor_door'), seed=0)
    world.step(vx=0.4, vy=0.0, wz=0.1, dt=0.02)
    world.ground_truth(), world.odometry(), world.time, world.collisions
"""

import math
import re

import numpy as np

from vln_ros.sim.scenario import (
    Instruction,
    Landmark,
    RobotConfig,
    Scenario,
    ScenarioError,
    SuccessCriteria,
)
from vln_ros.sim.sim_pose import Pose, wrap_angle

__all__ = ['Instruction', 'Landmark', 'Pose', 'RobotConfig', 'Scenario', 'ScenarioError',
           'SuccessCriteria', 'World', 'colour_name']

# Named colours used to match phrases such as 'the green box' (RGB).
COLOURS = {
    'red': (220, 30, 30), 'green': (30, 180, 50), 'blue': (30, 60, 220),
    'yellow': (230, 210, 30), 'orange': (240, 130, 20), 'purple': (140, 50, 180),
    'pink': (240, 130, 180), 'cyan': (30, 200, 220), 'white': (240, 240, 240),
    'black': (20, 20, 20), 'gray': (128, 128, 128), 'brown': (130, 80, 40),
}
# Words that name the same thing; the key is what a phrase may say, the value what we store.
SYNONYMS = {
    'grey': 'gray', 'doors': 'door', 'doorway': 'door', 'gate': 'door', 'entrance': 'door',
    'exit': 'door', 'boxes': 'box', 'crate': 'box', 'crates': 'box', 'cube': 'box',
    'carton': 'box', 'pillars': 'pillar', 'column': 'pillar', 'post': 'pillar',
    'pole': 'pillar', 'pylon': 'pillar',
}
# Chinese words, replaced before tokenising so that '红色的门' finds 'red door'.
CHINESE = [
    ('红色', ' red '), ('红', ' red '), ('绿色', ' green '), ('绿', ' green '),
    ('蓝色', ' blue '), ('蓝', ' blue '), ('黄色', ' yellow '), ('黄', ' yellow '),
    ('白色', ' white '), ('白', ' white '), ('黑色', ' black '), ('黑', ' black '),
    ('门', ' door '), ('箱子', ' box '), ('箱', ' box '), ('盒子', ' box '), ('盒', ' box '),
    ('柱子', ' pillar '), ('柱', ' pillar '),
]
KIND_WORDS = {'door', 'box', 'pillar'}


def colour_name(rgb: tuple[int, int, int]) -> str:
    """Return the name of the named colour nearest to an RGB triple."""
    def error(name: str) -> int:
        return sum((a - b) ** 2 for a, b in zip(COLOURS[name], rgb, strict=True))

    return min(COLOURS, key=error)


def _tokens(text: str) -> list[str]:
    """Split a phrase into lower-case words with synonyms and Chinese names mapped."""
    text = text.lower()
    for zh, en in CHINESE:
        text = text.replace(zh, en)
    return [SYNONYMS.get(w, w) for w in re.findall(r'[a-z0-9]+', text)]


def _point_segment_distance(px: float, py: float, segs: np.ndarray) -> np.ndarray:
    """Return the distance from a point to each segment of an (N, 4) array."""
    ax, ay, bx, by = segs[:, 0], segs[:, 1], segs[:, 2], segs[:, 3]
    ex, ey = bx - ax, by - ay
    u = ((px - ax) * ex + (py - ay) * ey) / np.maximum(ex * ex + ey * ey, 1e-12)
    u = np.clip(u, 0.0, 1.0)
    return np.hypot(ax + u * ex - px, ay + u * ey - py)


class World:
    """The state of one simulated run: true pose, odometry pose, time and collisions.

    Noise model (``robot.noise``): ``linear`` is the standard deviation of the relative error
    of the translational speed (0.05 = 5 %), ``angular`` the standard deviation in rad/s of an
    additive yaw-rate error applied while the robot is commanded to move. Both are drawn per
    step and average out; what makes real odometry drift is drawn once per run: ``scale``
    is the standard deviation of a constant relative error of the true speed against the
    odometry's (legs slip, a wheel radius is off), and ``yaw_drift`` the magnitude in rad/s of
    a constant yaw rate that only the odometry sees (a gyro bias), with a random sign. The
    true pose integrates the noisy motion; ``odometry()`` integrates the commanded motion
    plus the drift (what the robot believes). With zero noise both are equal, collisions
    included: a blocked robot knows it is blocked, as a legged robot's leg odometry would.
    """

    def __init__(self, scenario: Scenario, seed: int = 0):
        self.scenario = scenario
        self._seed = seed
        walls = scenario.all_walls()
        self.wall_segments = np.asarray(walls, dtype=float).reshape(-1, 4)
        self.reset()

    def _build_solids(self) -> None:
        """Collision and ray-casting geometry: walls, landmarks and obstacles where they are.

        The oracle's view leaves out the obstacles it does not see (obstacles.py).
        """
        walls = self.scenario.all_walls()
        seen = [s for s, o in zip(self.obstacle_shapes, self.scenario.obstacles, strict=True)
                if o.seen_by_oracle]

        def arrays(things):
            rect = [seg for m in things if not m.is_round for seg in m.segments()]
            round_ = [(*m.position, 0.5 * m.size) for m in things if m.is_round]
            return (np.asarray(walls + rect, dtype=float).reshape(-1, 4),
                    np.asarray(round_, dtype=float).reshape(-1, 3))

        self._solid_segments, self._pillars = arrays(self.solids())
        self._oracle_solids = arrays(list(self.scenario.landmarks) + seen)
        self.layout_version += 1

    def solids(self) -> list[Landmark]:
        """Everything solid besides the walls, as drawn and hit: landmarks, then obstacles."""
        return list(self.scenario.landmarks) + list(self.obstacle_shapes)

    def reset(self) -> None:
        """Put the robot back at its start pose, time 0, no collisions, same noise seed."""
        self.robot = self.scenario.robot.start
        self._odom = self.scenario.robot.start
        self.time = 0.0
        self.collisions = 0
        self.in_contact = False
        self.last_command = (0.0, 0.0, 0.0)
        self.obstacle_shapes = [o.shape for o in self.scenario.obstacles]
        self.layout_version = 0  # bumped whenever an obstacle moves
        self._build_solids()
        self._rng = np.random.default_rng(self._seed)
        cfg = self.scenario.robot
        # Drawn first and once, so a seed always gives the same drift.
        scale, sign = self._rng.normal(0.0, 1.0), self._rng.choice((-1.0, 1.0))
        self.odom_scale_error = float(scale * cfg.noise_scale)
        self.odom_yaw_drift = float(sign * cfg.noise_yaw_drift)

    # Poses ------------------------------------------------------------------------------

    def ground_truth(self) -> Pose:
        """Return the true pose of the robot."""
        return self.robot

    def odometry(self) -> Pose:
        """Return the pose the robot believes it has, integrated from the commanded motion."""
        return self._odom

    def camera_pose(self, base: Pose | None = None) -> Pose:
        """Return the camera's pose for a base pose (default: the true pose)."""
        cam = self.scenario.robot.camera
        return (self.robot if base is None else Pose.of(base)).moved(cam.x, cam.y, 0.0)

    @property
    def instruction(self) -> str | None:
        """Return the scenario's instruction in force at the current time."""
        return self.scenario.instruction_at(self.time)

    # Motion -----------------------------------------------------------------------------

    def limit(self, vx: float, vy: float, wz: float) -> tuple[float, float, float]:
        """Apply the kinematics and velocity limits to a command."""
        cfg = self.scenario.robot
        if cfg.kinematics == 'unicycle':
            vy = 0.0
        speed = math.hypot(vx, vy)
        if speed > cfg.max_linear_vel:
            vx, vy = vx * cfg.max_linear_vel / speed, vy * cfg.max_linear_vel / speed
        wz = max(-cfg.max_angular_vel, min(cfg.max_angular_vel, wz))
        return vx, vy, wz

    def step(self, vx: float, vy: float, wz: float, dt: float) -> bool:
        """Advance the world by ``dt`` seconds under a body-frame velocity command.

        Returns False when the motion was blocked by a wall or landmark. A blocked step
        keeps the rotation but drops the translation; ``collisions`` counts contacts (one
        per contact, not per step).
        """
        if not dt > 0.0 or not math.isfinite(dt):
            raise ValueError(f'dt must be a positive number, got {dt}')
        if not all(math.isfinite(v) for v in (vx, vy, wz)):
            raise ValueError(f'velocity command must be finite, got {(vx, vy, wz)}')
        vx, vy, wz = self.limit(vx, vy, wz)
        self.last_command = (vx, vy, wz)
        cfg = self.scenario.robot
        scale = 1.0 + self.odom_scale_error
        tvx, tvy, twz = vx * scale, vy * scale, wz
        if cfg.noise_linear > 0.0 and (vx or vy):
            scale *= 1.0 + self._rng.normal(0.0, cfg.noise_linear)
            tvx, tvy = vx * scale, vy * scale
        if cfg.noise_angular > 0.0 and (vx or vy or wz):
            twz = wz + self._rng.normal(0.0, cfg.noise_angular)
        # Substeps no longer than half a radius keep a fast robot from tunnelling a wall.
        n = max(1, math.ceil(math.hypot(tvx, tvy) * dt / (0.5 * cfg.radius)))
        h = dt / n
        free = True
        for _ in range(n):
            true_next = self._integrate(self.robot, tvx, tvy, twz, h)
            odom_next = self._integrate(self._odom, vx, vy, wz + self.odom_yaw_drift, h)
            if self.collides(true_next.x, true_next.y) and not self._leaving(true_next):
                free = False
                true_next = Pose(self.robot.x, self.robot.y, true_next.yaw)
                odom_next = Pose(self._odom.x, self._odom.y, odom_next.yaw)
            self.robot, self._odom = true_next, odom_next
        if not free and not self.in_contact:
            self.collisions += 1
        self.in_contact = not free
        self.time += dt
        if self.scenario.obstacles:
            self._move_obstacles()
        return free

    @staticmethod
    def _integrate(pose: Pose, vx: float, vy: float, wz: float, dt: float) -> Pose:
        """Integrate a constant body-frame twist with the mid-point heading."""
        yaw = pose.yaw + 0.5 * wz * dt
        c, s = math.cos(yaw), math.sin(yaw)
        return Pose(pose.x + (c * vx - s * vy) * dt, pose.y + (s * vx + c * vy) * dt,
                    wrap_angle(pose.yaw + wz * dt))

    @property
    def solid_segments(self) -> np.ndarray:
        """Walls and the sides of boxes as (S, 4) segments: what rays and the robot hit."""
        return self._solid_segments

    @property
    def pillars(self) -> np.ndarray:
        """Round landmarks and obstacles as (P, 3): centre x, y and radius."""
        return self._pillars

    def clearance(self, x: float, y: float, oracle_view: bool = False) -> float:
        """Return the distance from a point to the nearest wall, landmark or obstacle.

        ``oracle_view`` leaves out the obstacles the oracle does not see.
        """
        segments, pillars = self._oracle_solids if oracle_view else \
            (self._solid_segments, self._pillars)
        d = math.inf
        if len(segments):
            d = float(_point_segment_distance(x, y, segments).min())
        if len(pillars):
            p = pillars
            d = min(d, float((np.hypot(p[:, 0] - x, p[:, 1] - y) - p[:, 2]).min()))
        return d

    def _move_obstacles(self) -> None:
        """Slide moving obstacles on to where they are now; one never enters the robot."""
        changed = False
        for i, obstacle in enumerate(self.scenario.obstacles):
            if obstacle.move_at is None or self.time <= obstacle.move_at:
                continue
            target = obstacle.position_at(self.time)
            current = self.obstacle_shapes[i]
            if target == current.position:
                continue
            moved = obstacle.moved(target)
            if moved.distance(self.robot.x, self.robot.y) < self.scenario.robot.radius:
                continue  # stops short of the robot instead of pushing it
            self.obstacle_shapes[i] = moved
            changed = True
        if changed:
            self._build_solids()

    def collides(self, x: float, y: float) -> bool:
        """Return True when the robot's circle at (x, y) touches a wall or landmark."""
        return self.clearance(x, y) < self.scenario.robot.radius

    def _leaving(self, nxt: Pose) -> bool:
        """Return True for a move that increases clearance (lets an overlapping robot out)."""
        return self.clearance(nxt.x, nxt.y) > self.clearance(self.robot.x, self.robot.y)

    # Landmarks --------------------------------------------------------------------------

    def distance_to(self, landmark: Landmark, pose: Pose | None = None) -> float:
        """Return the distance from the robot's centre to a landmark's footprint."""
        pose = self.robot if pose is None else pose
        return landmark.distance(pose.x, pose.y)

    def find_landmark(self, phrase: str) -> Landmark | None:
        """Find the landmark a phrase refers to, or None when none (or several) fit.

        'red door', 'the red door', 'go to the red door', 'the red doorway' and '红色的门' all
        find a landmark named 'red door'. Colour and kind words in the phrase must agree with
        the landmark (its name, its kind, its colour); the landmark matching most words wins,
        and a tie between several landmarks returns None.
        """
        if not phrase or not self.scenario.landmarks:
            return None
        exact = self.scenario.landmark(phrase)
        if exact is not None:
            return exact
        words = set(_tokens(phrase))
        said_colours = words & set(COLOURS)
        said_kinds = words & KIND_WORDS
        scored = []
        for m in self.scenario.landmarks:
            name_words = set(_tokens(m.name))
            colours = (name_words & set(COLOURS)) | {colour_name(m.color)}
            kinds = (name_words & KIND_WORDS) | {m.kind}
            if said_colours and not said_colours & colours:
                continue
            if said_kinds and not said_kinds & kinds:
                continue
            score = 2 * len(said_kinds & kinds) + len(said_colours & colours)
            score += len((words & name_words) - KIND_WORDS - set(COLOURS))
            if f' {" ".join(_tokens(m.name))} ' in f' {" ".join(_tokens(phrase))} ':
                score += 10
            if score > 0:
                scored.append((score, m))
        if not scored:
            return None
        scored.sort(key=lambda sm: -sm[0])
        if len(scored) > 1 and scored[1][0] == scored[0][0]:
            return None
        return scored[0][1]
