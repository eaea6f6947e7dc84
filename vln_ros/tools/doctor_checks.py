"""Verdicts of vln_doctor, computed from measured facts (ROS-free, unit tested).

The doctor (vln_ros.tools.doctor) gathers facts: what the model server answered, which
messages arrived on the camera and odometry topics and when, the QoS of the publishers and
subscriptions, the stack's nodes and parameters, nvidia-smi's output. This module turns them
into one :class:`CheckResult` per check, each with a verdict and a hint that says what to
do. Verdicts: OK, WARN (works, but look at it), FAIL (the stack will not work like this) and
SKIP (not checked: switched off, or what it needs failed before).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
import csv
from dataclasses import asdict, dataclass, field
import io
import statistics

from vln_ros.core.images import ImageError, compressed_to_bgr, image_to_bgr
from vln_ros.core.parser import parse_answer

OK, WARN, FAIL, SKIP = 'OK', 'WARN', 'FAIL', 'SKIP'
VERDICTS = (OK, WARN, FAIL, SKIP)
_SEVERITY = {SKIP: 0, OK: 1, WARN: 2, FAIL: 3}

BEST_EFFORT, RELIABLE = 'best_effort', 'reliable'
VOLATILE, TRANSIENT_LOCAL = 'volatile', 'transient_local'


@dataclass
class CheckResult:
    """One check: its name, verdict, what was found and what to do about it."""

    name: str
    verdict: str
    message: str
    hint: str = ''
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject a verdict outside OK/WARN/FAIL/SKIP."""
        if self.verdict not in VERDICTS:
            raise ValueError(f'verdict must be one of {VERDICTS}, got {self.verdict!r}')

    def to_dict(self) -> dict:
        """A JSON-ready dict (name, verdict, message, hint, details)."""
        return asdict(self)


@dataclass(frozen=True)
class Thresholds:
    """Limits between OK, WARN and FAIL; the defaults fit the stack's own defaults."""

    min_camera_rate: float = 5.0  # Hz; keyframes need a steady stream
    min_odom_rate: float = 10.0  # Hz; the planner tracks at 50 Hz on the newest pose
    stamp_warn_s: float = 0.5  # |now - stamp| of a sensor message
    stamp_fail_s: float = 2.0
    offset_warn_s: float = 0.25  # camera vs odometry stamp offset (latency compensation)
    offset_fail_s: float = 1.0
    probe_warn_s: float = 12.0  # the planner's default result_timeout
    min_gpu_free_mib: float = 1024.0


# ------------------------------------------------------------------------------ summary

def worst(verdicts: Iterable[str]) -> str:
    """The most severe verdict (FAIL > WARN > OK > SKIP); OK for none."""
    found = list(verdicts)
    return max(found, key=_SEVERITY.__getitem__) if found else OK


def exit_code(results: Sequence[CheckResult], strict: bool = False) -> int:
    """0 when nothing failed (nor warned, when strict), else 1."""
    bad = {FAIL, WARN} if strict else {FAIL}
    return 1 if any(r.verdict in bad for r in results) else 0


def report(results: Sequence[CheckResult]) -> dict:
    """The machine-readable report printed by ``vln_doctor --json``."""
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    verdict = worst(r.verdict for r in results)
    return {'verdict': verdict, 'ok': verdict != FAIL, 'counts': counts,
            'checks': [r.to_dict() for r in results]}


def format_text(results: Sequence[CheckResult], color: bool = False) -> str:
    """A human-readable report: one line per check, the hint under each non-OK one."""
    colors = {OK: '\033[32m', WARN: '\033[33m', FAIL: '\033[31m', SKIP: '\033[90m'}
    width = max((len(r.name) for r in results), default=10)
    lines = []
    for r in results:
        tag = f'[{r.verdict:<4}]'
        if color:
            tag = f'{colors[r.verdict]}{tag}\033[0m'
        lines.append(f'{tag} {r.name:<{width}}  {r.message}')
        if r.hint and r.verdict in (WARN, FAIL):
            lines.append(f'{"":7} {"":<{width}}  -> {r.hint}')
    counts = report(results)['counts']
    lines.append(f'{counts[OK]} ok, {counts[WARN]} warnings, {counts[FAIL]} failures, '
                 f'{counts[SKIP]} skipped')
    return '\n'.join(lines)


