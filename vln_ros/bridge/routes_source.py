"""The video source: play a file, a URL or an upload into the camera topic."""
from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter

from vln_ros.bridge.context import BridgeContext
from vln_ros.bridge.errors import BridgeError
from vln_ros.bridge.models import ERRORS, ErrorResponse, SourceRequest, SourceStatus, check_text
from vln_ros.bridge.video import VideoError, decode_base64_video
from vln_ros.bridge.video_source import resolve_media_path, save_upload

# Video source errors that are not plain 400s.
SOURCE_STATUS = {'no_such_file': 404, 'no_source': 409, 'invalid_url': 422,
                 'invalid_path': 422, 'invalid_fps': 422, 'outside_media_dir': 403}


def source_error(exc: VideoError) -> BridgeError:
    """The HTTP error of a video source failure."""
    return BridgeError(SOURCE_STATUS.get(exc.code, 400), exc.code, exc.message)


def build_router(ctx: BridgeContext) -> APIRouter:
    """Start, pause, resume, stop and inspect the video source."""
    router = APIRouter()
    source, media_dir = ctx.source, ctx.settings.media_dir

    @router.post('/vln/source', response_model=SourceStatus,
                 responses={**ERRORS, 403: {'model': ErrorResponse}}, tags=['video source'])
    async def source_start(body: SourceRequest) -> dict:
        """Play a video into the camera topic at its frame rate (replaces the current one).

        The bridge publishes the decoded frames as it publishes /vln/frame frames (parameter
        frame_topic_type), so the perception node sees them as its camera. Do not use it
        while another camera (the simulator, a robot) publishes on the same topic.

        Files are played from the bridge parameter media_dir only (403 outside it, also
        through '..' or a symlink); URLs must be http(s) (422 otherwise).
        """
        given = [name for name in ('path', 'url', 'upload') if getattr(body, name)]
        if len(given) != 1:
            raise BridgeError(422, 'invalid_request',
                              'give exactly one of "path", "url" and "upload"')
        cleanup = None
        try:
            if body.upload:
                suffix = os.path.splitext(body.filename or '')[1][:8] or '.bin'
                data = decode_base64_video(body.upload)
                target = await asyncio.to_thread(save_upload, data, suffix)
                label = f'upload: {body.filename or "video"}'

                def cleanup() -> None:
                    try:
                        os.unlink(target)
                    except OSError:
                        pass
            else:
                label = check_text(body.path or body.url or '')
                # The resolved path is what gets opened: a symlink swapped later cannot
                # redirect it.
                target = resolve_media_path(label, media_dir) if body.path else label
            return await asyncio.to_thread(source.start, target, bool(body.url), body.fps,
                                           body.loop, label, cleanup)
        except VideoError as exc:
            raise source_error(exc) from None
        except ValueError as exc:
            raise BridgeError(422, 'invalid_request', f'{given[0]}: {exc}') from None

    @router.get('/vln/source', response_model=SourceStatus, tags=['video source'])
    async def source_status() -> dict:
        """What the video source is doing."""
        return source.status()

    @router.post('/vln/source/pause', response_model=SourceStatus, responses=ERRORS,
                 tags=['video source'])
    async def source_pause() -> dict:
        """Pause the video (409 no_source when nothing plays)."""
        try:
            return source.pause()
        except VideoError as exc:
            raise source_error(exc) from None

    @router.post('/vln/source/resume', response_model=SourceStatus, responses=ERRORS,
                 tags=['video source'])
    async def source_resume() -> dict:
        """Resume a paused video (409 no_source when nothing plays)."""
        try:
            return source.resume()
        except VideoError as exc:
            raise source_error(exc) from None

    @router.post('/vln/source/stop', response_model=SourceStatus, tags=['video source'])
    async def source_stop() -> dict:
        """Stop the video (nothing else publishes on the camera topic through the bridge)."""
        return await asyncio.to_thread(source.stop)

    return router
