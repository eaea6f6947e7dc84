"""OpenAI-compatible test model server that speaks like LMDeploy's ``api_server``.

LMDeploy does not run on CPU, so the tests and the demo talk to this server instead.
It answers ``/health``, ``/v1/models`` and ``/v1/chat/completions`` with LMDeploy 0.18's
status codes, flat error objects and SSE streaming, so a client cannot tell the two
apart by protocol. The answer itself comes from a pluggable :data:`AnswerPolicy`
(by default :func:`keyword_policy`, which reads keywords of the instruction; the
simulator plugs in an oracle). Latency and faults are drawn per request from a seeded
RNG and can be changed at run time through the ``/_test/*`` control endpoints:
engine errors, hangs, garbage and truncated JSON, answers in another format (``prose``,
``chinese``, ``refusal``, shaped by the request's ``response_format``) and a latency
tail (``latency_tail_rate`` of the requests wait ``latency_tail_factor`` times longer).

This module assembles the app; each concern has a module of its own:

- :mod:`~vln_ros.sim.vlm_config`: :class:`ServerConfig` and its validation.
- :mod:`~vln_ros.sim.vlm_protocol`: LMDeploy's messages, error objects, usage, SSE.
- :mod:`~vln_ros.sim.vlm_requests`: request parsing and validation.
- :mod:`~vln_ros.sim.vlm_answers`: the policy interface and the keyword policy.
- :mod:`~vln_ros.sim.vlm_faults`: the per-request draw and the content faults;
  :mod:`~vln_ros.sim.vlm_format_faults`: the answers in another format.
- :mod:`~vln_ros.sim.vlm_chat`: one chat completion, plain or streamed.
- :mod:`~vln_ros.sim.vlm_test_controls`: the state, its counters and ``/_test/*``.
- :mod:`~vln_ros.sim.vlm_server_cli`: the command line.

Run it with ``python -m vln_ros.sim.vlm_server --port 0``: it prints one line
``vlm test server listening on http://HOST:PORT/v1`` once it accepts connections.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from dataclasses import dataclass
import sys
import threading
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
import uvicorn

from vln_ros.sim.vlm_answers import (  # noqa: F401 - re-exported, the server's public API
    ACTIONS,
    ENVIRONMENT_TEXT,
    AnswerPolicy,
    AnswerRequest,
    extract_instruction,
    format_answer,
    keyword_action,
    keyword_policy,
)
from vln_ros.sim.vlm_chat import chat_completion
from vln_ros.sim.vlm_config import ServerConfig
from vln_ros.sim.vlm_faults import (  # noqa: F401 - re-exported
    FAULTS,
    TIMEOUT_FAULT_S,
    make_garbage,
    truncate_answer,
)
from vln_ros.sim.vlm_protocol import (  # noqa: F401 - re-exported
    MSG_CLIENT_DISCONNECTED,
    MSG_CONTEXT_TOO_LONG,
    MSG_ENGINE_UNAVAILABLE,
    MSG_INTERNAL_ERROR,
    MSG_UNAUTHORIZED,
    ApiError,
    error_payload,
    error_response,
    estimate_completion_tokens,
)
from vln_ros.sim.vlm_requests import parse_chat_request  # noqa: F401 - re-exported
from vln_ros.sim.vlm_server_cli import main
from vln_ros.sim.vlm_test_controls import ServerState, add_test_routes
from vln_ros.tools.net import bind_socket, url_of

__all__ = [
    'ACTIONS', 'AnswerPolicy', 'AnswerRequest', 'ApiError', 'ENVIRONMENT_TEXT', 'FAULTS',
    'MSG_CLIENT_DISCONNECTED', 'MSG_CONTEXT_TOO_LONG', 'MSG_ENGINE_UNAVAILABLE',
    'MSG_INTERNAL_ERROR', 'MSG_UNAUTHORIZED', 'RunningServer', 'ServerConfig', 'ServerState',
    'TIMEOUT_FAULT_S', 'create_app', 'error_payload', 'error_response',
    'estimate_completion_tokens', 'extract_instruction', 'format_answer', 'keyword_action',
    'keyword_policy', 'main', 'make_garbage', 'parse_chat_request', 'serve_in_thread',
    'truncate_answer',
]


def create_app(config: ServerConfig | None = None,
               policy: AnswerPolicy = keyword_policy) -> FastAPI:
    """Build the FastAPI app of the test server; its state lives in ``app.state.vlm``."""
    config = config if config is not None else ServerConfig()
    state = ServerState(config=config, initial_config=config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        state.restart_clock(state.config.startup_delay)  # count from when it serves
        yield

    app = FastAPI(title='vln_ros VLM test server', lifespan=lifespan)
    app.state.vlm = state

    def unavailable() -> JSONResponse | None:
        if state.initializing():
            return error_response(503, MSG_ENGINE_UNAVAILABLE)
        return None

    def unauthorized(request: Request) -> JSONResponse | None:
        key = state.config.api_key
        if not key:
            return None
        scheme, _, token = request.headers.get('authorization', '').partition(' ')
        if scheme.lower() == 'bearer' and token == key:
            return None
        return error_response(401, MSG_UNAUTHORIZED)

    @app.get('/health')
    async def health() -> JSONResponse:
        """Report engine health like LMDeploy 0.14+."""
        if state.initializing():
            return JSONResponse({'status': 'initializing',
                                 'message': 'Engine health monitor is starting.'},
                                status_code=503)
        return JSONResponse({'status': 'healthy', 'message': 'Engine is healthy.'})

    @app.get('/v1/models')
    async def models(request: Request) -> JSONResponse:
        """List the one served model."""
        failure = unavailable() or unauthorized(request)
        if failure is not None:
            return failure
        name = state.config.model_name
        permission = {'id': f'modelperm-{state.started:x}',
                      'object': 'model_permission', 'created': state.started,
                      'allow_create_engine': False, 'allow_sampling': True,
                      'allow_logprobs': True, 'allow_search_indices': True,
                      'allow_view': True, 'allow_fine_tuning': False,
                      'organization': '*', 'group': None, 'is_blocking': False}
        return JSONResponse({'object': 'list', 'data': [
            {'id': name, 'object': 'model', 'created': state.started, 'owned_by': 'lmdeploy',
             'root': name, 'parent': None, 'permission': [permission]}]})

    @app.post('/v1/chat/completions')
    async def chat_completions(request: Request) -> Response:
        """Answer a chat completion like LMDeploy, with the configured latency and faults."""
        return await chat_completion(request, state, policy,
                                     unavailable() or unauthorized(request))

    add_test_routes(app, state)
    return app


# --------------------------------------------------------------------------- running it

@dataclass
class RunningServer:
    """A server started by :func:`serve_in_thread`."""

    base_url: str  # 'http://127.0.0.1:PORT/v1', what an OpenAI client takes
    root_url: str  # 'http://127.0.0.1:PORT', for /health and /_test/*
    app: FastAPI
    server: uvicorn.Server


def uvicorn_config(app: FastAPI, log_level: str) -> uvicorn.Config:
    """The uvicorn settings of both ways to run the server (thread and command line)."""
    # A short graceful shutdown: a hanging timeout fault must not hold the exit.
    return uvicorn.Config(app, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=1)


@contextlib.contextmanager
def serve_in_thread(config: ServerConfig | None = None,
                    policy: AnswerPolicy = keyword_policy,
                    host: str = '127.0.0.1', port: int = 0,
                    start_timeout: float = 10.0,
                    log_level: str = 'warning') -> Iterator[RunningServer]:
    """Run the server in a daemon thread for the ``with`` block (tests, demos)."""
    app = create_app(config, policy)
    sock = bind_socket(host, port)
    server = uvicorn.Server(uvicorn_config(app, log_level))
    thread = threading.Thread(target=server.run, kwargs={'sockets': [sock]},
                              name='vlm-test-server', daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError('vlm test server did not start')
            time.sleep(0.01)
        root = url_of(sock)
        yield RunningServer(base_url=f'{root}/v1', root_url=root, app=app, server=server)
    finally:
        server.should_exit = True
        thread.join(timeout=start_timeout)
        sock.close()


if __name__ == '__main__':
    sys.exit(main())
