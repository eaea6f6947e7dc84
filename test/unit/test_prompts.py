"""Tests of the prompt, the chat messages and the guided-decoding formats."""

import json
import re

import pytest

from vln_ros.core.prompts import (
    ACTIONS,
    NAV_JSON_SCHEMA,
    NAV_REGEX,
    SYSTEM_PROMPT,
    build_messages,
    response_format,
)

NAV = re.compile(NAV_REGEX)


def _validate(value, schema, path='$'):
    """Check ``value`` against the JSON-schema subset NAV_JSON_SCHEMA uses; list the errors."""
    errors = []
    kind = schema.get('type')
    if kind == 'object':
        if not isinstance(value, dict):
            return [f'{path}: not an object']
        for key in schema.get('required', []):
            if key not in value:
                errors.append(f'{path}: missing {key}')
        props = schema.get('properties', {})
        for key, item in value.items():
            if key in props:
                errors += _validate(item, props[key], f'{path}.{key}')
            elif schema.get('additionalProperties') is False:
                errors.append(f'{path}: extra key {key}')
    elif kind == 'array':
        if not isinstance(value, list):
            return [f'{path}: not an array']
        if not schema.get('minItems', 0) <= len(value) <= schema.get('maxItems', 10**9):
            errors.append(f'{path}: {len(value)} items')
        for i, item in enumerate(value):
            errors += _validate(item, schema['items'], f'{path}[{i}]')
    elif kind == 'string':
        if not isinstance(value, str):
            return [f'{path}: not a string']
        if 'enum' in schema and value not in schema['enum']:
            errors.append(f'{path}: {value!r} not in enum')
        if 'pattern' in schema and not re.search(schema['pattern'], value):
            errors.append(f'{path}: {value!r} does not match pattern')
        if not schema.get('minLength', 0) <= len(value) <= schema.get('maxLength', 10**9):
            errors.append(f'{path}: bad length')
    elif kind == 'number':
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f'{path}: not a number']
        if not schema['minimum'] <= value <= schema['maximum']:
            errors.append(f'{path}: {value} out of range')
    return errors


def _answer(environment='a corridor, door ahead', action='forward', waypoints=None):
    if waypoints is None:
        waypoints = [(0.30, 0.00, 0.00, 0.90)]
    parts = ', '.join(f'{{"dx": {dx:.2f}, "dy": {dy:.2f}, "dtheta": {dt:.2f}, '
                      f'"confidence": {c:.2f}}}' for dx, dy, dt, c in waypoints)
    return (f'{{"environment": "{environment}", "action": "{action}", '
            f'"waypoints": [{parts}]}}')


VALID_ANSWERS = [
    _answer(),
    _answer("a hallway, it's narrow - 2 doors.", 'turn_left',
            [(0.10, 0.05, 0.25, 0.70), (0.20, 0.10, 0.50, 0.60)]),
    _answer('glass wall', 'turn_right', [(0.05, -0.02, -0.25, 0.5), (0.1, -1.0, -0.5, 0.4),
                                         (0.2, -0.5, -0.49, 0.0), (1.0, 1.0, 0.5, 1.0)]),
    _answer('X' * 80, 'back', [(0.0, 0.0, 0.5, 0.8)]),
    _answer('goal reached', 'stop', [(0.0, 0.0, 0.0, 0.95)]),
    # The spacing of the contract, written by hand.
    '{"environment": "kitchen", "action": "stop", "waypoints": [{"dx": 0.0, "dy": 0.0, '
    '"dtheta": 0.0, "confidence": 1.0}]}',
]


@pytest.mark.parametrize('text', VALID_ANSWERS)
def test_valid_answers_match_the_regex_and_the_schema(text):
    assert NAV.fullmatch(text), text
    assert _validate(json.loads(text), NAV_JSON_SCHEMA) == []


INVALID_ANSWERS = [
    # Spacing differs from the compact form.
    '{"environment":"x", "action": "stop", "waypoints": [{"dx": 0.0, "dy": 0.0, "dtheta": 0.0, '
    '"confidence": 1.0}]}',
    _answer(action='jump'),
    _answer(environment=''),
    _answer(environment='X' * 81),
    _answer(environment='caf\u00e9'),
    _answer(environment='quote " inside'),
    _answer(waypoints=[]),
    _answer(waypoints=[(0.1, 0, 0, 0.5)] * 5),
    _answer(waypoints=[(1.5, 0, 0, 0.5)]),
    _answer(waypoints=[(-0.1, 0, 0, 0.5)]),
    _answer(waypoints=[(0.1, 0, 0.51, 0.5)]),
    _answer(waypoints=[(0.1, 0, -0.6, 0.5)]),
    _answer(waypoints=[(0.1, 1.5, 0, 0.5)]),
    _answer(waypoints=[(0.1, 0, 0, 1.01)]),
    _answer(waypoints=[(0.1, 0, 0, -0.5)]),
]


@pytest.mark.parametrize('text', INVALID_ANSWERS)
def test_invalid_answers_are_refused_by_regex_and_schema(text):
    assert not NAV.fullmatch(text)
    try:
        value = json.loads(text)
    except ValueError:
        return
    if text.startswith('{"environment":"x"'):
        return  # only the spacing is wrong: valid JSON for the schema
    assert _validate(value, NAV_JSON_SCHEMA) != []


