"""OpenAI-compatible test model server that speaks like LMDeploy's ``api_server``.

LMDeploy does not run on CPU, so the tests and the demo talk to this server instead.
It answers ``/health``, ``/v1/models`` and ``/v1/chat/completions`` with LMDeploy 0.18's
status codes, flat error objects and SSE streaming, so a client cannot tell the two
apart by protocol. The answer itself comes from a pluggable :data:`AnswerPolicy`
(by default :func:`keyword_policy`, which reads keywords of the instruction; the
simulator plugs in an oracle). Latency and faults (engine errors, hangs, garbage,
truncated JSON) are drawn per request from a seeded RNG and can be changed at run
time through the ``/_test/*`` control endpoints.

Run it with ``python -m vln_ros.sim.vlm_server --port 0``: it prints one line
``vlm test server listening on http://HOST:PORT/v1`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
from collections.abc import Awaitable, Callable, Iterator
import contextlib
from dataclasses import asdict, dataclass, field, fields, replace
import inspect
import json
import logging
import math
import random
import re
import signal
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import unquote, urlparse

import cv2
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
import numpy as np
from starlette.requests import ClientDisconnect
import uvicorn

from vln_ros.tools.net import bind_socket, url_of
from vln_ros.tools.stop_signals import ignore_stop_signals

_LOG = logging.getLogger(__name__)

ACTIONS = ('forward', 'turn_left', 'turn_right', 'back', 'stop')

# LMDeploy's messages (lmdeploy/serve/core/exceptions.py) so clients can match on them.
MSG_ENGINE_UNAVAILABLE = 'The inference engine is unavailable.'
MSG_INTERNAL_ERROR = 'An internal server error occurred.'
MSG_UNAUTHORIZED = 'Unauthorized.'
MSG_CONTEXT_TOO_LONG = 'The request exceeds the model context length.'
MSG_CLIENT_DISCONNECTED = 'Client disconnected'

# A timeout fault hangs this long: far beyond any sane client timeout.
TIMEOUT_FAULT_S = 600.0
# How often a sleeping request looks for a client disconnect.
_DISCONNECT_POLL_S = 0.05
# Token estimates, close enough for usage numbers and max_tokens truncation.
_CHARS_PER_PROMPT_TOKEN = 4
_CHARS_PER_COMPLETION_TOKEN = 3
_TOKENS_PER_IMAGE = 300  # Qwen3-VL: one visual token per 32x32 px, 640x480 -> 300.
_INSTRUCTION_HISTORY = 50
_FAULTS = ('error', 'timeout', 'garbage', 'truncate')
_RESPONSE_FORMATS = ('text', 'json_object', 'json_schema', 'regex_schema')
_ROLES = ('system', 'user', 'assistant', 'tool')


@dataclass
class ServerConfig:
    """Behaviour of the test server; every field can be changed at run time."""

    model_name: str = 'Qwen3-VL-32B-Instruct'
    api_key: str = ''  # empty: no key required, like LMDeploy without --api-keys
    latency_min: float = 0.0  # s, each answer waits uniform(latency_min, latency_max)
    latency_max: float = 0.0
    startup_delay: float = 0.0  # s of 503 'initializing' after start
    error_rate: float = 0.0  # 503 engine unavailable / 500 internal error, alternating
    timeout_rate: float = 0.0  # hang for TIMEOUT_FAULT_S so the client timeout fires
    garbage_rate: float = 0.0  # random non-JSON text, sometimes with control characters
    truncate_rate: float = 0.0  # valid answer JSON cut in the middle
    seed: int = 0
    max_body_bytes: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        """Reject values the server could not honour."""
        if not isinstance(self.model_name, str) or not self.model_name:
            raise ValueError('model_name must be a non-empty string')
        if not isinstance(self.api_key, str):
            raise ValueError('api_key must be a string')
        for name in ('latency_min', 'latency_max', 'startup_delay'):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value < 0.0:
                raise ValueError(f'{name} must be a finite number >= 0, got {value!r}')
        if self.latency_min > self.latency_max:
            raise ValueError(
                f'latency_min ({self.latency_min}) must not exceed latency_max '
                f'({self.latency_max})')
        for name in ('error_rate', 'timeout_rate', 'garbage_rate', 'truncate_rate'):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f'{name} must be in [0, 1], got {value!r}')
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f'seed must be an integer, got {self.seed!r}')
        if (not isinstance(self.max_body_bytes, int) or isinstance(self.max_body_bytes, bool)
                or self.max_body_bytes < 1):
            raise ValueError(f'max_body_bytes must be a positive integer, '
                             f'got {self.max_body_bytes!r}')


@dataclass
class AnswerRequest:
    """What a policy sees of one chat request."""

    instruction: str  # text after the last 'Instruction:' line prefix ('' when absent)
    images: list[bytes]  # decoded bytes of the data: (and file:) image URLs, in order
    text: str  # all user text parts joined by newlines
    body: dict  # the raw request body


AnswerPolicy = Callable[[AnswerRequest], 'dict | str | Awaitable[dict | str]']


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --------------------------------------------------------------------------- answers

def format_answer(obj: Any) -> str:
    """Serialise an answer in the contract's compact JSON: ', ' and ': ', 2-decimal numbers.

    Equivalent to ``json.dumps(obj, separators=(', ', ': '))`` except that every number
    is written with two decimals (``0.30``, never ``0.3``), as the prompt asks the model.
    """
    if isinstance(obj, dict):
        items = (f'{json.dumps(str(k))}: {format_answer(v)}' for k, v in obj.items())
        return '{' + ', '.join(items) + '}'
    if isinstance(obj, list | tuple):
        return '[' + ', '.join(format_answer(v) for v in obj) + ']'
    if isinstance(obj, bool) or obj is None:
        return json.dumps(obj)
    if isinstance(obj, int | float):
        text = f'{float(obj):.2f}'
        return '0.00' if text == '-0.00' else text  # no negative zero in answers
    return json.dumps(obj)


def _waypoint(dx: float, dy: float, dtheta: float, confidence: float) -> dict:
    return {'dx': dx, 'dy': dy, 'dtheta': dtheta, 'confidence': confidence}


# Canned plans per action: poses relative to the base frame at capture time, further
# along the path for later waypoints, all inside the contract's ranges.
_PLANS = {
    'forward': [_waypoint(0.30, 0.0, 0.0, 0.90), _waypoint(0.60, 0.0, 0.0, 0.85),
                _waypoint(0.90, 0.0, 0.0, 0.80)],
    'turn_left': [_waypoint(0.20, 0.05, 0.25, 0.85), _waypoint(0.35, 0.20, 0.50, 0.80)],
    'turn_right': [_waypoint(0.20, -0.05, -0.25, 0.85), _waypoint(0.35, -0.20, -0.50, 0.80)],
    # dx is 0..1 in the contract, so 'back' carries no reverse waypoint: the action says it.
    'back': [_waypoint(0.0, 0.0, 0.0, 0.80)],
    'stop': [_waypoint(0.0, 0.0, 0.0, 0.95)],
}
_UNSURE_PLAN = [_waypoint(0.20, 0.0, 0.0, 0.50), _waypoint(0.40, 0.0, 0.0, 0.45)]

# English words match whole words; Chinese keywords match anywhere.
_KEYWORDS = (
    ('stop', ('stop', 'halt', '停')),
    ('back', ('back', 'backward', 'backwards', 'reverse', '后退')),
    ('turn_left', ('left', '左')),
    ('turn_right', ('right', '右')),
    ('forward', ('forward', 'forwards', 'ahead', 'straight', '前进')),
)
_KEYWORD_PATTERNS = tuple(
    (action, re.compile('|'.join(
        rf'\b{w}\b' if w.isascii() else re.escape(w) for w in words), re.IGNORECASE))
    for action, words in _KEYWORDS)

ENVIRONMENT_TEXT = 'a corridor seen by the test server'


def keyword_action(instruction: str) -> str | None:
    """Return the action whose keyword comes first in the instruction, or None."""
    best: tuple[int, int, str] | None = None
    for rank, (action, pattern) in enumerate(_KEYWORD_PATTERNS):
        match = pattern.search(instruction)
        if match and (best is None or (match.start(), rank) < best[:2]):
            best = (match.start(), rank, action)
    return best[2] if best else None


def keyword_policy(req: AnswerRequest) -> dict:
    """Answer the contract JSON from the first action keyword of the instruction.

    forward/前进 -> forward with 3 waypoints, left/左 -> turn_left, right/右 -> turn_right,
    stop/停 -> stop, back/后退 -> back; no keyword -> forward with low confidence.
    """
    action = keyword_action(req.instruction)
    plan = _PLANS[action] if action else _UNSURE_PLAN
    return {'environment': ENVIRONMENT_TEXT, 'action': action or 'forward',
            'waypoints': [dict(w) for w in plan]}


def extract_instruction(text: str) -> str:
    """Return the text after the last line starting with 'Instruction:' ('' if none)."""
    found = ''
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith('Instruction:'):
            found = stripped[len('Instruction:'):].strip()
    return found


_GARBAGE_SYLLABLES = ('ka', 'lo', 'mi', 'zu', 're', 'tan', 'vo', 'ph', 'qe', 'xi', 'dor',
                      'ul', 'sy', 'bo', 'ga')


def make_garbage(rng: random.Random) -> str:
    """Return random text that no JSON parser accepts, lenient or not.

    Mimics what a model without working guided decoding produced on the GPU check:
    babble, unterminated strings with raw control characters, runs of whitespace.
    It never contains an action keyword, so a text fallback cannot read a command in it.
    """
    while True:
        words = [''.join(rng.choice(_GARBAGE_SYLLABLES) for _ in range(rng.randint(1, 3)))
                 for _ in range(rng.randint(4, 12))]
        kind = rng.randrange(3)
        if kind == 0:
            text = ' '.join(words) + rng.choice(('.', ' ...', ' :'))
        elif kind == 1:
            text = ('{"environment": "' + '\x08'.join(words[:2]) + '\x1b[0m '
                    + ' '.join(words[2:]) + rng.choice(('\r\n\t', '\t\t', '\n \n')))
        else:
            text = '\n\t '.join(words) + ' }{ ,, "' + rng.choice(words)
        try:
            json.loads(text, strict=False)
        except ValueError:
            return text


def truncate_answer(text: str, rng: random.Random) -> str:
    """Cut a JSON answer somewhere in its middle half."""
    if len(text) < 2:
        return ''
    cut = rng.randint(max(1, len(text) // 4), max(1, (3 * len(text)) // 4))
    return text[:cut]


def estimate_completion_tokens(text: str) -> int:
    """Estimate the tokens of generated text (about 3 characters each)."""
    return math.ceil(len(text) / _CHARS_PER_COMPLETION_TOKEN)


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


# --------------------------------------------------------------------------- requests

@dataclass
class _ChatRequest:
    """The parts of a validated chat request the server needs."""

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    n: int
    response_format: str
    regex: str | None
    answer_request: AnswerRequest
    prompt_tokens: int


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_type(body: dict, key: str, kinds: tuple[type, ...], what: str) -> Any:
    """Return body[key] when absent/None or of one of ``kinds``, else raise 400."""
    value = body.get(key)
    if value is None:
        return None
    is_bool = isinstance(value, bool)
    if (is_bool and bool not in kinds) or not isinstance(value, kinds):
        raise ApiError(400, f'{key}: Input should be a valid {what}')
    return value


def _decode_data_url(url: str) -> bytes:
    """Decode a ``data:image/...;base64,...`` URL into image bytes (400 if not possible)."""
    header, sep, payload = url.partition(',')
    if not sep or not header.startswith('data:image/') or not header.endswith(';base64'):
        raise ApiError(400, 'Failed to load image: a data URL must look like '
                            '"data:image/<type>;base64,<data>".')
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f'Failed to load image: invalid base64 data ({exc}).') from exc


def _check_image_bytes(data: bytes, source: str) -> bytes:
    # LMDeploy decodes every image before inference; undecodable bytes are a 400.
    array = np.frombuffer(data, np.uint8)
    if array.size == 0 or cv2.imdecode(array, cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
        raise ApiError(400, f'Failed to load image from {source}: not a decodable image.')
    return data


def _load_image(url: Any) -> bytes | None:
    """Return the bytes of an image URL; None for http(s) URLs, which are not fetched."""
    if not isinstance(url, str) or not url:
        raise ApiError(400, 'image_url.url: Input should be a valid string')
    if url.startswith('data:'):
        return _check_image_bytes(_decode_data_url(url), 'data URL')
    parsed = urlparse(url)
    if parsed.scheme in ('http', 'https') and parsed.netloc:
        return None  # accepted like LMDeploy; a test server has nothing to fetch it from
    if parsed.scheme == 'file':
        try:
            with open(unquote(parsed.path), 'rb') as stream:
                data = stream.read()
        except OSError as exc:
            raise ApiError(400, f'Failed to load image from {url}: {exc.strerror}.') from exc
        return _check_image_bytes(data, url)
    raise ApiError(400, f'Failed to load image: unsupported image URL {url[:40]!r}; use a '
                        'data:image/...;base64 URL, http(s):// or file://.')


def _parse_messages(messages: Any) -> tuple[list[str], list[str], list[bytes], int]:
    """Validate messages; return (user texts, all texts, decoded images, image count)."""
    if isinstance(messages, str):
        return [messages], [messages], [], 0
    if not isinstance(messages, list):
        raise ApiError(400, 'messages: Input should be a valid string or list')
    if not messages:
        raise ApiError(400, 'messages: List should have at least 1 item')
    user_texts: list[str] = []
    all_texts: list[str] = []
    images: list[bytes] = []
    image_count = 0
    for index, message in enumerate(messages):
        where = f'messages.{index}'
        if not isinstance(message, dict):
            raise ApiError(400, f'{where}: Input should be a valid dictionary')
        role = message.get('role')
        if role not in _ROLES:
            raise ApiError(400, f'{where}.role: Input should be one of {", ".join(_ROLES)}')
        content = message.get('content')
        if content is None and role in ('assistant', 'tool'):
            continue
        if isinstance(content, str):
            parts: list[Any] = [{'type': 'text', 'text': content}]
        elif isinstance(content, list):
            parts = content
        else:
            raise ApiError(400, f'{where}.content: Input should be a valid string or list')
        for part_index, part in enumerate(parts):
            part_where = f'{where}.content.{part_index}'
            if not isinstance(part, dict):
                raise ApiError(400, f'{part_where}: Input should be a valid dictionary')
            kind = part.get('type')
            if kind == 'text':
                text = part.get('text')
                if not isinstance(text, str):
                    raise ApiError(400, f'{part_where}.text: Input should be a valid string')
                all_texts.append(text)
                if role == 'user':
                    user_texts.append(text)
            elif kind == 'image_url':
                spec = part.get('image_url')
                url = spec.get('url') if isinstance(spec, dict) else spec
                data = _load_image(url)
                image_count += 1
                if data is not None:
                    images.append(data)
            else:
                raise ApiError(400, f'{part_where}.type: unsupported content part type '
                                    f'{kind!r}; expected text or image_url')
    return user_texts, all_texts, images, image_count


def _parse_response_format(value: Any) -> tuple[str, str | None]:
    if value is None:
        return 'text', None
    if not isinstance(value, dict):
        raise ApiError(400, 'response_format: Input should be a valid dictionary')
    kind = value.get('type')
    if kind not in _RESPONSE_FORMATS:
        raise ApiError(400, 'response_format.type: Input should be '
                            + ', '.join(repr(k) for k in _RESPONSE_FORMATS))
    if kind == 'json_schema':
        spec = value.get('json_schema')
        if not isinstance(spec, dict) or not isinstance(spec.get('schema', {}), dict):
            raise ApiError(400, 'response_format.json_schema: Input should be a valid '
                                'dictionary with a "schema" object')
    if kind == 'regex_schema':
        regex = value.get('regex_schema')
        if not isinstance(regex, str) or not regex:
            raise ApiError(400, 'response_format.regex_schema: Input should be a valid string')
        return kind, regex
    return kind, None


def parse_chat_request(body: Any, model_name: str) -> _ChatRequest:
    """Validate a chat completion body in LMDeploy's order; raise ApiError on failure."""
    if not isinstance(body, dict):
        raise ApiError(400, 'Input should be a valid dictionary or object to extract fields '
                            'from')
    # Schema checks first (pydantic in LMDeploy), then the model, then sampling values.
    if 'model' not in body:
        raise ApiError(400, 'model: Field required')
    if 'messages' not in body:
        raise ApiError(400, 'messages: Field required')
    model = _check_type(body, 'model', (str,), 'string')
    stream = bool(_check_type(body, 'stream', (bool,), 'boolean'))
    stream_options = _check_type(body, 'stream_options', (dict,), 'dictionary')
    n = _check_type(body, 'n', (int,), 'integer')
    max_tokens = _check_type(body, 'max_tokens', (int,), 'integer')
    max_completion = _check_type(body, 'max_completion_tokens', (int,), 'integer')
    temperature = _check_type(body, 'temperature', (int, float), 'number')
    top_p = _check_type(body, 'top_p', (int, float), 'number')
    top_k = _check_type(body, 'top_k', (int,), 'integer')
    logprobs = _check_type(body, 'logprobs', (bool,), 'boolean')
    top_logprobs = _check_type(body, 'top_logprobs', (int,), 'integer')
    for key in ('repetition_penalty', 'min_p'):
        _check_type(body, key, (int, float), 'number')
    for key in ('ignore_eos', 'skip_special_tokens'):
        _check_type(body, key, (bool,), 'boolean')
    _check_type(body, 'mm_processor_kwargs', (dict,), 'dictionary')
    _check_type(body, 'stop', (str, list), 'string or list')
    _check_type(body, 'seed', (int,), 'integer')

    if model != model_name:
        raise ApiError(404, f'The model {model!r} does not exist.')
    top_logprobs = top_logprobs or 0
    if logprobs or top_logprobs > 0:
        # LMDeploy started without --logprobs-mode, as the project runs it.
        raise ApiError(400, f'Logprobs({logprobs})/top_logprobs({top_logprobs}) requested but '
                            'not enabled logprobs_mode in engine configuration')
    n = 1 if n is None else n
    if n <= 0:
        raise ApiError(400, f'The n {n!r} must be a positive int.')
    if top_p is not None and not 0 < top_p <= 1:
        raise ApiError(400, f'The top_p {top_p!r} must be in (0, 1].')
    if top_k is not None and top_k < 0:
        raise ApiError(400, f'The top_k {top_k!r} cannot be a negative integer.')
    if temperature is not None and not 0 <= temperature <= 2:
        raise ApiError(400, f'The temperature {temperature!r} must be in [0, 2]')
    response_format, regex = _parse_response_format(body.get('response_format'))

    user_texts, all_texts, images, image_count = _parse_messages(body['messages'])
    limit = max_completion if max_completion is not None else max_tokens
    if limit is not None and limit < 1:
        raise ApiError(400, f'max_new_tokens must be at least 1, got {limit}.')
    text = '\n'.join(user_texts)
    prompt_chars = sum(len(t) for t in all_texts)
    return _ChatRequest(
        model=model, stream=stream,
        include_usage=bool(stream_options and stream_options.get('include_usage')),
        max_tokens=limit, n=n, response_format=response_format, regex=regex,
        answer_request=AnswerRequest(instruction=extract_instruction(text), images=images,
                                     text=text, body=body),
        prompt_tokens=math.ceil(prompt_chars / _CHARS_PER_PROMPT_TOKEN)
        + _TOKENS_PER_IMAGE * image_count)


