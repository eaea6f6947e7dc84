"""WS /vln/stream/{task_id}: frames in, the task's results (and debug images) out."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from vln_ros.bridge.context import BridgeContext, client_of
from vln_ros.bridge.errors import BridgeError
from vln_ros.bridge.limits import FrameError, error_body


def build_router(ctx: BridgeContext) -> APIRouter:
    """The WebSocket stream of one task."""
    router = APIRouter()
    ros = ctx.ros

    @router.websocket('/vln/stream/{task_id}')
    async def stream(websocket: WebSocket, task_id: str, debug_images: bool = False) -> None:
        """Frames in ({frame, timestamp?} JSON or binary JPEG/PNG), results out as produced.

        With ``?debug_images=true`` the stream also carries the task's annotated debug
        images as {type: 'debug_image', task_id, sequence, stamp, jpeg (base64)}, the
        newest one first on connect (the web UI's live view).
        """
        await websocket.accept()
        client = client_of(websocket)

        async def send_error(status: int, code: str, message: str) -> None:
            await websocket.send_text(json.dumps({'type': 'error',
                                                  **error_body(status, code, message)}))

        try:
            await ctx.require_active(task_id)
        except BridgeError as exc:
            # The client (or a shutdown) may have closed the socket while the task was
            # looked up: nothing is left to tell.
            with contextlib.suppress(WebSocketDisconnect):
                await send_error(exc.status, exc.code, exc.message)
                await websocket.close(code=4000 + exc.status, reason=exc.code)
            return
        queue = ros.subscribe(task_id, debug_images)
        if debug_images and (latest := ros.latest_debug_image(task_id)) is not None:
            queue.put_nowait(latest)

        async def reader() -> None:
            while True:
                message = await websocket.receive()
                if message['type'] == 'websocket.disconnect':
                    return
                try:
                    if message.get('bytes') is not None:
                        text = base64.b64encode(message['bytes']).decode('ascii')
                    else:
                        try:
                            payload = json.loads(message.get('text') or '')
                        except ValueError as exc:
                            raise BridgeError(400, 'invalid_json',
                                              f'message is not valid JSON: {exc}') from None
                        if not isinstance(payload, dict) or \
                                not isinstance(payload.get('frame'), str):
                            raise BridgeError(422, 'invalid_request',
                                              'message must be a JSON object with a string '
                                              '"frame" (base64 JPEG or PNG)')
                        text = payload['frame']
                    await ctx.ingest(task_id, text, client, False)
                except (BridgeError, FrameError) as exc:
                    # Bad frames are answered in-band: the stream stays open for good ones.
                    await send_error(exc.status, exc.code, exc.message)

        async def writer() -> None:
            while True:
                item = await queue.get()
                await websocket.send_text(json.dumps(item))

        tasks = [asyncio.ensure_future(reader()), asyncio.ensure_future(writer())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except WebSocketDisconnect:
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            ros.unsubscribe(task_id, queue)

    return router
