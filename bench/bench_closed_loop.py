"""Closed-loop benchmark: the whole stack on the simulator over seeded runs per scenario x profile.

Prints one row per scenario x oracle profile (side by side in one run): success rate, time to
goal with its lower bound and their ratio (per run and median), moving fraction while a model
request is in flight, final distance, collisions, limit violations, and how the failed runs
failed (the evaluation's reason and the task's own message). Then the time to stop after a
model outage. Every figure is simulated: the world is the scenario's realistic one (odometry
drift, camera mount and clock) unless --ideal-world; the profile sets how the oracle model
errs (vln_ros/sim/oracle_profiles.py, docs/sim-realism.md).

Short mode (CI): one realistic run of corridor_door with 1-2 s latency plus one outage run.
Long mode: 10 seeds x every scenario x ideal, realistic, harsh with 5-8 s latency (the
latency the project brief gives for the 32B model on four RTX 3090; not measured here).

    python bench/bench_closed_loop.py --mode long --out out/bench_closed_loop
    python bench/bench_closed_loop.py --mode long --profile realistic --seeds 3
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from vln_ros.tools.processes import reserve_domain_id  # noqa: E402

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
reserve_domain_id()

from vln_ros.sim.demo import run_scenario  # noqa: E402

SCENARIOS = ('corridor_door', 'turn_to_landmark', 'switch_mid_way', 'l_corridor', 'two_doors',
             # The obstacle guard's: a box the model does not see (twice) and a wall it
             # sends the robot into (success: stopping short).
             'box_in_the_way', 'box_slides_in', 'wall_ahead')
PROFILES = ('ideal', 'realistic', 'harsh')


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def _row(name, profile, runs, latency, overrides, world, guard) -> dict:
    """One scenario x profile row of the table."""
    return {
        'scenario': name, 'profile': profile, 'world': world, 'guard': guard,
        'runs': len(runs),
        'latency_s': list(latency), **({'perception': overrides} if overrides else {}),
        'success_rate': sum(r['success'] for r in runs) / len(runs),
        'time_to_goal_median_s': median(r['time_to_goal'] for r in runs),
        'time_lower_bound_median_s': median(r['time_lower_bound'] for r in runs),
        'time_ratio_median': median(r['time_ratio'] for r in runs),
        'per_run': [{'seed': r['seed'], 'time_to_goal_s': r['time_to_goal'],
                     'lower_bound_s': r['time_lower_bound'], 'ratio': r['time_ratio']}
                    for r in runs],
        'moving_while_inferring_median': median(r['moving_while_inferring'] for r in runs),
        'final_distance_median_m': median(r['final_distance'] for r in runs),
        'collisions': sum(r['collisions'] for r in runs),
        'limit_violations': sum(r['limit_violations'] for r in runs),
        'failures': [f"seed {r['seed']}: {r['reason']}; task {r['final_task_status']}"
                     f"{': ' + r['final_task_message'] if r['final_task_message'] else ''}"
                     for r in runs if not r['success']],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--mode', choices=('short', 'long'), default='short')
    ap.add_argument('--seeds', type=int, default=None)
    ap.add_argument('--latency', nargs=2, type=float, default=None)
    ap.add_argument('--scenarios', nargs='*', default=None)
    ap.add_argument('--profile', nargs='+', choices=PROFILES, default=None,
                    help='oracle profiles to run side by side (short: realistic; long: all)')
    ap.add_argument('--ideal-world', action='store_true',
                    help='exact odometry, a centred camera and one clock')
    ap.add_argument('--seed-offset', type=int, default=0, help='first seed')
    ap.add_argument('--out', default=None)
    ap.add_argument('--perception', action='append', default=[], metavar='NAME=VALUE',
                    help='override a perception node parameter (YAML value), e.g. '
                    'max_inflight=2; repeatable')
    ap.add_argument('--no-outage', action='store_true', help='skip the model outage run')
    ap.add_argument('--no-guard', action='store_true',
                    help='drive without the obstacle guard on the scan (for comparison)')
    args = ap.parse_args()
    overrides = {}
    for item in args.perception:
        name, sep, value = item.partition('=')
        if not sep or not name:
            ap.error(f'--perception wants NAME=VALUE, got {item!r}')
        overrides[name] = yaml.safe_load(value)
    short = args.mode == 'short'
    seeds = args.seeds or (1 if short else 10)
    latency = tuple(args.latency or ((1.0, 2.0) if short else (5.0, 8.0)))
    scenarios = args.scenarios or (['corridor_door'] if short else list(SCENARIOS))
    out = pathlib.Path(args.out or tempfile.mkdtemp(prefix='bench_closed_loop_'))
    profiles = args.profile or (['realistic'] if short else list(PROFILES))
    seeds = range(args.seed_offset, args.seed_offset + seeds)
    table = []
    for name in scenarios:
        for profile in profiles:
            runs = [run_scenario(name, out / f'{name}-{profile}-{seed}', latency, seed,
                                 write_media=False, quiet=True, perception_params=overrides,
                                 profile=profile, realism=not args.ideal_world,
                                 guard=not args.no_guard)
                    for seed in seeds]
            table.append(_row(name, profile, runs, latency, overrides,
                              'ideal' if args.ideal_world else 'realistic',
                              not args.no_guard))
            print(json.dumps(table[-1]), flush=True)
    if args.no_outage:
        (out / 'bench_closed_loop.json').write_text(json.dumps(table, indent=2))
        return 0
    outage = run_scenario('corridor_door', out / 'outage', latency, 0, write_media=False,
                          quiet=True, time_limit=(12.0 if short else 40.0) + 15.0,
                          outage_at=12.0 if short else 40.0)
    row = {'outage_run': True, 'stop_after_outage_s': outage.get('stop_after_outage_s'),
           'limit_violations': outage['limit_violations']}
    print(json.dumps(row), flush=True)
    (out / 'bench_closed_loop.json').write_text(json.dumps(table + [row], indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
