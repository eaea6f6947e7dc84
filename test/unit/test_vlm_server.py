"""Tests of the OpenAI-compatible VLM test server, over real HTTP like a real client."""

import asyncio
import base64
import collections
import contextlib
from dataclasses import replace
import json
import os
from pathlib import Path
import random
import re
import select
import signal
import subprocess
import sys
import time

import cv2
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import openai
import pytest

from vln_ros.core.parser import parse_answer
from vln_ros.core.prompts import NAV_REGEX, response_format
from vln_ros.sim.vlm_format_faults import RAMBLING_ENVIRONMENTS, reformat_answer
from vln_ros.sim.vlm_requests import regex_accepts
from vln_ros.sim.vlm_server import (
    AnswerRequest,
    ServerConfig,
    ServerState,
    extract_instruction,
    format_answer,
    keyword_policy,
    make_garbage,
    serve_in_thread,
)
from vln_ros.sim.vlm_server_cli import _parse_args

MODEL = 'test-vlm'
ROOT = Path(__file__).resolve().parents[2]
FUZZ_EXAMPLES = int(os.environ.get('VLN_FUZZ_EXAMPLES', '300'))
RANGES = {'dx': (0.0, 1.0), 'dy': (-1.0, 1.0), 'dtheta': (-0.5, 0.5), 'confidence': (0.0, 1.0)}


def jpeg_data_url() -> str:
    image = np.zeros((48, 64, 3), np.uint8)
    cv2.rectangle(image, (20, 10), (40, 45), (40, 80, 160), -1)
    ok, encoded = cv2.imencode('.jpg', image)
    assert ok
    return 'data:image/jpeg;base64,' + base64.b64encode(encoded.tobytes()).decode()


IMAGE_URL = jpeg_data_url()


def messages(instruction: str, url: str = IMAGE_URL) -> list:
    return [
        {'role': 'system', 'content': 'You are the navigation module of a quadruped robot.'},
        {'role': 'user', 'content': [
            {'type': 'image_url', 'image_url': {'url': url}},
            {'type': 'text', 'text': f'History: none\nInstruction: {instruction}\nAnswer JSON.'},
        ]},
    ]


def wait_for(predicate, timeout: float = 5.0, what: str = 'condition'):
    """Poll until predicate() is truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.02)


def read_line(process: subprocess.Popen, timeout: float) -> str:
    """Read one stdout line of a child process, failing at the deadline instead of hanging."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f'no output within {timeout} s: {process.poll()=}'
    return process.stdout.readline()


def assert_contract(content: str) -> dict:
    answer = json.loads(content)
    assert list(answer) == ['environment', 'action', 'waypoints']
    assert answer['environment'].isascii() and 1 <= len(answer['environment']) <= 80
    assert answer['action'] in ('forward', 'turn_left', 'turn_right', 'back', 'stop')
    assert 1 <= len(answer['waypoints']) <= 4
    for waypoint in answer['waypoints']:
        assert list(waypoint) == ['dx', 'dy', 'dtheta', 'confidence']
        for key, (low, high) in RANGES.items():
            assert low <= waypoint[key] <= high, (key, waypoint)
    # Exactly the compact spelling the prompt asks the model for.
    assert content == format_answer(answer)
    return answer


@pytest.fixture(scope='module')
def server():
    with serve_in_thread(ServerConfig(model_name=MODEL, seed=7)) as running:
        yield running


@pytest.fixture
def srv(server):
    httpx.post(f'{server.root_url}/_test/reset', timeout=5).raise_for_status()
    return server


def configure(srv, **changes) -> dict:
    response = httpx.post(f'{srv.root_url}/_test/config', json=changes, timeout=5)
    response.raise_for_status()
    return response.json()['config']


def stats(srv) -> dict:
    return httpx.get(f'{srv.root_url}/_test/stats', timeout=5).json()


def client(srv, **kwargs) -> openai.OpenAI:
    kwargs.setdefault('timeout', 10.0)
    return openai.OpenAI(base_url=srv.base_url, api_key='none', max_retries=0, **kwargs)


def chat_body(instruction: str, **extra) -> dict:
    return {'model': MODEL, 'messages': messages(instruction), **extra}


def test_models_list(srv):
    models = client(srv).models.list()
    assert [m.id for m in models.data] == [MODEL]
    raw = httpx.get(f'{srv.base_url}/models', timeout=5).json()
    assert raw['object'] == 'list'
    card = raw['data'][0]
    assert (card['object'], card['owned_by'], card['root'], card['parent']) == (
        'model', 'lmdeploy', MODEL, None)
    assert card['permission'] and isinstance(card['created'], int)


