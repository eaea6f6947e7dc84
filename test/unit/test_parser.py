"""Tests of the lenient answer parser: clean, repaired, text and failed answers, and a fuzz."""

import json
import math
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from vln_ros.core.parser import (
    ParsedAnswer,
    Waypoint,
    parse_answer,
    waypoints_for_action,
)
from vln_ros.core.prompts import ACTIONS

FUZZ_EXAMPLES = int(os.environ.get('VLN_FUZZ_EXAMPLES', '300'))
settings.register_profile('vln_parser', max_examples=FUZZ_EXAMPLES, deadline=None,
                          derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])

CLEAN = ('{"environment": "corridor, door ahead", "action": "forward", "waypoints": ['
         '{"dx": 0.30, "dy": 0.00, "dtheta": 0.00, "confidence": 0.90}, '
         '{"dx": 0.60, "dy": 0.10, "dtheta": 0.05, "confidence": 0.80}]}')
CLEAN_POINTS = (Waypoint(0.3, 0.0, 0.0, 0.9), Waypoint(0.6, 0.1, 0.05, 0.8))


def _check_invariants(result: ParsedAnswer) -> None:
    assert isinstance(result, ParsedAnswer)
    assert result.action in ACTIONS
    assert result.method in ('json', 'repaired', 'text', 'failed')
    assert isinstance(result.environment, str) and len(result.environment) <= 200
    assert len(result.waypoints) <= 4
    for w in result.waypoints:
        values = (w.dx, w.dy, w.dtheta, w.confidence)
        assert all(isinstance(v, float) and math.isfinite(v) for v in values)
        assert 0.0 <= w.dx <= 1.0 and -1.0 <= w.dy <= 1.0
        assert -0.5 <= w.dtheta <= 0.5 and 0.0 <= w.confidence <= 1.0
    if result.method == 'failed':
        assert result.action == 'stop' and result.waypoints == () and result.error
    else:
        assert result.waypoints and result.error == ''
    if result.action == 'stop' and result.waypoints:
        w = result.waypoints
        assert len(w) == 1 and (w[0].dx, w[0].dy, w[0].dtheta) == (0.0, 0.0, 0.0)


# ---------------------------------------------------------------- clean and repaired JSON

def test_clean_json():
    result = parse_answer(CLEAN)
    assert result == ParsedAnswer('corridor, door ahead', 'forward', CLEAN_POINTS, 'json')


@pytest.mark.parametrize('text', [
    '```json\n' + CLEAN + '\n```',
    '```\n' + CLEAN + '```',
    'Here is my answer:\n' + CLEAN + '\nLet me know if you need more.',
    '  \n\t' + CLEAN.replace('": ', '":\r\n\t\t  ') + '\n\n',  # whitespace runs stay json
])
def test_wrapped_json_is_repaired(text):
    result = parse_answer(text)
    assert result.action == 'forward' and result.waypoints == CLEAN_POINTS
    assert result.method == ('json' if text.startswith('  \n') else 'repaired')


def test_control_characters_inside_strings_are_tolerated():
    text = CLEAN.replace('corridor, door ahead', 'corr\x08idor\x1b door\tahead')
    result = parse_answer(text)
    assert result.method == 'repaired' and result.waypoints == CLEAN_POINTS
    assert result.environment == 'corr idor door ahead'


AFTER_ACTION = CLEAN.index('"waypoints"')


@pytest.mark.parametrize('cut', [AFTER_ACTION - 3, AFTER_ACTION + 4, AFTER_ACTION + 16,
                                 AFTER_ACTION + 40, AFTER_ACTION + 75, AFTER_ACTION + 90,
                                 len(CLEAN) - 3, len(CLEAN) - 1])
def test_truncated_json_is_repaired(cut):
    result = parse_answer(CLEAN[:cut])
    _check_invariants(result)
    assert result.method == 'repaired'
    assert result.action == 'forward'
    assert result.environment == 'corridor, door ahead'
    if result.waypoints != waypoints_for_action('forward'):
        # Points that survived are the real ones, complete or with defaults for lost fields.
        for got, real in zip(result.waypoints, CLEAN_POINTS, strict=False):
            assert (got.dx, got.dy) == (real.dx, real.dy)


