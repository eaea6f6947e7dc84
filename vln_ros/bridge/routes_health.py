"""GET /health: the bridge, what it sees of the ROS graph, and the model server."""
from __future__ import annotations

from fastapi import APIRouter

from vln_ros.bridge.context import BridgeContext
from vln_ros.bridge.models import HealthResponse


def model_root(base_url: str) -> str:
    """The model server's root URL (its /health is not under /v1)."""
    base = base_url.rstrip('/')
    return base[:-3] if base.endswith('/v1') else base


def build_router(ctx: BridgeContext) -> APIRouter:
    """The health endpoint (open even when an API key is set)."""
    router = APIRouter()

    @router.get('/health', response_model=HealthResponse, tags=['bridge'])
    async def health() -> dict:
        """Bridge, ROS graph and model server status (open even when an API key is set)."""
        graph = ctx.ros.graph_health()
        model = await ctx.vlm.health()
        ok = graph['task_node'] and model == 'healthy'
        return {'status': 'ok' if ok else 'degraded', 'ros': graph,
                'model_server': {'url': model_root(ctx.settings.vlm_base_url) + '/health',
                                 'status': model}}

    return router