def test_health_is_healthy(srv):
    response = httpx.get(f'{srv.root_url}/health', timeout=5)
    assert response.status_code == 200
    assert response.json()['status'] == 'healthy'


def test_answer_is_contract_json(srv):
    response = client(srv).chat.completions.create(
        model=MODEL, messages=messages('go forward to the door'), max_tokens=300,
        temperature=0.7, top_p=0.8,
        extra_body={'top_k': 20, 'repetition_penalty': 1.05, 'ignore_eos': False,
                    'skip_special_tokens': True,
                    'mm_processor_kwargs': {'image': {'max_pixels': 76800}}},
        response_format={'type': 'json_schema',
                         'json_schema': {'name': 'nav', 'schema': {'type': 'object'}}})
    assert response.id.startswith('chatcmpl-')
    assert response.object == 'chat.completion'
    assert response.model == MODEL
    choice = response.choices[0]
    assert choice.finish_reason == 'stop'
    assert choice.message.role == 'assistant'
    answer = assert_contract(choice.message.content)
    assert answer['action'] == 'forward'
    assert len(answer['waypoints']) == 3
    dxs = [w['dx'] for w in answer['waypoints']]
    assert dxs == sorted(dxs) and dxs[-1] > dxs[0]  # further along the path
    # One image is 300 visual tokens; the text adds a few dozen.
    assert 300 < response.usage.prompt_tokens < 400
    assert response.usage.completion_tokens >= len(choice.message.content) // 4
    assert response.usage.total_tokens == (response.usage.prompt_tokens
                                           + response.usage.completion_tokens)
    seen = stats(srv)
    assert seen['last_instruction'] == 'go forward to the door'
    assert seen['completed'] == 1 and seen['requests'] == 1
    assert seen['response_formats']['json_schema'] == 1


def test_instruction_extraction_over_http_async(srv):
    async def ask():
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key='none',
                                      max_retries=0, timeout=10) as aclient:
            return await aclient.chat.completions.create(
                model=MODEL, messages=messages('turn left at the corner'))

    response = asyncio.run(ask())
    answer = assert_contract(response.choices[0].message.content)
    assert answer['action'] == 'turn_left'
    assert all(w['dtheta'] > 0 and w['dy'] >= 0 for w in answer['waypoints'])
    assert stats(srv)['instructions'] == ['turn left at the corner']


@pytest.mark.parametrize('instruction, action', [
    ('turn left', 'turn_left'),
    ('walk to the right side of the table', 'turn_right'),
    ('请向左转', 'turn_left'),
    ('向右走', 'turn_right'),
    ('前进到门口', 'forward'),
    ('停下', 'stop'),
    ('please stop here', 'stop'),
    ('后退一步', 'back'),
    ('go back to the start', 'back'),
    ('go forward, then turn left, then stop', 'forward'),
    ('look around for a red chair', 'forward'),
])
def test_keyword_policy_actions(instruction, action):
    answer = keyword_policy(AnswerRequest(instruction=instruction, images=[], text='', body={}))
    assert answer['action'] == action
    assert_contract(format_answer(answer))
    if action == 'stop':
        assert [(w['dx'], w['dy'], w['dtheta']) for w in answer['waypoints']] == [(0, 0, 0)]


def test_unknown_instruction_gets_lower_confidence():
    def confidence(instruction):
        answer = keyword_policy(AnswerRequest(instruction, [], '', {}))
        return max(w['confidence'] for w in answer['waypoints'])

    assert confidence('explore the room') < confidence('go forward')


def test_extract_instruction_takes_the_prefixed_line():
    text = 'You see an image.\n  Instruction: find the exit \nHistory: forward'
    assert extract_instruction(text) == 'find the exit'
    assert extract_instruction('no instruction line') == ''


def test_format_answer_is_compact_with_two_decimals():
    text = format_answer({'environment': 'hall', 'action': 'stop',
                          'waypoints': [{'dx': 0, 'dy': -0.0, 'dtheta': 0.5, 'confidence': 0.9}]})
    assert text == ('{"environment": "hall", "action": "stop", "waypoints": '
                    '[{"dx": 0.00, "dy": 0.00, "dtheta": 0.50, "confidence": 0.90}]}')