# ------------------------------------------------------------------------------ statistics

def rate_hz(arrivals: Sequence[float]) -> float | None:
    """Mean message rate from receive times (s); None with fewer than two messages."""
    if len(arrivals) < 2:
        return None
    span = max(arrivals) - min(arrivals)
    return (len(arrivals) - 1) / span if span > 0 else None


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# ------------------------------------------------------------------------------ model server

def check_health(status: str, url: str) -> CheckResult:
    """Verdict of the server's /health answer (VlmClient.health(): healthy, initializing...)."""
    name = 'model server: health'
    if status == 'healthy':
        return CheckResult(name, OK, f'{url} is healthy', details={'status': status})
    if status == 'initializing':
        return CheckResult(
            name, WARN, f'{url} is still loading the model',
            'wait: LMDeploy answers 503 until the weights are loaded (a 32B model on four '
            'GPUs takes minutes); check its log for progress', {'status': status})
    if status == 'unreachable':
        return CheckResult(
            name, FAIL, f'nothing answers at {url}',
            'start the model server (docker compose up lmdeploy / lmdeploy serve api_server); '
            'check host, port and firewall, and that vlm.base_url ends in /v1',
            {'status': status})
    return CheckResult(name, FAIL, f'{url} reports {status!r}',
                       'read the model server log: the engine failed (out of GPU memory, '
                       'a crashed worker); restart it', {'status': status})


def check_models(listed: Sequence[str] | None, configured: str,
                 error: str = '') -> CheckResult:
    """Check /v1/models lists the model perception asks for (or any, when none is set)."""
    name = 'model server: models'
    if listed is None:
        return CheckResult(name, FAIL, f'/v1/models failed: {error or "no answer"}',
                           "a 401 means vlm.api_key does not match the server's --api-keys; "
                           'a 503 means the server is still loading',
                           {'error': error})
    details = {'listed': list(listed), 'configured': configured}
    if not listed:
        return CheckResult(name, WARN, 'the server lists no models yet',
                           'the server is starting; wait and run the doctor again', details)
    if not configured:
        return CheckResult(name, OK, f'serves {", ".join(listed)} (perception uses the first)',
                           details=details)
    if configured in listed:
        return CheckResult(name, OK, f'serves {configured}', details=details)
    return CheckResult(
        name, FAIL, f'model {configured!r} not found; the server serves {", ".join(listed)}',
        f'set vlm.model to one of the listed names (or leave it empty), or start the server '
        f'with --model-name {configured}', details)


def check_probe(text: str | None, latency: float | None, error: str = '',
                thresholds: Thresholds = Thresholds()) -> CheckResult:
    """Judge a one-image probe request: answered, in time, in a parseable form."""
    name = 'model server: probe'
    if error:
        return CheckResult(name, FAIL, f'probe request failed: {error}',
                           'a 404 means the model name is wrong; a 400 that the server rejects '
                           'the request (image input or guided decoding unsupported: try '
                           'vlm.guided json_schema or none); timeouts: the server is overloaded',
                           {'error': error, 'latency_s': latency})
    parsed = parse_answer(text)
    details = {'latency_s': latency, 'method': parsed.method, 'action': parsed.action,
               'answer': (text or '')[:300]}
    timing = f'{latency:.2f} s' if latency is not None else 'unknown latency'
    if parsed.method == 'failed':
        return CheckResult(name, FAIL, f'answer in {timing} does not parse: {parsed.error}',
                           'use guided decoding (vlm.guided regex for LMDeploy, json_schema for '
                           'others) and check the server serves a vision-language model',
                           details)
    if parsed.method != 'json':
        return CheckResult(name, WARN, f'answer in {timing} parsed only by {parsed.method} '
                           f'fallback (action {parsed.action})',
                           'the server ignores guided decoding: check vlm.guided matches the '
                           'server (regex needs LMDeploy) and vlm.max_tokens is not too small',
                           details)
    if latency is not None and latency > thresholds.probe_warn_s:
        return CheckResult(name, WARN, f'answer parses but took {timing}',
                           f"slower than the planner's result_timeout "
                           f'({thresholds.probe_warn_s:.0f} s): the robot will stop between '
                           'answers; lower vlm.max_pixels / image_long_side or raise '
                           'result_timeout', details)
    return CheckResult(name, OK, f'answered in {timing}, parses (action {parsed.action})',
                       details=details)


