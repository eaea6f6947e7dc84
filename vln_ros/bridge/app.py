"""FastAPI app of the bridge: the vln REST API, the WebSocket stream, the OpenAI proxy, the UI.

ROS-free: everything that touches the graph goes through a :class:`RosPort` (implemented by
vln_ros.bridge.ros_side), so the request path is plain asyncio. :func:`create_app` only
assembles the routers (one module per concern) around one shared :class:`BridgeContext`.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
import httpx

from vln_ros.bridge import (
    routes_health,
    routes_model,
    routes_safety,
    routes_source,
    routes_stream,
    routes_tasks,
)
from vln_ros.bridge.context import BridgeContext
from vln_ros.bridge.errors import BridgeError, install_error_handlers
from vln_ros.bridge.limits import ApiKeyMiddleware, BodySizeMiddleware
from vln_ros.bridge.port import RosPort
from vln_ros.bridge.routes_ui import mount_ui, ui_paths
from vln_ros.bridge.settings import BridgeSettings

__all__ = ['BridgeError', 'BridgeSettings', 'RosPort', 'create_app']


def create_app(ros: RosPort, settings: BridgeSettings) -> FastAPI:
    """Build the bridge's FastAPI app on top of a RosPort."""
    from vln_ros.core.vlm_client import VlmClient, VlmConfig

    ctx = BridgeContext.create(ros, settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # Clients live on the server's loop; results are handed to that same loop.
        ros.bind_loop(asyncio.get_running_loop())
        ctx.http = httpx.AsyncClient(timeout=httpx.Timeout(
            settings.vlm_timeout, connect=3.0), limits=httpx.Limits(max_connections=64))
        ctx.vlm = VlmClient(VlmConfig(
            base_url=settings.vlm_base_url, api_key=settings.vlm_api_key or 'none',
            timeout=settings.vlm_timeout, max_retries=1, guided=settings.vlm_guided))
        try:
            yield
        finally:
            await asyncio.to_thread(ctx.source.stop)
            await ctx.http.aclose()
            await ctx.vlm.aclose()

    app = FastAPI(
        title='vln_ros bridge',
        version='0.1.0',
        description='REST and WebSocket access to the vln_ros graph (tasks, camera frames, '
                    'results) and an OpenAI-compatible proxy to the model server.',
        lifespan=lifespan)
    install_error_handlers(app)
    # Inclusion order is the order of the OpenAPI document's paths.
    for routes in (routes_health, routes_tasks, routes_stream, routes_safety, routes_source):
        app.include_router(routes.build_router(ctx))
    mount_ui(app)
    app.include_router(routes_model.build_router(ctx))

    # Each add wraps the previous: CORS outermost (preflights carry no key), then the key
    # check, then the body count, so an unauthorized upload is refused before it is read.
    app.add_middleware(BodySizeMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key, open_paths=ui_paths())
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=['GET', 'POST'],
                           allow_headers=['authorization', 'content-type'])
    return app
