"""Benchmark of the perception core on 640x480 frames (no ROS, no model server).

Prints: raw rgb8 Image fields -> BGR conversion plus the keyframe decision, per frame
(p50/p99 ms) and as CPU share of one core at 30 fps; the JPEG data-URL cost at long
side 640; parser throughput for clean, fenced, truncated and text answers; and the share
of frames that become keyframes on a synthetic moving sequence (a textured world panned
and rotated a little every frame, with a scene cut every few seconds).

Usage: python bench/bench_perception_core.py [--frames N] [--json] [--mode short|long]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import cv2
import numpy as np

try:
    import vln_ros  # noqa: F401
except ImportError:  # run from a source checkout without an installed package
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from vln_ros.core.images import image_to_bgr, jpeg_data_url  # noqa: E402
from vln_ros.core.keyframes import KeyframeSampler  # noqa: E402
from vln_ros.core.latency_stats import RollingStats  # noqa: E402
from vln_ros.core.parser import parse_answer  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 480, 30.0
CUT_EVERY = 150  # frames between scene cuts (5 s at 30 fps)


def make_world(seed: int) -> np.ndarray:
    """A textured 1200x900 world: smooth colour noise, rectangles and rings."""
    rng = np.random.default_rng(seed)
    world = cv2.GaussianBlur(rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8), (0, 0), 6)
    world = cv2.normalize(world, None, 0, 255, cv2.NORM_MINMAX)
    tint = tuple(int(v) for v in rng.integers(0, 256, 3))
    world = cv2.addWeighted(world, 0.6, np.full_like(world, tint), 0.4, 0)
    for _ in range(40):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, 1100)), int(rng.integers(0, 800))
        cv2.rectangle(world, (x, y), (x + int(rng.integers(20, 200)),
                                      y + int(rng.integers(20, 200))), colour, -1)
        cv2.circle(world, (int(rng.integers(0, 1200)), int(rng.integers(0, 900))),
                   int(rng.integers(10, 80)), colour, 3)
    return world


def frames(count: int, seed: int = 0):
    """Yield (stamp, rgb8 bytes) of a slowly panning, swaying camera with scene cuts."""
    rng = np.random.default_rng(seed)
    worlds = [make_world(seed * 10 + i) for i in range(3)]
    for i in range(count):
        world = worlds[(i // CUT_EVERY) % len(worlds)]
        phase = i % CUT_EVERY
        shift = 1.5 * phase  # about 45 px/s of pan
        angle = 2.0 * math.sin(phase / 20.0)  # gentle sway
        m = cv2.getRotationMatrix2D((600, 450), angle, 1.0)
        m[0, 2] -= 200 - shift
        m[1, 2] -= 210
        bgr = cv2.warpAffine(world, m, (WIDTH, HEIGHT), borderMode=cv2.BORDER_REFLECT)
        noise = rng.integers(0, 4, bgr.shape, dtype=np.uint8)
        rgb = cv2.cvtColor(cv2.add(bgr, noise), cv2.COLOR_BGR2RGB)
        yield i / FPS, rgb.tobytes()


CLEAN = ('{"environment": "corridor with a door ahead", "action": "forward", "waypoints": ['
         '{"dx": 0.30, "dy": 0.00, "dtheta": 0.00, "confidence": 0.90}, '
         '{"dx": 0.60, "dy": 0.05, "dtheta": 0.05, "confidence": 0.85}, '
         '{"dx": 0.90, "dy": 0.10, "dtheta": 0.10, "confidence": 0.80}]}')
ANSWERS = {
    'clean': CLEAN,
    'fenced': 'Here is the plan:\n```json\n' + CLEAN + '\n```\nGood luck.',
    'truncated': CLEAN[:CLEAN.index('"dy": 0.05') + 8],
    'text': 'The corridor is clear, so I will go straight ahead towards the door.',
}


def bench_frames(count: int) -> dict:
    sampler = KeyframeSampler()
    per_frame = RollingStats(maxlen=max(count, 1))
    scored = RollingStats(maxlen=max(count, 1))  # frames whose features were computed
    keyframes = 0
    reasons: dict[str, int] = {}
    for stamp, data in frames(count):
        start = time.perf_counter()
        img = image_to_bgr('rgb8', WIDTH, HEIGHT, WIDTH * 3, data)
        decision = sampler.update(img, stamp)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        per_frame.add(elapsed_ms)
        if decision.reason != 'min_interval':
            scored.add(elapsed_ms)
        keyframes += decision.is_keyframe
        reasons[decision.reason] = reasons.get(decision.reason, 0) + 1
    mean_ms = per_frame.mean or 0.0
    return {
        'frames': count,
        'frame_p50_ms': per_frame.percentile(50),
        'frame_p99_ms': per_frame.percentile(99),
        'frame_mean_ms': mean_ms,
        'scored_p50_ms': scored.percentile(50),
        'scored_p99_ms': scored.percentile(99),
        'cpu_share_30fps_pct': mean_ms * FPS / 1000.0 * 100.0,
        'keyframe_fraction': keyframes / count if count else 0.0,
        'keyframes_per_s': keyframes / (count / FPS) if count else 0.0,
        'reasons': reasons,
    }


def bench_jpeg(count: int) -> dict:
    stats = RollingStats(maxlen=count)
    size = 0
    for _, data in frames(count, seed=5):
        img = image_to_bgr('rgb8', WIDTH, HEIGHT, WIDTH * 3, data)
        start = time.perf_counter()
        url = jpeg_data_url(img, long_side=640, quality=85)
        stats.add((time.perf_counter() - start) * 1000.0)
        size = len(url)
    return {'jpeg_url_p50_ms': stats.percentile(50), 'jpeg_url_p99_ms': stats.percentile(99),
            'jpeg_url_chars': size}


def bench_parser(seconds: float) -> dict:
    out = {}
    for name, text in ANSWERS.items():
        method = parse_answer(text).method
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(50):
                parse_answer(text)
            n += 50
        out[name] = {'per_s': n / (time.perf_counter() - start), 'method': method}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=None,
                        help='frames of the moving sequence (default 600; CI uses 90)')
    parser.add_argument('--json', action='store_true', help='also print one JSON line')
    parser.add_argument('--mode', choices=('short', 'long'), default=None,
                        help='scripts/bench.sh setting: short = 90 frames, long = 600')
    args = parser.parse_args(argv)
    count = args.frames or (90 if args.mode == 'short' else 600)
    short = count < 200

    frame = bench_frames(count)
    jpeg = bench_jpeg(10 if short else 60)
    parsing = bench_parser(0.1 if short else 0.5)

    print(f'perception core, {count} frames of {WIDTH}x{HEIGHT} rgb8 at {FPS:.0f} fps')
    print(f'  convert + keyframe decision: p50 {frame["frame_p50_ms"]:.2f} ms, '
          f'p99 {frame["frame_p99_ms"]:.2f} ms, mean {frame["frame_mean_ms"]:.2f} ms')
    print(f'  frames scored against the keyframe (not skipped by min_interval): '
          f'p50 {frame["scored_p50_ms"]:.2f} ms, p99 {frame["scored_p99_ms"]:.2f} ms')
    print(f'  CPU share at 30 fps: {frame["cpu_share_30fps_pct"]:.1f} % of one core')
    print(f'  keyframes: {frame["keyframe_fraction"] * 100:.1f} % of frames '
          f'({frame["keyframes_per_s"]:.2f} per s); reasons {frame["reasons"]}')
    print(f'  JPEG data URL at long side 640: p50 {jpeg["jpeg_url_p50_ms"]:.2f} ms, '
          f'p99 {jpeg["jpeg_url_p99_ms"]:.2f} ms, {jpeg["jpeg_url_chars"] / 1024:.0f} KiB')
    for name, result in parsing.items():
        print(f'  parser {name:9s}: {result["per_s"]:9.0f} answers/s (method {result["method"]})')
    if args.json:
        print(json.dumps({'bench': 'perception_core', **frame, **jpeg,
                          'parser_per_s': {k: v['per_s'] for k, v in parsing.items()}},
                         sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
