"""The bridge's error type and the handlers that turn every failure into a JSON error.

Errors are always ``{"error": {"code": "...", "message": "...", "status": N}}``, except under
``/v1``, which relays (or imitates) LMDeploy's flat OpenAI error object so OpenAI clients can
read it. Nothing reaches the client as an HTML page or a bare 500.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vln_ros.bridge.limits import FrameError, error_body, is_openai_path

_LOG = logging.getLogger('vln_bridge')

# Stable codes for the statuses Starlette raises itself (unknown path, wrong method, ...).
STATUS_CODES = {400: 'bad_request', 401: 'unauthorized', 403: 'forbidden', 404: 'not_found',
                405: 'method_not_allowed', 409: 'conflict', 413: 'body_too_large',
                415: 'unsupported_media_type', 422: 'invalid_request',
                429: 'rate_limited', 502: 'bad_gateway', 503: 'unavailable',
                504: 'timeout'}


class BridgeError(Exception):
    """A failure with an HTTP status, a stable code and a message for the client."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str, path: str = '',
                   headers: dict | None = None) -> JSONResponse:
    """A JSON error response in the shape the path's clients expect."""
    return JSONResponse(error_body(status, code, message, is_openai_path(path)),
                        status_code=status, headers=headers)


def validation_message(errors: list[dict]) -> tuple[int, str, str]:
    """Status, code and one readable message for pydantic's validation errors."""
    for err in errors:
        if err.get('type') == 'json_invalid':
            ctx = err.get('ctx') or {}
            return 400, 'invalid_json', \
                f'request body is not valid JSON: {ctx.get("error", err.get("msg"))}'
    for err in errors:
        if tuple(err.get('loc', ())) == ('body',) and err.get('type') in (
                'model_attributes_type', 'dict_type', 'missing'):
            return 400, 'invalid_body', ('request body must be a JSON object (and sent with '
                                         'Content-Type: application/json)')
    parts = []
    for err in errors[:5]:
        loc = '.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or 'body'
        parts.append(f'{loc}: {err.get("msg", "invalid")}')
    more = f' (and {len(errors) - 5} more)' if len(errors) > 5 else ''
    return 422, 'invalid_request', '; '.join(parts) + more


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that answer every failure as a JSON error."""

    @app.exception_handler(BridgeError)
    async def _bridge_error(request: Request, exc: BridgeError) -> JSONResponse:
        headers = None
        if exc.status == 429:
            headers = {'Retry-After': str(max(1, round(getattr(exc, 'retry_after', 1.0))))}
        return error_response(exc.status, exc.code, exc.message, request.url.path, headers)

    @app.exception_handler(FrameError)
    async def _frame_error(request: Request, exc: FrameError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = validation_message(list(exc.errors()))
        return error_response(status, code, message, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, f'http_{exc.status_code}')
        message = str(exc.detail)
        if exc.status_code == 404 and message == 'Not Found':
            message = f'no endpoint {request.method} {request.url.path}'
        elif exc.status_code == 405:
            message = f'method {request.method} is not allowed on {request.url.path}'
        return error_response(exc.status_code, code, message, request.url.path,
                              getattr(exc, 'headers', None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: logged with its traceback, answered without it.
        _LOG.exception('unexpected error on %s %s', request.method, request.url.path)
        return error_response(500, 'internal_error',
                              f'internal error: {type(exc).__name__}: {exc}', request.url.path)