# ------------------------------------------------------------------------------ topics

def check_publishing(label: str, topic: str, publishers: int, messages: int, window_s: float,
                     hint: str) -> CheckResult:
    """Check someone publishes on the topic and messages arrived in the window."""
    name = f'{label}: publishing'
    details = {'topic': topic, 'publishers': publishers, 'messages': messages,
               'window_s': window_s}
    if publishers == 0 and messages == 0:
        return CheckResult(name, FAIL, f'no publisher on {topic}', hint, details)
    if messages == 0:
        return CheckResult(name, FAIL, f'{publishers} publisher(s) on {topic} but no message '
                           f'in {window_s:.1f} s',
                           'the source is advertised but silent (driver stalled, or a '
                           'different DDS transport/domain); check it with ros2 topic hz',
                           details)
    return CheckResult(name, OK, f'{messages} messages from {publishers} publisher(s) on '
                       f'{topic}', details=details)


def check_rate(label: str, rate: float | None, minimum: float) -> CheckResult:
    """Check the message rate is high enough for the stack."""
    name = f'{label}: rate'
    if rate is None:
        return CheckResult(name, SKIP, 'fewer than two messages: no rate')
    details = {'rate_hz': round(rate, 2), 'minimum_hz': minimum}
    if rate < minimum:
        return CheckResult(name, WARN, f'{rate:.1f} Hz (expected at least {minimum:g} Hz)',
                           "a slow source: check the driver's frame rate, CPU load and network "
                           '(same-host traffic should use the shipped Fast DDS profile)',
                           details)
    return CheckResult(name, OK, f'{rate:.1f} Hz', details=details)


def image_error(encoding: str, width: int, height: int, step: int, data: bytes) -> str | None:
    """Why perception cannot convert this raw image (None: it can)."""
    try:
        image_to_bgr(encoding, width, height, step, data)
    except ImageError as exc:
        return str(exc)
    return None


def compressed_error(fmt: str, data: bytes) -> str | None:
    """Why perception cannot decode this compressed image (None: it can)."""
    try:
        compressed_to_bgr(fmt, data)
    except ImageError as exc:
        return str(exc)
    return None


def check_encoding(counts: Mapping[str, int], errors: Mapping[str, str],
                   compressed: bool = False) -> CheckResult:
    """Can perception convert the frames? counts: frames per encoding; errors: per encoding."""
    name = 'camera: encoding'
    if not counts:
        return CheckResult(name, SKIP, 'no frames to inspect')
    details = {'encodings': dict(counts), 'errors': dict(errors)}
    if errors:
        bad = sum(counts.get(enc, 0) for enc in errors)
        first = next(iter(errors))
        return CheckResult(
            name, FAIL, f'{bad} of {sum(counts.values())} frames cannot be converted '
            f'({", ".join(repr(e) for e in errors)}): {errors[first]}',
            'perception takes 8-bit rgb8, bgr8, rgba8, bgra8 or mono8 (JPEG or PNG when '
            "compressed): set the camera driver's pixel format, convert depth/16-bit images, "
            'or subscribe to the compressed topic (image_transport:=compressed)'
            if not compressed else
            'publish JPEG or PNG data, or use the raw topic (image_transport:=raw)', details)
    return CheckResult(name, OK, ', '.join(sorted(counts)), details=details)


def qos_incompatibility(pub: Mapping, sub: Mapping) -> str | None:
    """Why a subscription gets nothing from a publisher (None: compatible).

    Each side is a mapping with 'reliability' and 'durability' ('best_effort'/'reliable',
    'volatile'/'transient_local'). DDS matches by request-offered rules: a reliable reader
    needs a reliable writer, a transient-local reader a transient-local writer; a
    best-effort volatile reader accepts any writer.
    """
    reasons = []
    if sub.get('reliability') == RELIABLE and pub.get('reliability') == BEST_EFFORT:
        reasons.append('a best-effort publisher cannot serve a reliable subscription')
    if sub.get('durability') == TRANSIENT_LOCAL and pub.get('durability') == VOLATILE:
        reasons.append('a volatile publisher cannot serve a transient-local subscription')
    return '; '.join(reasons) or None


