"""Fault injection of the test model server: what goes wrong with one request, and how.

A real VLM server fails in ways the robot must survive, so each request draws at most
one fault from the server's seeded RNG (mutually exclusive, in :data:`FAULTS` order, each
taking ``<name>_rate`` of the draws; rates that sum past 1 starve the later ones):

- ``error``: 503 engine unavailable / 500 internal error, alternating.
- ``timeout``: a hang of :data:`TIMEOUT_FAULT_S`, so the client's timeout fires.
- ``garbage``: random non-JSON text, sometimes with control characters.
- ``truncate``: the answer JSON cut in the middle (finish_reason 'length').
- ``prose``, ``chinese``, ``refusal``: the answer in another format, in the form a real
  LMDeploy answer could take under the request's ``response_format`` (see
  :mod:`vln_ros.sim.vlm_format_faults`).

Independently of the fault, ``latency_tail_rate`` of the requests wait their drawn
latency times uniform(``latency_tail_factor``), the slow tail of a loaded GPU; those are
counted as ``latency_tail`` next to the faults in the stats' ``by_fault``.

The draw takes the same number of values from the server's RNG whatever the config, and
the tail comes from an RNG of its own, so a seed repeats a run, and adding the newer
faults (at rate 0) changed nothing of an older seed's run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import json
import math
import random
from typing import TYPE_CHECKING, Any

from vln_ros.sim.vlm_format_faults import FORMAT_FAULTS, reformat_answer
from vln_ros.sim.vlm_protocol import CHARS_PER_COMPLETION_TOKEN, estimate_completion_tokens

if TYPE_CHECKING:
    from vln_ros.sim.vlm_config import ServerConfig

# A timeout fault hangs this long: far beyond any sane client timeout.
TIMEOUT_FAULT_S = 600.0
FAULTS = ('error', 'timeout', 'garbage', 'truncate', *FORMAT_FAULTS)
LATENCY_TAIL = 'latency_tail'
# The keys of the stats' by_fault: the faults, then the tail (which comes on top of them).
COUNTED_FAULTS = (*FAULTS, LATENCY_TAIL)
RATE_FIELDS = tuple(f'{name}_rate' for name in COUNTED_FAULTS)
# Mixed into the request's seed for the tail's own RNG, so the sub-RNG's values (garbage,
# cuts, stream pieces, request ids) stay what they were before the tail existed.
_TAIL_SALT = 0x7A11_7A11_7A11_7A11


def is_number(value: Any) -> bool:
    """Return True for an int or float that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_fault_fields(config: ServerConfig) -> tuple[float, float]:
    """Validate the fault fields of a config; return the tail factor as a float pair.

    Raises ValueError naming the field, so /_test/config can answer it as a 400.
    """
    for name in RATE_FIELDS:
        value = getattr(config, name)
        if not is_number(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f'{name} must be in [0, 1], got {value!r}')
    factor = config.latency_tail_factor
    # A JSON body brings a list, the CLI and code a tuple; both are [low, high].
    if (isinstance(factor, str | bytes) or not isinstance(factor, Sequence)
            or len(factor) != 2 or not all(is_number(v) and math.isfinite(v) for v in factor)
            or not 1.0 <= factor[0] <= factor[1]):
        raise ValueError('latency_tail_factor must be [low, high] with 1 <= low <= high, '
                         f'got {factor!r}')
    return float(factor[0]), float(factor[1])


# --------------------------------------------------------------------------- the draw

@dataclass
class Plan:
    """The per-request draw: which fault, how long to wait, and an RNG of its own."""

    fault: str | None
    latency: float  # s to wait in all, the tail included
    rng: random.Random
    tail_factor: float | None = None  # the latency's multiplier when the tail hit, else None


def draw_plan(rng: random.Random, cfg: ServerConfig) -> Plan:
    """Draw fault, latency and a sub-RNG: always three draws from ``rng``, so runs repeat."""
    fault_draw = rng.random()
    latency_draw = rng.random()
    seed = rng.getrandbits(64)
    sub_rng = random.Random(seed)
    fault = None
    edge = 0.0
    for name in FAULTS:
        edge += getattr(cfg, f'{name}_rate')
        if fault_draw < edge:
            fault = name
            break
    latency = cfg.latency_min + (cfg.latency_max - cfg.latency_min) * latency_draw
    # Two draws from the tail's RNG whether or not it hits, so its own runs repeat too.
    tail_rng = random.Random(seed ^ _TAIL_SALT)
    hit = tail_rng.random() < cfg.latency_tail_rate
    low, high = cfg.latency_tail_factor
    factor = low + (high - low) * tail_rng.random()
    if not hit:
        return Plan(fault=fault, latency=latency, rng=sub_rng)
    return Plan(fault=fault, latency=latency * factor, rng=sub_rng, tail_factor=factor)


# --------------------------------------------------------------------------- content faults

_GARBAGE_SYLLABLES = ('ka', 'lo', 'mi', 'zu', 're', 'tan', 'vo', 'ph', 'qe', 'xi', 'dor',
                      'ul', 'sy', 'bo', 'ga')


def make_garbage(rng: random.Random) -> str:
    """Return random text that no JSON parser accepts, lenient or not.

    Mimics what a model without working guided decoding produced on the GPU check:
    babble, unterminated strings with raw control characters, runs of whitespace.
    It never contains an action keyword, so a text fallback cannot read a command in it.
    """
    while True:
        words = [''.join(rng.choice(_GARBAGE_SYLLABLES) for _ in range(rng.randint(1, 3)))
                 for _ in range(rng.randint(4, 12))]
        kind = rng.randrange(3)
        if kind == 0:
            text = ' '.join(words) + rng.choice(('.', ' ...', ' :'))
        elif kind == 1:
            text = ('{"environment": "' + '\x08'.join(words[:2]) + '\x1b[0m '
                    + ' '.join(words[2:]) + rng.choice(('\r\n\t', '\t\t', '\n \n')))
        else:
            text = '\n\t '.join(words) + ' }{ ,, "' + rng.choice(words)
        try:
            json.loads(text, strict=False)
        except ValueError:
            return text


def truncate_answer(text: str, rng: random.Random) -> str:
    """Cut a JSON answer somewhere in its middle half."""
    if len(text) < 2:
        return ''
    cut = rng.randint(max(1, len(text) // 4), max(1, (3 * len(text)) // 4))
    return text[:cut]


def shape_content(answer: str, plan: Plan, max_tokens: int | None,
                  response_format: str = 'text',
                  regex: str | None = None) -> tuple[str, str]:
    """Apply the plan's content fault and max_tokens; return (content, finish_reason).

    ``response_format`` and ``regex`` are the request's: a format fault takes the form the
    request's constrained decoder would allow.
    """
    content, finish_reason = answer, 'stop'
    if plan.fault == 'garbage':
        content = make_garbage(plan.rng)
    elif plan.fault == 'truncate':
        # Only running out of tokens cuts an LMDeploy answer, so say 'length'.
        content, finish_reason = truncate_answer(answer, plan.rng), 'length'
    elif plan.fault in FORMAT_FAULTS:
        content = reformat_answer(plan.fault, answer, response_format, regex, plan.rng)
    if max_tokens is not None and estimate_completion_tokens(content) > max_tokens:
        content = content[:max_tokens * CHARS_PER_COMPLETION_TOKEN]
        finish_reason = 'length'
    return content, finish_reason