def test_truncated_before_the_waypoints_gives_the_action_defaults():
    result = parse_answer(CLEAN[:AFTER_ACTION + 20])
    assert result.waypoints == waypoints_for_action('forward')


def test_truncated_after_the_last_waypoint_keeps_all():
    for cut in (len(CLEAN) - 1, len(CLEAN) - 2):
        assert parse_answer(CLEAN[:cut]).waypoints == CLEAN_POINTS


def test_truncated_number_is_not_trusted():
    cut = CLEAN.index('0.90') + 1  # "confidence": 0   (the 0.90 lost its digits)
    result = parse_answer(CLEAN[:cut])
    assert result.waypoints[0].confidence != 0.0
    assert result.waypoints[0].dx == 0.3


def test_truncated_in_second_waypoint_keeps_the_first():
    cut = CLEAN.index('"dy": 0.10')
    result = parse_answer(CLEAN[:cut])
    assert result.method == 'repaired'
    assert result.waypoints == (CLEAN_POINTS[0],)


def test_truncated_in_an_escape_sequence():
    text = '{"environment": "a \\"quoted\\" door \\'
    result = parse_answer(text + '", "action": "stop"')
    assert result.action == 'stop'
    assert parse_answer(text).method in ('failed', 'text')


def test_truncated_before_any_action_fails_cleanly():
    result = parse_answer('{"environment": "a long hall')
    assert result.method == 'failed'
    assert result.environment == 'a long hall'
    assert result.waypoints == () and 'no valid action' in result.error


# ---------------------------------------------------------------- values and keys

def test_values_are_clamped():
    text = json.dumps({'environment': 'x', 'action': 'turn_left', 'waypoints': [
        {'dx': 3, 'dy': -7, 'dtheta': 2.0, 'confidence': 95},
        {'dx': -1, 'dy': 0.5, 'dtheta': -0.9, 'confidence': -1}]})
    result = parse_answer(text)
    assert result.waypoints == (Waypoint(1.0, -1.0, 0.5, 1.0), Waypoint(0.0, 0.5, -0.5, 0.0))


@pytest.mark.parametrize('bad', ['NaN', 'Infinity', '-Infinity', '"abc"', '"nan"', '"inf"',
                                 'true', 'null', '[1]', '{}', '1e999', '"0.3m"'])
def test_non_numeric_or_non_finite_values_reject_the_waypoint(bad):
    text = ('{"action": "forward", "waypoints": [{"dx": %s, "dy": 0, "dtheta": 0, '
            '"confidence": 0.9}, {"dx": 0.4, "dy": 0.1, "dtheta": 0, "confidence": 0.7}]}' % bad)
    result = parse_answer(text)
    assert result.waypoints == (Waypoint(0.4, 0.1, 0.0, 0.7),)


def test_only_four_waypoints_are_kept():
    points = [{'dx': 0.1 * i, 'dy': 0, 'dtheta': 0, 'confidence': 0.5} for i in range(1, 8)]
    result = parse_answer(json.dumps({'action': 'forward', 'waypoints': points}))
    assert [w.dx for w in result.waypoints] == pytest.approx([0.1, 0.2, 0.3, 0.4])


def test_keys_in_other_cases_numbers_as_strings_and_array_waypoints():
    text = json.dumps({'Environment': 'Hall', 'ACTION': 'Turn Right', 'WayPoints': [
        {'DX': '0.3', 'Dy': '-0.1', 'DTHETA': ' -0.2 ', 'Confidence': '0.6'},
        [0.5, -0.2, -0.4, 0.5], [0.6, -0.3]]})
    result = parse_answer(text)
    assert result.method == 'json' and result.action == 'turn_right'
    assert result.environment == 'Hall'
    assert result.waypoints == (Waypoint(0.3, -0.1, -0.2, 0.6), Waypoint(0.5, -0.2, -0.4, 0.5),
                                Waypoint(0.6, -0.3, 0.0, 0.5))


