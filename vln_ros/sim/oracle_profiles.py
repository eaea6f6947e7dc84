"""How the simulator's oracle model errs: named, seeded error profiles.

``ideal`` is a perfect model (the oracle of the first round). ``realistic`` is our best
estimate of Qwen3-VL-32B-Instruct on this task, and ``harsh`` a model that is clearly worse,
to see that the stack fails safe. docs/sim-realism.md gives each rate and the reasoning
behind it. The rates fall in two groups:

- what the model sees and decides (applied by the oracle, per answer): geometry noise,
  missed targets, false targets, left/right mix-ups, and whether it reasons from what is
  visible (line of sight, field of view) or from the ground truth;
- how the server answers (applied by the model server, per request): another format
  (prose, Chinese, refusal-like text, a truncated answer), a latency tail, 5xx errors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

PROFILE_NAMES = ('ideal', 'realistic', 'harsh')


@dataclass(frozen=True)
class OracleProfile:
    """Error rates of one profile; every rate is a probability per answer."""

    name: str
    # Geometry of a correct answer: relative sd of the distance the waypoints cover, relative
    # sd of the bearing, plus an absolute bearing sd (rad) so that "straight ahead" errs too.
    distance_error: float = 0.0
    bearing_error: float = 0.0
    bearing_noise: float = 0.0
    # The target is in view but the answer says it is not (and searches instead).
    miss_rate: float = 0.0
    # Another visible landmark is answered as the goal (the most similar one first).
    false_target_rate: float = 0.0
    # Left and right swapped: the bearing's sign, and a search turn's side.
    wrong_direction_rate: float = 0.0
    # False: the oracle knows where an unseen target is (turns the short way towards it).
    # True: it reasons only from what the camera shows, and searches for an unseen target.
    sight_only: bool = False
    # Server side (vlm_server's ServerConfig fields of the same names).
    prose_rate: float = 0.0
    chinese_rate: float = 0.0
    refusal_rate: float = 0.0
    truncate_rate: float = 0.0
    error_rate: float = 0.0
    latency_tail_rate: float = 0.0
    latency_tail_factor: tuple[float, float] = (1.5, 2.0)

    def server_faults(self) -> dict:
        """The ServerConfig fields this profile sets."""
        names = ('prose_rate', 'chinese_rate', 'refusal_rate', 'truncate_rate', 'error_rate',
                 'latency_tail_rate')
        out = {name: getattr(self, name) for name in names}
        out['latency_tail_factor'] = list(self.latency_tail_factor)
        return out

    def to_dict(self) -> dict:
        """The profile as plain data (for reports)."""
        return asdict(self)

    def rates(self) -> dict[str, float]:
        """The per-answer probabilities of this profile, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name.endswith('_rate')}


PROFILES: dict[str, OracleProfile] = {
    'ideal': OracleProfile('ideal'),
    'realistic': OracleProfile(
        'realistic', distance_error=0.15, bearing_error=0.15, bearing_noise=0.04,
        miss_rate=0.08, false_target_rate=0.04, wrong_direction_rate=0.03, sight_only=True,
        prose_rate=0.03, chinese_rate=0.01, refusal_rate=0.02, truncate_rate=0.01,
        error_rate=0.02, latency_tail_rate=0.05),
    'harsh': OracleProfile(
        'harsh', distance_error=0.35, bearing_error=0.35, bearing_noise=0.10,
        miss_rate=0.25, false_target_rate=0.15, wrong_direction_rate=0.12, sight_only=True,
        prose_rate=0.08, chinese_rate=0.04, refusal_rate=0.06, truncate_rate=0.04,
        error_rate=0.08, latency_tail_rate=0.20),
}


def profile_named(name: str) -> OracleProfile:
    """Return the profile called ``name``; ValueError naming the choices otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown oracle profile '{name}': use one of "
                         f"{', '.join(PROFILE_NAMES)}") from None


@dataclass(frozen=True)
class AnswerErrors:
    """What goes wrong in one answer, drawn from a profile."""

    miss: bool = False
    false_target: bool = False
    wrong_direction: bool = False
    distance_factor: float = 1.0
    bearing_factor: float = 1.0
    bearing_offset: float = 0.0
    coin: bool = False  # the side a search turns to when nothing in view says which


NO_ERRORS = AnswerErrors()


def draw_errors(profile: OracleProfile, rng) -> AnswerErrors:
    """Draw one answer's errors from ``rng`` (a random.Random).

    Always seven draws, so that a seed gives the same sequence whatever each answer needs.
    """
    u_miss, u_false, u_wrong, u_coin = rng.random(), rng.random(), rng.random(), rng.random()
    z_dist, z_bear, z_noise = rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0)
    return AnswerErrors(
        miss=u_miss < profile.miss_rate,
        false_target=u_false < profile.false_target_rate,
        wrong_direction=u_wrong < profile.wrong_direction_rate,
        distance_factor=max(0.2, 1.0 + profile.distance_error * z_dist),
        bearing_factor=max(0.0, 1.0 + profile.bearing_error * z_bear),
        bearing_offset=profile.bearing_noise * z_noise,
        coin=u_coin < 0.5,
    )
