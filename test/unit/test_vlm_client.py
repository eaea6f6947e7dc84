"""Tests of the async VLM client against a tiny real HTTP server on 127.0.0.1."""

import asyncio
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import select
import socket
import threading
import time

import pytest

from vln_ros.core.prompts import NAV_REGEX
from vln_ros.core.vlm_client import VlmClient, VlmConfig, VlmError, VlmReply

MESSAGES = [{'role': 'system', 'content': 'be brief'},
            {'role': 'user', 'content': [{'type': 'text', 'text': 'Instruction: go'}]}]
ANSWER = '{"environment": "hall", "action": "stop", "waypoints": []}'


def _completion(content=ANSWER, model='served-model'):
    return {'id': 'c1', 'object': 'chat.completion', 'created': 0, 'model': model,
            'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': content},
                         'finish_reason': 'stop'}],
            'usage': {'prompt_tokens': 345, 'completion_tokens': 21, 'total_tokens': 366}}


def _lmdeploy_error(status, message):
    """LMDeploy's flat error body."""
    return {'message': message, 'type': 'invalid_request_error', 'code': status,
            'param': None, 'object': 'error'}


class FakeServer:
    """OpenAI-compatible endpoints whose answers each test scripts."""

    def __init__(self):
        self.chat = deque()  # (status, body, delay) answers for POST /v1/chat/completions
        self.models = deque()  # model lists for successive GET /v1/models, last one repeats
        self.health = (200, {'status': 'healthy'})
        self.requests = []  # (method, path, json body or None, headers)
        self.aborted = threading.Event()  # a slow request saw its client go away
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def _send(self, status, body):
                raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _wait(self, delay):
                """Wait ``delay`` s, but notice a client that closes the connection."""
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    ready, _, _ = select.select([self.connection], [], [], 0.02)
                    if ready and self.connection.recv(1, socket.MSG_PEEK) == b'':
                        server.aborted.set()
                        return False
                return True

            def do_GET(self):
                with server.lock:
                    server.requests.append(('GET', self.path, None, dict(self.headers)))
                if self.path == '/v1/models':
                    with server.lock:
                        names = server.models.popleft() if len(server.models) > 1 else (
                            server.models[0] if server.models else ['served-model'])
                    self._send(200, {'object': 'list', 'data': [
                        {'id': n, 'object': 'model', 'created': 0, 'owned_by': 'lmdeploy'}
                        for n in names]})
                elif self.path == '/health':
                    self._send(*server.health)
                else:
                    self._send(404, {'detail': 'Not Found'})

            def do_POST(self):
                length = int(self.headers.get('Content-Length', 0))
                body = json.loads(self.rfile.read(length) or b'null')
                with server.lock:
                    server.requests.append(('POST', self.path, body, dict(self.headers)))
                    status, reply, delay = (server.chat.popleft() if server.chat
                                            else (200, _completion(), 0.0))
                if delay and not self._wait(delay):
                    return
                self._send(status, reply)

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f'http://127.0.0.1:{self.port}/v1'
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def posts(self):
        return [r for r in self.requests if r[0] == 'POST']

    def model_lists(self):
        return [r for r in self.requests if r[1] == '/v1/models']

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(2)


@pytest.fixture
def server():
    srv = FakeServer()
    yield srv
    srv.close()


def _config(server, **kwargs):
    base = {'base_url': server.base_url, 'timeout': 5.0, 'connect_timeout': 1.0,
            'backoff_initial': 0.01, 'backoff_max': 0.05}
    base.update(kwargs)
    return VlmConfig(**base)


def _run(client, coro_factory):
    """Run a coroutine that uses ``client`` and close the client on the same loop."""
    async def main():
        try:
            return await coro_factory()
        finally:
            await client.aclose()
    return asyncio.run(main())


def _complete(config):
    client = VlmClient(config)
    return _run(client, lambda: client.complete(MESSAGES))


def test_defaults_match_the_contract():
    cfg = VlmConfig()
    assert (cfg.base_url, cfg.model, cfg.guided, cfg.max_retries) == (
        'http://127.0.0.1:23333/v1', '', 'regex', 3)
    assert (cfg.temperature, cfg.top_p, cfg.top_k) == (0.7, 0.8, 20)


