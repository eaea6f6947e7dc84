"""The model server: POST /analyze/video and the OpenAI endpoints proxied to it.

/v1/* is a pass-through (SSE included) that answers errors in LMDeploy's flat shape, so an
OpenAI client pointed at the bridge cannot tell it from the model server.
"""
from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
import httpx

from vln_ros.bridge.context import BridgeContext
from vln_ros.bridge.errors import BridgeError, error_response
from vln_ros.bridge.limits import error_body
from vln_ros.bridge.models import ERRORS, ErrorResponse, VideoRequest, VideoResponse
from vln_ros.bridge.video import VideoError, decode_base64_video, sample_video
from vln_ros.core.statuses import answer_status

# The request body of /v1/chat/completions as documented (the proxy relays any JSON object).
CHAT_SCHEMA = {
    'type': 'object', 'required': ['model', 'messages'], 'additionalProperties': True,
    'properties': {
        'model': {'type': 'string'},
        'messages': {'type': 'array', 'items': {'type': 'object', 'properties': {
            'role': {'type': 'string'}, 'content': {}}, 'required': ['role']}},
        'stream': {'type': 'boolean'},
        'max_tokens': {'type': 'integer'},
        'temperature': {'type': 'number'},
        'top_p': {'type': 'number'},
        'response_format': {'type': 'object'},
    },
}
OPENAI_ERROR = {'description': "model server error, relayed in LMDeploy's flat shape",
                'content': {'application/json': {'schema': {'type': 'object', 'properties': {
                    'message': {'type': 'string'}, 'type': {'type': 'string'},
                    'code': {'type': 'integer'}, 'object': {'type': 'string'}}}}}}


def build_router(ctx: BridgeContext) -> APIRouter:
    """/analyze/video and the /v1 proxy."""
    router = APIRouter()
    settings = ctx.settings

    @router.post('/analyze/video', response_model=VideoResponse,
                 responses={**ERRORS, 502: {'model': ErrorResponse},
                            504: {'model': ErrorResponse}}, tags=['model'])
    async def analyze_video(body: VideoRequest) -> dict:
        """Sample frames evenly from a video and ask the model once with all of them."""
        # Imported here: OpenCV and the prompt code are not needed to build the app.
        from vln_ros.core.images import jpeg_data_url
        from vln_ros.core.parser import parse_answer
        from vln_ros.core.prompts import build_messages
        from vln_ros.core.vlm_client import VlmError

        if body.max_frames > settings.max_video_frames:
            raise BridgeError(422, 'too_many_frames', f'max_frames must be at most '
                              f'{settings.max_video_frames} (parameter max_video_frames)')

        def frames_to_urls() -> list[str]:
            frames = sample_video(decode_base64_video(body.video), body.max_frames)
            return [jpeg_data_url(f, 640, 85) for f in frames]

        try:
            urls = await asyncio.to_thread(frames_to_urls)
        except VideoError as exc:
            raise BridgeError(400, exc.code, exc.message) from None
        messages = build_messages(body.instruction, urls, (), 0)
        try:
            reply = await ctx.vlm.complete(messages)
        except VlmError as exc:
            if exc.kind == 'timeout':
                raise BridgeError(504, 'model_timeout', str(exc)) from None
            status = exc.status_code if exc.status_code in (400, 413, 422) else 502
            raise BridgeError(status, 'model_server_error', str(exc)) from None
        parsed = parse_answer(reply.text)
        return {'environment': parsed.environment, 'action': parsed.action,
                'waypoints': [{'dx': w.dx, 'dy': w.dy, 'dtheta': w.dtheta,
                               'confidence': w.confidence} for w in parsed.waypoints],
                'status': answer_status(parsed.method, parsed.action), 'error': parsed.error,
                'frames_used': len(urls), 'inference_time': reply.latency, 'model': reply.model,
                'raw_text': reply.text}

    def upstream_headers(request: Request) -> dict:
        headers = {'content-type': 'application/json', 'accept': '*/*'}
        if settings.vlm_api_key:
            headers['authorization'] = f'Bearer {settings.vlm_api_key}'
        elif not settings.api_key and request.headers.get('authorization'):
            # No bridge key: the caller's own key is meant for the model server.
            headers['authorization'] = request.headers['authorization']
        return headers

    async def relay(request: Request, method: str, path: str, body: bytes | None,
                    stream: bool) -> Response:
        url = settings.vlm_base_url.rstrip('/') + path
        http: httpx.AsyncClient = ctx.http
        upstream = http.build_request(method, url, content=body,
                                      headers=upstream_headers(request))
        try:
            response = await http.send(upstream, stream=True)
        except httpx.TimeoutException as exc:
            return error_response(504, 'timeout', f'model server timed out: {exc!r}', path)
        except httpx.HTTPError as exc:
            return error_response(502, 'bad_gateway',
                                  f'cannot reach the model server at {url}: {exc!r}', path)
        content_type = response.headers.get('content-type', 'application/json')
        if stream and response.status_code == 200:
            async def chunks():
                try:
                    async for chunk in response.aiter_raw():
                        yield chunk
                except httpx.HTTPError as exc:
                    # Headers are gone: report in-band, as LMDeploy does after a stream began.
                    error = error_body(502, 'bad_gateway', f'model server stream broke: {exc!r}',
                                       True)
                    yield f'data: {json.dumps(error)}\n\n'.encode()
                finally:
                    await response.aclose()
            return StreamingResponse(chunks(), status_code=200, media_type=content_type,
                                     headers={'cache-control': 'no-cache',
                                              'x-accel-buffering': 'no'})
        try:
            content = await response.aread()
        except httpx.HTTPError as exc:
            return error_response(502, 'bad_gateway', f'model server answer broke: {exc!r}',
                                  path)
        finally:
            await response.aclose()
        if response.status_code >= 400 and 'json' not in content_type:
            message = content.decode('utf-8', 'replace')[:300] or response.reason_phrase
            return error_response(response.status_code, 'upstream',
                                  f'model server: {message}', path)
        return Response(content, status_code=response.status_code, media_type=content_type)

    @router.get('/v1/models', tags=['openai'], responses={502: OPENAI_ERROR})
    async def models(request: Request) -> Response:
        """List the model server's models (proxied)."""
        return await relay(request, 'GET', '/models', None, False)

    @router.post('/v1/chat/completions', tags=['openai'],
                 openapi_extra={'requestBody': {'required': True, 'content': {
                     'application/json': {'schema': CHAT_SCHEMA}}}},
                 responses={200: {'description': 'chat completion, or SSE chunks when stream '
                                                 'is true',
                                  'content': {'text/event-stream': {}}},
                            400: OPENAI_ERROR, 502: OPENAI_ERROR})
    async def chat_completions(request: Request) -> Response:
        """OpenAI chat completions, proxied to the model server; SSE passed through."""
        body = await request.body()
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return error_response(400, 'invalid_json', f'request body is not valid JSON: {exc}',
                                  '/v1')
        if not isinstance(payload, dict):
            return error_response(400, 'invalid_request',
                                  'request body must be a JSON object', '/v1')
        return await relay(request, 'POST', '/chat/completions', body,
                           payload.get('stream') is True)

    return router