# --------------------------------------------------------------------------- state

def _new_stats() -> dict:
    return {'requests': 0, 'completed': 0, 'cancelled': 0, 'errors': 0,
            'by_fault': {name: 0 for name in _FAULTS},
            'by_status': {},
            'response_formats': {name: 0 for name in _RESPONSE_FORMATS},
            'regex_mismatches': 0,
            'last_instruction': None,
            'instructions': collections.deque(maxlen=_INSTRUCTION_HISTORY),
            'in_flight': 0}


@dataclass
class _Plan:
    """The per-request draw: which fault, how long to wait, and an RNG of its own."""

    fault: str | None
    latency: float
    rng: random.Random


@dataclass
class ServerState:
    """Mutable state of one app: config, seeded RNG and counters (event-loop thread only)."""

    config: ServerConfig
    initial_config: ServerConfig
    rng: random.Random = field(default_factory=random.Random)
    stats: dict = field(default_factory=_new_stats)
    ready_at: float = 0.0  # time.monotonic() when the startup delay ends
    started: int = field(default_factory=lambda: int(time.time()))
    error_count: int = 0  # alternates error faults between 503 and 500

    def __post_init__(self) -> None:
        """Seed the RNG and start the startup clock."""
        self.rng.seed(self.config.seed)
        self.restart_clock(self.config.startup_delay)

    def restart_clock(self, delay: float) -> None:
        """Act as an initializing server for ``delay`` seconds from now."""
        self.ready_at = time.monotonic() + delay

    def initializing(self) -> bool:
        """Return True while the simulated engine is still starting."""
        return time.monotonic() < self.ready_at

    def draw(self) -> _Plan:
        """Draw fault, latency and a sub-RNG: always three draws, so runs repeat."""
        cfg = self.config
        fault_draw = self.rng.random()
        latency_draw = self.rng.random()
        sub_rng = random.Random(self.rng.getrandbits(64))
        fault = None
        edge = 0.0
        for name in _FAULTS:
            edge += getattr(cfg, f'{name}_rate')
            if fault_draw < edge:
                fault = name
                break
        latency = cfg.latency_min + (cfg.latency_max - cfg.latency_min) * latency_draw
        return _Plan(fault=fault, latency=latency, rng=sub_rng)

    def next_error_status(self) -> int:
        """Return 503 and 500 in turn for error faults."""
        self.error_count += 1
        return 503 if self.error_count % 2 else 500

    def count_status(self, status: int) -> None:
        """Count an answered HTTP status; 4xx/5xx also count as errors."""
        by_status = self.stats['by_status']
        by_status[str(status)] = by_status.get(str(status), 0) + 1
        if status >= 400:
            self.stats['errors'] += 1

    def snapshot(self) -> dict:
        """Return the counters as JSON-ready data."""
        stats = dict(self.stats)
        stats['by_fault'] = dict(stats['by_fault'])
        stats['by_status'] = dict(stats['by_status'])
        stats['response_formats'] = dict(stats['response_formats'])
        stats['instructions'] = list(stats['instructions'])
        return stats