def test_complete_resolves_the_model_and_sends_the_request(server):
    reply = _complete(_config(server, max_pixels=76800))
    assert isinstance(reply, VlmReply)
    assert (reply.text, reply.model, reply.finish_reason) == (ANSWER, 'served-model', 'stop')
    assert (reply.prompt_tokens, reply.completion_tokens) == (345, 21)
    assert 0.0 <= reply.latency < 5.0
    (_, path, body, headers), = server.posts()
    assert path == '/v1/chat/completions'
    assert body['model'] == 'served-model' and body['messages'] == MESSAGES
    assert body['response_format'] == {'type': 'regex_schema', 'regex_schema': NAV_REGEX}
    assert (body['top_k'], body['repetition_penalty']) == (20, 1.05)
    assert (body['temperature'], body['top_p'], body['max_tokens']) == (0.7, 0.8, 384)
    assert body['mm_processor_kwargs'] == {'image': {'max_pixels': 76800}}
    assert {k.lower(): v for k, v in headers.items()}['authorization'] == 'Bearer none'
    assert len(server.model_lists()) == 1


def test_guided_modes_and_no_max_pixels(server):
    _complete(_config(server, guided='none', model='fixed'))
    _complete(_config(server, guided='json_schema', model='fixed'))
    first, second = (r[2] for r in server.posts())
    assert 'response_format' not in first and 'mm_processor_kwargs' not in first
    assert first['model'] == 'fixed' and not server.model_lists()
    assert second['response_format']['type'] == 'json_schema'
    assert second['response_format']['json_schema']['name'] == 'navigation'
    with pytest.raises(ValueError):
        VlmClient(_config(server, guided='xml'))


def test_model_name_is_cached(server):
    client = VlmClient(_config(server))

    async def twice():
        await client.complete(MESSAGES)
        await client.complete(MESSAGES)
        return await client.resolve_model()
    assert _run(client, twice) == 'served-model'
    assert len(server.model_lists()) == 1 and len(server.posts()) == 2


def test_retries_503_then_succeeds(server):
    error = _lmdeploy_error(503, 'The inference engine is unavailable.')
    server.chat.extend([(503, error, 0), (503, error, 0)])
    start = time.monotonic()
    reply = _complete(_config(server, max_retries=3))
    assert reply.text == ANSWER
    assert len(server.posts()) == 3
    assert time.monotonic() - start >= 0.01 * 0.5 + 0.02 * 0.5  # backed off in between


@pytest.mark.parametrize('status', [429, 502, 504])
def test_other_retryable_statuses(server, status):
    server.chat.append((status, _lmdeploy_error(status, 'busy'), 0))
    assert _complete(_config(server)).text == ANSWER
    assert len(server.posts()) == 2


def test_retries_are_bounded(server):
    error = _lmdeploy_error(503, 'The inference engine is unavailable.')
    server.chat.extend([(503, error, 0)] * 5)
    with pytest.raises(VlmError) as info:
        _complete(_config(server, max_retries=2))
    assert len(server.posts()) == 3
    err = info.value
    assert (err.kind, err.status_code, err.retryable) == ('http', 503, True)
    assert 'The inference engine is unavailable.' in str(err)


@pytest.mark.parametrize('status,message', [
    (400, 'context length 40960 exceeds session_len 32768'),
    (401, 'Unauthorized: invalid api key'),
    (500, 'internal error'),
])
def test_client_errors_are_not_retried_and_keep_the_server_message(server, status, message):
    server.chat.append((status, _lmdeploy_error(status, message), 0))
    with pytest.raises(VlmError) as info:
        _complete(_config(server))
    assert len(server.posts()) == 1
    err = info.value
    assert (err.kind, err.status_code, err.retryable) == ('http', status, False)
    assert message in str(err) and str(status) in str(err)


def test_nested_openai_error_shape(server):
    server.chat.append((400, {'error': {'message': 'bad image url', 'type': 'x', 'code': 400}},
                        0))
    with pytest.raises(VlmError, match='bad image url'):
        _complete(_config(server))


