"""vln_doctor's verdicts from measured facts, its model server and GPU checks (no ROS)."""
import json
import os
import stat

import cv2
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from vln_ros.sim.vlm_server import ServerConfig, serve_in_thread
from vln_ros.tools import doctor
from vln_ros.tools import doctor_checks as dc
from vln_ros.tools.doctor_checks import FAIL, OK, SKIP, WARN, CheckResult, Thresholds

# A decorator, not a loaded profile: other test modules keep their own settings.
FUZZ = settings(max_examples=int(os.environ.get('VLN_FUZZ_EXAMPLES', '300')), deadline=None,
                derandomize=True)

GOOD = ('{"environment": "a corridor", "action": "forward", "waypoints": '
        '[{"dx": 0.30, "dy": 0.00, "dtheta": 0.00, "confidence": 0.90}]}')


# ------------------------------------------------------------------------------ summary

def test_report_counts_verdicts_and_exit_codes():
    results = [CheckResult('a', OK, 'fine'), CheckResult('b', WARN, 'hm', 'look'),
               CheckResult('c', SKIP, 'not run')]
    assert dc.exit_code(results) == 0 and dc.exit_code(results, strict=True) == 1
    rep = dc.report(results)
    assert rep['verdict'] == WARN and rep['ok'] is True
    assert rep['counts'] == {OK: 1, WARN: 1, FAIL: 0, SKIP: 1}
    results.append(CheckResult('d', FAIL, 'broken', 'fix it'))
    assert dc.exit_code(results) == 1 and dc.report(results)['ok'] is False
    text = dc.format_text(results)
    assert '[FAIL] d' in text and '-> fix it' in text and '-> look' in text
    assert '1 ok, 1 warnings, 1 failures, 1 skipped' in text
    json.dumps(dc.report(results))  # JSON-ready


def test_unknown_verdict_is_rejected():
    with pytest.raises(ValueError):
        CheckResult('x', 'GOOD', 'no such verdict')


@FUZZ
@given(st.lists(st.sampled_from(dc.VERDICTS)))
def test_worst_is_the_most_severe(verdicts):
    expected = next((v for v in (FAIL, WARN, OK, SKIP) if v in verdicts), OK)
    assert dc.worst(verdicts) == expected
    results = [CheckResult(str(i), v, '') for i, v in enumerate(verdicts)]
    assert dc.exit_code(results) == (1 if FAIL in verdicts else 0)


def test_rate():
    assert dc.rate_hz([]) is None and dc.rate_hz([1.0]) is None and dc.rate_hz([1.0, 1.0]) is None
    assert dc.rate_hz([0.0, 0.1, 0.2, 0.3, 0.4]) == pytest.approx(10.0)


# ------------------------------------------------------------------------------ model server

@pytest.mark.parametrize('status, verdict, words', [
    ('healthy', OK, 'healthy'), ('initializing', WARN, 'still loading'),
    ('unreachable', FAIL, 'nothing answers'), ('unhealthy', FAIL, 'unhealthy')])
def test_health(status, verdict, words):
    result = dc.check_health(status, 'http://h:1/v1')
    assert result.verdict == verdict and words in result.message
    assert (result.hint != '') == (verdict != OK)


def test_models():
    assert dc.check_models(['Qwen3-VL-32B-Instruct'], '').verdict == OK
    assert dc.check_models(['Qwen3-VL-32B-Instruct'], 'Qwen3-VL-32B-Instruct').verdict == OK
    missing = dc.check_models(['Qwen3-VL-32B-Instruct'], 'qwen3-vl')
    assert missing.verdict == FAIL and "model 'qwen3-vl' not found" in missing.message
    assert '--model-name qwen3-vl' in missing.hint
    assert dc.check_models([], 'x').verdict == WARN
    failed = dc.check_models(None, 'x', 'HTTP 401: Unauthorized.')
    assert failed.verdict == FAIL and '401' in failed.message


def test_probe_verdicts():
    assert dc.check_probe(GOOD, 0.8).verdict == OK
    assert dc.check_probe(GOOD, 0.8).details['action'] == 'forward'
    slow = dc.check_probe(GOOD, 20.0)
    assert slow.verdict == WARN and 'result_timeout' in slow.hint
    text = dc.check_probe('I would turn left here.', 0.5)
    assert text.verdict == WARN and 'text' in text.message
    assert dc.check_probe('%%%', 0.5).verdict == FAIL
    error = dc.check_probe(None, 0.1, "HTTP 404: The model 'x' does not exist.")
    assert error.verdict == FAIL and '404' in error.message


# ------------------------------------------------------------------------------ topics