def test_single_flat_waypoint_and_single_object():
    flat = parse_answer('{"action": "forward", "waypoints": [0.4, 0.0, 0.1, 0.8]}')
    assert flat.waypoints == (Waypoint(0.4, 0.0, 0.1, 0.8),)
    single = parse_answer('{"action": "forward", "waypoints": {"dx": 0.2, "dy": 0.1}}')
    assert single.waypoints == (Waypoint(0.2, 0.1, 0.0, 0.5),)


@pytest.mark.parametrize('word,action', [
    ('left', 'turn_left'), ('go_forward', 'forward'), ('GO FORWARD', 'forward'),
    ('arrived', 'stop'), ('turn-right', 'turn_right'), ('backward', 'back'),
    ('halt', 'stop'), ('左转', 'turn_left'), ('前进', 'forward'), ('后退', 'back'),
    ('到达', 'stop'), ('slightly turn left', 'turn_left'), ('move straight ahead', 'forward'),
])
def test_action_synonyms(word, action):
    result = parse_answer(json.dumps({'environment': 'x', 'action': word}, ensure_ascii=False))
    assert result.action == action
    assert result.waypoints == waypoints_for_action(action, 0.5)


def test_unknown_action_is_inferred_from_waypoints():
    def parse(points):
        return parse_answer(json.dumps({'action': 'explore', 'waypoints': points})).action
    assert parse([[0.3, 0.0, 0.0, 0.9], [0.6, 0.0, 0.0, 0.9]]) == 'forward'
    assert parse([[0.1, 0.0, 0.4, 0.9]]) == 'turn_left'
    assert parse([[0.2, -0.4, 0.0, 0.9]]) == 'turn_right'
    assert parse([[0.0, 0.0, 0.0, 0.9]]) == 'stop'


def test_missing_action_is_inferred_and_list_top_level_works():
    result = parse_answer('[{"dx": 0.2, "dy": 0.3, "dtheta": 0.45, "confidence": 0.7}]')
    assert result.action == 'turn_left' and result.method == 'json'


def test_valid_action_without_valid_waypoints_gets_defaults():
    result = parse_answer('{"environment": "e", "action": "turn_left", "waypoints": "none", '
                          '"confidence": 0.8}')
    assert result.waypoints == waypoints_for_action('turn_left', 0.8)
    empty = parse_answer('{"action": "forward", "waypoints": []}')
    assert empty.waypoints == waypoints_for_action('forward')


def test_stop_always_means_a_single_zero_point():
    result = parse_answer('{"action": "stop", "waypoints": [{"dx": 0.8, "dy": 0.2, '
                          '"dtheta": 0.1, "confidence": 0.9}]}')
    assert result.waypoints == (Waypoint(0.0, 0.0, 0.0, 0.9),)


def test_environment_is_trimmed_and_non_strings_accepted():
    long = parse_answer(json.dumps({'environment': 'word ' * 100, 'action': 'stop'}))
    assert len(long.environment) == 200
    nested = parse_answer(json.dumps({'environment': {'room': 'lab'}, 'action': 'stop'}))
    assert 'lab' in nested.environment


def test_wrapper_object_is_unwrapped():
    result = parse_answer(json.dumps({'result': json.loads(CLEAN)}))
    assert result.waypoints == CLEAN_POINTS


# ---------------------------------------------------------------- text and failures

@pytest.mark.parametrize('text,action', [
    ('I will turn left at the door.', 'turn_left'),
    ('Turning right now', 'turn_right'),
    ('Go straight along the hall', 'forward'),
    ('Keep moving forward.', 'forward'),
    ('The path is blocked, go back.', 'back'),
    ('I have arrived at the kitchen.', 'stop'),
    ('STOP', 'stop'),
    ('Action: turn_right. The left side is blocked.', 'turn_right'),
    ('action = "go forward" (the door is to the left, turn left later)', 'forward'),
    ('前方有门，请直走', 'forward'),
    ('向左转', 'turn_left'),
    ('右转进入房间', 'turn_right'),
    ('已经到达目标', 'stop'),
    ('请停下', 'stop'),
    ('go straight then turn left', 'forward'),  # the first instruction wins
])
def test_text_answers(text, action):
    result = parse_answer(text)
    assert (result.method, result.action) == ('text', action)
    assert result.waypoints == waypoints_for_action(action, 0.5)
    assert result.environment


