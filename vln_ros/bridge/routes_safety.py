"""Safety and commands: the planner's e-stop and the velocities it commands."""
from __future__ import annotations

import math

from fastapi import APIRouter

from vln_ros.bridge.context import BridgeContext
from vln_ros.bridge.errors import BridgeError
from vln_ros.bridge.models import (
    ERRORS,
    CmdVelResponse,
    ErrorResponse,
    EstopRequest,
    EstopResponse,
)


def build_router(ctx: BridgeContext) -> APIRouter:
    """E-stop and cmd_vel endpoints."""
    router = APIRouter()
    ros = ctx.ros

    @router.post('/vln/estop', response_model=EstopResponse,
                 responses={**ERRORS, 502: {'model': ErrorResponse},
                            504: {'model': ErrorResponse}}, tags=['safety'])
    async def estop(body: EstopRequest) -> dict:
        """Engage (cmd_vel zero at once and held) or release the planner's e-stop.

        Answers with the state the planner then latches on vln/estop_state (or with the
        request, said so in the message, when that topic lags a second behind the service).
        409 no_planner when no node serves vln/estop: the graph, not the server, is in a
        state where an e-stop cannot be delivered (and nothing of vln_ros drives the robot).
        """
        return await ros.set_estop(body.engaged)

    @router.get('/vln/estop', response_model=EstopResponse, tags=['safety'])
    async def estop_state() -> dict:
        """The planner's e-stop state from vln/estop_state, whoever set it.

        engaged null (and a message) while no state has been received from the planner.
        """
        return ros.estop_state()

    @router.get('/vln/cmd_vel', response_model=CmdVelResponse, responses=ERRORS,
                tags=['safety'])
    async def cmd_vel(since: float = 0.0) -> dict:
        """Velocity commands on cmd_vel received after ``since`` (the last 10 s at most).

        The bridge follows cmd_vel only while this is polled: the first poll starts the
        subscription (so it returns no samples yet); 30 s without a poll ends it.
        """
        if not math.isfinite(since):
            raise BridgeError(422, 'invalid_request', 'since must be a finite number')
        return ros.cmd_vel_since(since)

    return router