async def _pause(request: Request, seconds: float) -> bool:
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


def _split_for_stream(text: str, rng: random.Random) -> list[str]:
    pieces = []
    start = 0
    while start < len(text):
        size = rng.randint(2, 6)
        pieces.append(text[start:start + size])
        start += size
    return pieces


class _TrackedStream(StreamingResponse):
    """A streaming response that always reports its end, even when never iterated."""

    def __init__(self, content: Any, on_close: Callable[[], None]) -> None:
        super().__init__(content, media_type='text/event-stream')
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Stream, then report the end whatever happened."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def _sse(obj: Any) -> str:
    return f'data: {json.dumps(obj)}\n\n'


# --------------------------------------------------------------------------- the app

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
        stats = state.stats
        stats['requests'] += 1
        try:
            failure = unavailable() or unauthorized(request)
            if failure is not None:
                state.count_status(failure.status_code)
                return failure
            body = await _read_json_body(request, state.config.max_body_bytes)
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
        if plan.fault:
            stats['by_fault'][plan.fault] += 1
        # Ask the policy at arrival: an oracle then answers for the moment the image was sent.
        try:
            answer = await _answer_text(policy, chat.answer_request)
        except Exception:  # a broken policy is the server's internal error, like a crash
            _LOG.exception('answer policy failed')
            state.count_status(500)
            return error_response(500, MSG_INTERNAL_ERROR)
        if chat.regex is not None and not _regex_accepts(chat.regex, answer):
            stats['regex_mismatches'] += 1
        content, finish_reason = _shape_content(answer, plan, chat.max_tokens)
        request_id = f'chatcmpl-{plan.rng.getrandbits(64):016x}'
        if chat.stream:
            return _stream_answer(request, state, chat, plan, content, finish_reason,
                                  request_id)
        return await _plain_answer(request, state, chat, plan, content, finish_reason,
                                   request_id)

    @app.get('/_test/stats')
    async def test_stats() -> JSONResponse:
        """Return the request counters (test control, not part of LMDeploy)."""
        return JSONResponse(state.snapshot())

    @app.post('/_test/config')
    async def test_config(request: Request) -> JSONResponse:
        """Change ServerConfig fields at run time; a new startup_delay restarts the clock."""
        try:
            changes = await request.json()
        except ValueError:
            return error_response(400, 'Body must be a JSON object of ServerConfig fields.')
        if not isinstance(changes, dict):
            return error_response(400, 'Body must be a JSON object of ServerConfig fields.')
        known = {f.name for f in fields(ServerConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            return error_response(400, f'Unknown ServerConfig fields: {", ".join(unknown)}')
        try:
            new_config = replace(state.config, **changes)
        except (TypeError, ValueError) as exc:
            return error_response(400, str(exc))
        state.config = new_config
        if 'seed' in changes:
            state.rng.seed(new_config.seed)
        if 'startup_delay' in changes:
            state.restart_clock(new_config.startup_delay)
        return JSONResponse({'config': asdict(new_config)})

    @app.post('/_test/reset')
    async def test_reset() -> JSONResponse:
        """Zero the counters, restore the initial config and reseed the RNG."""
        state.config = state.initial_config
        state.stats = _new_stats()
        state.rng.seed(state.config.seed)
        state.error_count = 0
        return JSONResponse({'config': asdict(state.config)})

    return app


async def _read_json_body(request: Request, max_bytes: int) -> Any:
    """Read and decode a JSON body, refusing bodies over ``max_bytes`` like a long context."""
    content_type = request.headers.get('content-type', '').split(';', 1)[0].strip().lower()
    if content_type != 'application/json':
        raise ApiError(400, "Unsupported Media Type: Only 'application/json' is allowed")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= max_bytes:
            chunks.append(chunk)
    if size > max_bytes:
        # Drained, not kept: the client gets the 400 instead of a broken pipe.
        raise ApiError(400, MSG_CONTEXT_TOO_LONG)
    raw = b''.join(chunks)
    try:
        return json.loads(raw)
    except ValueError as exc:
        position = getattr(exc, 'pos', 0)
        raise ApiError(400, f'{position}: JSON decode error') from exc


async def _answer_text(policy: AnswerPolicy, req: AnswerRequest) -> str:
    result = policy(req)
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        return format_answer(result)
    raise TypeError(f'answer policy returned {_type_name(result)}, expected dict or str')


def _regex_accepts(regex: str, text: str) -> bool:
    try:
        return re.fullmatch(regex, text, re.DOTALL) is not None
    except re.error:
        return False


def _shape_content(answer: str, plan: _Plan, max_tokens: int | None) -> tuple[str, str]:
    """Apply the garbage/truncate fault and max_tokens; return (content, finish_reason)."""
    content, finish_reason = answer, 'stop'
    if plan.fault == 'garbage':
        content = make_garbage(plan.rng)
    elif plan.fault == 'truncate':
        # Only running out of tokens cuts an LMDeploy answer, so say 'length'.
        content, finish_reason = truncate_answer(answer, plan.rng), 'length'
    if max_tokens is not None and estimate_completion_tokens(content) > max_tokens:
        content = content[:max_tokens * _CHARS_PER_COMPLETION_TOKEN]
        finish_reason = 'length'
    return content, finish_reason


def _usage(prompt_tokens: int, content: str, n: int = 1) -> dict:
    completion = estimate_completion_tokens(content) * n
    return {'prompt_tokens': prompt_tokens, 'total_tokens': prompt_tokens + completion,
            'completion_tokens': completion}


async def _plain_answer(request: Request, state: ServerState, chat: _ChatRequest,
                        plan: _Plan, content: str, finish_reason: str,
                        request_id: str) -> JSONResponse:
    stats = state.stats
    stats['in_flight'] += 1
    try:
        if plan.fault == 'error':
            status = state.next_error_status()
            state.count_status(status)
            return error_response(status, MSG_ENGINE_UNAVAILABLE if status == 503
                                  else MSG_INTERNAL_ERROR)
        wait = TIMEOUT_FAULT_S if plan.fault == 'timeout' else plan.latency
        if not await _pause(request, wait):
            # LMDeploy aborts the session; nobody reads this answer.
            stats['cancelled'] += 1
            return error_response(400, MSG_CLIENT_DISCONNECTED)
        created = int(time.time())
        choices = [{'index': i,
                    'message': {'role': 'assistant', 'content': content,
                                'reasoning_content': None, 'tool_calls': None},
                    'logprobs': None, 'finish_reason': finish_reason}
                   for i in range(chat.n)]
        stats['completed'] += 1
        state.count_status(200)
        return JSONResponse({'id': request_id, 'object': 'chat.completion',
                             'created': created, 'model': chat.model, 'choices': choices,
                             'usage': _usage(chat.prompt_tokens, content, chat.n)})
    except asyncio.CancelledError:
        stats['cancelled'] += 1
        raise
    finally:
        stats['in_flight'] -= 1


def _stream_answer(request: Request, state: ServerState, chat: _ChatRequest, plan: _Plan,
                   content: str, finish_reason: str, request_id: str) -> Response:
    stats = state.stats
    created = int(time.time())
    outcome = {'done': False}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        choice: dict = {'index': 0, 'delta': delta}
        if finish is not None:
            choice['finish_reason'] = finish
        data = {'id': request_id, 'object': 'chat.completion.chunk', 'created': created,
                'model': chat.model, 'choices': [choice]}
        if chat.include_usage:
            data['usage'] = None
        return data

    async def events():
        # Headers are already out, as with LMDeploy: latency is time to first token
        # (40 %) plus token time spread over the content chunks (60 %).
        if not await _pause(request, 0.4 * plan.latency):
            return
        yield _sse(chunk({'role': 'assistant', 'content': ''}))
        if plan.fault == 'timeout' and not await _pause(request, TIMEOUT_FAULT_S):
            return
        pieces = _split_for_stream(content, plan.rng)
        if plan.fault == 'error':
            pieces = pieces[:len(pieces) // 3]
        per_piece = 0.6 * plan.latency / max(1, len(pieces))
        for piece in pieces:
            if not await _pause(request, per_piece):
                return
            yield _sse(chunk({'content': piece}))
        if plan.fault == 'error':
            # After the stream started, LMDeploy sends the error as an SSE event.
            status = state.next_error_status()
            message = MSG_ENGINE_UNAVAILABLE if status == 503 else MSG_INTERNAL_ERROR
            state.count_status(status)
            outcome['done'] = True
            yield _sse({'error': error_payload(status, message)})
            yield 'data: [DONE]\n\n'
            return
        yield _sse(chunk({'content': ''}, finish_reason))
        if chat.include_usage:
            yield _sse({'id': request_id, 'object': 'chat.completion.chunk',
                        'created': created, 'model': chat.model, 'choices': [],
                        'usage': _usage(chat.prompt_tokens, content)})
        stats['completed'] += 1
        state.count_status(200)
        outcome['done'] = True
        yield 'data: [DONE]\n\n'

    def on_close() -> None:
        stats['in_flight'] -= 1
        if not outcome['done']:
            stats['cancelled'] += 1

    stats['in_flight'] += 1
    return _TrackedStream(events(), on_close)


# --------------------------------------------------------------------------- running it

@dataclass
class RunningServer:
    """A server started by :func:`serve_in_thread`."""

    base_url: str  # 'http://127.0.0.1:PORT/v1', what an OpenAI client takes
    root_url: str  # 'http://127.0.0.1:PORT', for /health and /_test/*
    app: FastAPI
    server: uvicorn.Server


def _uvicorn_config(app: FastAPI, log_level: str) -> uvicorn.Config:
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
    server = uvicorn.Server(_uvicorn_config(app, log_level))
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


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m vln_ros.sim.vlm_server',
        description='OpenAI-compatible VLM test server that behaves like LMDeploy.')
    defaults = ServerConfig()
    parser.add_argument('--host', default='127.0.0.1', help='bind address (127.0.0.1)')
    parser.add_argument('--port', type=int, default=23333, help='port, 0 picks a free one')
    parser.add_argument('--model-name', default=defaults.model_name,
                        help='name listed by /v1/models')
    parser.add_argument('--latency', type=float, nargs=2, metavar=('MIN', 'MAX'),
                        default=(0.0, 0.0), help='answer latency range in seconds')
    parser.add_argument('--startup-delay', type=float, default=0.0,
                        help='seconds of 503 initializing after start')
    for name in _FAULTS:
        parser.add_argument(f'--{name}-rate', type=float, default=0.0,
                            help=f'probability of the {name} fault per request')
    parser.add_argument('--seed', type=int, default=0, help='seed of the latency/fault RNG')
    parser.add_argument('--api-key', default='', help='require this bearer key on /v1/*')
    parser.add_argument('--max-body-bytes', type=int, default=defaults.max_body_bytes,
                        help='larger bodies get 400 (context too long)')
    parser.add_argument('--log-level', default='warning',
                        choices=('critical', 'error', 'warning', 'info', 'debug'))
    args = parser.parse_args(argv)
    try:
        args.config = ServerConfig(
            model_name=args.model_name, api_key=args.api_key,
            latency_min=args.latency[0], latency_max=args.latency[1],
            startup_delay=args.startup_delay, error_rate=args.error_rate,
            timeout_rate=args.timeout_rate, garbage_rate=args.garbage_rate,
            truncate_rate=args.truncate_rate, seed=args.seed,
            max_body_bytes=args.max_body_bytes)
    except ValueError as exc:
        parser.error(str(exc))
    return args


async def _serve_and_announce(server: uvicorn.Server, sock: socket.socket) -> bool:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        print(f'vlm test server listening on {url_of(sock)}/v1', flush=True)
    await task
    return server.started


def main(argv: list[str] | None = None) -> int:
    """Run the test server until SIGINT/SIGTERM; return the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f'vlm test server: cannot bind {args.host}:{args.port}: {exc}', file=sys.stderr)
        return 1
    server = uvicorn.Server(_uvicorn_config(create_app(args.config), args.log_level))

    def request_exit(_signum: int, _frame: Any) -> None:
        server.should_exit = True

    # uvicorn re-raises a caught signal after its shutdown; these handlers absorb it,
    # so SIGINT and SIGTERM end the process with status 0.
    signal.signal(signal.SIGINT, request_exit)
    signal.signal(signal.SIGTERM, request_exit)
    try:
        started = asyncio.run(_serve_and_announce(server, sock))
    finally:
        sock.close()
        ignore_stop_signals()
    return 0 if started else 1


if __name__ == '__main__':
    sys.exit(main())