@pytest.mark.parametrize('text', ['', '   ', 'I see a leftover sandwich.', 'hello world',
                                  '{"foo": 1}', '[]', '{}', '[[[[', '{"a":' * 2000,
                                  '[' * 3000, '1' * 5000])
def test_nothing_usable_fails_without_raising(text):
    result = parse_answer(text)
    assert result.method == 'failed' and result.action == 'stop'
    assert result.waypoints == () and result.error


@pytest.mark.parametrize('value', [None, 42, b'{"action": "stop"}', ['forward']])
def test_non_text_inputs_fail(value):
    result = parse_answer(value)
    assert result.method == 'failed' and result.error


def test_waypoints_for_action():
    forward = waypoints_for_action('forward', 0.7)
    assert [w.dx for w in forward] == [0.25, 0.5, 0.75]
    assert all(w.dy == 0 and w.dtheta == 0 and w.confidence == 0.7 for w in forward)
    left, right = waypoints_for_action('turn_left'), waypoints_for_action('turn_right')
    assert left[-1].dtheta == 0.5 and all(0 < w.dx <= 0.2 for w in left)
    assert [(w.dx, -w.dy, -w.dtheta) for w in right] == [(w.dx, w.dy, w.dtheta) for w in left]
    back = waypoints_for_action('back')
    assert all(w.dx == 0.0 for w in back) and back[-1].dtheta == 0.5
    assert waypoints_for_action('stop', 2.0) == (Waypoint(0.0, 0.0, 0.0, 1.0),)
    with pytest.raises(ValueError):
        waypoints_for_action('fly')


# ---------------------------------------------------------------- fuzz

_KEYS = st.sampled_from(['environment', 'action', 'waypoints', 'dx', 'dy', 'dtheta',
                         'confidence', 'DX', 'Action', 'x', 'theta', 'conf', 'path', 'junk'])
_SCALARS = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**30, 10**30)
            | st.booleans() | st.none() | st.sampled_from(list(ACTIONS) + ['left', '前进'])
            | st.text(max_size=20)
            | st.sampled_from(['0.3', '-0.4', 'nan', 'inf', '1e5', ' 0.2 ', '']))
_JSONISH = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=6)
                        | st.dictionaries(_KEYS, inner, max_size=6), max_leaves=30)


@settings.get_profile('vln_parser')
@given(st.text(max_size=400))
def test_fuzz_arbitrary_text(text):
    _check_invariants(parse_answer(text))


@settings.get_profile('vln_parser')
@given(_JSONISH, st.integers(0, 10**6), st.sampled_from(['', '```json\n', 'Answer: ']))
def test_fuzz_json_structures_whole_and_truncated(value, cut, prefix):
    text = prefix + json.dumps(value, ensure_ascii=False)
    _check_invariants(parse_answer(text))
    _check_invariants(parse_answer(text[: cut % (len(text) + 1)]))


@settings.get_profile('vln_parser')
@given(st.lists(st.tuples(*[st.floats(-5, 5, allow_nan=False)] * 4), min_size=1, max_size=8),
       st.sampled_from(ACTIONS), st.integers(0, 400))
def test_fuzz_answer_shaped(points, action, cut):
    text = json.dumps({'environment': 'room', 'action': action, 'waypoints': [
        {'dx': a, 'dy': b, 'dtheta': c, 'confidence': d} for a, b, c, d in points]})
    full = parse_answer(text)
    _check_invariants(full)
    assert full.method == 'json' and full.action == action
    if action != 'stop':
        assert len(full.waypoints) == min(4, len(points))
        assert full.waypoints[0].dx == min(max(points[0][0], 0.0), 1.0)
    _check_invariants(parse_answer(text[:cut]))