def check_qos(label: str, topic: str, publishers: Sequence[Mapping],
              subscribers: Sequence[Mapping], reader_hint: str) -> CheckResult:
    """Every publisher/subscription pair on the topic must be QoS compatible.

    Endpoints are mappings with 'node' plus the fields of :func:`qos_incompatibility`.
    """
    name = f'{label}: qos'
    details = {'topic': topic, 'publishers': [dict(p) for p in publishers],
               'subscribers': [dict(s) for s in subscribers]}
    if not publishers:
        return CheckResult(name, SKIP, 'no publisher to match', details=details)
    if not subscribers:
        return CheckResult(name, WARN, f'nobody in the stack subscribes to {topic}',
                           reader_hint, details)
    bad = []
    for pub in publishers:
        for sub in subscribers:
            reason = qos_incompatibility(pub, sub)
            if reason:
                bad.append(f'{pub.get("node", "?")} -> {sub.get("node", "?")}: {reason}')
    if bad:
        details['incompatible'] = bad
        return CheckResult(name, FAIL, f'incompatible QoS on {topic}: {bad[0]}'
                           + (f' (+{len(bad) - 1} more)' if len(bad) > 1 else ''),
                           'make the publisher reliable (or the subscription best effort, '
                           'qos_profile_sensor_data); ros2 topic info -v shows both sides',
                           details)
    readers = ', '.join(sorted({s.get('node', '?') for s in subscribers}))
    return CheckResult(name, OK, f'{len(publishers)} publisher(s) match {readers}',
                       details=details)


def check_stamp_age(label: str, ages: Sequence[float], zero_stamps: int = 0,
                    thresholds: Thresholds = Thresholds(), clock: str = 'wall clock'
                    ) -> CheckResult:
    """Judge the age of header stamps on arrival (median of now - stamp)."""
    name = f'{label}: stamps'
    if not ages and not zero_stamps:
        return CheckResult(name, SKIP, 'no messages')
    if zero_stamps:
        return CheckResult(name, FAIL, f'{zero_stamps} messages have a zero stamp',
                           'the source does not stamp its messages: set header.stamp to the '
                           'capture time (latency compensation pairs it with odometry)',
                           {'zero_stamps': zero_stamps})
    median = _median(ages)
    details = {'median_age_s': round(median, 3), 'min_age_s': round(min(ages), 3),
               'max_age_s': round(max(ages), 3), 'clock': clock}
    if median < -thresholds.stamp_warn_s:
        verdict = FAIL if median < -thresholds.stamp_fail_s else WARN
        return CheckResult(name, verdict, f'stamps are {-median:.2f} s in the future '
                           f'(against the {clock})',
                           'clocks out of sync: run chrony/NTP on every machine of the robot, '
                           'or check use_sim_time (the source and the stack must use the same '
                           'clock)', details)
    if median > thresholds.stamp_warn_s:
        verdict = FAIL if median > thresholds.stamp_fail_s else WARN
        return CheckResult(name, verdict, f'stamps are {median:.2f} s old on arrival '
                           f'(against the {clock})',
                           'stale stamps: a replayed bag needs --clock and use_sim_time:=true; '
                           'a driver must stamp with the capture time of the current clock; '
                           'otherwise clocks are out of sync (chrony/NTP)', details)
    return CheckResult(name, OK, f'{median * 1000:.0f} ms old on arrival ({clock})',
                       details=details)


def check_odom_frames(frame_ids: Mapping[str, int], child_frame_ids: Mapping[str, int],
                      odom_frame: str, base_frame: str) -> CheckResult:
    """Check the odometry frame ids match the planner's odom_frame and base_frame."""
    name = 'odometry: frames'
    if not frame_ids:
        return CheckResult(name, SKIP, 'no messages')
    details = {'frame_ids': dict(frame_ids), 'child_frame_ids': dict(child_frame_ids),
               'expected': [odom_frame, base_frame]}
    problems = []
    if set(frame_ids) != {odom_frame}:
        problems.append(f'header.frame_id {sorted(frame_ids)} (planner odom_frame '
                        f'{odom_frame!r})')
    if set(child_frame_ids) != {base_frame}:
        problems.append(f'child_frame_id {sorted(child_frame_ids)} (planner base_frame '
                        f'{base_frame!r})')
    if problems:
        return CheckResult(name, WARN, 'frame ids differ: ' + '; '.join(problems),
                           "set the planner's odom_frame / base_frame to the odometry's "
                           'frames, or fix the odometry source; the path is drawn in '
                           'odom_frame', details)
    return CheckResult(name, OK, f'{odom_frame} -> {base_frame}', details=details)


