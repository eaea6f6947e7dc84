"""Schema-driven fuzz of the running bridge: schemathesis cases from its /openapi.json.

Every operation of the OpenAPI document gets generated requests, valid by the schema
(positive) and deliberately invalid (negative), over real HTTP against a bridge process
with the task node and the test model server behind it. No answer may be a 5xx, and every
4xx must carry the JSON error shape (LMDeploy's flat one under /v1). Examples per operation
come from VLN_FUZZ_EXAMPLES (default 300, split between the two modes).
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
import pytest
import requests

from test.harness import ProcessGroup
from vln_ros.tools.processes import wait_for_health

schemathesis = pytest.importorskip('schemathesis')
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.openapi import from_url  # noqa: E402

EXAMPLES = int(os.environ.get('VLN_FUZZ_EXAMPLES', '300'))


@pytest.fixture(scope='module')
def bridge(tmp_path_factory):
    """Test model server, task node and bridge (no rate limit, short sync timeout)."""
    group = ProcessGroup(tmp_path_factory.mktemp('bridge_fuzz'))
    try:
        url = group.start_vlm_server()
        group.start_node('task_node', params={'db_path': ':memory:', 'max_tasks': 50})
        base = group.start_bridge(**{'vlm.base_url': url, 'frame_rate_limit': 0.0,
                                     'sync_timeout': 0.5, 'max_body_bytes': 1024 * 1024})
        wait_for_health(base, lambda body: body['ros']['task_node'])
        yield base, group
    finally:
        group.stop_all()


@pytest.fixture
def procs(bridge):
    """The module's processes: their logs are attached to a failing test's report."""
    return bridge[1]


def _check(case, response) -> None:
    where = f'{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}'
    assert response.status_code < 500, where
    if 400 <= response.status_code < 500:
        body = response.json()
        if case.path.startswith('/v1/'):
            assert body.get('object') == 'error' and body.get('message'), where
        else:
            assert body['error']['code'] and body['error']['message'], where


def test_no_5xx_for_any_generated_request(bridge):
    base, _ = bridge
    schema = from_url(f'{base}/openapi.json')
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    session = requests.Session()
    per_mode = max(1, EXAMPLES // 2)
    seen: dict[str, set[int]] = {}

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=per_mode, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case):
                response = case.call(base_url=base, session=session, timeout=10)
                seen.setdefault(operation.label, set()).add(response.status_code)
                _check(case, response)

            try:
                fuzz()
            except Unsatisfiable:
                # No input of this operation can be made invalid (e.g. GET /health).
                assert mode == GenerationMode.NEGATIVE, operation.label
    # The fuzz reached every operation and got past validation somewhere.
    assert set(seen) == {op.label for op in operations}
    assert any(200 in codes for codes in seen.values())
    assert requests.get(f'{base}/health', timeout=5).status_code == 200
