"""Shared pytest setup: per-run DDS isolation on loopback, process fixtures."""
from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

from vln_ros.tools.processes import (  # noqa: E402
    clean_shm_zombies,
    remove_stale_port_segments,
    reserve_domain_id,
)

# Each test session gets its own DDS domain, confined to this host (shared memory + 127.0.0.1).
reserve_domain_id()
clean_shm_zombies()
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('FASTRTPS_DEFAULT_PROFILES_FILE',
                      str(ROOT / 'config' / 'fastdds_localhost.xml'))
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
os.environ['PYTHONUNBUFFERED'] = '1'


def _rclpy_available() -> bool:
    try:
        import rclpy  # noqa: F401
        import vln_ros_interfaces  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    """Integration tests need the built workspace; say so instead of failing obscurely."""
    if _rclpy_available():
        return
    skip = pytest.mark.skip(reason='rclpy / vln_ros_interfaces not importable: run make setup '
                                   'and source scripts/env.sh')
    for item in items:
        if 'integration' in item.nodeid.split('/'):
            item.add_marker(skip)


@pytest.fixture
def procs(tmp_path):
    """Start processes for one test; all are stopped (group-killed) afterwards."""
    from test.harness import ProcessGroup

    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()
    # A node killed while starting can leave a half-made shared-memory port that would hang
    # the next test's nodes in this domain.
    remove_stale_port_segments(int(os.environ['ROS_DOMAIN_ID']))


@pytest.fixture
def ros(procs):
    """A test node in this process; its logs of started processes are shown on failure."""
    from test.harness import RosTestNode

    node = RosTestNode()
    yield node
    node.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the logs of the processes the test started."""
    outcome = yield
    report = outcome.get_result()
    if report.when == 'call' and report.failed:
        group = item.funcargs.get('procs')
        if group is not None:
            report.sections.append(('node logs', group.dump_logs()))

