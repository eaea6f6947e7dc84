"""Lenient parsing of the model's answer into an action and clamped waypoints.

Guided decoding is a hint, not a guarantee (see lmdeploy-facts.md): answers may come
wrapped in code fences or prose, cut off at ``max_tokens``, with raw control characters
inside strings, or as plain sentences. ``parse_answer`` tries, in order: clean JSON,
repaired JSON, action words in the text; it never raises, and every value it returns is
finite and inside its range.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import json
import math
import re
from typing import Any

from vln_ros.core.prompts import ACTIONS, MAX_WAYPOINTS

ENVIRONMENT_MAX_LEN = 200
DEFAULT_CONFIDENCE = 0.5
TEXT_CONFIDENCE = 0.5  # a plain-text answer carries no confidence of its own

# Ranges of the waypoint fields (REP-103 base frame at capture time).
RANGES = {
    'dx': (0.0, 1.0),
    'dy': (-1.0, 1.0),
    'dtheta': (-0.5, 0.5),
    'confidence': (0.0, 1.0),
}

# Longest text searched for JSON; model answers are a few hundred characters.
_MAX_SCAN = 20000
# Truncation repair tries at most this many cut points, newest first.
_MAX_REPAIR_TRIES = 64
# An answer nests three levels deep; far deeper text is not worth repairing.
_MAX_DEPTH = 16


@dataclass(frozen=True)
class Waypoint:
    """A pose relative to the robot base frame at the keyframe's capture time."""

    dx: float
    dy: float
    dtheta: float
    confidence: float


@dataclass(frozen=True)
class ParsedAnswer:
    """What was understood from one model answer and how ('json', 'repaired', 'text', 'failed')."""

    environment: str
    action: str
    waypoints: tuple[Waypoint, ...]
    method: str
    error: str = ''


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def waypoints_for_action(action: str, confidence: float = DEFAULT_CONFIDENCE
                         ) -> tuple[Waypoint, ...]:
    """Return the default waypoints of a discrete action.

    forward: three points straight ahead; turn_left/turn_right: a turn of 0.5 rad with a
    small forward step; back: turn in place (dx cannot be negative); stop: one zero point.
    """
    c = _clamp(float(confidence), 0.0, 1.0) if math.isfinite(confidence) else DEFAULT_CONFIDENCE
    if action == 'forward':
        return (Waypoint(0.25, 0.0, 0.0, c), Waypoint(0.5, 0.0, 0.0, c),
                Waypoint(0.75, 0.0, 0.0, c))
    if action in ('turn_left', 'turn_right'):
        sign = 1.0 if action == 'turn_left' else -1.0
        return (Waypoint(0.05, 0.0, 0.25 * sign, c), Waypoint(0.1, 0.02 * sign, 0.5 * sign, c))
    if action == 'back':
        return (Waypoint(0.0, 0.0, 0.5, c),)
    if action == 'stop':
        return (Waypoint(0.0, 0.0, 0.0, c),)
    raise ValueError(f"unknown action '{action}': expected one of {ACTIONS}")


# ----------------------------------------------------------------------------- action words

_SYNONYMS = {
    'forward': 'forward', 'forwards': 'forward', 'go_forward': 'forward',
    'move_forward': 'forward', 'go_straight': 'forward', 'straight': 'forward',
    'ahead': 'forward', 'go_ahead': 'forward', 'move_ahead': 'forward', 'advance': 'forward',
    'continue': 'forward', 'walk_forward': 'forward', '前进': 'forward', '向前': 'forward',
    '直走': 'forward',
    'turn_left': 'turn_left', 'left': 'turn_left', 'go_left': 'turn_left',
    'rotate_left': 'turn_left', 'move_left': 'turn_left', 'veer_left': 'turn_left',
    'left_turn': 'turn_left', 'turnleft': 'turn_left', '左转': 'turn_left', '向左': 'turn_left',
    'turn_right': 'turn_right', 'right': 'turn_right', 'go_right': 'turn_right',
    'rotate_right': 'turn_right', 'move_right': 'turn_right', 'veer_right': 'turn_right',
    'right_turn': 'turn_right', 'turnright': 'turn_right', '右转': 'turn_right',
    '向右': 'turn_right',
    'back': 'back', 'backward': 'back', 'backwards': 'back', 'go_back': 'back',
    'move_back': 'back', 'reverse': 'back', 'turn_around': 'back', 'back_up': 'back',
    'retreat': 'back', '后退': 'back', '向后': 'back', '掉头': 'back',
    'stop': 'stop', 'halt': 'stop', 'arrived': 'stop', 'arrive': 'stop', 'done': 'stop',
    'finish': 'stop', 'finished': 'stop', 'reached': 'stop', 'goal_reached': 'stop',
    'wait': 'stop', 'stay': 'stop', 'none': 'stop', '停': 'stop', '停止': 'stop',
    '到达': 'stop', '已到达': 'stop',
}

