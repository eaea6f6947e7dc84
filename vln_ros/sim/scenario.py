"""Scenario files of the 2D simulator: a YAML world, a robot, a timeline of instructions, a goal.

Format (every length in metres, every angle in radians, colours as RGB 0-255)::

    name: corridor_door                # required, used in reports
    scene: corridor                    # optional, prefix of the oracle's environment text
    world:
      size: [6.0, 2.0]                 # required: the world spans x in [0, w], y in [0, h]
      boundary: true                   # optional (true): add the four outer walls
      wall_height: 2.5                 # optional (2.5): height of walls and ceiling
      walls: [[x1, y1, x2, y2], ...]   # optional: extra wall segments
      obstacles: [...]                 # optional: unnamed boxes and pillars (obstacles.py)
      landmarks:                       # optional
        - name: red door               # required, unique; what instructions refer to
          kind: door                   # required: door | box | pillar
          color: [220, 30, 30]         # required, RGB
          position: [5.9, 1.0]         # required, centre of the footprint
          size: 0.9                    # optional (0.8): width (pillar: diameter)
          height: 2.0                  # optional (2.0)
          yaw: 0.0                     # optional (0): door/box: the width runs along local y
          depth: 0.1                   # optional: door 0.1, box = size; ignored for pillars
    robot:
      start: [1.0, 1.0, 0.0]           # required: x, y, yaw
      kinematics: unicycle             # optional (unicycle): unicycle | holonomic
      max_linear_vel: 0.5              # optional (0.5) m/s
      max_angular_vel: 0.8             # optional (0.8) rad/s
      noise:                           # optional, see World.step (all 0: exact odometry)
        linear: 0.0                    # sd of the per-step relative speed error
        angular: 0.0                   # sd (rad/s) of the per-step yaw-rate error
        scale: 0.0                     # sd of the run's constant odometry scale error
        yaw_drift: 0.0                 # rad/s: the run's constant odometry yaw drift
      radius: 0.3                      # optional (0.3): collision circle
      camera:                          # optional: the camera mount and its clock
        x: 0.0                         # m ahead of the base centre
        y: 0.0                         # m to the left
        height: 0.5                    # m above the floor (camera_height: the same, older)
        hfov: 90.0                     # degrees, horizontal field of view
        clock_offset: 0.0              # s: camera stamps run ahead (+) of odometry stamps
        stamp_jitter: 0.0              # s: sd of the per-frame stamp error
        delay: [0.0, 0.0]              # s: capture to publication, uniform per frame
    oracle_profile: realistic          # optional (ideal): how the oracle model errs
    instructions:                      # optional: the instruction in force from time `at`
      - {at: 0.0, text: go to the red door}
    success:                           # optional
      landmark: red door               # a landmark name (or a phrase that finds one)
      tolerance: 0.6                   # distance from the landmark's footprint
      time_limit: 60.0
      must_stop: true                  # the robot must stand still within tolerance
      stop_short: false                # true: no landmark; succeed by coming to rest without
                                       # a collision (a model that says "forward" into a wall)

Doors and boxes are rectangles (``size`` wide along their local y axis, ``depth`` along local
x, turned by ``yaw``); pillars are circles of diameter ``size``. Distances to a landmark are
measured from the robot's centre to the nearest point of that footprint.
"""

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from vln_ros.sim.landmarks import LANDMARK_KINDS, Landmark
from vln_ros.sim.obstacles import Obstacle, parse_obstacles
from vln_ros.sim.scenario_fields import (
    ScenarioError,
)
from vln_ros.sim.scenario_fields import (
    mapping as _mapping,
)
from vln_ros.sim.scenario_fields import (
    no_unknown_keys as _no_unknown_keys,
)
from vln_ros.sim.scenario_fields import (
    number as _number,
)
from vln_ros.sim.scenario_fields import (
    text as _text,
)
from vln_ros.sim.scenario_fields import (
    vector as _vector,
)
from vln_ros.sim.sim_pose import Pose

__all__ = ['LANDMARK_KINDS', 'SCENARIO_DIR', 'CameraConfig', 'Instruction', 'Landmark',
           'Obstacle', 'RobotConfig', 'Scenario', 'ScenarioError', 'SuccessCriteria']

ORACLE_PROFILES = ('ideal', 'realistic', 'harsh')
KINEMATICS = ('unicycle', 'holonomic')
SCENARIO_DIR = Path(__file__).resolve().parent / 'scenarios'