def test_publishing():
    assert dc.check_publishing('camera', '/c', 0, 0, 2.0, 'start it').verdict == FAIL
    silent = dc.check_publishing('camera', '/c', 1, 0, 2.0, 'start it')
    assert silent.verdict == FAIL and 'no message' in silent.message
    assert dc.check_publishing('camera', '/c', 1, 30, 2.0, 'h').verdict == OK


def test_rate_verdict():
    assert dc.check_rate('camera', None, 5.0).verdict == SKIP
    assert dc.check_rate('camera', 2.0, 5.0).verdict == WARN
    assert dc.check_rate('camera', 30.0, 5.0).verdict == OK


def test_encodings_perception_can_and_cannot_convert():
    frame = np.zeros((4, 6, 3), np.uint8)
    assert dc.image_error('bgr8', 6, 4, 18, frame.tobytes()) is None
    assert 'mono16' in dc.image_error('mono16', 6, 4, 12, bytes(48))
    assert '10 data bytes' in dc.image_error('rgb8', 6, 4, 18, bytes(10))
    ok, jpg = cv2.imencode('.jpg', frame)
    assert dc.compressed_error('jpeg', jpg.tobytes()) is None
    assert dc.compressed_error('jpeg', b'not an image') is not None

    assert dc.check_encoding({}, {}).verdict == SKIP
    assert dc.check_encoding({'bgr8': 20}, {}).verdict == OK
    bad = dc.check_encoding({'bgr8': 20, 'mono16': 10}, {'mono16': 'unsupported ...'})
    assert bad.verdict == FAIL and '10 of 30 frames' in bad.message and "'mono16'" in bad.message
    assert 'compressed' in bad.hint


@pytest.mark.parametrize('pub, sub, compatible', [
    ((dc.RELIABLE, dc.VOLATILE), (dc.BEST_EFFORT, dc.VOLATILE), True),
    ((dc.BEST_EFFORT, dc.VOLATILE), (dc.BEST_EFFORT, dc.VOLATILE), True),
    ((dc.BEST_EFFORT, dc.VOLATILE), (dc.RELIABLE, dc.VOLATILE), False),
    ((dc.RELIABLE, dc.VOLATILE), (dc.RELIABLE, dc.VOLATILE), True),
    ((dc.RELIABLE, dc.VOLATILE), (dc.RELIABLE, dc.TRANSIENT_LOCAL), False),
    ((dc.RELIABLE, dc.TRANSIENT_LOCAL), (dc.RELIABLE, dc.VOLATILE), True),
    ((dc.RELIABLE, dc.TRANSIENT_LOCAL), (dc.RELIABLE, dc.TRANSIENT_LOCAL), True),
])
def test_qos_rules(pub, sub, compatible):
    p = {'reliability': pub[0], 'durability': pub[1]}
    s = {'reliability': sub[0], 'durability': sub[1]}
    assert (dc.qos_incompatibility(p, s) is None) == compatible


@FUZZ
@given(st.sampled_from([dc.RELIABLE, dc.BEST_EFFORT]),
       st.sampled_from([dc.VOLATILE, dc.TRANSIENT_LOCAL]))
def test_a_sensor_data_reader_accepts_any_publisher(reliability, durability):
    sensor = {'reliability': dc.BEST_EFFORT, 'durability': dc.VOLATILE}
    assert dc.qos_incompatibility({'reliability': reliability, 'durability': durability},
                                  sensor) is None


def test_check_qos():
    sensor = {'node': '/perception_node', 'reliability': dc.BEST_EFFORT,
              'durability': dc.VOLATILE}
    planner = {'node': '/planner_node', 'reliability': dc.RELIABLE, 'durability': dc.VOLATILE}
    be_pub = {'node': '/driver', 'reliability': dc.BEST_EFFORT, 'durability': dc.VOLATILE}
    assert dc.check_qos('camera', '/c', [], [sensor], 'h').verdict == SKIP
    assert dc.check_qos('camera', '/c', [be_pub], [], 'start perception').verdict == WARN
    assert dc.check_qos('camera', '/c', [be_pub], [sensor], 'h').verdict == OK
    bad = dc.check_qos('odometry', '/odom', [be_pub], [planner, sensor], 'h')
    assert bad.verdict == FAIL
    assert bad.details['incompatible'] == [
        '/driver -> /planner_node: a best-effort publisher cannot serve a reliable subscription']


def test_stamp_ages():
    th = Thresholds()
    assert dc.check_stamp_age('camera', [], 0, th).verdict == SKIP
    assert dc.check_stamp_age('camera', [0.01, 0.03, 0.02], 0, th).verdict == OK
    assert dc.check_stamp_age('camera', [1.0, 1.1, 0.9], 0, th).verdict == WARN
    stale = dc.check_stamp_age('camera', [30.0, 30.1, 29.9], 0, th)
    assert stale.verdict == FAIL and '30.00 s old' in stale.message and 'bag' in stale.hint
    future = dc.check_stamp_age('odometry', [-5.0, -5.0], 0, th)
    assert future.verdict == FAIL and 'future' in future.message and 'NTP' in future.hint
    # One late message does not decide: the median does.
    assert dc.check_stamp_age('camera', [0.01, 0.02, 9.0], 0, th).verdict == OK
    zero = dc.check_stamp_age('camera', [], 12, th)
    assert zero.verdict == FAIL and 'zero stamp' in zero.message