@settings(max_examples=FUZZ_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60))
def test_keyword_policy_always_answers_the_contract(instruction):
    answer = keyword_policy(AnswerRequest(instruction, [], instruction, {}))
    assert_contract(format_answer(answer))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_garbage_never_parses_and_names_no_action(seed):
    text = make_garbage(random.Random(seed))
    with pytest.raises(ValueError):
        json.loads(text, strict=False)
    for word in ('forward', 'left', 'right', 'stop', 'back'):
        assert word not in text


@pytest.mark.parametrize('url', [
    'data:image/jpeg;base64,%%%not-base64%%%',
    'data:image/jpeg;base64,' + base64.b64encode(b'not an image at all').decode(),
    'data:text/plain,hello',
    'ftp://example.com/a.jpg',
    'file:///nonexistent/frame.jpg',
])
def test_bad_image_url_is_400(srv, url):
    with pytest.raises(openai.BadRequestError) as excinfo:
        client(srv).chat.completions.create(model=MODEL, messages=messages('go', url=url))
    body = excinfo.value.body
    assert body['object'] == 'error' and body['code'] == 400
    assert body['type'] == 'invalid_request_error'
    assert 'image' in body['message'].lower()


def test_http_image_url_is_accepted(srv):
    response = client(srv).chat.completions.create(
        model=MODEL, messages=messages('turn right', url='https://example.com/frame.jpg'))
    assert json.loads(response.choices[0].message.content)['action'] == 'turn_right'


@pytest.mark.parametrize('body, fragment', [
    ({'messages': []}, 'model: Field required'),
    ({'model': MODEL}, 'messages: Field required'),
    (chat_body('go', logprobs=True), 'Logprobs(True)'),
    (chat_body('go', top_p=0), 'top_p'),
    (chat_body('go', temperature=3), 'temperature'),
    (chat_body('go', max_tokens=0), 'max_new_tokens'),
    (chat_body('go', response_format={'type': 'xml'}), 'response_format'),
    ({'model': MODEL, 'messages': [{'role': 'robot', 'content': 'hi'}]}, 'role'),
    ({'model': MODEL, 'messages': [{'role': 'user', 'content': [{'type': 'audio'}]}]},
     'unsupported content part'),
])
def test_malformed_requests_are_400_flat_errors(srv, body, fragment):
    response = httpx.post(f'{srv.base_url}/chat/completions', json=body, timeout=5)
    assert response.status_code == 400
    error = response.json()
    assert list(error) == ['message', 'type', 'code', 'param', 'object']
    assert (error['object'], error['code'], error['param']) == ('error', 400, None)
    assert fragment in error['message']


def test_non_json_body_is_400(srv):
    response = httpx.post(f'{srv.base_url}/chat/completions', content=b'{"model": ',
                          headers={'content-type': 'application/json'}, timeout=5)
    assert response.status_code == 400
    assert 'JSON decode error' in response.json()['message']
    response = httpx.post(f'{srv.base_url}/chat/completions', content=b'x', timeout=5)
    assert response.status_code == 400
    assert 'Unsupported Media Type' in response.json()['message']


def test_unknown_model_is_404_with_lmdeploy_message(srv):
    with pytest.raises(openai.NotFoundError) as excinfo:
        client(srv).chat.completions.create(model='no-such-model', messages=messages('go'))
    assert excinfo.value.status_code == 404
    assert excinfo.value.body['message'] == "The model 'no-such-model' does not exist."
    assert excinfo.value.body['object'] == 'error'


def test_body_over_limit_is_400_context_too_long(srv):
    configure(srv, max_body_bytes=4096)
    big = 'data:image/jpeg;base64,' + base64.b64encode(bytes(8000)).decode()
    response = httpx.post(f'{srv.base_url}/chat/completions',
                          json=chat_body('go') | {'messages': messages('go', url=big)}, timeout=5)
    assert response.status_code == 400
    assert response.json()['message'] == 'The request exceeds the model context length.'


