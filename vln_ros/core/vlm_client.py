"""Async client for the vision-language model behind an OpenAI-compatible server (LMDeploy).

The client does its own retries (the openai client's are off) so that it can tell
errors apart: a server that is starting or overloaded (connection refused, timeouts,
429, 502, 503, 504) is retried with exponential backoff and jitter, while a request the
server rejects (400, 401, 404, 500) is not. Cancelling the awaiting task aborts the HTTP
request at once; LMDeploy then drops the session.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import random
import time
from typing import Any

import httpx
import openai

from vln_ros.core.prompts import response_format

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


@dataclass
class VlmConfig:
    """Connection, retry and sampling settings of the model server."""

    base_url: str = 'http://127.0.0.1:23333/v1'
    model: str = ''  # empty: use the first model the server lists
    api_key: str = 'none'
    timeout: float = 30.0
    connect_timeout: float = 3.0
    max_retries: int = 3  # retries after the first attempt
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    guided: str = 'regex'  # 'regex', 'json_schema' or 'none'
    max_tokens: int = 384
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    repetition_penalty: float = 1.05
    max_pixels: int = 0  # > 0: ask the server to shrink images to this many pixels


class VlmError(Exception):
    """A failed model request; ``kind`` is 'connection', 'timeout', 'http' or 'bad_response'."""

    def __init__(self, kind: str, message: str, status_code: int | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.status_code = status_code
        self.retryable = retryable


@dataclass
class VlmReply:
    """The model's answer text with timing and token usage."""

    text: str
    model: str
    latency: float  # seconds from the call to the answer, retries included
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def _error_message(body: Any) -> str:
    """Pull the message out of an error body (LMDeploy's flat shape or OpenAI's nested one)."""
    if isinstance(body, dict):
        inner = body.get('error')
        if isinstance(inner, dict):
            body = inner
        elif isinstance(inner, str) and inner:
            return inner
        for key in ('message', 'detail', 'msg'):
            value = body.get(key)
            if value:
                return str(value)
        return str(body)[:300]
    if isinstance(body, str):
        return body[:300]
    return ''


def _to_vlm_error(exc: Exception) -> VlmError:
    """Translate an openai/httpx exception into a VlmError that says whether to retry."""
    if isinstance(exc, VlmError):
        return exc
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
        return VlmError('timeout', f'model server timed out: {exc}', retryable=True)
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
        cause = exc.__cause__ or exc.__context__
        detail = f' ({cause})' if cause else ''
        return VlmError('connection', f'cannot reach the model server: {exc}{detail}',
                        retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        text = _error_message(exc.body) or exc.message
        return VlmError('http', f'HTTP {status}: {text}', status_code=status,
                        retryable=status in RETRYABLE_STATUS)
    return VlmError('bad_response', f'unexpected answer from the model server: '
                    f'{type(exc).__name__}: {exc}')


class VlmClient:
    """Send chat requests to the model server; one instance per asyncio event loop."""

    def __init__(self, config: VlmConfig) -> None:
        self.config = config
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url, api_key=config.api_key or 'none',
            timeout=openai.Timeout(config.timeout, connect=config.connect_timeout),
            max_retries=0)
        self._http: httpx.AsyncClient | None = None
        self._model = ''
        # Checked now so a bad parameter fails at start-up, not on the first keyframe.
        self._response_format = response_format(config.guided)

    @property
    def model(self) -> str:
        """The model name in use ('' until resolved)."""
        return self.config.model or self._model

    async def resolve_model(self) -> str:
        """Return the configured model, else the first one the server lists (cached)."""
        if self.config.model:
            return self.config.model
        if self._model:
            return self._model
        try:
            page = await self._client.models.list()
        except Exception as exc:  # noqa: BLE001 - translated, CancelledError passes
            raise _to_vlm_error(exc) from exc
        ids = [m.id for m in getattr(page, 'data', None) or [] if getattr(m, 'id', None)]
        if not ids:
            # A server still loading may list nothing yet: worth another try.
            raise VlmError('bad_response', 'the model server lists no models', retryable=True)
        self._model = ids[0]
        return self._model

    def _request_kwargs(self, model: str, messages: list[dict]) -> dict:
        cfg = self.config
        extra: dict[str, Any] = {'top_k': cfg.top_k, 'repetition_penalty': cfg.repetition_penalty}
        if cfg.max_pixels > 0:
            extra['mm_processor_kwargs'] = {'image': {'max_pixels': int(cfg.max_pixels)}}
        kwargs: dict[str, Any] = {
            'model': model, 'messages': messages, 'max_tokens': cfg.max_tokens,
            'temperature': cfg.temperature, 'top_p': cfg.top_p, 'extra_body': extra,
        }
        if self._response_format is not None:
            kwargs['response_format'] = self._response_format
        return kwargs

    async def _attempt(self, messages: list[dict]) -> tuple[Any, str]:
        model = await self.resolve_model()
        try:
            response = await self._client.chat.completions.create(
                **self._request_kwargs(model, messages))
        except Exception as exc:  # noqa: BLE001 - translated, CancelledError passes
            error = _to_vlm_error(exc)
            if error.status_code == 404:
                # 'The model ... does not exist': the server may have been restarted with
                # another --model-name; ask /v1/models again next time.
                self._model = ''
            raise error from exc
        return response, model

    def _backoff(self, attempt: int) -> float:
        cfg = self.config
        delay = min(cfg.backoff_max, cfg.backoff_initial * (2 ** attempt))
        # Jitter spreads retries of several clients hitting one restarted server.
        return delay * random.uniform(0.5, 1.0)

    async def complete(self, messages: list[dict]) -> VlmReply:
        """Send one chat request and return the answer; raises VlmError on failure."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                response, model = await self._attempt(messages)
                break
            except VlmError as error:
                if not error.retryable or attempt >= self.config.max_retries:
                    raise
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
        choices = getattr(response, 'choices', None) or []
        if not choices or getattr(choices[0], 'message', None) is None:
            raise VlmError('bad_response', 'the model server answered without choices')
        usage = getattr(response, 'usage', None)
        return VlmReply(
            text=choices[0].message.content or '',
            model=getattr(response, 'model', None) or model,
            latency=time.monotonic() - started,
            prompt_tokens=int(getattr(usage, 'prompt_tokens', 0) or 0),
            completion_tokens=int(getattr(usage, 'completion_tokens', 0) or 0),
            finish_reason=str(choices[0].finish_reason or ''),
        )

    def _health_url(self) -> str:
        base = self.config.base_url.rstrip('/')
        if base.endswith('/v1'):
            base = base[:-3]
        return base + '/health'

    async def health(self) -> str:
        """Return 'healthy', 'initializing', 'unhealthy' or 'unreachable'."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.connect_timeout * 2,
                                      connect=self.config.connect_timeout))
        try:
            response = await self._http.get(
                self._health_url(), headers={'Authorization': f'Bearer {self.config.api_key}'})
        except httpx.HTTPError:
            return 'unreachable'
        try:
            status = str(response.json().get('status', '')).lower()
        except (ValueError, AttributeError):
            status = ''  # LMDeploy before 0.14 answers 200 with no JSON body
        if status == 'initializing':
            return 'initializing'
        if response.status_code == 200 and status in ('', 'healthy', 'ok'):
            return 'healthy'
        return 'unhealthy'

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
