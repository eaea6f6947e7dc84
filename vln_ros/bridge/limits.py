"""Guards of the bridge: API key, body size, frame checks and the per-client frame rate.

ROS-free and FastAPI-free: the two middlewares are plain ASGI, so they also cover WebSocket
handshakes, the OpenAPI document and requests that never reach a route. Frame checks look
at base64, magic bytes and the size declared in the image header only; the full decode
happens in the perception node, off the request path.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
import hmac
import json
import threading
import time
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

_JPEG_MAGIC = b'\xff\xd8\xff'
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_PNG_IEND = b'IEND\xaeB`\x82'
# JPEG start-of-frame markers (baseline, progressive, lossless, ...); C4, C8, CC are not SOF.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_DATA_URL_TYPES = ('image/jpeg', 'image/jpg', 'image/png')


# --------------------------------------------------------------------------- errors

def error_body(status: int, code: str, message: str, openai_style: bool = False) -> dict:
    """Return the bridge's error object (or LMDeploy's flat one for the /v1 proxy)."""
    if openai_style:
        kind = ('authentication_error' if status == 401 else 'not_found_error'
                if status == 404 else 'server_error' if status >= 500
                else 'invalid_request_error')
        return {'message': message, 'type': kind, 'code': status, 'param': None,
                'object': 'error'}
    return {'error': {'code': code, 'message': message, 'status': status}}


async def send_json_error(send: Send, status: int, code: str, message: str,
                          openai_style: bool = False,
                          headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a complete JSON error response through raw ASGI."""
    body = json.dumps(error_body(status, code, message, openai_style)).encode()
    await send({'type': 'http.response.start', 'status': status,
                'headers': [(b'content-type', b'application/json'),
                            (b'content-length', str(len(body)).encode()), *(headers or [])]})
    await send({'type': 'http.response.body', 'body': body})


def is_openai_path(path: str) -> bool:
    """Paths proxied to the model server answer errors in LMDeploy's flat shape."""
    return path == '/v1' or path.startswith('/v1/')


# --------------------------------------------------------------------------- API key

def bearer_token(headers: list[tuple[bytes, bytes]], query_string: bytes = b'') -> str:
    """Return the key of 'Authorization: Bearer KEY', else of the api_key query parameter."""
    for name, value in headers:
        if name.lower() == b'authorization':
            scheme, _, token = value.decode('latin-1').partition(' ')
            if scheme.lower() == 'bearer':
                return token.strip()
    # Browsers cannot set headers on a WebSocket handshake: accept ?api_key= there.
    from urllib.parse import parse_qs
    values = parse_qs(query_string.decode('latin-1')).get('api_key')
    return values[0] if values else ''


