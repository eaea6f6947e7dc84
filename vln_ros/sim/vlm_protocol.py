"""The wire protocol of the test model server: what LMDeploy's ``api_server`` sends back.

A client must not be able to tell this server from LMDeploy 0.18 by protocol, so this
module holds LMDeploy's exact error messages, its flat OpenAI error objects, the usage
numbers of an answer and the shape of its SSE stream. Request parsing lives in
:mod:`vln_ros.sim.vlm_requests`; nothing here knows about faults or policies.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import math
import random
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse

# LMDeploy's messages (lmdeploy/serve/core/exceptions.py) so clients can match on them.
MSG_ENGINE_UNAVAILABLE = 'The inference engine is unavailable.'
MSG_INTERNAL_ERROR = 'An internal server error occurred.'
MSG_UNAUTHORIZED = 'Unauthorized.'
MSG_CONTEXT_TOO_LONG = 'The request exceeds the model context length.'
MSG_CLIENT_DISCONNECTED = 'Client disconnected'

# Token estimates, close enough for usage numbers and max_tokens truncation.
CHARS_PER_PROMPT_TOKEN = 4
CHARS_PER_COMPLETION_TOKEN = 3
TOKENS_PER_IMAGE = 300  # Qwen3-VL: one visual token per 32x32 px, 640x480 -> 300.


# --------------------------------------------------------------------------- errors

class ApiError(Exception):
    """A request failure rendered as LMDeploy's flat OpenAI error object."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_payload(status: int, message: str) -> dict:
    """Return LMDeploy's flat error object for an HTTP status and message."""
    # LMDeploy (serve/openai/errors.py) types: 401 auth, 404 not found, 5xx server.
    if status == 401:
        error_type = 'authentication_error'
    elif status == 404:
        error_type = 'not_found_error'
    elif status >= 500:
        error_type = 'server_error'
    else:
        error_type = 'invalid_request_error'
    return {'message': message, 'type': error_type, 'code': status, 'param': None,
            'object': 'error'}


def error_response(status: int, message: str) -> JSONResponse:
    """Return the flat error object with the matching HTTP status."""
    return JSONResponse(error_payload(status, message), status_code=status)


def engine_error_message(status: int) -> str:
    """The message LMDeploy gives an engine failure of this status (503 or 500)."""
    return MSG_ENGINE_UNAVAILABLE if status == 503 else MSG_INTERNAL_ERROR


# --------------------------------------------------------------------------- usage

def estimate_completion_tokens(text: str) -> int:
    """Estimate the tokens of generated text (about 3 characters each)."""
    return math.ceil(len(text) / CHARS_PER_COMPLETION_TOKEN)


def estimate_prompt_tokens(prompt_chars: int, image_count: int) -> int:
    """Estimate the tokens of a prompt: about 4 characters each, plus a fixed cost per image."""
    return math.ceil(prompt_chars / CHARS_PER_PROMPT_TOKEN) + TOKENS_PER_IMAGE * image_count


def usage(prompt_tokens: int, content: str, n: int = 1) -> dict:
    """The ``usage`` object of an answer with ``n`` choices of ``content``."""
    completion = estimate_completion_tokens(content) * n
    return {'prompt_tokens': prompt_tokens, 'total_tokens': prompt_tokens + completion,
            'completion_tokens': completion}


# --------------------------------------------------------------------------- answers

def completion_body(request_id: str, created: int, model: str, content: str,
                    finish_reason: str, n: int, prompt_tokens: int) -> dict:
    """A non-streamed ``chat.completion`` object with ``n`` identical choices."""
    choices = [{'index': i,
                'message': {'role': 'assistant', 'content': content,
                            'reasoning_content': None, 'tool_calls': None},
                'logprobs': None, 'finish_reason': finish_reason}
               for i in range(n)]
    return {'id': request_id, 'object': 'chat.completion', 'created': created,
            'model': model, 'choices': choices, 'usage': usage(prompt_tokens, content, n)}


def stream_chunk(request_id: str, created: int, model: str, delta: dict,
                 finish_reason: str | None = None, include_usage: bool = False) -> dict:
    """One ``chat.completion.chunk`` of choice 0; LMDeploy adds ``usage: null`` when asked."""
    choice: dict = {'index': 0, 'delta': delta}
    if finish_reason is not None:
        choice['finish_reason'] = finish_reason
    data = {'id': request_id, 'object': 'chat.completion.chunk', 'created': created,
            'model': model, 'choices': [choice]}
    if include_usage:
        data['usage'] = None
    return data


def usage_chunk(request_id: str, created: int, model: str, prompt_tokens: int,
                content: str) -> dict:
    """The last chunk of a stream with ``include_usage``: no choices, only the usage."""
    return {'id': request_id, 'object': 'chat.completion.chunk', 'created': created,
            'model': model, 'choices': [], 'usage': usage(prompt_tokens, content)}


SSE_DONE = 'data: [DONE]\n\n'


def sse(obj: Any) -> str:
    """One server-sent event carrying ``obj`` as JSON."""
    return f'data: {json.dumps(obj)}\n\n'


def split_for_stream(text: str, rng: random.Random) -> list[str]:
    """Cut text into the 2-6 character pieces a token stream delivers."""
    pieces = []
    start = 0
    while start < len(text):
        size = rng.randint(2, 6)
        pieces.append(text[start:start + size])
        start += size
    return pieces


class TrackedStream(StreamingResponse):
    """An SSE response that always reports its end, even when never iterated.

    A client can go away before the first byte; the in-flight and cancel counters must
    still come right, so the end is reported from ``__call__``, not from the generator.
    """

    def __init__(self, content: Any, on_close: Callable[[], None]) -> None:
        super().__init__(content, media_type='text/event-stream')
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Stream, then report the end whatever happened."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
