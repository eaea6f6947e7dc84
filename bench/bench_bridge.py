"""Benchmark of POST /vln/frame: latency of the bridge's non-blocking frame endpoint.

Starts its own graph as processes (test model server, task node, perception node taking the
bridge's compressed frames, the bridge with no rate limit), creates a task, then posts a
640x480 JPEG (base64, about 60 KB) and prints p50/p99/max latency in ms:
  1. sequentially, one request after the other on one keep-alive connection;
  2. from 4 concurrent clients at 30 fps each (120 frames/s in all), each on its own
     connection, paced by a fixed schedule (latency is measured per request).
The original system reports 21-40 ms; the target is p50 < 5 ms and p99 < 15 ms.

Usage: python bench/bench_bridge.py [--mode short|long] [--json]
(source scripts/env.sh first; short mode takes well under a minute).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import pathlib
import sys
import tempfile
import time

import cv2
import httpx
import numpy as np

try:
    import vln_ros  # noqa: F401
except ImportError:  # run from a source checkout without an installed package
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from vln_ros.tools.processes import ProcessGroup, wait_for_health  # noqa: E402

MODES = {'short': {'sequential': 500, 'concurrent_s': 8.0},
         'long': {'sequential': 5000, 'concurrent_s': 60.0}}
CLIENTS, FPS = 4, 30.0


def camera_jpeg(seed: int = 0) -> bytes:
    """A 640x480 JPEG of a textured scene, about the size a real camera frame has."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    for _ in range(30):
        x, y = int(rng.integers(0, 600)), int(rng.integers(0, 440))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(10, 120)),
                                    y + int(rng.integers(10, 120))), colour, -1)
    ok, data = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return data.tobytes()


def percentiles(samples_ms: list[float]) -> dict:
    """p50/p99/max/mean of latencies in ms."""
    if not samples_ms:
        return {'n': 0}
    arr = np.asarray(samples_ms)
    return {'n': int(arr.size), 'p50_ms': float(np.percentile(arr, 50)),
            'p99_ms': float(np.percentile(arr, 99)), 'max_ms': float(arr.max()),
            'mean_ms': float(arr.mean())}


def start_graph(group: ProcessGroup) -> str:
    """Start the model server, task node, perception node and bridge; return the bridge URL."""
    url = group.start_vlm_server('--latency', '0.3', '0.5')
    group.start_node('task_node', params={'db_path': ':memory:'})
    group.start_node('perception_node', params={'vlm.base_url': url,
                                                'image_transport': 'compressed'})
    # Compressed frames: the request path without a decode, the one this benchmark measures.
    bridge = group.start_bridge(**{'vlm.base_url': url, 'frame_rate_limit': 0.0,
                                   'frame_topic_type': 'compressed'})
    wait_for_health(bridge, lambda body: body['ros']['task_node'] and body['ros'][
        'perception_node'])
    return bridge


def sequential(bridge: str, body: bytes, count: int) -> tuple[list[float], int]:
    """Post ``count`` frames back to back; return latencies (ms) and the non-200 count."""
    latencies, failures = [], 0
    headers = {'content-type': 'application/json'}
    with httpx.Client(base_url=bridge, timeout=10) as client:
        for _ in range(20):  # warm up the connection and the code paths
            client.post('/vln/frame', content=body, headers=headers)
        for _ in range(count):
            t0 = time.perf_counter()
            r = client.post('/vln/frame', content=body, headers=headers)
            latencies.append((time.perf_counter() - t0) * 1000.0)
            failures += r.status_code != 200
    return latencies, failures


async def _paced_client(bridge: str, body: bytes, seconds: float, offset: float,
                        out: list[float]) -> int:
    failures = 0
    headers = {'content-type': 'application/json'}
    async with httpx.AsyncClient(base_url=bridge, timeout=10) as client:
        await client.post('/vln/frame', content=body, headers=headers)  # connect first
        start = time.perf_counter() + offset
        n = 0
        while True:
            due = start + n / FPS
            if due - start > seconds:
                return failures
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.perf_counter()
            r = await client.post('/vln/frame', content=body, headers=headers)
            out.append((time.perf_counter() - t0) * 1000.0)
            failures += r.status_code != 200
            n += 1


def concurrent(bridge: str, body: bytes, seconds: float) -> tuple[list[float], int, float]:
    """4 clients at 30 fps each; return latencies (ms), non-200 count and achieved rate."""
    latencies: list[float] = []

    async def run():
        # Offsets spread the clients over one frame period, as independent cameras would be.
        return await asyncio.gather(*(
            _paced_client(bridge, body, seconds, i / (FPS * CLIENTS), latencies)
            for i in range(CLIENTS)))
    t0 = time.perf_counter()
    failures = sum(asyncio.run(run()))
    return latencies, failures, len(latencies) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mode', choices=sorted(MODES), default='short')
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    args = parser.parse_args(argv)
    mode = MODES[args.mode]
    jpeg = camera_jpeg()
    with tempfile.TemporaryDirectory(prefix='bench_bridge_') as tmp:
        group = ProcessGroup(pathlib.Path(tmp))
        try:
            bridge = start_graph(group)
            created = httpx.post(f'{bridge}/vln/task/create', timeout=10, json={
                'instruction': 'go forward along the corridor'}).json()
            body = json.dumps({'task_id': created['task_id'],
                               'frame': base64.b64encode(jpeg).decode('ascii')}).encode()
            seq, seq_fail = sequential(bridge, body, mode['sequential'])
            conc, conc_fail, rate = concurrent(bridge, body, mode['concurrent_s'])
            task = httpx.get(f'{bridge}/vln/task/{created["task_id"]}', timeout=10).json()
        finally:
            group.stop_all()
    report = {
        'mode': args.mode, 'jpeg_bytes': len(jpeg), 'request_bytes': len(body),
        'sequential': {**percentiles(seq), 'non_200': seq_fail},
        'concurrent_4x30fps': {**percentiles(conc), 'non_200': conc_fail,
                               'achieved_fps': rate},
        'perception_keyframes': task.get('keyframes'), 'model_answers': task.get('inferences'),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f'POST /vln/frame, 640x480 JPEG of {len(jpeg) / 1024:.1f} KB '
          f'({len(body) / 1024:.1f} KB request), mode {args.mode}')
    for name, key in (('sequential', 'sequential'),
                      (f'{CLIENTS} clients x {FPS:g} fps', 'concurrent_4x30fps')):
        r = report[key]
        extra = f', {r["achieved_fps"]:.1f} frames/s' if 'achieved_fps' in r else ''
        print(f'  {name:>20}: n={r["n"]:5d}  p50 {r["p50_ms"]:6.2f} ms  p99 {r["p99_ms"]:6.2f} '
              f'ms  max {r["max_ms"]:6.2f} ms  non-200 {r["non_200"]}{extra}')
    print(f'  (target p50 < 5 ms, p99 < 15 ms; the original reports 21-40 ms)  '
          f'keyframes {report["perception_keyframes"]}, answers {report["model_answers"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
