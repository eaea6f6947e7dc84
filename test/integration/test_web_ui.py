"""The web UI against the running stack: headless Chromium on /ui, plus the endpoints it uses.

One stack for the module: the simulator (camera, odometry, oracle model server with 0.5-1 s
latency), the task, perception and planner nodes and the bridge, started as processes as
``ros2 run`` would. The browser is Debian's chromium driven by Playwright (no browser
download: scripts/install_browser.sh installs it); the screenshot goes to
$VLN_ARTIFACTS_DIR/web_ui.png (default: the test's tmp dir).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import pathlib
import re
import time

import cv2
import httpx
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage
import websockets

from test.harness import ProcessGroup, wait_until
from vln_ros.nodes.ros_common import SENSOR_QOS
from vln_ros.tools.processes import wait_for_health

CHROMIUM = os.environ.get('VLN_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync', '--no-first-run',
                 '--disable-quic']
API_KEY = 'ui-test-key'


@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    """Simulator with its oracle, task/perception/planner nodes and the bridge."""
    group = ProcessGroup(tmp_path_factory.mktemp('web_ui'))
    try:
        sim = group.start_node('sim_node', module='vln_ros.sim.sim_node', params={
            'scenario': 'corridor_door', 'oracle_port': 0, 'oracle_latency': [0.5, 1.0]})
        oracle = re.search(r'oracle listening on (http://\S+)',
                           sim.wait_for_output('oracle listening on', 60)).group(1)
        group.start_node('task_node', params={'db_path': ':memory:', 'expected_followers': 2})
        group.start_node('perception_node', params={
            'vlm.base_url': oracle, 'vlm.timeout': 10.0, 'keyframe_threshold': 0.1,
            'keyframe_max_interval': 1.0})
        group.start_node('planner_node', params={'result_timeout': 5.0,
                                                 'expected_latency': 0.75})
        media = group.log_dir / 'media'
        media.mkdir()
        # Compressed: the video source's frames stay off the simulator's raw camera topic.
        url = group.start_bridge('vln_bridge', **{'vlm.base_url': oracle,
                                                  'frame_topic_type': 'compressed',
                                                  'media_dir': str(media)})
        wait_for_health(url, lambda body: body['ros']['task_node'] and body['ros'][
            'planner_node'] and '/perception_node' in body['ros']['nodes'])
        yield {'url': url, 'group': group, 'media': media}
    finally:
        group.stop_all()


@pytest.fixture
def procs(stack):
    """The module's processes: their logs are attached to a failing test's report."""
    return stack['group']


@pytest.fixture
def client(stack):
    with httpx.Client(base_url=stack['url'], timeout=20) as c:
        yield c


@pytest.fixture
def page():
    """A page of headless Debian chromium through Playwright (skipped when either is missing).

    Per test: sync Playwright runs an event loop in this thread while it is open.
    """
    sync_api = pytest.importorskip('playwright.sync_api')
    if not os.path.exists(CHROMIUM):
        pytest.skip(f'{CHROMIUM} missing: run scripts/install_browser.sh')
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={'width': 1400, 'height': 1000})
            errors: list[str] = []
            page.on('pageerror', lambda exc: errors.append(str(exc)))
            page.errors = errors
            yield page
        finally:
            browser.close()


def _artifacts_dir(tmp_path) -> pathlib.Path:
    path = pathlib.Path(os.environ.get('VLN_ARTIFACTS_DIR') or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wait_page(page, predicate: str, timeout: float = 20.0, arg=None):
    """Wait for a JS predicate on the page (deadline-based, polled by the browser)."""
    return page.wait_for_function(predicate, arg=arg, timeout=timeout * 1000).json_value()


def _image_hash(page) -> str:
    return hashlib.sha1(page.get_attribute('#live', 'src').encode()).hexdigest()


def _write_video(path: pathlib.Path, frames: int = 20, fps: float = 20.0) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, (160, 120))
    rng = np.random.default_rng(3)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    return str(path)


# --------------------------------------------------------------------------- the page

def test_page_runs_a_task_switches_estops_and_stops(stack, page, client, tmp_path):
    page.goto(stack['url'] + '/ui/')
    # Service status comes from /health.
    for key in ('bridge', 'task_node', 'planner_node', 'model'):
        page.wait_for_selector(f'.pill.ok[data-key="{key}"]', timeout=15000)

    page.fill('#instruction', 'go to the red door')
    assert page.is_checked('#visualize')
    page.click('#create')
    first = _wait_page(page, 'state.task')
    assert first.startswith('vln_')
    assert first in page.text_content('#active-task')
    assert page.text_content('#create') == 'Switch task'

    # Annotated frames arrive over the WebSocket and keep updating.
    page.wait_for_selector('#live.shown', timeout=20000)
    seen = {_image_hash(page)}
    wait_until(lambda: seen.add(_image_hash(page)) or len(seen) >= 3, 20, period=0.1)
    action = page.text_content('#action')
    assert action in ('forward', 'turn_left', 'turn_right', 'back', 'stop')
    assert page.text_content('#environment') not in ('', '-')
    assert page.locator('#waypoints tr').count() >= 1
    page.wait_for_selector('#history tr', timeout=10000)
    # The robot drives to the door: the plot has moving commands.
    _wait_page(page, 'state.cmd.some((s) => s[1] > 0.05)')

    # Switch: a new task, followed by the page, the old one stopped.
    page.fill('#instruction', 'find the yellow box')
    page.click('#create')
    second = _wait_page(page, '(first) => state.task && state.task !== first && state.task',
                        arg=first)
    assert client.get(f'/vln/task/{first}').json()['status'] == 'stopped'
    assert client.get(f'/vln/task/{second}').json()['instruction'] == 'find the yellow box'
    before = _image_hash(page)
    _wait_page(page, '(id) => document.getElementById("history").dataset.task === id',
               arg=second)
    wait_until(lambda: _image_hash(page) != before, 20, period=0.1)
    assert page.get_attribute('#live', 'data-sequence')

    # E-stop: the planner zeroes cmd_vel and holds it; release lets it move again.
    page.wait_for_selector('#estop-state[data-engaged="false"]', timeout=10000)
    page.click('#estop-engage')
    page.wait_for_selector('#estop-state[data-engaged="true"]', timeout=10000)
    assert client.get('/vln/estop').json()['engaged'] is True
    engaged_at = client.get('/vln/cmd_vel').json()['now']
    wait_until(lambda: len([s for s in client.get(
        f'/vln/cmd_vel?since={engaged_at + 0.2}').json()['samples']]) >= 10, 10, period=0.1)
    held = client.get(f'/vln/cmd_vel?since={engaged_at + 0.2}').json()['samples']
    assert all(s['linear_x'] == 0.0 and s['angular_z'] == 0.0 for s in held)
    engage_again = page.text_content('#estop-engage')
    assert engage_again == 'Engage e-stop'  # explicit controls, not a toggle

    # Release asks first; dismissing the dialog keeps the e-stop engaged.
    posts = []
    page.on('request', lambda req: posts.append(req.url) if req.method == 'POST'
            and req.url.endswith('/vln/estop') else None)
    dialogs = []
    page.once('dialog', lambda d: (dialogs.append(d.message), d.dismiss()))
    page.click('#estop-release')
    page.wait_for_selector('#estop-msg:has-text("release cancelled")', timeout=5000)
    # The next poll of the planner's state, after the dismissal, still says engaged.
    with page.expect_response(lambda r: r.url.endswith('/vln/estop')
                              and r.request.method == 'GET', timeout=10000):
        pass
    assert page.get_attribute('#estop-state', 'data-engaged') == 'true'
    assert client.get('/vln/estop').json()['engaged'] is True
    assert posts == [] and dialogs and 'Release the e-stop' in dialogs[0]
    page.once('dialog', lambda d: d.accept())
    page.click('#estop-release')
    page.wait_for_selector('#estop-state[data-engaged="false"]', timeout=10000)
    assert client.get('/vln/estop').json()['engaged'] is False and len(posts) == 1
    # The history table catches up with the latest answer (newest row first).
    _wait_page(page, """() => {
        const latest = $('result-status').textContent.match(/keyframe (\\d+)/);
        const row = document.querySelector('#history tr td');
        return latest && row && row.textContent === latest[1];
    }""", timeout=10)
    shot = _artifacts_dir(tmp_path) / 'web_ui.png'
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # Stop: the task ends, the page says so.
    page.click('#stop')
    page.wait_for_selector('#task-msg:has-text("stopped")', timeout=10000)
    _wait_page(page, '!state.task')
    assert page.text_content('#active-task') == 'no active task'
    assert client.get(f'/vln/task/{second}').json()['status'] == 'stopped'
    assert page.errors == []


def test_page_shows_a_task_made_elsewhere_and_the_planners_estop(stack, page, client, ros):
    """State the page did not make itself: a task created over REST, an e-stop set on ROS."""
    from std_srvs.srv import SetBool

    page.goto(stack['url'] + '/ui/')
    page.wait_for_selector('#estop-state[data-engaged="false"]', timeout=15000)
    task_id = client.post('/vln/task/create', json={
        'instruction': 'find the yellow box'}).json()['task_id']
    page.wait_for_selector(f'#active-task:has-text("{task_id}")', timeout=15000)
    page.wait_for_selector('#active-task:has-text("find the yellow box")', timeout=10000)

    cli = ros.node.create_client(SetBool, 'vln/estop')
    try:
        assert ros.call(cli, SetBool.Request(data=True)).success
        page.wait_for_selector('#estop-state[data-engaged="true"]', timeout=10000)
        assert ros.call(cli, SetBool.Request(data=False)).success
        page.wait_for_selector('#estop-state[data-engaged="false"]', timeout=10000)
    finally:
        ros.call(cli, SetBool.Request(data=False))
        client.post(f'/vln/task/{task_id}/stop')
    assert page.errors == []


def test_page_plays_pauses_and_stops_a_video_source(stack, page, client, tmp_path):
    video = _write_video(stack['media'] / 'clip.avi')
    page.goto(stack['url'] + '/ui/')
    page.select_option('#source-kind', 'path')
    page.fill('#source-text', video)
    page.fill('#source-fps', '25')
    page.click('#source-start')
    page.wait_for_selector('#source-state[data-state="playing"]', timeout=10000)
    assert client.get('/vln/source').json()['fps'] == 25.0
    page.click('#source-pause')
    page.wait_for_selector('#source-state[data-state="paused"]', timeout=15000)
    page.click('#source-resume')
    page.wait_for_selector('#source-state[data-state="playing"]', timeout=15000)
    page.click('#source-stop')
    page.wait_for_selector('#source-state[data-state="stopped"]', timeout=15000)
    # A bad path is explained on the page.
    page.fill('#source-text', 'missing.mp4')
    page.click('#source-start')
    page.wait_for_selector('#source-state.error:has-text("no_such_file")', timeout=15000)
    page.fill('#source-text', str(tmp_path / 'elsewhere.mp4'))
    page.click('#source-start')
    page.wait_for_selector('#source-state.error:has-text("media_dir")', timeout=15000)
    assert page.errors == []


# --------------------------------------------------------------------------- endpoints

def test_video_source_publishes_on_the_camera_topic_at_its_rate(client, ros, tmp_path):
    frames = ros.collect(CompressedImage, 'camera/image_raw/compressed', SENSOR_QOS)
    ros.spin_for(0.5)  # discovery
    # A 10 fps file played at 25 fps: the requested rate wins over the container's.
    video = _write_video(tmp_path / 'up.avi', fps=10.0)
    upload = base64.b64encode(pathlib.Path(video).read_bytes())
    r = client.post('/vln/source', json={'upload': 'data:video/x-msvideo;base64,'
                                         + upload.decode(), 'filename': 'up.avi', 'fps': 25})
    assert r.status_code == 200, r.text
    assert r.json()['source'] == 'upload: up.avi' and r.json()['width'] == 160
    ros.wait_until(lambda: len(frames) >= 20, 10)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in frames[-20:]]
    # From the median interval: one stall of a loaded machine does not change the rate.
    rate = 1.0 / float(np.median(np.diff(stamps)))
    assert 15.0 < rate < 35.0, (rate, np.diff(stamps))
    assert all(m.format == 'jpeg' and bytes(m.data[:2]) == b'\xff\xd8' for m in frames)

    assert client.post('/vln/source/pause').json()['state'] == 'paused'
    # Frames already on their way may still arrive: wait for 0.4 s without one, then none
    # may come for another second.
    last = [len(frames), time.monotonic()]

    def quiet():
        if len(frames) != last[0]:
            last[:] = [len(frames), time.monotonic()]
        return time.monotonic() - last[1] > 0.4
    ros.wait_until(quiet, 5)
    held = len(frames)
    ros.spin_for(1.0)
    assert len(frames) == held
    assert client.post('/vln/source/resume').json()['state'] == 'playing'
    ros.wait_until(lambda: len(frames) >= held + 5, 5)
    status = client.post('/vln/source/stop').json()
    assert status['state'] == 'stopped' and status['frames_published'] >= held + 5
    assert client.post('/vln/source/pause').json()['error']['code'] == 'no_source'


def test_source_requests_are_checked(client, stack, tmp_path):
    def post(body):
        r = client.post('/vln/source', json=body)
        return r.status_code, r.json().get('error', {}).get('code')

    media = stack['media']
    assert post({'path': str(media / 'none.mp4')}) == (404, 'no_such_file')
    assert post({'path': 'none.mp4'}) == (404, 'no_such_file')  # relative: from media_dir
    assert post({'path': str(media)}) == (404, 'no_such_file')
    # Files outside media_dir are refused, also through '..' or a symlink, existing or not.
    outside = _write_video(tmp_path / 'outside.avi')
    link = media / 'link.avi'
    link.symlink_to(outside)
    try:
        for path in (outside, str(tmp_path / 'none.mp4'), '../outside.avi',
                     f'{media}/../{pathlib.Path(outside).name}', 'link.avi', '/etc/hostname'):
            r = client.post('/vln/source', json={'path': path})
            assert r.status_code == 403, (path, r.text)
            error = r.json()['error']
            assert error['code'] == 'outside_media_dir' and 'media_dir' in error['message']
    finally:
        link.unlink()
    for url in ('file:///etc/hostname', 'rtsp://127.0.0.1:8554/cam', 'rtmp://127.0.0.1/live',
                'ftp://127.0.0.1/a.mp4', 'concat:/etc/hostname'):
        assert post({'url': url}) == (422, 'invalid_url'), url
    assert post({'path': '/a.mp4', 'url': 'http://host/a.mp4'}) == (422, 'invalid_request')
    assert post({}) == (422, 'invalid_request')
    assert post({'upload': 'bm90IGEgdmlkZW8=', 'fps': 10}) == (400, 'undecodable_video')
    assert post({'upload': '***'}) == (400, 'invalid_base64')
    assert post({'path': '/a.mp4', 'fps': 0}) == (422, 'invalid_request')


def test_stream_carries_debug_images_only_when_asked(client, stack):
    task_id = client.post('/vln/task/create', json={
        'instruction': 'go to the red door', 'config': {'enable_visualization': True}}
    ).json()['task_id']
    base = stack['url'].replace('http://', 'ws://') + f'/vln/stream/{task_id}'

    async def collect(query: str, kind: str) -> list[dict]:
        """Stream items until two of this kind came, or 20 s passed."""
        items = []
        async with websockets.connect(base + query, max_size=2**24) as ws:
            deadline = time.monotonic() + 20
            while (left := deadline - time.monotonic()) > 0:
                try:
                    items.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
                except asyncio.TimeoutError:
                    break
                if sum(i['type'] == kind for i in items) >= 2:
                    break
        return items

    async def both():
        return await asyncio.gather(collect('?debug_images=true', 'debug_image'),
                                    collect('', 'result'))

    with_images, plain = asyncio.run(both())
    images = [i for i in with_images if i['type'] == 'debug_image']
    results = {i['sequence'] for i in with_images if i['type'] == 'result'}
    assert len(images) >= 2
    assert all(i['task_id'] == task_id and i['jpeg'] for i in images)
    assert base64.b64decode(images[-1]['jpeg'])[:2] == b'\xff\xd8'
    assert images[-1]['sequence'] in results
    assert sum(i['type'] == 'result' for i in plain) >= 2, plain
    assert all(i['type'] != 'debug_image' for i in plain)
    client.post(f'/vln/task/{task_id}/stop')


def test_cmd_vel_and_estop_endpoints(client):
    body = client.get('/vln/cmd_vel').json()
    assert body['now'] > 0
    assert client.get('/vln/cmd_vel?since=nan').status_code == 422
    later = client.get(f'/vln/cmd_vel?since={body["now"] + 1000}').json()
    assert later['samples'] == []
    assert client.post('/vln/estop', json={'engaged': 'maybe'}).status_code == 422
    r = client.post('/vln/estop', json={'engaged': False})
    assert r.status_code == 200 and r.json()['engaged'] is False and r.json()['success']


def test_ui_files_are_open_but_the_api_needs_the_key(procs):
    url = procs.start_bridge('vln_bridge_keyed', api_key=API_KEY)
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.get('/ui', follow_redirects=True).text.count('ui.js') == 1
        for path in ('/ui/', '/ui/index.html', '/ui/ui.js', '/ui/ui.css'):
            assert c.get(path).status_code == 200, path
        assert c.get('/').headers['location'].endswith('/ui/')
        for method, path in (('GET', '/vln/cmd_vel'), ('GET', '/vln/source'),
                             ('POST', '/vln/estop'), ('POST', '/vln/source/stop')):
            assert c.request(method, path).status_code == 401, path
        headers = {'Authorization': f'Bearer {API_KEY}'}
        assert c.get('/vln/source', headers=headers).json()['state'] == 'idle'