@dataclass
class CameraConfig:
    """The simulated camera: its mount on the base, field of view and clock.

    The renderer draws a level pinhole camera; a pitched mount is not rendered (a column ray
    caster can only draw vertical walls exactly for a level camera), so there is no pitch.
    """

    x: float = 0.0
    y: float = 0.0
    height: float = 0.5
    hfov: float = 90.0
    clock_offset: float = 0.0
    stamp_jitter: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def from_dict(cls, d: Any, where: str, legacy_height: Any = None) -> 'CameraConfig':
        """Build the camera section, naming the faulty field on error."""
        d = _mapping(d, where)
        _no_unknown_keys(d, {'x', 'y', 'height', 'hfov', 'clock_offset', 'stamp_jitter',
                             'delay'}, where)
        height = d.get('height', 0.5 if legacy_height is None else legacy_height)
        delay = _vector(d.get('delay', [0.0, 0.0]), f'{where}.delay', 2)
        if not 0.0 <= delay[0] <= delay[1] <= 1.0:
            raise ScenarioError(f'{where}.delay: expected 0 <= min <= max <= 1 s, got '
                                f'{list(delay)}')
        return cls(
            x=_number(d.get('x', 0.0), f'{where}.x', -1.0, 1.0),
            y=_number(d.get('y', 0.0), f'{where}.y', -1.0, 1.0),
            height=_number(height, f'{where}.height', positive=True),
            hfov=_number(d.get('hfov', 90.0), f'{where}.hfov', 20.0, 170.0),
            clock_offset=_number(d.get('clock_offset', 0.0), f'{where}.clock_offset', -1.0, 1.0),
            stamp_jitter=_number(d.get('stamp_jitter', 0.0), f'{where}.stamp_jitter', 0.0, 0.5),
            delay=delay,
        )

    def ideal(self) -> 'CameraConfig':
        """The same optics at the base centre, with an exact clock (an ideal world)."""
        return CameraConfig(height=self.height, hfov=self.hfov)


@dataclass
class RobotConfig:
    """The simulated robot: start pose, kinematics, limits, noise, size and camera."""

    start: Pose = field(default_factory=Pose)
    kinematics: str = 'unicycle'
    max_linear_vel: float = 0.5
    max_angular_vel: float = 0.8
    noise_linear: float = 0.0
    noise_angular: float = 0.0
    noise_scale: float = 0.0
    noise_yaw_drift: float = 0.0
    radius: float = 0.3
    camera: CameraConfig = field(default_factory=CameraConfig)

    @property
    def camera_height(self) -> float:
        """The camera's height above the floor (m)."""
        return self.camera.height

    @classmethod
    def from_dict(cls, d: Any, where: str = 'robot') -> 'RobotConfig':
        """Build the robot section, naming the faulty field on error."""
        d = _mapping(d, where)
        _no_unknown_keys(d, {'start', 'kinematics', 'max_linear_vel', 'max_angular_vel',
                             'noise', 'radius', 'camera_height', 'camera'}, where)
        if 'start' not in d:
            raise ScenarioError(f'{where}.start: required field is missing')
        kinematics = d.get('kinematics', 'unicycle')
        if kinematics not in KINEMATICS:
            raise ScenarioError(f'{where}.kinematics: expected one of {", ".join(KINEMATICS)}, '
                                f'got {kinematics!r}')
        noise = _mapping(d.get('noise'), f'{where}.noise')
        _no_unknown_keys(noise, {'linear', 'angular', 'scale', 'yaw_drift'}, f'{where}.noise')
        return cls(
            start=Pose(*_vector(d['start'], f'{where}.start', 3)),
            kinematics=kinematics,
            max_linear_vel=_number(d.get('max_linear_vel', 0.5), f'{where}.max_linear_vel',
                                   positive=True),
            max_angular_vel=_number(d.get('max_angular_vel', 0.8), f'{where}.max_angular_vel',
                                    positive=True),
            noise_linear=_number(noise.get('linear', 0.0), f'{where}.noise.linear', low=0.0),
            noise_angular=_number(noise.get('angular', 0.0), f'{where}.noise.angular', low=0.0),
            noise_scale=_number(noise.get('scale', 0.0), f'{where}.noise.scale', 0.0, 0.5),
            noise_yaw_drift=_number(noise.get('yaw_drift', 0.0), f'{where}.noise.yaw_drift',
                                    0.0, 0.5),
            radius=_number(d.get('radius', 0.3), f'{where}.radius', positive=True),
            camera=CameraConfig.from_dict(d.get('camera'), f'{where}.camera',
                                          d.get('camera_height')),
        )

    def ideal(self) -> 'RobotConfig':
        """The robot of an ideal world: exact odometry, camera at the centre, exact clock."""
        return replace(self, noise_linear=0.0, noise_angular=0.0, noise_scale=0.0,
                       noise_yaw_drift=0.0, camera=self.camera.ideal())