# Phrases found in free text. English words must not touch other letters (so
# 'go_forward' matches but 'leftover' does not); Chinese has no word boundaries.
_EN = r'(?<![a-z])(?:{})(?![a-z])'
_TEXT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (action, re.compile(pattern, re.IGNORECASE)) for action, pattern in (
        ('turn_left', _EN.format(r'turn(?:ing)?[\s_-]*left|rotate[\s_-]*left|go[\s_-]*left'
                                 r'|veer[\s_-]*left|left[\s_-]*turn')),
        ('turn_left', r'左转|向左|往左'),
        ('turn_right', _EN.format(r'turn(?:ing)?[\s_-]*right|rotate[\s_-]*right'
                                  r'|go[\s_-]*right|veer[\s_-]*right|right[\s_-]*turn')),
        ('turn_right', r'右转|向右|往右'),
        ('forward', _EN.format(r'forwards?|go(?:ing)?[\s_-]*straight|straight[\s_-]*ahead'
                               r'|move[\s_-]*ahead|go[\s_-]*ahead')),
        ('forward', r'前进|向前|往前|直走|直行'),
        ('back', _EN.format(r'backwards?|back|reverse|turn[\s_-]*around')),
        ('back', r'后退|向后|往后|掉头'),
        ('stop', _EN.format(r'stop(?:ped|ping)?|halt|arrived?|reached')),
        ('stop', r'停|到达'),
    ))
# 'action: turn_left' style statements win over words elsewhere in the text.
_ACTION_STATEMENT = re.compile(
    r'(?<![a-z])action["\']?\s*[:=]\s*["\']?([A-Za-z_\- ]{2,24}|[\u4e00-\u9fff]{1,4})',
    re.IGNORECASE)


def _earliest_phrase(text: str) -> str | None:
    """Return the action of the earliest action phrase in ``text``, or None."""
    best: tuple[int, int, str] | None = None
    for action, pattern in _TEXT_PATTERNS:
        match = pattern.search(text)
        if match:
            # Earliest start wins; at the same start the longer phrase does.
            key = (match.start(), -len(match.group(0)), action)
            if best is None or key < best:
                best = key
    return best[2] if best else None


def _action_from_text(text: str) -> str | None:
    """Find the action a sentence asks for: an 'action: ...' statement, else the first phrase."""
    text = text[:_MAX_SCAN]
    for match in _ACTION_STATEMENT.finditer(text):
        said = match.group(1)
        action = _normalize_action(said, search_text=False) or _earliest_phrase(said)
        if action:
            return action
    return _earliest_phrase(text)


def _normalize_action(value: Any, search_text: bool = True) -> str | None:
    """Map an action value from the model onto ACTIONS, or None."""
    if not isinstance(value, str):
        return None
    key = re.sub(r'[\s\-]+', '_', value.strip().lower()).strip('_')
    if key in ACTIONS:
        return key
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    return _action_from_text(value) if search_text else None


# ----------------------------------------------------------------------------- values

def _to_float(value: Any) -> float | None:
    """Return a finite float from a number or numeric string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except (OverflowError, ValueError):
            return None
    elif isinstance(value, str) and len(value) <= 64:
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


_KEY_ALIASES = {
    'dx': 'dx', 'x': 'dx', 'delta_x': 'dx', 'forward': 'dx',
    'dy': 'dy', 'y': 'dy', 'delta_y': 'dy', 'left': 'dy', 'lateral': 'dy',
    'dtheta': 'dtheta', 'theta': 'dtheta', 'dyaw': 'dtheta', 'yaw': 'dtheta',
    'delta_theta': 'dtheta', 'heading': 'dtheta', 'd_theta': 'dtheta', 'angle': 'dtheta',
    'confidence': 'confidence', 'conf': 'confidence', 'score': 'confidence',
    'c': 'confidence', 'probability': 'confidence',
    'environment': 'environment', 'env': 'environment', 'description': 'environment',
    'scene': 'environment', 'observation': 'environment',
    'action': 'action', 'command': 'action', 'decision': 'action', 'move': 'action',
    'waypoints': 'waypoints', 'waypoint': 'waypoints', 'path': 'waypoints',
    'points': 'waypoints', 'trajectory': 'waypoints',
}


def _canonical_keys(obj: dict) -> dict[str, Any]:
    """Return ``obj`` with keys mapped to canonical names (case and alias insensitive)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            continue
        name = re.sub(r'[\s\-]+', '_', key.strip().lower())
        name = _KEY_ALIASES.get(name, name)
        out.setdefault(name, value)  # the first spelling wins
    return out