class ApiKeyMiddleware:
    """Require ``Authorization: Bearer <key>`` on every path but the open ones (ASGI)."""

    def __init__(self, app: Asgi, api_key: str, open_paths: tuple[str, ...] = ('/health',)
                 ) -> None:
        self.app = app
        self.api_key = api_key
        self.open_paths = open_paths

    def authorized(self, scope: Scope) -> bool:
        """True when no key is set, the path is open, or the request carries the key."""
        if not self.api_key or scope.get('path') in self.open_paths:
            return True
        token = bearer_token(scope.get('headers') or [], scope.get('query_string', b''))
        # Constant-time comparison: response timing must not reveal the key.
        return hmac.compare_digest(token.encode(), self.api_key.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass authorized requests on; answer the others 401 (or close a socket 4401)."""
        if scope['type'] not in ('http', 'websocket') or self.authorized(scope):
            await self.app(scope, receive, send)
            return
        message = ('missing or wrong API key: send the header "Authorization: Bearer <key>"'
                   + (' or the query parameter api_key' if scope['type'] == 'websocket'
                      else ''))
        if scope['type'] == 'http':
            await send_json_error(send, 401, 'unauthorized',
                                  'Unauthorized.' if is_openai_path(scope['path']) else message,
                                  openai_style=is_openai_path(scope['path']),
                                  headers=[(b'www-authenticate', b'Bearer')])
            return
        # WebSocket: accept, say why in a message, then close with 4000 + HTTP status.
        await receive()  # websocket.connect
        await send({'type': 'websocket.accept'})
        await send({'type': 'websocket.send',
                    'text': json.dumps({'type': 'error',
                                        **error_body(401, 'unauthorized', message)})})
        await send({'type': 'websocket.close', 'code': 4401, 'reason': 'unauthorized'})


# --------------------------------------------------------------------------- body size

class BodySizeMiddleware:
    """Answer 413 to bodies over ``max_bytes``, counting chunks as they arrive (ASGI).

    A declared Content-Length over the limit is refused before a byte is read; a chunked
    body is counted as it streams in and refused at the chunk that crosses the limit, so
    an oversized upload is never held in memory in full.
    """

    def __init__(self, app: Asgi, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    def _refuse(self, scope: Scope, send: Send, size: str) -> Awaitable[None]:
        return send_json_error(
            send, 413, 'body_too_large',
            f'request body of {size} bytes exceeds the limit of {self.max_bytes} bytes '
            '(parameter max_body_bytes)', openai_style=is_openai_path(scope['path']))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the streamed chunks."""
        if scope['type'] != 'http' or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get('headers') or []:
            if name.lower() == b'content-length':
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(scope, send, str(declared))
                    return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {'type': 'http.disconnect'}
            message = await receive()
            if message['type'] == 'http.request':
                received += len(message.get('body', b''))
                if received > self.max_bytes:
                    # Answer now and tell the app the client is gone: frameworks turn
                    # exceptions raised while reading a body into their own 400s.
                    refused = True
                    if not started:
                        await self._refuse(scope, send, f'more than {self.max_bytes}')
                    return {'type': 'http.disconnect'}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 already went out: drop whatever the app answers
            if message['type'] == 'http.response.start':
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


# --------------------------------------------------------------------------- frame rate

class RateLimiter:
    """Token bucket per client: ``rate`` frames/s on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float | None = None, max_clients: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst) if burst else max(1.0, self.rate)
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """A rate of zero (or less) turns the limit off."""
        return self.rate > 0.0

    def take(self, client: str) -> float:
        """Take one token; return 0.0 when allowed, else the seconds until one is free."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[client] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            if len(self._buckets) > self._max_clients:
                # Forget the client idle longest: a full bucket is what it would get anyway.
                oldest = min(self._buckets, key=lambda k: self._buckets[k][1])
                del self._buckets[oldest]
        return wait


# --------------------------------------------------------------------------- frames

class FrameError(ValueError):
    """A frame refused by the checks: HTTP ``status``, stable ``code`` and a clear message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Frame:
    """Encoded image bytes that passed the checks, with what the header declares."""

    data: bytes
    kind: str  # 'jpeg' or 'png'
    width: int
    height: int


def _split_data_url(text: str) -> str:
    """Return the base64 part of a data URL (or the text itself when it is not one)."""
    if not text.startswith('data:'):
        return text
    header, sep, payload = text.partition(',')
    media = header[5:].split(';')
    if not sep or media[-1] != 'base64' or media[0].lower() not in _DATA_URL_TYPES:
        raise FrameError(400, 'invalid_data_url',
                         'frame data URL must look like "data:image/jpeg;base64,<data>" '
                         '(image/jpeg or image/png)')
    return payload


def _b64decode(payload: str) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        pass
    # Some encoders wrap lines (MIME style): drop whitespace and try once more.
    compact = ''.join(payload.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FrameError(400, 'invalid_base64',
                         f'frame is not valid base64 ({exc})') from None


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Return (width, height) from a JPEG's start-of-frame segment (headers only)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise FrameError(400, 'corrupt_jpeg', f'frame JPEG header is corrupt at byte {i}')
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], 'big')
        if length < 2:
            break
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                break
            height = int.from_bytes(data[i + 5:i + 7], 'big')
            width = int.from_bytes(data[i + 7:i + 9], 'big')
            return width, height
        if marker in (0xDA, 0xD9):  # scan data or end before any frame header
            break
        i += 2 + length
    raise FrameError(400, 'corrupt_jpeg', 'frame JPEG has no frame header (SOF segment)')


def png_size(data: bytes) -> tuple[int, int]:
    """Return (width, height) from a PNG's IHDR chunk."""
    if len(data) < 24 or data[12:16] != b'IHDR':
        raise FrameError(400, 'corrupt_png', 'frame PNG has no IHDR header')
    return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')


def check_frame(text: Any, max_bytes: int, max_pixels: int) -> Frame:
    """Validate a base64 (or data URL) JPEG/PNG frame without decoding its pixels.

    Raises FrameError: 400 for bad base64, a bad data URL or a corrupt/truncated header,
    413 for too many bytes or pixels, 415 for bytes that are neither JPEG nor PNG.
    """
    if not isinstance(text, str) or not text:
        raise FrameError(400, 'missing_frame', 'frame must be a non-empty base64 string')
    payload = _split_data_url(text)
    # Refuse a grossly oversized text before decoding (4 base64 characters carry 3 bytes;
    # the slack allows for line breaks); the exact check follows the decode.
    if max_bytes > 0 and len(payload) > 2 * max_bytes + 16:
        raise FrameError(413, 'frame_too_large',
                         f'frame of about {len(payload) * 3 // 4} bytes exceeds the limit of '
                         f'{max_bytes} bytes (parameter max_frame_bytes)')
    data = _b64decode(payload)
    if max_bytes > 0 and len(data) > max_bytes:
        raise FrameError(413, 'frame_too_large',
                         f'frame of {len(data)} bytes exceeds the limit of {max_bytes} bytes '
                         '(parameter max_frame_bytes)')
    if data.startswith(_JPEG_MAGIC):
        kind = 'jpeg'
        width, height = jpeg_size(data)
        # A truncated JPEG decodes to a half-grey picture: require the end-of-image marker.
        if not data.rstrip(b'\x00').endswith(b'\xff\xd9'):
            raise FrameError(400, 'truncated_jpeg',
                             'frame JPEG is truncated (no end-of-image marker)')
    elif data.startswith(_PNG_MAGIC):
        kind = 'png'
        width, height = png_size(data)
        if not data.endswith(_PNG_IEND):
            raise FrameError(400, 'truncated_png', 'frame PNG is truncated (no IEND chunk)')
    else:
        raise FrameError(415, 'not_an_image',
                         'frame is neither a JPEG nor a PNG image (checked by magic bytes)')
    if width <= 0 or height <= 0:
        raise FrameError(400, f'corrupt_{kind}',
                         f'frame {kind.upper()} declares no pixels ({width}x{height})')
    if max_pixels > 0 and width * height > max_pixels:
        raise FrameError(413, 'frame_too_large',
                         f'frame of {width}x{height} pixels exceeds the limit of {max_pixels} '
                         'pixels')
    return Frame(data=data, kind=kind, width=width, height=height)