def test_plain_text_error_body(server):
    server.chat.append((400, 'plain failure text', 0))
    with pytest.raises(VlmError, match='plain failure text'):
        _complete(_config(server))


def test_unknown_model_clears_the_cached_name(server):
    server.models.extend([['old-name'], ['new-name']])
    server.chat.append((404, _lmdeploy_error(404, "The model 'old-name' does not exist."), 0))
    client = VlmClient(_config(server))

    async def scenario():
        with pytest.raises(VlmError) as info:
            await client.complete(MESSAGES)
        assert info.value.status_code == 404 and not info.value.retryable
        assert "The model 'old-name' does not exist." in str(info.value)
        return await client.complete(MESSAGES)
    reply = _run(client, scenario)
    assert reply.text == ANSWER
    assert [r[2]['model'] for r in server.posts()] == ['old-name', 'new-name']
    assert len(server.model_lists()) == 2


def test_empty_model_list_is_an_error(server):
    server.models.append([])
    client = VlmClient(_config(server, max_retries=0))
    with pytest.raises(VlmError) as info:
        _run(client, client.resolve_model)
    assert info.value.kind == 'bad_response'


def test_timeout_is_retryable_and_retried(server):
    server.chat.extend([(200, _completion(), 1.0), (200, _completion(), 1.0)])
    with pytest.raises(VlmError) as info:
        _complete(_config(server, timeout=0.2, max_retries=1))
    assert (info.value.kind, info.value.retryable) == ('timeout', True)
    assert len(server.posts()) == 2


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_connection_refused_is_a_retryable_connection_error():
    config = VlmConfig(base_url=f'http://127.0.0.1:{_free_port()}/v1', max_retries=1,
                       backoff_initial=0.01, connect_timeout=0.5, timeout=1.0)
    with pytest.raises(VlmError) as info:
        _complete(config)
    assert (info.value.kind, info.value.retryable, info.value.status_code) == (
        'connection', True, None)


def test_cancellation_propagates_at_once_and_aborts_the_request(server):
    server.chat.append((200, _completion(), 5.0))
    client = VlmClient(_config(server, model='m'))

    async def scenario():
        task = asyncio.ensure_future(client.complete(MESSAGES))
        deadline = time.monotonic() + 3.0
        while not server.posts() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert server.posts(), 'request never reached the server'
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started
    assert _run(client, scenario) < 0.5
    assert server.aborted.wait(2.0), 'server did not see the request aborted'


def test_cancellation_during_backoff(server):
    server.chat.extend([(503, _lmdeploy_error(503, 'down'), 0)] * 3)
    client = VlmClient(_config(server, model='m', backoff_initial=5.0, backoff_max=5.0))

    async def scenario():
        task = asyncio.ensure_future(client.complete(MESSAGES))
        deadline = time.monotonic() + 3.0
        while not server.posts() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    start = time.monotonic()
    _run(client, scenario)
    assert time.monotonic() - start < 2.0
    assert len(server.posts()) == 1


def test_backoff_grows_exponentially_with_jitter():
    client = VlmClient(VlmConfig(backoff_initial=0.5, backoff_max=8.0))
    for attempt, full in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 8.0]):
        delays = [client._backoff(attempt) for _ in range(50)]
        assert all(full * 0.5 <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jittered
    asyncio.run(client.aclose())


@pytest.mark.parametrize('status,body,expected', [
    (200, {'status': 'healthy'}, 'healthy'),
    (200, '', 'healthy'),  # LMDeploy before 0.14: empty 200
    (503, {'status': 'initializing'}, 'initializing'),
    (503, {'status': 'sleeping'}, 'unhealthy'),
    (503, {'status': 'unhealthy'}, 'unhealthy'),
    (500, 'boom', 'unhealthy'),
])
def test_health(server, status, body, expected):
    server.health = (status, body)
    client = VlmClient(_config(server))
    assert _run(client, client.health) == expected
    assert server.requests[-1][1] == '/health'


def test_health_unreachable():
    client = VlmClient(VlmConfig(base_url=f'http://127.0.0.1:{_free_port()}/v1/',
                                 connect_timeout=0.5))
    assert _run(client, client.health) == 'unreachable'
