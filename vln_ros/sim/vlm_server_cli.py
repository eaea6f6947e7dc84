"""Command line of the test model server: ``python -m vln_ros.sim.vlm_server``.

Processes under test start the server as a child and wait for its ready line, so
:func:`main` prints ``vlm test server listening on http://HOST:PORT/v1`` only once the
socket accepts connections, and ends with status 0 on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from typing import Any

import uvicorn

from vln_ros.sim.vlm_config import ServerConfig
from vln_ros.sim.vlm_faults import FAULTS
from vln_ros.tools.net import bind_socket, url_of
from vln_ros.tools.stop_signals import ignore_stop_signals


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m vln_ros.sim.vlm_server',
        description='OpenAI-compatible VLM test server that behaves like LMDeploy.')
    defaults = ServerConfig()
    parser.add_argument('--host', default='127.0.0.1', help='bind address (127.0.0.1)')
    parser.add_argument('--port', type=int, default=23333, help='port, 0 picks a free one')
    parser.add_argument('--model-name', default=defaults.model_name,
                        help='name listed by /v1/models')
    parser.add_argument('--latency', type=float, nargs=2, metavar=('MIN', 'MAX'),
                        default=(0.0, 0.0), help='answer latency range in seconds')
    parser.add_argument('--startup-delay', type=float, default=0.0,
                        help='seconds of 503 initializing after start')
    for name in FAULTS:
        parser.add_argument(f'--{name}-rate', type=float, default=0.0,
                            help=f'probability of the {name} fault per request')
    parser.add_argument('--latency-tail-rate', type=float, default=0.0,
                        help='probability that a request waits its latency times the '
                             'tail factor')
    parser.add_argument('--latency-tail-factor', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                        default=defaults.latency_tail_factor,
                        help='range of the tail factor (default %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the latency/fault RNG')
    parser.add_argument('--api-key', default='', help='require this bearer key on /v1/*')
    parser.add_argument('--max-body-bytes', type=int, default=defaults.max_body_bytes,
                        help='larger bodies get 400 (context too long)')
    parser.add_argument('--log-level', default='warning',
                        choices=('critical', 'error', 'warning', 'info', 'debug'))
    args = parser.parse_args(argv)
    rates = {f'{name}_rate': getattr(args, f'{name}_rate') for name in FAULTS}
    try:
        args.config = ServerConfig(
            model_name=args.model_name, api_key=args.api_key,
            latency_min=args.latency[0], latency_max=args.latency[1],
            startup_delay=args.startup_delay, **rates,
            latency_tail_rate=args.latency_tail_rate,
            latency_tail_factor=tuple(args.latency_tail_factor), seed=args.seed,
            max_body_bytes=args.max_body_bytes)
    except ValueError as exc:
        parser.error(str(exc))
    return args


async def _serve_and_announce(server: uvicorn.Server, sock: socket.socket) -> bool:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        print(f'vlm test server listening on {url_of(sock)}/v1', flush=True)
    await task
    return server.started


def main(argv: list[str] | None = None) -> int:
    """Run the test server until SIGINT/SIGTERM; return the exit status."""
    # Imported here: vlm_server imports this module for its own ``main``.
    from vln_ros.sim.vlm_server import create_app, uvicorn_config

    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f'vlm test server: cannot bind {args.host}:{args.port}: {exc}', file=sys.stderr)
        return 1
    server = uvicorn.Server(uvicorn_config(create_app(args.config), args.log_level))

    def request_exit(_signum: int, _frame: Any) -> None:
        server.should_exit = True

    # uvicorn re-raises a caught signal after its shutdown; these handlers absorb it,
    # so SIGINT and SIGTERM end the process with status 0.
    signal.signal(signal.SIGINT, request_exit)
    signal.signal(signal.SIGTERM, request_exit)
    try:
        started = asyncio.run(_serve_and_announce(server, sock))
    finally:
        sock.close()
        ignore_stop_signals()
    return 0 if started else 1


if __name__ == '__main__':
    sys.exit(main())