@dataclass
class Instruction:
    """An instruction that is in force from time ``at`` (seconds of sim time) on."""

    at: float
    text: str


@dataclass
class SuccessCriteria:
    """When a run counts as a success.

    ``stop_short``: there is no goal to reach; the run succeeds when the robot comes to rest
    without touching anything (a model that keeps saying "forward" into a wall).
    """

    landmark: str | None
    tolerance: float = 0.6
    time_limit: float = 60.0
    must_stop: bool = True
    stop_short: bool = False


@dataclass
class Scenario:
    """A complete simulator scenario; see the module docstring for the YAML format."""

    name: str
    size: tuple[float, float]
    walls: list[tuple[float, float, float, float]] = field(default_factory=list)
    landmarks: list[Landmark] = field(default_factory=list)
    obstacles: list[Obstacle] = field(default_factory=list)
    robot: RobotConfig = field(default_factory=RobotConfig)
    instructions: list[Instruction] = field(default_factory=list)
    success: SuccessCriteria | None = None
    scene: str = ''
    wall_height: float = 2.5
    boundary: bool = True
    oracle_profile: str = 'ideal'

    @classmethod
    def load(cls, path: str | Path) -> 'Scenario':
        """Load a scenario from a YAML file.

        A bare name such as ``corridor_door`` is looked up among the packaged scenarios.
        """
        path = Path(path)
        if not path.exists() and not path.suffix:
            path = SCENARIO_DIR / f'{path.name}.yaml'
        try:
            with open(path, encoding='utf-8') as f:
                data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ScenarioError(f'{path}: not valid YAML: {e}') from e
        try:
            return cls.from_dict(data)
        except ScenarioError as e:
            raise ScenarioError(f'{path}: {e}') from e

    @classmethod
    def from_dict(cls, d: Any) -> 'Scenario':
        """Build and validate a scenario from its YAML mapping."""
        d = _mapping(d, 'scenario')
        _no_unknown_keys(d, {'name', 'scene', 'world', 'robot', 'instructions', 'success',
                             'oracle_profile'}, '')
        if 'name' not in d:
            raise ScenarioError('name: required field is missing')
        if 'world' not in d:
            raise ScenarioError('world: required field is missing')
        if 'robot' not in d:
            raise ScenarioError('robot: required field is missing')
        world = _mapping(d['world'], 'world')
        _no_unknown_keys(world, {'size', 'walls', 'landmarks', 'obstacles', 'boundary',
                                 'wall_height'}, 'world')
        if 'size' not in world:
            raise ScenarioError('world.size: required field is missing')
        size = _vector(world['size'], 'world.size', 2)
        if min(size) <= 0.0:
            raise ScenarioError(f'world.size: both sides must be > 0, got {list(size)}')
        walls_raw = world.get('walls') or []
        if not isinstance(walls_raw, list):
            raise ScenarioError('world.walls: expected a list of [x1, y1, x2, y2]')
        walls = [_vector(w, f'world.walls[{i}]', 4) for i, w in enumerate(walls_raw)]
        for i, (x1, y1, x2, y2) in enumerate(walls):
            if x1 == x2 and y1 == y2:
                raise ScenarioError(f'world.walls[{i}]: a wall needs two distinct end points')
        marks_raw = world.get('landmarks') or []
        if not isinstance(marks_raw, list):
            raise ScenarioError('world.landmarks: expected a list of mappings')
        landmarks = [Landmark.from_dict(m, f'world.landmarks[{i}]')
                     for i, m in enumerate(marks_raw)]
        names = [m.name.lower() for m in landmarks]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ScenarioError(f'world.landmarks[{i}].name: duplicate name {n!r}')
        boundary = world.get('boundary', True)
        if not isinstance(boundary, bool):
            raise ScenarioError(f'world.boundary: expected true or false, got {boundary!r}')
        robot = RobotConfig.from_dict(d['robot'])
        instructions = cls._instructions(d.get('instructions'))
        success = cls._success(d.get('success'), landmarks)
        scene = d.get('scene', '')
        if not isinstance(scene, str):
            raise ScenarioError(f'scene: expected a string, got {scene!r}')
        profile = d.get('oracle_profile', 'ideal')
        if profile not in ORACLE_PROFILES:
            raise ScenarioError(f'oracle_profile: expected one of {", ".join(ORACLE_PROFILES)}, '
                                f'got {profile!r}')
        return cls(
            name=_text(d['name'], 'name'),
            size=size,
            walls=walls,
            landmarks=landmarks,
            obstacles=parse_obstacles(world.get('obstacles')),
            robot=robot,
            instructions=instructions,
            success=success,
            scene=scene.strip(),
            wall_height=_number(world.get('wall_height', 2.5), 'world.wall_height',
                                positive=True),
            boundary=boundary,
            oracle_profile=profile,
        )

    def ideal_world(self) -> 'Scenario':
        """The scenario with exact odometry, a centred camera and one clock."""
        return replace(self, robot=self.robot.ideal())

    @staticmethod
    def _instructions(raw: Any) -> list[Instruction]:
        """Validate the instruction timeline and sort it by time."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise ScenarioError('instructions: expected a list of {at, text}')
        out = []
        for i, item in enumerate(raw):
            where = f'instructions[{i}]'
            item = _mapping(item, where)
            _no_unknown_keys(item, {'at', 'text'}, where)
            if 'text' not in item:
                raise ScenarioError(f'{where}.text: required field is missing')
            out.append(Instruction(at=_number(item.get('at', 0.0), f'{where}.at', low=0.0),
                                   text=_text(item['text'], f'{where}.text')))
        return sorted(out, key=lambda ins: ins.at)

    @staticmethod
    def _success(raw: Any, landmarks: list[Landmark]) -> SuccessCriteria | None:
        """Validate the success section; its landmark must exist."""
        if raw is None:
            return None
        raw = _mapping(raw, 'success')
        _no_unknown_keys(raw, {'landmark', 'tolerance', 'time_limit', 'must_stop',
                               'stop_short'}, 'success')
        stop_short = raw.get('stop_short', False)
        if not isinstance(stop_short, bool):
            raise ScenarioError(f'success.stop_short: expected true or false, got '
                                f'{stop_short!r}')
        if stop_short:
            return SuccessCriteria(landmark=None, stop_short=True, time_limit=_number(
                raw.get('time_limit', 60.0), 'success.time_limit', positive=True))
        if 'landmark' not in raw:
            raise ScenarioError('success.landmark: required field is missing')
        name = _text(raw['landmark'], 'success.landmark')
        if not any(m.name.lower() == name.lower() for m in landmarks):
            raise ScenarioError(f'success.landmark: no landmark named {name!r} '
                                f'(have: {", ".join(m.name for m in landmarks) or "none"})')
        must_stop = raw.get('must_stop', True)
        if not isinstance(must_stop, bool):
            raise ScenarioError(f'success.must_stop: expected true or false, got {must_stop!r}')
        return SuccessCriteria(
            landmark=name,
            tolerance=_number(raw.get('tolerance', 0.6), 'success.tolerance', positive=True),
            time_limit=_number(raw.get('time_limit', 60.0), 'success.time_limit',
                               positive=True),
            must_stop=must_stop,
        )

    def landmark(self, name: str) -> Landmark | None:
        """Return the landmark with exactly this name (case-insensitive), or None."""
        for m in self.landmarks:
            if m.name.lower() == name.strip().lower():
                return m
        return None

    def instruction_at(self, t: float) -> str | None:
        """Return the instruction in force at sim time ``t`` (None before the first one)."""
        current = None
        for ins in self.instructions:
            if ins.at <= t:
                current = ins.text
        return current

    def all_walls(self) -> list[tuple[float, float, float, float]]:
        """Return the wall segments including the outer boundary when enabled."""
        walls = list(self.walls)
        if self.boundary:
            w, h = self.size
            walls += [(0.0, 0.0, w, 0.0), (w, 0.0, w, h), (w, h, 0.0, h), (0.0, h, 0.0, 0.0)]
        return walls