def check_stamp_offset(camera_age: float | None, odom_age: float | None,
                       thresholds: Thresholds = Thresholds()) -> CheckResult:
    """Camera and odometry stamps must come from one clock (latency compensation)."""
    name = 'clock: camera vs odometry'
    if camera_age is None or odom_age is None:
        return CheckResult(name, SKIP, 'needs camera and odometry messages')
    offset = camera_age - odom_age  # > 0: camera stamps are older
    details = {'offset_s': round(offset, 3)}
    if abs(offset) > thresholds.offset_warn_s:
        verdict = FAIL if abs(offset) > thresholds.offset_fail_s else WARN
        return CheckResult(name, verdict, f'camera stamps are {abs(offset):.2f} s '
                           f'{"behind" if offset > 0 else "ahead of"} the odometry stamps',
                           "the planner places waypoints at the odometry pose of the frame's "
                           'stamp: stamp both with one synchronised clock (chrony/NTP between '
                           'camera host and robot; same use_sim_time)', details)
    return CheckResult(name, OK, f'{offset * 1000:+.0f} ms apart', details=details)


def check_use_sim_time(node_values: Mapping[str, bool | None], clock_publishers: int,
                       clock_messages: int) -> CheckResult:
    """use_sim_time must agree across the stack and with /clock being published."""
    name = 'clock: use_sim_time'
    known = {n: v for n, v in node_values.items() if v is not None}
    details = {'use_sim_time': dict(node_values), 'clock_publishers': clock_publishers,
               'clock_messages': clock_messages}
    if len(set(known.values())) > 1:
        on = sorted(n for n, v in known.items() if v)
        return CheckResult(name, FAIL, f'use_sim_time differs between nodes (true on '
                           f'{", ".join(on)})',
                           'set use_sim_time the same on every node (a launch argument for '
                           'all of them)', details)
    sim = any(known.values())
    if sim and not clock_messages:
        return CheckResult(name, FAIL, 'use_sim_time is true but nothing is published on '
                           '/clock' + (' (advertised, silent)' if clock_publishers else ''),
                           'start the simulator with publish_clock, or replay the bag with '
                           '--clock; on a real robot set use_sim_time:=false', details)
    if not sim and (clock_publishers or clock_messages) and known:
        return CheckResult(name, WARN, '/clock is published but the stack uses the wall clock',
                           'with a simulator or a bag replay set use_sim_time:=true on every '
                           'node, or stop publishing /clock', details)
    if not known:
        return CheckResult(name, SKIP, 'no node answered for use_sim_time', details=details)
    return CheckResult(name, OK, 'simulated time from /clock' if sim else 'wall clock on all '
                       'nodes, no /clock', details=details)


# ------------------------------------------------------------------------------ nodes

def find_node(name: str, graph: Iterable[tuple[str, str]], namespace: str = '/') -> str | None:
    """Fully qualified name of the node called name, or None.

    From the root namespace the first one in any namespace counts; from a robot's namespace
    (`--ros-args -r __ns:=/robot1`) only the node in that namespace does, so two robots on
    one host are never mixed up.
    """
    wanted = namespace.rstrip('/')
    for node, ns in graph:
        if node == name and (not wanted or ns.rstrip('/') == wanted):
            return ns.rstrip('/') + '/' + node
    return None


