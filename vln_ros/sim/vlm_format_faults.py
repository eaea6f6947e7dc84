"""Format faults: the answer in another format, as a real LMDeploy answer could come.

A VLM does not always answer in the contract's JSON. What it can do instead depends on
the request's ``response_format``, so each fault takes the form the decoder allows:

- ``prose``: unconstrained, the answer JSON intact in a ```json fence between chatty
  sentences; guided, the answer with a rambling ASCII sentence (at most 80 characters)
  as its ``environment``.
- ``chinese``: unconstrained, Chinese prose and no JSON, the scene and the action in
  words (前进/左转/右转/后退/停止); guided, ``environment`` 'unknown scene' (the
  contract's ASCII pattern forbids Chinese) and the rest kept.
- ``refusal``: unconstrained, an English refusal with no JSON and no action words;
  guided, a schema-valid stop: 'cannot assess the scene', one all-zero waypoint with
  confidence 0.10.

A guided answer keeps the contract's spelling (:func:`format_answer`), so under the
project's ``regex_schema`` a faulted answer matches the regex whenever the unfaulted one
did; for any other regex it falls back to the unfaulted answer when it would not match.
"""

from __future__ import annotations

import json
import random
from typing import Any

from vln_ros.sim.vlm_answers import ACTIONS, format_answer, waypoint
from vln_ros.sim.vlm_requests import regex_accepts

FORMAT_FAULTS = ('prose', 'chinese', 'refusal')

# Only the prompt's environment characters (A-Za-z0-9 ,.'-), at most 80 of them.
RAMBLING_ENVIRONMENTS = (
    'well, so, looking at this image I think it is maybe a corridor, or maybe not',
    "okay, let me think, there seems to be a hallway here, and it's rather long",
    "hmm, it looks like some kind of room, I'd say, though it's hard to tell really",
    'so basically what I see here is, I believe, a wall, a floor and possibly a door',
)
UNKNOWN_ENVIRONMENT = 'unknown scene'
REFUSAL_ENVIRONMENT = 'cannot assess the scene'
REFUSAL_CONFIDENCE = 0.1

# No braces and no action words: the fenced JSON is the only answer in a prose reply.
_PROSE_OPENINGS = (
    'Sure! Looking at the image, here is what I would do next.',
    'Of course. Based on the camera view and the instruction, this is my answer:',
    'Certainly! I have looked at the picture carefully. Here is the JSON you asked for:',
)
_PROSE_CLOSINGS = (
    'Let me know if you need anything else!',
    'I hope this helps. Feel free to ask if you want me to explain the waypoints.',
    'Please tell me if the robot should do something different.',
)
# Scene sentences free of the parser's Chinese action words; the verb says the action.
_CHINESE_SCENES = (
    '图中是一条明亮的走廊，两侧是白色的墙壁。',
    '画面里可以看到地板、墙壁和几扇门。',
    '这是一个室内环境，地面平整，没有明显的障碍物。',
)
_CHINESE_VERBS = {'forward': '前进', 'turn_left': '左转', 'turn_right': '右转',
                  'back': '后退', 'stop': '停止'}
_CHINESE_DECISIONS = ('根据指令，机器人应该{}。', '我建议机器人现在{}。', '下一步：{}。')
_CHINESE_UNSURE = '我无法确定机器人下一步该怎么做。'
# Refusals name no action (no 'stop', 'back', ...), so a text fallback reads none.
_REFUSALS = (
    "I'm sorry, but I can't help with controlling a robot based on camera images.",
    "I'm sorry, but I can't assist with that request. Operating a physical robot from an "
    "image could be unsafe, so I won't provide navigation commands.",
    'As an AI language model, I am not able to give movement commands for a robot. '
    'Please consult a qualified operator.',
)


def _answer_object(answer: str) -> dict | None:
    """The answer as a JSON object, or None when it is not one."""
    try:
        obj = json.loads(answer)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


# --------------------------------------------------------------------------- unconstrained

def _prose_text(answer: str, rng: random.Random) -> str:
    return (f'{rng.choice(_PROSE_OPENINGS)}\n```json\n{answer}\n```\n'
            f'{rng.choice(_PROSE_CLOSINGS)}')


def _chinese_text(answer: str, rng: random.Random) -> str:
    obj = _answer_object(answer) or {}
    action: Any = obj.get('action')
    scene = rng.choice(_CHINESE_SCENES)
    decision = rng.choice(_CHINESE_DECISIONS)
    if action not in ACTIONS:
        return scene + _CHINESE_UNSURE
    return scene + decision.format(_CHINESE_VERBS[action])


def _refusal_text(_answer: str, rng: random.Random) -> str:
    return rng.choice(_REFUSALS)


# --------------------------------------------------------------------------- guided

def _with_environment(answer: str, environment: str) -> str:
    """The answer with another environment, in the contract's spelling; unchanged if no JSON."""
    obj = _answer_object(answer)
    if obj is None or 'environment' not in obj:
        return answer
    return format_answer({**obj, 'environment': environment})


def _prose_guided(answer: str, rng: random.Random) -> str:
    return _with_environment(answer, rng.choice(RAMBLING_ENVIRONMENTS))


def _chinese_guided(answer: str, _rng: random.Random) -> str:
    return _with_environment(answer, UNKNOWN_ENVIRONMENT)


def _refusal_guided(_answer: str, _rng: random.Random) -> str:
    return format_answer({'environment': REFUSAL_ENVIRONMENT, 'action': 'stop',
                          'waypoints': [waypoint(0.0, 0.0, 0.0, REFUSAL_CONFIDENCE)]})


_UNCONSTRAINED = {'prose': _prose_text, 'chinese': _chinese_text, 'refusal': _refusal_text}
_GUIDED = {'prose': _prose_guided, 'chinese': _chinese_guided, 'refusal': _refusal_guided}


def reformat_answer(fault: str, answer: str, response_format: str, regex: str | None,
                    rng: random.Random) -> str:
    """Return the answer as the format fault ``fault`` shows it under ``response_format``."""
    if response_format == 'text':
        return _UNCONSTRAINED[fault](answer, rng)
    content = _GUIDED[fault](answer, rng)
    if regex is not None and regex_accepts(regex, answer) and not regex_accepts(regex, content):
        # The decoder could not have written it under this (custom) regex.
        return answer
    return content