@FUZZ
@given(st.floats(-100.0, 100.0))
def test_stamp_verdict_follows_the_thresholds(age):
    th = Thresholds()
    verdict = dc.check_stamp_age('x', [age], 0, th).verdict
    expected = OK if abs(age) <= th.stamp_warn_s else WARN if abs(age) <= th.stamp_fail_s \
        else FAIL
    assert verdict == expected


def test_odom_frames():
    assert dc.check_odom_frames({}, {}, 'odom', 'base_link').verdict == SKIP
    assert dc.check_odom_frames({'odom': 5}, {'base_link': 5}, 'odom', 'base_link').verdict == OK
    bad = dc.check_odom_frames({'map': 5}, {'base_footprint': 5}, 'odom', 'base_link')
    assert bad.verdict == WARN and 'map' in bad.message and 'base_footprint' in bad.message


def test_stamp_offset():
    assert dc.check_stamp_offset(None, 0.0).verdict == SKIP
    assert dc.check_stamp_offset(0.05, 0.01).verdict == OK
    assert dc.check_stamp_offset(0.5, 0.0).verdict == WARN
    far = dc.check_stamp_offset(30.0, 0.0)
    assert far.verdict == FAIL and 'behind' in far.message


def test_use_sim_time():
    wall = {'/perception_node': False, '/planner_node': False}
    assert dc.check_use_sim_time(wall, 0, 0).verdict == OK
    assert dc.check_use_sim_time({'a': True, 'b': True}, 1, 50).verdict == OK
    mixed = dc.check_use_sim_time({'a': True, 'b': False}, 1, 50)
    assert mixed.verdict == FAIL and 'differs' in mixed.message
    no_clock = dc.check_use_sim_time({'a': True, 'b': True}, 0, 0)
    assert no_clock.verdict == FAIL and '/clock' in no_clock.message
    assert dc.check_use_sim_time(wall, 1, 30).verdict == WARN
    assert dc.check_use_sim_time({'a': None}, 0, 0).verdict == SKIP


# ------------------------------------------------------------------------------ nodes

def test_nodes():
    graph = [('sim_node', '/'), ('perception_node', '/robot1')]
    assert dc.find_node('perception_node', graph) == '/robot1/perception_node'
    assert dc.find_node('sim_node', graph) == '/sim_node'
    assert dc.find_node('task_node', graph) is None
    assert dc.check_node('task_node', None).verdict == FAIL
    assert dc.check_node('p', '/p', {'x': 1}).verdict == OK
    assert dc.check_node('p', '/p', diagnostic=(0, 'no active task')).verdict == OK
    diag = dc.check_node('p', '/p', diagnostic=(1, 'model errors: HTTP 503'))
    assert diag.verdict == WARN and 'HTTP 503' in diag.message
    mismatch = dc.check_node('p', '/p', mismatches=["vlm.model is '', not 'x'"])
    assert mismatch.verdict == WARN and 'vlm.model' in mismatch.message


# ------------------------------------------------------------------------------ GPU

SMI = ('0, NVIDIA GeForce RTX 3090, 550.54.14, 24576, 22000, 2576, 87\n'
       '1, NVIDIA GeForce RTX 3090, 550.54.14, 24576, 300, 24276, [N/A]\n')


# Captured on the lent NVIDIA H200 with the doctor's own query (2026-11-26).
H200_SMI = '0, NVIDIA H200, 580.159.04, 143771, 0, 143156, 0\n'


def test_real_nvidia_smi_output_parses():
    result = dc.check_gpu(H200_SMI)
    assert result.verdict == OK
    assert result.message == 'driver 580.159.04; 1 GPU(s): 0: NVIDIA H200 139.8 GiB free'


def test_parse_nvidia_smi():
    gpus = dc.parse_nvidia_smi(SMI)
    assert [g['index'] for g in gpus] == [0, 1]
    assert gpus[0]['memory.free'] == 2576.0 and gpus[1]['utilization.gpu'] is None
    with pytest.raises(ValueError):
        dc.parse_nvidia_smi('0, only three, cells\n')