def check_node(name: str, fqn: str | None, params: Mapping | None = None,
               diagnostic: tuple[int, str] | None = None,
               mismatches: Sequence[str] = ()) -> CheckResult:
    """Check the node runs and its settings agree with what the doctor checked.

    diagnostic: (level 0..3, message) of its latest /diagnostics status, if any;
    mismatches: settings that differ between the node and the doctor's flags.
    """
    title = f'node: {name}'
    if fqn is None:
        return CheckResult(title, FAIL, f'{name} is not running',
                           'start the stack (ros2 launch vln_ros vln.launch.py) and read the '
                           "node's log for a start-up error; check ROS_DOMAIN_ID and "
                           'ROS_AUTOMATIC_DISCOVERY_RANGE match', {'params': None})
    details = {'fqn': fqn, 'params': dict(params) if params else None}
    if diagnostic is not None:
        details['diagnostic'] = {'level': diagnostic[0], 'message': diagnostic[1]}
    if mismatches:
        return CheckResult(title, WARN, f'{fqn}: ' + '; '.join(mismatches),
                           'the doctor checked other settings than the node uses: rerun it '
                           "without those flags, or fix the node's parameters", details)
    if diagnostic is not None and diagnostic[0] >= 1:
        return CheckResult(title, WARN, f'{fqn} reports: {diagnostic[1]}',
                           "see the node's log and /diagnostics", details)
    return CheckResult(title, OK, f'running as {fqn}', details=details)


# ------------------------------------------------------------------------------ GPU

NVIDIA_SMI_QUERY = ('index,name,driver_version,memory.total,memory.used,memory.free,'
                    'utilization.gpu')


def parse_nvidia_smi(text: str) -> list[dict]:
    """Parse ``nvidia-smi --query-gpu=NVIDIA_SMI_QUERY --format=csv,noheader,nounits``."""
    keys = NVIDIA_SMI_QUERY.split(',')
    gpus = []
    for row in csv.reader(io.StringIO(text)):
        cells = [c.strip() for c in row]
        if not cells or not any(cells):
            continue
        if len(cells) != len(keys):
            raise ValueError(f'unexpected nvidia-smi line: {",".join(row)!r}')
        gpu = dict(zip(keys, cells, strict=True))
        for key in ('index', 'memory.total', 'memory.used', 'memory.free', 'utilization.gpu'):
            try:
                gpu[key] = float(gpu[key]) if key != 'index' else int(gpu[key])
            except ValueError:
                gpu[key] = None  # '[N/A]' on some boards
        gpus.append(gpu)
    return gpus


def check_gpu(output: str | None, error: str = '', missing: bool = False,
              thresholds: Thresholds = Thresholds()) -> CheckResult:
    """Verdict of the nvidia-smi query: driver present, GPUs listed, free memory."""
    name = 'gpu: nvidia-smi'
    if missing:
        return CheckResult(name, FAIL, 'nvidia-smi not found: no NVIDIA driver on this host',
                           'install the NVIDIA driver (and nvidia-container-toolkit for '
                           'Docker), reboot, and check nvidia-smi lists the GPUs; run --gpu '
                           'on the model server host')
    if error or output is None:
        return CheckResult(name, FAIL, f'nvidia-smi failed: {error or "no output"}',
                           'the driver is not loaded or does not match the kernel module '
                           '(reboot after a driver update; dmesg | grep -i nvrm)',
                           {'error': error})
    try:
        gpus = parse_nvidia_smi(output)
    except ValueError as exc:
        return CheckResult(name, WARN, str(exc), 'read nvidia-smi by hand')
    if not gpus:
        return CheckResult(name, FAIL, 'nvidia-smi lists no GPU',
                           'check the GPUs are visible (CUDA_VISIBLE_DEVICES, docker --gpus)')
    details = {'gpus': gpus}
    summary = ', '.join(f'{g["index"]}: {g["name"]} {_gib(g["memory.free"])} free'
                        for g in gpus)
    driver = gpus[0]['driver_version']
    low = [g for g in gpus if g['memory.free'] is not None
           and g['memory.free'] < thresholds.min_gpu_free_mib]
    if low:
        return CheckResult(name, WARN, f'driver {driver}; low free memory on GPU '
                           f'{", ".join(str(g["index"]) for g in low)} ({summary})',
                           'fine when the model server already runs there (LMDeploy takes '
                           'most of the memory for its KV cache); otherwise another process '
                           'holds it: nvidia-smi shows which', details)
    return CheckResult(name, OK, f'driver {driver}; {len(gpus)} GPU(s): {summary}',
                       details=details)


def _gib(mib: float | None) -> str:
    return 'n/a' if mib is None else f'{mib / 1024:.1f} GiB'
