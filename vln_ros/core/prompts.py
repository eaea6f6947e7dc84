"""The prompt sent to the vision-language model and the output format it must follow.

The model answers with one compact JSON object (fixed key order and spacing)::

    {"environment": "...", "action": "forward", "waypoints": [{"dx": 0.30, "dy": 0.00,
     "dtheta": 0.00, "confidence": 0.90}]}

``NAV_REGEX`` spells that text out for LMDeploy's ``regex_schema`` guided decoding (always
parseable, fewest tokens); ``NAV_JSON_SCHEMA`` is the tight portable alternative for
other OpenAI-compatible servers.
"""

from __future__ import annotations

from collections.abc import Sequence

ACTIONS = ('forward', 'turn_left', 'turn_right', 'back', 'stop')

MAX_WAYPOINTS = 4
ENVIRONMENT_CHARS = "A-Za-z0-9 ,.'-"
ENVIRONMENT_MAX_LEN = 80

SYSTEM_PROMPT = (
    'You are the navigation module of a quadruped robot. Each request shows the camera '
    'view in front of the robot (the last image is the current one) and the instruction '
    'to follow. Decide the next short move.\n'
    'Answer with exactly one JSON object and nothing else (no prose, no code fences), in '
    'this form:\n'
    '{"environment": "<what you see, 1-80 ASCII characters>", '
    '"action": "<forward|turn_left|turn_right|back|stop>", '
    '"waypoints": [{"dx": 0.30, "dy": 0.00, "dtheta": 0.00, "confidence": 0.90}]}\n'
    "Axes (REP-103): x points forward, y points to the robot's left, yaw (dtheta) is "
    'counter-clockwise positive, so a left turn has positive dtheta. Units: metres and '
    'radians.\n'
    'Waypoints: 1 to 4 poses, each relative to the robot pose at the moment the image was '
    'captured (not relative to the previous waypoint); later waypoints lie further along '
    'the path. Ranges: dx 0.00 to 1.00 (forward only), dy -1.00 to 1.00, dtheta -0.50 to '
    '0.50, confidence 0.00 to 1.00 (how sure you are). Write numbers with two decimals.\n'
    'Actions: forward (go ahead), turn_left, turn_right, back (turn around; dx stays 0), '
    'stop (the goal is reached, or the robot must stop because moving is unsafe or the '
    'instruction cannot be followed). For stop give a single waypoint '
    '{"dx": 0.00, "dy": 0.00, "dtheta": 0.00, "confidence": <c>}.'
)

# Numbers as the model writes them: 0.dd or 1.00 for 0..1 values, an optional minus
# for dy, and at most 0.50 in magnitude for dtheta.
_UNIT = r'(0\.[0-9]{1,2}|1\.0{1,2})'
_SIGNED_UNIT = r'-?' + _UNIT
_HALF = r'-?0\.([0-4][0-9]?|50?)'
_WAYPOINT_RE = (r'\{"dx": ' + _UNIT + r', "dy": ' + _SIGNED_UNIT + r', "dtheta": ' + _HALF
                + r', "confidence": ' + _UNIT + r'\}')

NAV_REGEX: str = (
    r'\{"environment": "[' + ENVIRONMENT_CHARS + r']{1,' + str(ENVIRONMENT_MAX_LEN) + r'}", '
    r'"action": "(' + '|'.join(ACTIONS) + r')", '
    r'"waypoints": \[' + _WAYPOINT_RE + r'(, ' + _WAYPOINT_RE + r'){0,'
    + str(MAX_WAYPOINTS - 1) + r'}\]\}'
)


def _number(minimum: float, maximum: float) -> dict:
    return {'type': 'number', 'minimum': minimum, 'maximum': maximum}


_WAYPOINT_SCHEMA = {
    'type': 'object',
    'properties': {
        'dx': _number(0.0, 1.0),
        'dy': _number(-1.0, 1.0),
        'dtheta': _number(-0.5, 0.5),
        'confidence': _number(0.0, 1.0),
    },
    'required': ['dx', 'dy', 'dtheta', 'confidence'],
    'additionalProperties': False,
}

NAV_JSON_SCHEMA: dict = {
    'type': 'object',
    'properties': {
        'environment': {
            'type': 'string',
            'pattern': '^[' + ENVIRONMENT_CHARS + ']{1,' + str(ENVIRONMENT_MAX_LEN) + '}$',
            'minLength': 1,
            'maxLength': ENVIRONMENT_MAX_LEN,
        },
        'action': {'type': 'string', 'enum': list(ACTIONS)},
        'waypoints': {
            'type': 'array',
            'items': _WAYPOINT_SCHEMA,
            'minItems': 1,
            'maxItems': MAX_WAYPOINTS,
        },
    },
    'required': ['environment', 'action', 'waypoints'],
    'additionalProperties': False,
}

GUIDED_MODES = ('regex', 'json_schema', 'none')


def response_format(mode: str) -> dict | None:
    """Return the ``response_format`` request field for a guided-decoding mode.

    'regex' uses LMDeploy's ``regex_schema``; 'json_schema' the portable tight schema;
    'none' asks for nothing (returns None).
    """
    if mode == 'regex':
        return {'type': 'regex_schema', 'regex_schema': NAV_REGEX}
    if mode == 'json_schema':
        return {'type': 'json_schema',
                'json_schema': {'name': 'navigation', 'schema': NAV_JSON_SCHEMA}}
    if mode == 'none':
        return None
    raise ValueError(f"unknown guided decoding mode '{mode}': use one of {GUIDED_MODES}")


def _one_line(text: str) -> str:
    """Collapse whitespace so a value stays on its own prompt line."""
    return ' '.join(str(text).split())


# Said in the next request after the planner stopped a blocked attempt (stuck, or no way
# round an obstacle), so that the model chooses another way instead of the same one.
BLOCKED_NOTE = ('Note: the robot could not go the way of your last answer (blocked by an '
                'obstacle); choose another way.')


def build_messages(instruction: str, image_data_urls: list[str],
                   history: Sequence[tuple[str, str]] = (), max_history: int = 5,
                   note: str = '') -> list[dict]:
    """Build the OpenAI chat messages for one keyframe request.

    The user message holds the images (oldest first, the current view last) and one text
    part with the line ``Instruction: ...`` followed by up to ``max_history`` of the
    task's last (environment, action) pairs, oldest first, and ``note`` when given.
    """
    instruction = _one_line(instruction)
    if not instruction:
        raise ValueError('instruction must not be empty')
    if not image_data_urls:
        raise ValueError('at least one image is required')
    if max_history < 0:
        raise ValueError(f'max_history must be >= 0, got {max_history}')
    lines = [f'Instruction: {instruction}']
    recent = list(history)[-max_history:] if max_history else []
    if recent:
        lines.append('Previous steps (oldest first):')
        for number, (environment, action) in enumerate(recent, start=1):
            lines.append(f'{number}. saw: {_one_line(environment) or "-"}; '
                         f'action: {_one_line(action) or "-"}')
    if note:
        lines.append(_one_line(note))
    lines.append('Answer with the JSON object only.')
    content: list[dict] = [{'type': 'image_url', 'image_url': {'url': url}}
                           for url in image_data_urls]
    content.append({'type': 'text', 'text': '\n'.join(lines)})
    return [
        {'role': 'system', 'content': SYSTEM_PROMPT},
        {'role': 'user', 'content': content},
    ]