def _waypoint(item: Any) -> Waypoint | None:
    """Turn one waypoint (object or [dx, dy, dtheta, confidence] list) into a clamped one."""
    if isinstance(item, dict):
        fields = _canonical_keys(item)
        if 'dx' not in fields or 'dy' not in fields:
            return None
        raw = [fields['dx'], fields['dy'], fields.get('dtheta', 0.0),
               fields.get('confidence', DEFAULT_CONFIDENCE)]
    elif isinstance(item, (list, tuple)) and 2 <= len(item) <= 4:
        raw = list(item) + [0.0, DEFAULT_CONFIDENCE][len(item) - 2:]
    else:
        return None
    values = [_to_float(v) for v in raw]
    if any(v is None for v in values):
        return None
    clamped = [_clamp(v, *RANGES[name]) for v, name in zip(values, RANGES, strict=True)]
    return Waypoint(*clamped)


def _waypoints(value: Any) -> tuple[Waypoint, ...]:
    """Return the valid waypoints of a waypoint list (at most MAX_WAYPOINTS)."""
    if isinstance(value, dict):
        items: list = [value]
    elif isinstance(value, list):
        # A flat [dx, dy, dtheta, conf] is one waypoint, not four.
        is_flat = value and all(not isinstance(v, (dict, list)) for v in value)
        items = [value] if is_flat else value
    else:
        return ()
    points = []
    for item in items:
        point = _waypoint(item)
        if point is not None:
            points.append(point)
            if len(points) == MAX_WAYPOINTS:
                break
    return tuple(points)


def _action_from_waypoints(points: tuple[Waypoint, ...]) -> str:
    """Guess the action the waypoints describe (dx is never negative, so never 'back')."""
    last = points[-1]
    if abs(last.dx) < 0.05 and abs(last.dy) < 0.05 and abs(last.dtheta) < 0.05:
        return 'stop'
    bearing = math.atan2(last.dy, max(last.dx, 1e-6))
    turn = last.dtheta if abs(last.dtheta) >= abs(bearing) else bearing
    if turn >= 0.25:
        return 'turn_left'
    if turn <= -0.25:
        return 'turn_right'
    return 'forward'


def _environment(value: Any) -> str:
    if value is None:
        return ''
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)[:ENVIRONMENT_MAX_LEN * 2]
    # Control characters slip through strict=False decoding; keep the text printable.
    text = ''.join(ch if ch.isprintable() else ' ' for ch in text[:ENVIRONMENT_MAX_LEN * 4])
    return ' '.join(text.split())[:ENVIRONMENT_MAX_LEN]


# ----------------------------------------------------------------------------- JSON finding

_FENCE = re.compile(r'```[A-Za-z0-9_-]*\s*\n?(.*?)```', re.DOTALL)
_DECODER = json.JSONDecoder(strict=False)
_KNOWN_KEYS = {'environment', 'action', 'waypoints'}


def _as_answer_dict(value: Any, depth: int = 0) -> dict | None:
    """Find the answer object in a decoded JSON value, or None."""
    if isinstance(value, dict):
        fields = _canonical_keys(value)
        if _KNOWN_KEYS & fields.keys():
            return fields
        if depth < 2:
            # One wrapper level such as {"result": {...}}.
            for inner in value.values():
                found = _as_answer_dict(inner, depth + 1)
                if found:
                    return found
        return None
    if isinstance(value, list) and value and depth < 2:
        first = _as_answer_dict(value[0], depth + 1)
        if first:
            return first
        if _waypoints(value):
            return {'waypoints': value}
    return None


def _loads(text: str, strict: bool) -> Any:
    try:
        return json.loads(text, strict=strict)
    except (ValueError, RecursionError):
        return None


def _decode_embedded(text: str, objects_only: bool) -> dict | None:
    """Decode the first answer found anywhere in ``text`` (prose around it is ignored).

    With ``objects_only`` only an object with answer keys counts, so the waypoint list
    inside a truncated answer is not mistaken for the whole answer.
    """
    starts = [m.start() for m in re.finditer(r'[{\[]', text)]
    for start in starts[:50]:
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            continue
        if objects_only and not isinstance(value, dict):
            continue
        found = _as_answer_dict(value)
        if found:
            return found
    return None