def test_regex_refuses_wrong_key_order_and_extra_keys():
    swapped = _answer().replace('"environment": "a corridor, door ahead", "action": "forward"',
                                '"action": "forward", "environment": "a corridor, door ahead"')
    assert not NAV.fullmatch(swapped)
    extra = _answer().replace('"confidence": 0.90}', '"confidence": 0.90, "z": 0.1}')
    assert not NAV.fullmatch(extra)
    assert _validate(json.loads(extra), NAV_JSON_SCHEMA) != []


def test_every_action_is_in_regex_and_schema():
    for action in ACTIONS:
        assert NAV.fullmatch(_answer(action=action))
    assert NAV_JSON_SCHEMA['properties']['action']['enum'] == list(ACTIONS)


def test_schema_is_tight():
    schema = NAV_JSON_SCHEMA
    assert schema['additionalProperties'] is False
    assert set(schema['required']) == {'environment', 'action', 'waypoints'}
    items = schema['properties']['waypoints']
    assert (items['minItems'], items['maxItems']) == (1, 4)
    wp = items['items']
    assert wp['additionalProperties'] is False
    assert set(wp['required']) == {'dx', 'dy', 'dtheta', 'confidence'}
    ranges = {k: (v['minimum'], v['maximum']) for k, v in wp['properties'].items()}
    assert ranges == {'dx': (0, 1), 'dy': (-1, 1), 'dtheta': (-0.5, 0.5), 'confidence': (0, 1)}
    json.dumps(schema)  # serialisable as sent over HTTP


def test_response_format_modes():
    assert response_format('regex') == {'type': 'regex_schema', 'regex_schema': NAV_REGEX}
    assert response_format('json_schema') == {
        'type': 'json_schema', 'json_schema': {'name': 'navigation', 'schema': NAV_JSON_SCHEMA}}
    assert response_format('none') is None
    for bad in ('json', 'REGEX', ''):
        with pytest.raises(ValueError):
            response_format(bad)


def test_system_prompt_fixes_schema_axes_ranges_and_meaning():
    text = SYSTEM_PROMPT
    for needle in ('REP-103', 'x points forward', "robot's left", 'counter-clockwise',
                   'capture', 'stop', 'JSON', '1 to 4', '-0.50 to', '0.00 to 1.00'):
        assert needle in text, needle
    for action in ACTIONS:
        assert action in text
    # The example in the prompt is itself a valid answer.
    example = re.search(r'\{"dx": [^}]*\}', text).group(0)
    assert NAV.fullmatch(_answer().replace(
        '{"dx": 0.30, "dy": 0.00, "dtheta": 0.00, "confidence": 0.90}', example))


def test_build_messages_structure():
    urls = ['data:image/jpeg;base64,AAA', 'data:image/jpeg;base64,BBB']
    messages = build_messages('go to the red door', urls)
    assert [m['role'] for m in messages] == ['system', 'user']
    assert messages[0]['content'] == SYSTEM_PROMPT
    content = messages[1]['content']
    assert [p['type'] for p in content] == ['image_url', 'image_url', 'text']
    assert [p['image_url']['url'] for p in content[:2]] == urls
    lines = content[2]['text'].splitlines()
    assert 'Instruction: go to the red door' in lines
    json.dumps(messages)


def test_instruction_stays_on_one_line():
    messages = build_messages('  walk to\nthe   kitchen\r\n then stop ', ['data:x'])
    text = messages[1]['content'][-1]['text']
    found = [line for line in text.splitlines() if line.startswith('Instruction: ')]
    assert found == ['Instruction: walk to the kitchen then stop']


def test_history_keeps_the_last_pairs_oldest_first():
    history = [(f'env {i}', 'forward' if i % 2 else 'turn_left') for i in range(8)]
    text = build_messages('find the exit', ['data:x'], history, max_history=3)[1]['content'][-1][
        'text']
    assert 'env 4' not in text
    positions = [text.index(f'env {i}') for i in (5, 6, 7)]
    assert positions == sorted(positions)
    assert 'action: turn_left' in text and 'action: forward' in text
    no_history = build_messages('find the exit', ['data:x'], history, max_history=0)
    assert 'env' not in no_history[1]['content'][-1]['text']


def test_build_messages_rejects_bad_input():
    with pytest.raises(ValueError):
        build_messages('   ', ['data:x'])
    with pytest.raises(ValueError):
        build_messages('go', [])
    with pytest.raises(ValueError):
        build_messages('go', ['data:x'], max_history=-1)


def test_a_note_goes_after_the_history_and_before_the_answer_line():
    from vln_ros.core.prompts import BLOCKED_NOTE
    messages = build_messages('go to the door', ['data:image/jpeg;base64,AA=='],
                              [('hall', 'forward')], 5, BLOCKED_NOTE)
    text = messages[1]['content'][-1]['text'].splitlines()
    assert text[-2] == BLOCKED_NOTE and text[-1].startswith('Answer')
    plain = build_messages('go to the door', ['data:image/jpeg;base64,AA=='])
    assert 'blocked' not in plain[1]['content'][-1]['text']
