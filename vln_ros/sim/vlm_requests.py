"""Parsing and validation of a chat completion request, in LMDeploy's order and wording.

LMDeploy rejects a bad request before any inference with a 400 (pydantic's messages,
then its own checks of the model and the sampling values, then the images, which it
decodes up front). Clients are tested against those failures, so this module repeats
them: every check raises :class:`~vln_ros.sim.vlm_protocol.ApiError` with the status and
a message LMDeploy would give.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
import json
import re
from typing import Any
from urllib.parse import unquote, urlparse

import cv2
from fastapi import Request
import numpy as np

from vln_ros.sim.vlm_answers import AnswerRequest, extract_instruction
from vln_ros.sim.vlm_protocol import MSG_CONTEXT_TOO_LONG, ApiError, estimate_prompt_tokens

RESPONSE_FORMATS = ('text', 'json_object', 'json_schema', 'regex_schema')
# Formats whose constrained decoder forces the answer into a JSON object.
GUIDED_FORMATS = ('json_object', 'json_schema', 'regex_schema')
_ROLES = ('system', 'user', 'assistant', 'tool')


@dataclass
class ChatRequest:
    """The parts of a validated chat request the server needs."""

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    n: int
    response_format: str  # one of RESPONSE_FORMATS; 'text' when the body has none
    regex: str | None  # the regex_schema pattern, else None
    answer_request: AnswerRequest
    prompt_tokens: int


def regex_accepts(regex: str, text: str) -> bool:
    """Return True if ``regex_schema`` guided decoding could have produced ``text``."""
    try:
        return re.fullmatch(regex, text, re.DOTALL) is not None
    except re.error:
        return False


async def read_json_body(request: Request, max_bytes: int) -> Any:
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


# --------------------------------------------------------------------------- fields

def _check_type(body: dict, key: str, kinds: tuple[type, ...], what: str) -> Any:
    """Return body[key] when absent/None or of one of ``kinds``, else raise 400."""
    value = body.get(key)
    if value is None:
        return None
    is_bool = isinstance(value, bool)
    if (is_bool and bool not in kinds) or not isinstance(value, kinds):
        raise ApiError(400, f'{key}: Input should be a valid {what}')
    return value


# --------------------------------------------------------------------------- images

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


# --------------------------------------------------------------------------- messages

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
    if kind not in RESPONSE_FORMATS:
        raise ApiError(400, 'response_format.type: Input should be '
                            + ', '.join(repr(k) for k in RESPONSE_FORMATS))
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


# --------------------------------------------------------------------------- the request

def parse_chat_request(body: Any, model_name: str) -> ChatRequest:
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
    return ChatRequest(
        model=model, stream=stream,
        include_usage=bool(stream_options and stream_options.get('include_usage')),
        max_tokens=limit, n=n, response_format=response_format, regex=regex,
        answer_request=AnswerRequest(instruction=extract_instruction(text), images=images,
                                     text=text, body=body),
        prompt_tokens=estimate_prompt_tokens(sum(len(t) for t in all_texts), image_count))
