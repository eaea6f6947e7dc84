"""Probe a real LMDeploy server with vln_ros's own VLM client, prompts and parser.

Run on a GPU machine next to `lmdeploy serve api_server` (see ../shared/gpu/): prints one
line per check and a JSON summary. Usage: python scripts/gpu_probe.py http://127.0.0.1:23333/v1
"""
import asyncio
import json
import statistics
import sys
import time

import numpy as np

from vln_ros.core.images import jpeg_data_url
from vln_ros.core.inference_scheduler import InferenceScheduler, Job
from vln_ros.core.parser import parse_answer
from vln_ros.core.prompts import NAV_REGEX, build_messages
from vln_ros.core.vlm_client import VlmClient, VlmConfig, VlmError


def frame(i=0):
    x = np.arange(640)[None, :] + 9 * i
    y = np.arange(480)[:, None]
    r = (128 + 100 * np.sin(x / 23.0) * np.cos(y / 31.0)).astype(np.uint8)
    g = np.broadcast_to(((x // 40 + y // 40) % 2 * 160 + 40).astype(np.uint8), r.shape)
    b = np.broadcast_to(((x * 3 + y) % 256).astype(np.uint8), r.shape)
    return np.ascontiguousarray(np.stack([b, g, r], axis=-1))


async def main(base):
    summary = {}
    url = jpeg_data_url(frame(), 640, 85)
    msgs = build_messages('walk forward and find the red door', [url],
                          [('corridor, door far ahead', 'forward')])
    client = VlmClient(VlmConfig(base_url=base, timeout=120))
    print('HEALTH', await client.health())
    print('MODEL', await client.resolve_model())
    import re
    for guided in ('regex', 'json_schema', 'none'):
        c = VlmClient(VlmConfig(base_url=base, timeout=120, guided=guided, max_tokens=300))
        methods, ms, toks, regex_ok, fins = [], [], [], 0, []
        for i in range(10):
            try:
                reply = await c.complete(msgs)
            except VlmError as e:
                print(guided, 'ERROR', e.kind, e.status_code, str(e)[:200])
                methods.append('error')
                continue
            p = parse_answer(reply.text)
            methods.append(p.method)
            ms.append(reply.latency * 1000)
            toks.append(reply.completion_tokens)
            fins.append(reply.finish_reason)
            regex_ok += bool(re.fullmatch(NAV_REGEX, reply.text))
            if i == 0:
                print(guided, 'sample', repr(reply.text[:200]), '->', p.action,
                      len(p.waypoints), p.method)
        counts = {m: methods.count(m) for m in set(methods)}
        row = {'methods': counts, 'regex_fullmatch': regex_ok,
               'median_ms': round(statistics.median(ms)) if ms else None,
               'median_tokens': statistics.median(toks) if toks else None,
               'finish_length': fins.count('length')}
        print('GUIDED', guided, json.dumps(row))
        summary[guided] = row
        await c.aclose()
    # max_pixels shrinks the image tokens
    for mp in (0, 76800):
        c = VlmClient(VlmConfig(base_url=base, timeout=120, max_pixels=mp, max_tokens=8,
                                guided='none'))
        r = await c.complete(msgs)
        print('MAX_PIXELS', mp, 'prompt_tokens', r.prompt_tokens)
        summary[f'prompt_tokens_max_pixels_{mp}'] = r.prompt_tokens
        await c.aclose()
    # unknown model: 404, not retried
    c = VlmClient(VlmConfig(base_url=base, model='no-such-model', timeout=30))
    t = time.monotonic()
    try:
        await c.complete(msgs)
    except VlmError as e:
        print('BAD_MODEL', e.kind, e.status_code, e.retryable, str(e)[:120],
              f'{(time.monotonic() - t) * 1000:.0f} ms')
        summary['bad_model'] = [e.status_code, e.retryable, str(e)[:120]]
    await c.aclose()
    # cancel a long request, then the next one is served at once
    c = VlmClient(VlmConfig(base_url=base, timeout=120, guided='none', max_tokens=2000))
    task = asyncio.create_task(c.complete(msgs))
    await asyncio.sleep(0.5)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        print('CANCEL ok')
    c2 = VlmClient(VlmConfig(base_url=base, timeout=120, guided='regex'))
    t = time.monotonic()
    await c2.complete(msgs)
    summary['after_cancel_ms'] = round((time.monotonic() - t) * 1000)
    print('AFTER_CANCEL', summary['after_cancel_ms'], 'ms')
    await c.aclose()
    await c2.aclose()
    await client.aclose()
    return summary


def scheduler_check(base):
    """Newest-wins and switch cancellation with the real server behind the scheduler."""
    client_box = {}
    done = []

    async def run(job):
        if 'c' not in client_box:
            client_box['c'] = VlmClient(VlmConfig(base_url=base, timeout=120, guided='regex'))
        url = jpeg_data_url(frame(job.sequence), 640, 85)
        return await client_box['c'].complete(build_messages('go to the door', [url]))

    sched = InferenceScheduler(run, lambda job, r, e: done.append((job.task_id, job.sequence,
                                                                   e is None)))
    sched.start()
    sched.set_active_task('a')
    t = time.monotonic()
    for i in range(1, 6):
        sched.submit(Job('a', i, float(i), None))
    submit_ms = (time.monotonic() - t) * 1000
    time.sleep(0.05)
    sched.set_active_task('b')
    sched.submit(Job('b', 1, 9.0, None))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(d[0] == 'b' for d in done):
        time.sleep(0.05)
    stats = sched.stats()
    sched.stop()
    print('SCHEDULER', f'5 submits {submit_ms:.2f} ms', 'done', done, 'stats', stats)
    return {'done': done, 'stats': stats, 'submit_ms': round(submit_ms, 2)}


if __name__ == '__main__':
    base = sys.argv[1] if len(sys.argv) > 1 else 'http://127.0.0.1:23333/v1'
    result = asyncio.run(main(base))
    result['scheduler'] = scheduler_check(base)
    print('SUMMARY', json.dumps(result))