def test_gpu_verdicts():
    missing = dc.check_gpu(None, missing=True)
    assert missing.verdict == FAIL and 'no NVIDIA driver' in missing.message
    failed = dc.check_gpu(None, "NVIDIA-SMI has failed because it couldn't communicate")
    assert failed.verdict == FAIL and 'driver' in failed.hint
    ok = dc.check_gpu(SMI)
    assert ok.verdict == OK and 'driver 550.54.14; 2 GPU(s)' in ok.message
    low = dc.check_gpu(SMI, thresholds=Thresholds(min_gpu_free_mib=4096))
    assert low.verdict == WARN and 'GPU 0' in low.message
    assert dc.check_gpu('').verdict == FAIL


def _fake_smi(tmp_path, script):
    path = tmp_path / 'nvidia-smi'
    path.write_text('#!/bin/sh\n' + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(tmp_path)


def test_gpu_checks_run_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path / 'empty'))
    assert doctor.gpu_checks()[0].verdict == FAIL
    monkeypatch.setenv('PATH', _fake_smi(tmp_path, f"printf '{SMI}'\n"))
    assert doctor.gpu_checks()[0].verdict == OK
    monkeypatch.setenv('PATH', _fake_smi(tmp_path, 'echo "NVIDIA-SMI has failed" >&2; exit 9\n'))
    result = doctor.gpu_checks()[0]
    assert result.verdict == FAIL and 'NVIDIA-SMI has failed' in result.message


# ------------------------------------------------------------------------------ model checks

def _verdicts(results):
    return {r.name: r.verdict for r in results}


def test_model_checks_against_the_test_server():
    with serve_in_thread(ServerConfig()) as server:
        results = doctor.model_checks(server.base_url, '', timeout=2.0, probe_timeout=10.0)
        assert _verdicts(results) == {'model server: health': OK, 'model server: models': OK,
                                      'model server: probe': OK}
        probe = results[-1]
        assert probe.details['method'] == 'json' and probe.details['action'] == 'stop'

        missing = doctor.model_checks(server.base_url, 'no-such-model', timeout=2.0)
        assert _verdicts(missing)['model server: models'] == FAIL
        assert _verdicts(missing)['model server: probe'] == SKIP

        skipped = doctor.model_checks(server.base_url, '', skip_probe=True)
        assert _verdicts(skipped)['model server: probe'] == SKIP

        server.app.state.vlm.config = ServerConfig(garbage_rate=1.0)
        garbage = doctor.model_checks(server.base_url, '', timeout=2.0, probe_timeout=10.0)
        assert _verdicts(garbage)['model server: probe'] in (WARN, FAIL)

        server.app.state.vlm.restart_clock(60.0)  # like a server loading its weights
        loading = doctor.model_checks(server.base_url, '', timeout=2.0)
        assert _verdicts(loading) == {'model server: health': WARN, 'model server: models': SKIP,
                                      'model server: probe': SKIP}
        url = server.base_url
    down = doctor.model_checks(url, '', timeout=1.0)
    assert _verdicts(down)['model server: health'] == FAIL


def test_slow_and_prose_answers_warn():
    with serve_in_thread(ServerConfig(), policy=lambda req: 'Turn left at the door.') as server:
        results = doctor.model_checks(server.base_url, '', guided='none', timeout=2.0)
        assert results[-1].verdict == WARN and 'text' in results[-1].message
    with serve_in_thread(ServerConfig(latency_min=0.3, latency_max=0.3)) as server:
        results = doctor.model_checks(server.base_url, '', timeout=2.0,
                                      thresholds=Thresholds(probe_warn_s=0.1))
        assert results[-1].verdict == WARN and results[-1].details['latency_s'] >= 0.3


def test_main_without_ros_prints_json_and_exits_by_verdict(capsys):
    with serve_in_thread(ServerConfig()) as server:
        rc = doctor.main(['--no-ros', '--json', '--vlm-url', server.base_url])
        report = json.loads(capsys.readouterr().out)
        assert rc == 0 and report['verdict'] == OK
        assert [c['name'] for c in report['checks']] == [
            'model server: health', 'model server: models', 'model server: probe']
        rc = doctor.main(['--no-ros', '--vlm-url', server.base_url, '--model', 'nope'])
        out = capsys.readouterr().out
        assert rc == 1 and '[FAIL] model server: models' in out and "'nope' not found" in out


def test_doctor_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        doctor.main(['--timeout', '0'])
    assert exc.value.code == 2
    args = doctor.build_parser().parse_args([])
    assert args.compressed is None and args.nodes == 'perception_node,planner_node,task_node'
    assert args.timeout > 0 and not args.gpu and not args.skip_probe
    for flag in ('--json', '--vlm-url', '--model', '--camera-topic', '--compressed',
                 '--odom-topic', '--timeout', '--skip-probe', '--gpu'):
        assert flag in doctor.build_parser().format_help()


def test_probe_image_is_a_bgr_frame():
    img = doctor.probe_image()
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8 and img.std() > 10
