"""One chat completion, from request to answer: the fault plan played out over time.

The handler validates the request, draws the plan (fault, latency, tail), asks the policy
at arrival (an oracle then answers for the moment the image was sent), shapes the content
and then waits out the latency, watching for the client to go away, as LMDeploy aborts
a session whose client disconnected. The answer goes out as one JSON object or as an SSE
stream whose headers leave at once, like LMDeploy's.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from vln_ros.sim.vlm_answers import AnswerPolicy, answer_text
from vln_ros.sim.vlm_faults import TIMEOUT_FAULT_S, Plan, shape_content
from vln_ros.sim.vlm_protocol import (
    MSG_CLIENT_DISCONNECTED,
    MSG_INTERNAL_ERROR,
    SSE_DONE,
    ApiError,
    TrackedStream,
    completion_body,
    engine_error_message,
    error_payload,
    error_response,
    split_for_stream,
    sse,
    stream_chunk,
    usage_chunk,
)
from vln_ros.sim.vlm_requests import (
    ChatRequest,
    parse_chat_request,
    read_json_body,
    regex_accepts,
)
from vln_ros.sim.vlm_test_controls import ServerState

_LOG = logging.getLogger(__name__)

# How often a sleeping request looks for a client disconnect.
_DISCONNECT_POLL_S = 0.05


async def pause(request: Request, seconds: float) -> bool:
    """Sleep, watching for a client disconnect; return False if the client went away."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        if await request.is_disconnected():
            return False
        remaining = deadline - loop.time()
        if remaining <= 0.0:
            return True
        await asyncio.sleep(min(remaining, _DISCONNECT_POLL_S))


async def chat_completion(request: Request, state: ServerState, policy: AnswerPolicy,
                          failure: Response | None) -> Response:
    """Answer a chat completion like LMDeploy, with the configured latency and faults.

    ``failure`` is the 503 (initializing) or 401 the app answers before any parsing, or None.
    """
    stats = state.stats
    stats['requests'] += 1
    try:
        if failure is not None:
            state.count_status(failure.status_code)
            return failure
        body = await read_json_body(request, state.config.max_body_bytes)
        chat = parse_chat_request(body, state.config.model_name)
    except ApiError as exc:
        state.count_status(exc.status)
        return error_response(exc.status, exc.message)
    except ClientDisconnect:  # a cancelled request: nobody is left to answer
        stats['cancelled'] += 1
        return Response(status_code=499)

    stats['last_instruction'] = chat.answer_request.instruction
    stats['instructions'].append(chat.answer_request.instruction)
    stats['response_formats'][chat.response_format] += 1
    plan = state.draw()
    state.count_plan(plan)
    # Ask the policy at arrival: an oracle then answers for the moment the image was sent.
    try:
        answer = await answer_text(policy, chat.answer_request)
    except Exception:  # a broken policy is the server's internal error, like a crash
        _LOG.exception('answer policy failed')
        state.count_status(500)
        return error_response(500, MSG_INTERNAL_ERROR)
    if chat.regex is not None and not regex_accepts(chat.regex, answer):
        stats['regex_mismatches'] += 1
    content, finish_reason = shape_content(answer, plan, chat.max_tokens,
                                           chat.response_format, chat.regex)
    request_id = f'chatcmpl-{plan.rng.getrandbits(64):016x}'
    if chat.stream:
        return _stream_answer(request, state, chat, plan, content, finish_reason, request_id)
    return await _plain_answer(request, state, chat, plan, content, finish_reason,
                               request_id)


async def _plain_answer(request: Request, state: ServerState, chat: ChatRequest,
                        plan: Plan, content: str, finish_reason: str,
                        request_id: str) -> JSONResponse:
    stats = state.stats
    stats['in_flight'] += 1
    try:
        if plan.fault == 'error':
            status = state.next_error_status()
            state.count_status(status)
            return error_response(status, engine_error_message(status))
        wait = TIMEOUT_FAULT_S if plan.fault == 'timeout' else plan.latency
        if not await pause(request, wait):
            # LMDeploy aborts the session; nobody reads this answer.
            stats['cancelled'] += 1
            return error_response(400, MSG_CLIENT_DISCONNECTED)
        body = completion_body(request_id, int(time.time()), chat.model, content,
                               finish_reason, chat.n, chat.prompt_tokens)
        stats['completed'] += 1
        state.count_status(200)
        return JSONResponse(body)
    except asyncio.CancelledError:
        stats['cancelled'] += 1
        raise
    finally:
        stats['in_flight'] -= 1


def _stream_answer(request: Request, state: ServerState, chat: ChatRequest, plan: Plan,
                   content: str, finish_reason: str, request_id: str) -> Response:
    stats = state.stats
    created = int(time.time())
    outcome = {'done': False}

    def chunk(delta: dict, finish: str | None = None) -> str:
        return sse(stream_chunk(request_id, created, chat.model, delta, finish,
                                chat.include_usage))

    async def events():
        # Headers are already out, as with LMDeploy: latency is time to first token
        # (40 %) plus token time spread over the content chunks (60 %).
        if not await pause(request, 0.4 * plan.latency):
            return
        yield chunk({'role': 'assistant', 'content': ''})
        if plan.fault == 'timeout' and not await pause(request, TIMEOUT_FAULT_S):
            return
        pieces = split_for_stream(content, plan.rng)
        if plan.fault == 'error':
            pieces = pieces[:len(pieces) // 3]
        per_piece = 0.6 * plan.latency / max(1, len(pieces))
        for piece in pieces:
            if not await pause(request, per_piece):
                return
            yield chunk({'content': piece})
        if plan.fault == 'error':
            # After the stream started, LMDeploy sends the error as an SSE event.
            status = state.next_error_status()
            state.count_status(status)
            outcome['done'] = True
            yield sse({'error': error_payload(status, engine_error_message(status))})
            yield SSE_DONE
            return
        yield chunk({'content': ''}, finish_reason)
        if chat.include_usage:
            yield sse(usage_chunk(request_id, created, chat.model, chat.prompt_tokens,
                                  content))
        stats['completed'] += 1
        state.count_status(200)
        outcome['done'] = True
        yield SSE_DONE

    def on_close() -> None:
        stats['in_flight'] -= 1
        if not outcome['done']:
            stats['cancelled'] += 1

    stats['in_flight'] += 1
    return TrackedStream(events(), on_close)