def test_streaming_equals_plain_answer(srv):
    api = client(srv)
    plain = api.chat.completions.create(model=MODEL, messages=messages('turn right now'))
    chunks = list(api.chat.completions.create(
        model=MODEL, messages=messages('turn right now'), stream=True,
        stream_options={'include_usage': True}))
    assert len(chunks) >= 5
    assert all(c.object == 'chat.completion.chunk' and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == 'assistant'
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 3
    text = ''.join(c.choices[0].delta.content or '' for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == 'stop' and finishes.count('stop') == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens


def test_streaming_wire_format_ends_with_done(srv):
    with httpx.stream('POST', f'{srv.base_url}/chat/completions', timeout=5,
                      json=chat_body('stop', stream=True)) as response:
        assert response.status_code == 200
        assert response.headers['content-type'].startswith('text/event-stream')
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith('data: ') for line in events)
    assert events[-1] == 'data: [DONE]'
    last = json.loads(events[-2][len('data: '):])
    assert last['choices'][0]['finish_reason'] == 'stop'
    assert 'usage' not in last  # only with stream_options.include_usage
    assert stats(srv)['completed'] == 1


def test_max_tokens_truncates_with_finish_reason_length(srv):
    response = client(srv).chat.completions.create(
        model=MODEL, messages=messages('go forward'), max_tokens=10)
    choice = response.choices[0]
    assert choice.finish_reason == 'length'
    assert 0 < len(choice.message.content) <= 30
    assert response.usage.completion_tokens <= 10
    full = client(srv).chat.completions.create(
        model=MODEL, messages=messages('go forward'), max_completion_tokens=1000)
    assert full.choices[0].finish_reason == 'stop'
    assert full.choices[0].message.content.startswith(choice.message.content)


def test_error_fault_alternates_503_and_500(srv):
    configure(srv, error_rate=1.0)
    api = client(srv)
    codes = []
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as excinfo:
            api.chat.completions.create(model=MODEL, messages=messages('go'))
        codes.append(excinfo.value.status_code)
        assert excinfo.value.body['object'] == 'error'
    assert codes == [503, 500]
    with pytest.raises(openai.APIError, match='unavailable|internal'):
        for _ in api.chat.completions.create(model=MODEL, messages=messages('go'), stream=True):
            pass
    seen = stats(srv)
    assert seen['by_fault']['error'] == 3 and seen['errors'] == 3
    assert seen['by_status'] == {'503': 2, '500': 1}


def test_timeout_fault_makes_client_timeout_and_counts_cancel(srv):
    configure(srv, timeout_rate=1.0)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client(srv, timeout=0.5).chat.completions.create(model=MODEL, messages=messages('go'))
    assert time.monotonic() - started < 5.0
    wait_for(lambda: stats(srv)['cancelled'] == 1, what='cancel counted')
    seen = stats(srv)
    assert seen['by_fault']['timeout'] == 1 and seen['in_flight'] == 0


def test_client_gone_while_sending_the_body_counts_a_cancel(srv):
    """A request cancelled mid-upload (a task switch) is a cancel, not a server traceback."""
    import socket
    import urllib.parse

    url = urllib.parse.urlsplit(srv.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(f'POST {url.path}/chat/completions HTTP/1.1\r\nHost: x\r\n'
                     'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n'
                     '{"model": '.encode())
        time.sleep(0.2)
    wait_for(lambda: stats(srv)['cancelled'] == 1, what='cancel counted')
    seen = stats(srv)
    assert seen['in_flight'] == 0 and seen['errors'] == 0
    assert client(srv).chat.completions.create(model=MODEL, messages=messages('go'))


def test_garbage_fault_is_unparseable(srv):
    configure(srv, garbage_rate=1.0)
    api = client(srv)
    for _ in range(5):
        content = api.chat.completions.create(
            model=MODEL, messages=messages('go')).choices[0].message.content
        assert content
        with pytest.raises(ValueError):
            json.loads(content, strict=False)
    assert stats(srv)['by_fault']['garbage'] == 5


def test_truncate_fault_cuts_valid_answer(srv):
    full = client(srv).chat.completions.create(
        model=MODEL, messages=messages('go forward')).choices[0].message.content
    configure(srv, truncate_rate=1.0)
    response = client(srv).chat.completions.create(model=MODEL, messages=messages('go forward'))
    content = response.choices[0].message.content
    assert 0 < len(content) < len(full) and full.startswith(content)
    assert response.choices[0].finish_reason == 'length'
    with pytest.raises(ValueError):
        json.loads(content, strict=False)
    assert stats(srv)['by_fault']['truncate'] == 1


def test_faults_repeat_with_the_same_seed(srv):
    def run():
        httpx.post(f'{srv.root_url}/_test/reset', timeout=5).raise_for_status()
        configure(srv, garbage_rate=0.5, seed=3)
        api = client(srv)
        return [api.chat.completions.create(model=MODEL, messages=messages('go'))
                .choices[0].message.content for _ in range(6)]

    first = run()
    assert first == run()
    assert 0 < stats(srv)['by_fault']['garbage'] < 6


def test_client_cancel_is_counted(srv):
    configure(srv, latency_min=5.0, latency_max=5.0)

    async def cancel_one(stream: bool):
        async with openai.AsyncOpenAI(base_url=srv.base_url, api_key='none',
                                      max_retries=0, timeout=30) as aclient:
            async def call():
                response = await aclient.chat.completions.create(
                    model=MODEL, messages=messages('go'), stream=stream)
                if stream:
                    async for _ in response:
                        pass

            task = asyncio.create_task(call())
            deadline = time.monotonic() + 5.0
            while stats(srv)['in_flight'] < 1:
                assert time.monotonic() < deadline, 'request never arrived'
                await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(cancel_one(stream=False))
    wait_for(lambda: stats(srv)['cancelled'] == 1, what='plain cancel counted')
    asyncio.run(cancel_one(stream=True))
    wait_for(lambda: stats(srv)['cancelled'] == 2, what='stream cancel counted')
    seen = stats(srv)
    assert seen['completed'] == 0 and seen['in_flight'] == 0


def test_config_endpoint_changes_latency(srv):
    api = client(srv)
    started = time.monotonic()
    api.chat.completions.create(model=MODEL, messages=messages('go'))
    assert time.monotonic() - started < 0.3
    assert configure(srv, latency_min=0.4, latency_max=0.5)['latency_max'] == 0.5
    started = time.monotonic()
    api.chat.completions.create(model=MODEL, messages=messages('go'))
    assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize('changes, fragment', [
    ({'no_such_field': 1}, 'no_such_field'),
    ({'error_rate': 2.0}, 'error_rate'),
    ({'latency_min': 3.0, 'latency_max': 1.0}, 'latency_min'),
    ({'prose_rate': 1.5}, 'prose_rate'),
    ({'chinese_rate': -0.1}, 'chinese_rate'),
    ({'refusal_rate': 'often'}, 'refusal_rate'),
    ({'latency_tail_rate': 2}, 'latency_tail_rate'),
    ({'latency_tail_factor': [2.0, 1.5]}, 'latency_tail_factor'),
    ({'latency_tail_factor': [0.5, 1.0]}, 'latency_tail_factor'),
    ({'latency_tail_factor': [2.0]}, 'latency_tail_factor'),
    ({'latency_tail_factor': 2.0}, 'latency_tail_factor'),
    ({'latency_tail_factor': '12'}, 'latency_tail_factor'),
    ({'latency_tail_factor': [True, 2.0]}, 'latency_tail_factor'),
])
def test_config_endpoint_rejects_bad_changes(srv, changes, fragment):
    response = httpx.post(f'{srv.root_url}/_test/config', json=changes, timeout=5)
    assert response.status_code == 400
    assert fragment in response.json()['message']


# ------------------------------------------------------------------ answers in another format

GUIDED_FORMATS = {
    'json_object': {'type': 'json_object'},
    'json_schema': response_format('json_schema'),
    'regex_schema': response_format('regex'),
}
FENCE_START, FENCE_END = '```json\n', '\n```'


def ask(srv, instruction: str = 'go forward', **kwargs) -> str:
    return client(srv).chat.completions.create(
        model=MODEL, messages=messages(instruction), **kwargs).choices[0].message.content


def test_prose_fault_under_text_wraps_the_intact_answer(srv):
    full = ask(srv)
    configure(srv, prose_rate=1.0)
    for stream in (False, True):
        if stream:
            content = ''.join(chunk.choices[0].delta.content or '' for chunk in
                              client(srv).chat.completions.create(
                                  model=MODEL, messages=messages('go forward'), stream=True)
                              if chunk.choices)
        else:
            content = ask(srv)
        before, _, rest = content.partition(FENCE_START)
        block, _, after = rest.partition(FENCE_END)
        assert before.strip() and after.strip(), content  # chatty text on both sides
        assert block == full
        assert_contract(block)
        assert '{' not in before + after
        parsed = parse_answer(content)
        assert (parsed.method, parsed.action) == ('repaired', 'forward')
    seen = stats(srv)
    assert seen['by_fault']['prose'] == 2 and seen['completed'] == 3


@pytest.mark.parametrize('instruction, verb, action', [
    ('go forward', '前进', 'forward'), ('turn left', '左转', 'turn_left'),
    ('turn right', '右转', 'turn_right'), ('go back', '后退', 'back'),
    ('stop here', '停止', 'stop'),
])
def test_chinese_fault_under_text_is_chinese_prose_without_json(srv, instruction, verb,
                                                                 action):
    configure(srv, chinese_rate=1.0)
    content = ask(srv, instruction)
    assert verb in content
    assert not content.isascii() and not set('{}[]":') & set(content)
    # A text fallback still reads what to do from the words.
    parsed = parse_answer(content)
    assert (parsed.method, parsed.action) == ('text', action)
    assert stats(srv)['by_fault']['chinese'] == 1


def test_refusal_fault_under_text_has_no_json_and_no_action(srv):
    configure(srv, refusal_rate=1.0)
    contents = {ask(srv) for _ in range(6)}
    for content in contents:
        assert content.isascii() and content.startswith(("I'm sorry", 'As an AI'))
        assert not set('{}[]') & set(content)
        assert parse_answer(content).method == 'failed'
    assert stats(srv)['by_fault']['refusal'] == 6


@pytest.mark.parametrize('fmt', list(GUIDED_FORMATS))
def test_format_faults_under_guided_decoding_keep_the_contract(srv, fmt):
    full = json.loads(ask(srv, response_format=GUIDED_FORMATS[fmt]))
    results = {}
    for fault in ('prose', 'chinese', 'refusal'):
        httpx.post(f'{srv.root_url}/_test/reset', timeout=5).raise_for_status()
        configure(srv, **{f'{fault}_rate': 1.0})
        content = ask(srv, response_format=GUIDED_FORMATS[fmt])
        if fmt == 'regex_schema':
            assert regex_accepts(NAV_REGEX, content), content
        results[fault] = assert_contract(content)
        seen = stats(srv)
        assert seen['by_fault'][fault] == 1 and seen['regex_mismatches'] == 0
    prose = results['prose']
    assert prose['environment'] in RAMBLING_ENVIRONMENTS
    assert prose['environment'].isascii() and prose['environment'].isprintable()
    assert {**prose, 'environment': full['environment']} == full
    assert results['chinese'] == {**full, 'environment': 'unknown scene'}
    assert results['refusal'] == {
        'environment': 'cannot assess the scene', 'action': 'stop',
        'waypoints': [{'dx': 0.0, 'dy': 0.0, 'dtheta': 0.0, 'confidence': 0.1}]}


@pytest.mark.parametrize('environment', RAMBLING_ENVIRONMENTS)
def test_rambling_environments_fit_the_regex(environment):
    answer = format_answer({**keyword_policy(AnswerRequest('turn left', [], '', {})),
                            'environment': environment})
    assert regex_accepts(NAV_REGEX, answer) and len(environment) <= 80


@pytest.mark.parametrize('fault', ['prose', 'chinese', 'refusal'])
def test_format_fault_under_another_regex_keeps_the_answer(srv, fault):
    """A regex the faulted answer would break: the decoder could only write the answer."""
    full = ask(srv)
    configure(srv, **{f'{fault}_rate': 1.0})
    regex = re.escape(full)
    content = ask(srv, response_format={'type': 'regex_schema', 'regex_schema': regex})
    assert content == full and stats(srv)['regex_mismatches'] == 0


def test_format_faults_on_an_answer_that_is_no_json():
    rng = random.Random(1)
    assert reformat_answer('prose', 'just words', 'json_object', None, rng) == 'just words'
    assert reformat_answer('chinese', 'just words', 'json_object', None, rng) == 'just words'
    assert '{' not in reformat_answer('chinese', 'just words', 'text', None, rng)
    assert 'just words' in reformat_answer('prose', 'just words', 'text', None, rng)
    assert json.loads(reformat_answer('refusal', 'x', 'json_schema', None, rng))['action'] \
        == 'stop'


# ------------------------------------------------------------------ latency tail

def test_latency_tail_multiplies_the_drawn_latency():
    config = ServerConfig(latency_min=0.3, latency_max=0.3, latency_tail_rate=1.0,
                          latency_tail_factor=(2.0, 2.0), seed=5)
    state = ServerState(config=config, initial_config=config)
    for _ in range(20):
        plan = state.draw()
        assert plan.tail_factor == 2.0 and plan.latency == pytest.approx(0.6)
    config = replace(config, latency_tail_factor=(1.5, 2.0), latency_min=0.1, latency_max=0.5)
    state = ServerState(config=config, initial_config=config)
    factors = [state.draw().tail_factor for _ in range(500)]
    assert all(1.5 <= f <= 2.0 for f in factors) and max(factors) - min(factors) > 0.4


def test_latency_tail_over_http_waits_longer(srv):
    configure(srv, latency_min=0.3, latency_max=0.3, latency_tail_rate=1.0,
              latency_tail_factor=[2.0, 2.0])
    started = time.monotonic()
    assert_contract(ask(srv))
    # A lower bound only: the tail makes it 0.6 s, never less, however busy the machine.
    assert time.monotonic() - started >= 0.55
    assert stats(srv)['by_fault']['latency_tail'] == 1


def test_latency_tail_changes_no_other_draw():
    """The tail draws from an RNG of its own: faults, latencies and sub-RNGs stay the same."""
    def plans(tail_rate: float) -> list:
        config = ServerConfig(latency_min=0.1, latency_max=1.0, garbage_rate=0.3,
                              prose_rate=0.2, latency_tail_rate=tail_rate, seed=11)
        state = ServerState(config=config, initial_config=config)
        out = []
        for _ in range(200):
            plan = state.draw()
            base = plan.latency / (plan.tail_factor or 1.0)
            out.append((plan.fault, round(base, 9), plan.rng.getrandbits(64)))
        return out

    assert plans(0.0) == plans(0.5) == plans(1.0)


# ------------------------------------------------------------------ frequencies and config

def test_fault_frequencies_match_their_rates():
    rates = {'error': 0.05, 'timeout': 0.03, 'garbage': 0.07, 'truncate': 0.1,
             'prose': 0.15, 'chinese': 0.1, 'refusal': 0.05}
    config = ServerConfig(**{f'{name}_rate': rate for name, rate in rates.items()},
                          latency_tail_rate=0.2, seed=1234)
    state = ServerState(config=config, initial_config=config)
    draws = 20000
    counts = collections.Counter()
    tail_by_fault = collections.Counter()
    for _ in range(draws):
        plan = state.draw()
        counts[plan.fault] += 1
        if plan.tail_factor is not None:
            counts['latency_tail'] += 1
            tail_by_fault[plan.fault] += 1
    # Seeded, so not flaky; the bound is about 4 standard deviations of the largest rate.
    for name, rate in {**rates, None: 1 - sum(rates.values()), 'latency_tail': 0.2}.items():
        assert counts[name] / draws == pytest.approx(rate, abs=0.012), name
    # The tail comes on top of any fault, at its own rate.
    assert tail_by_fault['prose'] / counts['prose'] == pytest.approx(0.2, abs=0.03)


def test_new_faults_repeat_with_the_same_seed():
    def run() -> list:
        config = ServerConfig(prose_rate=0.3, chinese_rate=0.3, refusal_rate=0.3,
                              latency_max=1.0, latency_tail_rate=0.5, seed=9)
        state = ServerState(config=config, initial_config=config)
        return [(p.fault, p.latency, p.tail_factor, p.rng.random())
                for p in (state.draw() for _ in range(100))]

    assert run() == run()


@pytest.mark.parametrize('changes', [
    {'prose_rate': 1.1}, {'chinese_rate': float('nan')}, {'refusal_rate': None},
    {'latency_tail_rate': -0.5}, {'latency_tail_factor': (1.0, float('inf'))},
    {'latency_tail_factor': (3.0, 2.0)}, {'latency_tail_factor': (1.0, 2.0, 3.0)},
    {'latency_tail_factor': (0.9, 2.0)},
])
def test_config_rejects_bad_new_fault_values(changes):
    (name,) = changes
    with pytest.raises(ValueError, match=name):
        ServerConfig(**changes)


def test_config_endpoint_changes_the_new_faults_at_run_time(srv):
    defaults = configure(srv)
    assert {k: defaults[k] for k in ('prose_rate', 'chinese_rate', 'refusal_rate',
                                     'latency_tail_rate', 'latency_tail_factor')} == {
        'prose_rate': 0.0, 'chinese_rate': 0.0, 'refusal_rate': 0.0,
        'latency_tail_rate': 0.0, 'latency_tail_factor': [1.5, 2.0]}
    assert json.loads(ask(srv))  # no fault yet
    config = configure(srv, refusal_rate=1.0, latency_tail_rate=0.25,
                       latency_tail_factor=[1, 3])
    assert config['refusal_rate'] == 1.0 and config['latency_tail_rate'] == 0.25
    assert config['latency_tail_factor'] == [1.0, 3.0]
    assert srv.app.state.vlm.config.latency_tail_factor == (1.0, 3.0)
    assert parse_answer(ask(srv)).method == 'failed'
    # A rejected change leaves the running config as it was.
    bad = httpx.post(f'{srv.root_url}/_test/config',
                     json={'prose_rate': 0.5, 'latency_tail_factor': [3, 1]}, timeout=5)
    assert bad.status_code == 400
    assert configure(srv)['prose_rate'] == 0.0
    configure(srv, refusal_rate=0.0, chinese_rate=1.0)
    assert not ask(srv).isascii()
    seen = stats(srv)
    assert (seen['by_fault']['refusal'], seen['by_fault']['chinese']) == (1, 1)
    httpx.post(f'{srv.root_url}/_test/reset', timeout=5).raise_for_status()
    assert configure(srv)['chinese_rate'] == 0.0


def test_cli_takes_the_new_fault_flags():
    args = _parse_args(['--prose-rate', '0.2', '--chinese-rate', '0.1', '--refusal-rate',
                        '0.05', '--latency-tail-rate', '0.3', '--latency-tail-factor', '2',
                        '4'])
    assert (args.config.prose_rate, args.config.chinese_rate, args.config.refusal_rate) == (
        0.2, 0.1, 0.05)
    assert args.config.latency_tail_rate == 0.3
    assert args.config.latency_tail_factor == (2.0, 4.0)
    assert _parse_args([]).config.latency_tail_factor == (1.5, 2.0)


def test_api_key_on_thread_server():
    config = ServerConfig(model_name=MODEL, api_key='secret')
    with serve_in_thread(config) as running:
        bad = openai.OpenAI(base_url=running.base_url, api_key='wrong', max_retries=0)
        with pytest.raises(openai.AuthenticationError) as excinfo:
            bad.chat.completions.create(model=MODEL, messages=messages('go'))
        assert excinfo.value.body == {'message': 'Unauthorized.', 'type': 'authentication_error',
                                      'code': 401, 'param': None, 'object': 'error'}
        assert httpx.get(f'{running.base_url}/models', timeout=5).status_code == 401
        good = openai.OpenAI(base_url=running.base_url, api_key='secret', max_retries=0)
        assert good.chat.completions.create(model=MODEL, messages=messages('stop')).choices
        # /health stays open, as in LMDeploy.
        assert httpx.get(f'{running.root_url}/health', timeout=5).status_code == 200


@contextlib.contextmanager
def cli_server(*args: str):
    """The server's command line as a child process, killed if a test leaves it running."""
    process = subprocess.Popen([sys.executable, '-m', 'vln_ros.sim.vlm_server', *args],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        process.stdout.close()
        process.stderr.close()


def test_cli_port_zero_startup_delay_and_clean_exit():
    with cli_server('--port', '0', '--model-name', MODEL, '--startup-delay', '1.5',
                    '--api-key', 'k', '--seed', '1') as process:
        line = read_line(process, timeout=15.0)
        prefix = 'vlm test server listening on '
        assert line.startswith(prefix), line
        base_url = line[len(prefix):].strip()
        assert base_url.startswith('http://127.0.0.1:') and base_url.endswith('/v1')
        root = base_url[:-len('/v1')]
        assert not base_url.endswith(':0/v1')

        health = httpx.get(f'{root}/health', timeout=5)
        assert (health.status_code, health.json()['status']) == (503, 'initializing')
        headers = {'Authorization': 'Bearer k'}
        models = httpx.get(f'{base_url}/models', headers=headers, timeout=5)
        assert models.status_code == 503
        assert models.json()['message'] == 'The inference engine is unavailable.'
        wait_for(lambda: httpx.get(f'{root}/health', timeout=5).status_code == 200,
                 timeout=10.0, what='healthy')
        assert httpx.get(f'{base_url}/models', timeout=5).status_code == 401
        api = openai.OpenAI(base_url=base_url, api_key='k', max_retries=0, timeout=10)
        assert [m.id for m in api.models.list().data] == [MODEL]

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_cli_exits_cleanly_on_sigint():
    with cli_server('--port', '0') as process:
        line = read_line(process, timeout=15.0)
        assert 'listening on http://127.0.0.1:' in line
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
