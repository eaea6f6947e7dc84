"""What the test model answers: the policy interface and the default keyword policy.

The server is a stand-in for a vision-language model, so the answer itself is pluggable:
a policy sees an :class:`AnswerRequest` and returns the contract's answer object (or raw
text). :func:`keyword_policy` reads keywords of the instruction; the simulator plugs in
an oracle. :func:`format_answer` writes an answer exactly as the prompt asks the model to,
which is what ``regex_schema`` guided decoding accepts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
import inspect
import json
import re
from typing import Any

ACTIONS = ('forward', 'turn_left', 'turn_right', 'back', 'stop')


@dataclass
class AnswerRequest:
    """What a policy sees of one chat request."""

    instruction: str  # text after the last 'Instruction:' line prefix ('' when absent)
    images: list[bytes]  # decoded bytes of the data: (and file:) image URLs, in order
    text: str  # all user text parts joined by newlines
    body: dict  # the raw request body


AnswerPolicy = Callable[[AnswerRequest], 'dict | str | Awaitable[dict | str]']


def extract_instruction(text: str) -> str:
    """Return the text after the last line starting with 'Instruction:' ('' if none)."""
    found = ''
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith('Instruction:'):
            found = stripped[len('Instruction:'):].strip()
    return found


def format_answer(obj: Any) -> str:
    """Serialise an answer in the contract's compact JSON: ', ' and ': ', 2-decimal numbers.

    Equivalent to ``json.dumps(obj, separators=(', ', ': '))`` except that every number
    is written with two decimals (``0.30``, never ``0.3``), as the prompt asks the model.
    """
    if isinstance(obj, dict):
        items = (f'{json.dumps(str(k))}: {format_answer(v)}' for k, v in obj.items())
        return '{' + ', '.join(items) + '}'
    if isinstance(obj, list | tuple):
        return '[' + ', '.join(format_answer(v) for v in obj) + ']'
    if isinstance(obj, bool) or obj is None:
        return json.dumps(obj)
    if isinstance(obj, int | float):
        text = f'{float(obj):.2f}'
        return '0.00' if text == '-0.00' else text  # no negative zero in answers
    return json.dumps(obj)


def waypoint(dx: float, dy: float, dtheta: float, confidence: float) -> dict:
    """One waypoint of the contract, in its key order."""
    return {'dx': dx, 'dy': dy, 'dtheta': dtheta, 'confidence': confidence}


# Canned plans per action: poses relative to the base frame at capture time, further
# along the path for later waypoints, all inside the contract's ranges.
_PLANS = {
    'forward': [waypoint(0.30, 0.0, 0.0, 0.90), waypoint(0.60, 0.0, 0.0, 0.85),
                waypoint(0.90, 0.0, 0.0, 0.80)],
    'turn_left': [waypoint(0.20, 0.05, 0.25, 0.85), waypoint(0.35, 0.20, 0.50, 0.80)],
    'turn_right': [waypoint(0.20, -0.05, -0.25, 0.85), waypoint(0.35, -0.20, -0.50, 0.80)],
    # dx is 0..1 in the contract, so 'back' carries no reverse waypoint: the action says it.
    'back': [waypoint(0.0, 0.0, 0.0, 0.80)],
    'stop': [waypoint(0.0, 0.0, 0.0, 0.95)],
    # A search turns in place: a heading, no way ahead (answered as turn_left).
    'search': [waypoint(0.0, 0.0, 0.50, 0.80)],
}
_UNSURE_PLAN = [waypoint(0.20, 0.0, 0.0, 0.50), waypoint(0.40, 0.0, 0.0, 0.45)]

# English words match whole words; Chinese keywords match anywhere.
_KEYWORDS = (
    ('stop', ('stop', 'halt', '停')),
    ('back', ('back', 'backward', 'backwards', 'reverse', '后退')),
    ('turn_left', ('left', '左')),
    ('turn_right', ('right', '右')),
    ('forward', ('forward', 'forwards', 'ahead', 'straight', '前进')),
    ('search', ('search', '寻找')),
)
_KEYWORD_PATTERNS = tuple(
    (action, re.compile('|'.join(
        rf'\b{w}\b' if w.isascii() else re.escape(w) for w in words), re.IGNORECASE))
    for action, words in _KEYWORDS)

ENVIRONMENT_TEXT = 'a corridor seen by the test server'


def keyword_action(instruction: str) -> str | None:
    """Return the plan whose keyword comes first in the instruction, or None.

    A plan is an answer action, except 'search', which keyword_policy answers as a
    turn_left in place.
    """
    best: tuple[int, int, str] | None = None
    for rank, (action, pattern) in enumerate(_KEYWORD_PATTERNS):
        match = pattern.search(instruction)
        if match and (best is None or (match.start(), rank) < best[:2]):
            best = (match.start(), rank, action)
    return best[2] if best else None


def keyword_policy(req: AnswerRequest) -> dict:
    """Answer the contract JSON from the first action keyword of the instruction.

    forward/前进 -> forward with 3 waypoints, left/左 -> turn_left, right/右 -> turn_right,
    stop/停 -> stop, back/后退 -> back, search/寻找 -> turn_left in place; no keyword ->
    forward with low confidence.
    """
    action = keyword_action(req.instruction)
    plan = _PLANS[action] if action else _UNSURE_PLAN
    action = 'turn_left' if action == 'search' else action
    return {'environment': ENVIRONMENT_TEXT, 'action': action or 'forward',
            'waypoints': [dict(w) for w in plan]}


async def answer_text(policy: AnswerPolicy, req: AnswerRequest) -> str:
    """Ask the policy (sync or async) and return its answer as the model's text."""
    result = policy(req)
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        return format_answer(result)
    raise TypeError(f'answer policy returned {type(result).__name__}, expected dict or str')