def _scan(text: str) -> tuple[list[str], deque[tuple[int, str]], bool, bool]:
    """Walk JSON-ish text: open containers, cut points, whether a string (or escape) is open.

    A cut point is an index where the text may end after a complete member: before a
    comma, or right after an opening bracket; each comes with the closers it then needs.
    Only the last few cut points are kept. Returns no open containers for text that is
    complete, not JSON, or nested deeper than any answer.
    """
    stack: list[str] = []
    cuts: deque[tuple[int, str]] = deque(maxlen=_MAX_REPAIR_TRIES)
    in_string = escaped = False
    for index, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == '\\':
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in '{[':
            stack.append('}' if ch == '{' else ']')
            if len(stack) > _MAX_DEPTH:
                return [], cuts, False, False
            cuts.append((index + 1, ''.join(reversed(stack))))
        elif ch in '}]':
            if not stack or stack[-1] != ch:
                break  # not JSON past this point
            stack.pop()
            if not stack:
                return stack, cuts, False, False
        elif ch == ',':
            cuts.append((index, ''.join(reversed(stack))))
    return stack, cuts, in_string, escaped


def _repair_truncated(text: str) -> dict | None:
    """Complete JSON cut off mid-way: close the string and containers, drop a partial member."""
    start = text.find('{')
    if start < 0:
        return None
    body = text[start:start + _MAX_SCAN]
    stack, cuts, in_string, escaped = _scan(body)
    if not stack:
        return None  # complete (or broken) object: nothing to repair
    candidates = []
    # A number at the very end may have lost digits (0.9 -> 0.): drop it with its member.
    if in_string or body[-1] not in '0123456789.eE+-':
        whole = body[:-1] if escaped else body  # a lone backslash would escape our quote
        candidates.append(whole + ('"' if in_string else '') + ''.join(reversed(stack)))
    for index, closers in reversed(cuts):
        candidates.append(body[:index] + closers)
    for candidate in candidates:
        found = _as_answer_dict(_loads(candidate, strict=False))
        if found:
            return found
    return None


# ----------------------------------------------------------------------------- answers

def _failed(error: str, environment: str = '') -> ParsedAnswer:
    return ParsedAnswer(environment=environment, action='stop', waypoints=(), method='failed',
                        error=error)


def _from_fields(fields: dict, method: str, raw_text: str) -> ParsedAnswer:
    """Build the answer from a decoded object; falls back to action words if needed."""
    environment = _environment(fields.get('environment'))
    points = _waypoints(fields.get('waypoints'))
    action = _normalize_action(fields.get('action'))
    if action is None and points:
        action = _action_from_waypoints(points)
    if action is None:
        # An object without action or waypoints: the words may still say what to do.
        action = _action_from_text(raw_text)
        if action is None:
            return _failed('answer has no valid action or waypoints', environment)
        method = 'text'
    if action == 'stop':
        # Stop means stop, whatever the points said.
        confidence = points[0].confidence if points else _top_confidence(fields)
        points = waypoints_for_action('stop', confidence)
    elif not points:
        points = waypoints_for_action(action, _top_confidence(fields))
    return ParsedAnswer(environment=environment, action=action, waypoints=points, method=method)


def _top_confidence(fields: dict) -> float:
    value = _to_float(fields.get('confidence'))
    return DEFAULT_CONFIDENCE if value is None else _clamp(value, 0.0, 1.0)


def _parse(text: str) -> ParsedAnswer:
    stripped = text.strip()
    if not stripped:
        return _failed('empty answer')
    clean = _as_answer_dict(_loads(stripped, strict=True))
    if clean:
        return _from_fields(clean, 'json', stripped)
    lenient = _as_answer_dict(_loads(stripped, strict=False))
    if lenient:
        return _from_fields(lenient, 'repaired', stripped)
    scan_text = stripped[:_MAX_SCAN]
    for block in _FENCE.findall(scan_text):
        fenced = _as_answer_dict(_loads(block.strip(), strict=False))
        if fenced:
            return _from_fields(fenced, 'repaired', stripped)
    found = (_decode_embedded(scan_text, objects_only=True) or _repair_truncated(scan_text)
             or _decode_embedded(scan_text, objects_only=False))
    if found:
        return _from_fields(found, 'repaired', stripped)
    action = _action_from_text(scan_text)
    if action is None:
        return _failed('no JSON and no action words in the answer')
    return ParsedAnswer(environment=_environment(stripped), action=action,
                        waypoints=waypoints_for_action(action, TEXT_CONFIDENCE), method='text')


def parse_answer(text: str | None) -> ParsedAnswer:
    """Parse a model answer; never raises.

    ``method`` says how: 'json' (clean JSON), 'repaired' (JSON inside fences or prose,
    truncated JSON completed, or control characters tolerated), 'text' (action words,
    English or Chinese) or 'failed' (action 'stop', no waypoints, ``error`` says why).
    """
    if text is None:
        return _failed('no answer')
    if not isinstance(text, str):
        return _failed(f'answer is a {type(text).__name__}, not text')
    try:
        return _parse(text)
    except Exception as exc:  # noqa: BLE001 - the contract is to never raise
        return _failed(f'parser error: {type(exc).__name__}: {exc}'[:200])
