"""The test server's run-time state and the ``/_test/*`` endpoints that read and change it.

Tests and the simulator steer one running server instead of restarting it: they read
the request counters (``GET /_test/stats``), change any :class:`ServerConfig` field
(``POST /_test/config``) and go back to the start (``POST /_test/reset``). None of this
is part of LMDeploy's API; a real client never calls it.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass, field, fields, replace
import random
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from vln_ros.sim.vlm_config import ServerConfig
from vln_ros.sim.vlm_faults import COUNTED_FAULTS, Plan, draw_plan
from vln_ros.sim.vlm_protocol import error_response
from vln_ros.sim.vlm_requests import RESPONSE_FORMATS

_INSTRUCTION_HISTORY = 50


def new_stats() -> dict:
    """Fresh request counters (``by_fault`` counts the latency tail next to the faults)."""
    return {'requests': 0, 'completed': 0, 'cancelled': 0, 'errors': 0,
            'by_fault': {name: 0 for name in COUNTED_FAULTS},
            'by_status': {},
            'response_formats': {name: 0 for name in RESPONSE_FORMATS},
            'regex_mismatches': 0,
            'last_instruction': None,
            'instructions': collections.deque(maxlen=_INSTRUCTION_HISTORY),
            'in_flight': 0}


@dataclass
class ServerState:
    """Mutable state of one app: config, seeded RNG and counters (event-loop thread only)."""

    config: ServerConfig
    initial_config: ServerConfig
    rng: random.Random = field(default_factory=random.Random)
    stats: dict = field(default_factory=new_stats)
    ready_at: float = 0.0  # time.monotonic() when the startup delay ends
    started: int = field(default_factory=lambda: int(time.time()))
    error_count: int = 0  # alternates error faults between 503 and 500

    def __post_init__(self) -> None:
        """Seed the RNG and start the startup clock."""
        self.rng.seed(self.config.seed)
        self.restart_clock(self.config.startup_delay)

    def restart_clock(self, delay: float) -> None:
        """Act as an initializing server for ``delay`` seconds from now."""
        self.ready_at = time.monotonic() + delay

    def initializing(self) -> bool:
        """Return True while the simulated engine is still starting."""
        return time.monotonic() < self.ready_at

    def draw(self) -> Plan:
        """Draw the next request's fault, latency and sub-RNG from the seeded RNG."""
        return draw_plan(self.rng, self.config)

    def count_plan(self, plan: Plan) -> None:
        """Count the plan's fault and latency tail in ``by_fault``."""
        by_fault = self.stats['by_fault']
        if plan.fault:
            by_fault[plan.fault] += 1
        if plan.tail_factor is not None:
            by_fault['latency_tail'] += 1

    def next_error_status(self) -> int:
        """Return 503 and 500 in turn for error faults."""
        self.error_count += 1
        return 503 if self.error_count % 2 else 500

    def count_status(self, status: int) -> None:
        """Count an answered HTTP status; 4xx/5xx also count as errors."""
        by_status = self.stats['by_status']
        by_status[str(status)] = by_status.get(str(status), 0) + 1
        if status >= 400:
            self.stats['errors'] += 1

    def snapshot(self) -> dict:
        """Return the counters as JSON-ready data."""
        stats = dict(self.stats)
        stats['by_fault'] = dict(stats['by_fault'])
        stats['by_status'] = dict(stats['by_status'])
        stats['response_formats'] = dict(stats['response_formats'])
        stats['instructions'] = list(stats['instructions'])
        return stats


def add_test_routes(app: FastAPI, state: ServerState) -> None:
    """Add the ``/_test/*`` control endpoints of ``state`` to ``app``."""

    @app.get('/_test/stats')
    async def test_stats() -> JSONResponse:
        """Return the request counters (test control, not part of LMDeploy)."""
        return JSONResponse(state.snapshot())

    @app.post('/_test/config')
    async def test_config(request: Request) -> JSONResponse:
        """Change ServerConfig fields at run time; a new startup_delay restarts the clock.

        The body is a JSON object of fields, e.g. ``{"prose_rate": 0.2,
        "chinese_rate": 0.1, "refusal_rate": 0.05, "latency_tail_rate": 0.1,
        "latency_tail_factor": [1.5, 3.0]}``: rates in [0, 1], the tail factor a
        [low, high] pair with 1 <= low <= high. A bad or unknown field is a 400 and
        changes nothing; a new seed reseeds the RNG. Returns the whole new config.
        """
        try:
            changes = await request.json()
        except ValueError:
            return error_response(400, 'Body must be a JSON object of ServerConfig fields.')
        if not isinstance(changes, dict):
            return error_response(400, 'Body must be a JSON object of ServerConfig fields.')
        known = {f.name for f in fields(ServerConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            return error_response(400, f'Unknown ServerConfig fields: {", ".join(unknown)}')
        try:
            new_config = replace(state.config, **changes)
        except (TypeError, ValueError) as exc:
            return error_response(400, str(exc))
        state.config = new_config
        if 'seed' in changes:
            state.rng.seed(new_config.seed)
        if 'startup_delay' in changes:
            state.restart_clock(new_config.startup_delay)
        return JSONResponse({'config': asdict(new_config)})

    @app.post('/_test/reset')
    async def test_reset() -> JSONResponse:
        """Zero the counters, restore the initial config and reseed the RNG."""
        state.config = state.initial_config
        state.stats = new_stats()
        state.rng.seed(state.config.seed)
        state.error_count = 0
        return JSONResponse({'config': asdict(state.config)})
