"""The REST / WebSocket bridge over real HTTP and WebSocket, on top of the real graph.

One stack for the module (test model server, task, perception and planner nodes, and two
bridges: an open one and one with an API key and a low frame rate limit), started as
processes exactly as ``ros2 run`` would. Clients are httpx, the websockets package and the
openai package, as a user would use them.
"""
from __future__ import annotations

import asyncio
import base64
import json
import signal
import time

import cv2
from geometry_msgs.msg import Twist
import httpx
import numpy as np
import openai
import pytest
import websockets

from test.harness import ProcessGroup, wait_until
from vln_ros.tools.processes import wait_for_health

MAX_BODY = 2 * 1024 * 1024
SYNC_TIMEOUT = 8.0  # above the model latency (0.3-0.8 s) plus start-up on a loaded 2-core box
API_KEY = 'secret-key-for-tests'


def _jpeg(seed: int = 0, width: int = 640, height: int = 480) -> bytes:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), (0, 0), 4)
    ok, data = cv2.imencode('.jpg', img)
    assert ok
    return data.tobytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode('ascii')


def _bridge(group: ProcessGroup, name: str, url: str, **params) -> str:
    # Compressed frames, as the perception node of this stack takes them (the default, raw,
    # is covered by test_bridge_robot_ready).
    return group.start_bridge(name, **{'vlm.base_url': url, 'max_body_bytes': MAX_BODY,
                                       'sync_timeout': SYNC_TIMEOUT,
                                       'frame_topic_type': 'compressed', **params})


@pytest.fixture(scope='module')
def stack(tmp_path_factory):
    """Model server, task/perception/planner nodes and two bridges, for the whole module."""
    group = ProcessGroup(tmp_path_factory.mktemp('bridge'))
    try:
        url = group.start_vlm_server('--latency', '0.2', '0.3')
        group.start_node('task_node', params={'db_path': ':memory:', 'expected_followers': 2})
        group.start_node('perception_node', params={
            'vlm.base_url': url, 'image_transport': 'compressed', 'keyframe_min_interval': 0.1,
            'vlm.timeout': 10.0})
        group.start_node('planner_node', params={'use_odometry': False, 'result_timeout': 5.0})
        bridge = _bridge(group, 'vln_bridge', url, frame_rate_limit=0.0)
        secured = _bridge(group, 'vln_bridge_secured', url, api_key=API_KEY,
                          frame_rate_limit=5.0, frame_burst=5.0)
        wait_for_health(bridge, lambda body: body['status'] == 'ok' and body['ros'][
            'perception_node'] and '/planner_node' in body['ros']['nodes'])
        wait_for_health(secured, lambda body: body['ros']['task_node'])
        yield {'url': bridge, 'secured': secured, 'vlm': url, 'group': group}
    finally:
        group.stop_all()


@pytest.fixture
def procs(stack):
    """The module's processes: their logs are attached to a failing test's report."""
    return stack['group']


@pytest.fixture
def client(stack, procs):
    with httpx.Client(base_url=stack['url'], timeout=20) as c:
        yield c


def _create(client, instruction, **config) -> str:
    r = client.post('/vln/task/create', json={'instruction': instruction, 'config': config})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body['accepted'] and body['status'] == 'active' and body['task_id'].startswith('vln_')
    return body['task_id']


# A task setting of 0 means the node's default: this small threshold makes every frame that
# differs from the last keyframe a new keyframe (what sync frames need).
SYNC_THRESHOLD = 0.001


def _sync(client, task_id, seed, **extra):
    time.sleep(0.12)  # sync frames must be keyframe_min_interval (0.1 s) apart
    return client.post('/vln/frame/sync',
                       json={'task_id': task_id, 'frame': _b64(_jpeg(seed)), **extra})


# --------------------------------------------------------------------------- health, tasks

def test_health_reports_graph_and_model_server(client):
    body = client.get('/health').json()
    assert body['status'] == 'ok'
    assert {'/task_node', '/perception_node', '/planner_node', '/vln_bridge'} <= \
        set(body['ros']['nodes'])
    assert body['ros']['task_node'] is True
    assert body['model_server']['status'] == 'healthy'
    assert body['model_server']['url'].endswith('/health')


def test_frames_drive_the_graph_and_results_come_back(client, ros):
    cmd = ros.collect(Twist, 'cmd_vel')
    task_id = _create(client, 'go forward along the corridor',
                      keyframe_threshold=SYNC_THRESHOLD, enable_visualization=True,
                      output_fps=2.0)

    # Non-blocking frame: published at once; no result yet for a fresh task.
    r = client.post('/vln/frame', json={'task_id': task_id, 'frame': _b64(_jpeg(1)),
                                        'timestamp': 12.5})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first['frame_accepted'] is True and first['timestamp'] == 12.5
    assert first['task_id'] == task_id and first['frame_stamp'] > 0
    # The client's timestamp is echoed only: the frame is stamped with the bridge's ROS
    # clock (here the system clock) on arrival.
    assert abs(first['frame_stamp'] - time.time()) < 60.0

    # Sync frame: the answer is the result computed from this very frame (same stamp). Right
    # after start-up, discovery may still be connecting perception to the task state (seen:
    # 3 s on a loaded 2-core machine); a frame sent before that gets 504, so send another.
    for seed in (2, 4, 5):
        r = _sync(client, task_id, seed, timestamp=-7.25)
        if r.status_code != 504:
            break
    assert r.status_code == 200, r.text
    result = r.json()
    assert result['result_stamp'] == pytest.approx(result['frame_stamp'], abs=1e-9)
    assert result['timestamp'] == -7.25
    assert result['action'] == 'forward' and result['status'] == 'ok'
    assert result['sequence'] >= 1 and len(result['waypoints']) == 3
    assert result['waypoints'][0] == {'dx': 0.3, 'dy': 0.0, 'dtheta': 0.0, 'confidence': 0.9}
    assert 0.15 <= result['inference_time'] < 5.0
    assert result['linear_vel'] == pytest.approx(0.5)  # mean dx 0.6 * 2 fps, clamped to 0.5
    debug = cv2.imdecode(np.frombuffer(base64.b64decode(result['visualized_frame']), np.uint8),
                         cv2.IMREAD_COLOR)
    assert debug is not None and debug.shape == (480, 640, 3)

    # The non-blocking endpoint now returns that latest result at once.
    latest = client.post('/vln/frame', json={'task_id': task_id,
                                             'frame': _b64(_jpeg(3))}).json()
    assert latest['sequence'] >= result['sequence'] and latest['action'] == 'forward'

    # The planner tracks it: the robot is commanded forward.
    ros.wait_until(lambda: any(m.linear.x > 0.01 for m in cmd), 10)

    task = client.get(f'/vln/task/{task_id}').json()
    assert task['task_id'] == task_id and task['status'] == 'active'
    assert task['instruction'] == 'go forward along the corridor'
    assert task['config'] == {'output_fps': 2.0, 'keyframe_threshold': SYNC_THRESHOLD,
                              'enable_visualization': True}
    assert task['inferences'] >= 1 and task['frames'] >= 1
    assert task['history'] and task['history'][-1]['action'] == 'forward'
    assert client.get(f'/vln/task/{task_id}', params={'history_limit': 1}).json()['history']

    r = client.post(f'/vln/task/{task_id}/stop')
    assert r.status_code == 200 and r.json() == {'task_id': task_id, 'success': True,
                                                 'message': r.json()['message']}
    assert client.get(f'/vln/task/{task_id}').json()['status'] == 'stopped'
    r = client.post(f'/vln/task/{task_id}/stop')
    assert r.status_code == 409 and r.json()['error']['code'] == 'task_not_active'
    # A frame for a task that is no longer active: 409, naming the problem.
    r = client.post('/vln/frame', json={'task_id': task_id, 'frame': _b64(_jpeg(4))})
    assert r.status_code == 409 and task_id in r.json()['error']['message']
    ros.wait_until(lambda: abs(cmd[-1].linear.x) < 1e-6, 5)  # stopped task: robot stops


def test_sync_frame_that_is_no_keyframe_gets_504(client):
    # Default threshold 0.2: the same picture twice is no keyframe the second time.
    task_id = _create(client, 'turn left')
    assert _sync(client, task_id, 7).status_code == 200
    started = time.monotonic()
    r = _sync(client, task_id, 7)
    assert r.status_code == 504 and r.json()['error']['code'] == 'no_result'
    assert 'keyframe_threshold such as 0.001' in r.json()['error']['message']
    assert SYNC_TIMEOUT - 0.2 < time.monotonic() - started < SYNC_TIMEOUT + 3


def test_task_switch_is_followed(client):
    old = _create(client, 'turn left', keyframe_threshold=SYNC_THRESHOLD)
    new = _create(client, 'turn right please', keyframe_threshold=SYNC_THRESHOLD)
    assert old != new
    assert client.get(f'/vln/task/{old}').json()['status'] == 'stopped'
    r = client.post('/vln/frame', json={'task_id': old, 'frame': _b64(_jpeg(5))})
    assert r.status_code == 409
    r = _sync(client, new, 6)
    assert r.status_code == 200 and r.json()['action'] == 'turn_right'
    assert r.json()['visualized_frame'] is None  # not enabled for this task


def test_zero_or_null_task_settings_mean_the_node_default(client):
    """The rule of CreateTask and Navigate: 0 (or, over REST, null) is the node's default."""
    for config in ({'keyframe_threshold': 0, 'output_fps': 0},
                   {'keyframe_threshold': None, 'output_fps': None}, {}):
        task_id = _create(client, 'go forward', **config)
        task = client.get(f'/vln/task/{task_id}').json()
        assert task['config']['keyframe_threshold'] == 0.0, config  # 0.0: the node default
        assert task['config']['output_fps'] == 0.0, config
    r = client.post('/vln/task/create', json={'instruction': 'go',
                                              'config': {'keyframe_threshold': -0.5}})
    assert r.status_code == 422 and 'keyframe_threshold' in r.json()['error']['message']
    client.post(f'/vln/task/{task_id}/stop')


# --------------------------------------------------------------------------- bad input

def test_bad_input_gets_a_clear_4xx(client, stack):
    task_id = _create(client, 'go forward', keyframe_threshold=SYNC_THRESHOLD)

    def post(body=None, path='/vln/frame', **kw):
        r = client.post(path, json=body, **kw) if body is not None else client.post(path, **kw)
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        return r.status_code, r.json()['error']

    status, err = post(content=b'{"task_id": "x", "frame": ',
                       headers={'content-type': 'application/json'})
    assert (status, err['code']) == (400, 'invalid_json') and 'JSON' in err['message']
    status, err = post(content=b'not json at all')
    assert status == 400 and 'JSON object' in err['message']
    status, err = post({'task_id': task_id})
    assert status == 422 and 'frame' in err['message']
    status, err = post({'task_id': task_id, 'frame': 'not*base64!'})
    assert (status, err['code']) == (400, 'invalid_base64')
    status, err = post({'task_id': task_id, 'frame': _b64(b'GIF89a not a jpeg or png')})
    assert (status, err['code']) == (415, 'not_an_image')
    status, err = post({'task_id': task_id, 'frame': _b64(_jpeg()[:5000])})
    assert (status, err['code']) == (400, 'truncated_jpeg')
    status, err = post({'task_id': task_id, 'frame': 'data:text/plain;base64,aGk='})
    assert (status, err['code']) == (400, 'invalid_data_url')
    ok, png = cv2.imencode('.png', np.zeros((8, 8, 3), np.uint8))
    r = client.post('/vln/frame', json={'task_id': task_id,
                                        'frame': 'data:image/png;base64,' + _b64(png.tobytes())})
    assert r.status_code == 200, r.text  # PNG as a data URL is fine
    status, err = post({'task_id': 'vln_0_nosuch', 'frame': _b64(_jpeg())})
    assert (status, err['code']) == (404, 'unknown_task')
    status, err = post({'task_id': '../../etc', 'frame': _b64(_jpeg())})
    assert status == 404
    assert client.get('/vln/task/vln_0_nosuch').status_code == 404
    assert client.post('/vln/task/vln_0_nosuch/stop').status_code == 404
    status, err = post({'instruction': ''}, path='/vln/task/create')
    assert status == 422 and 'instruction' in err['message']
    status, err = post({'instruction': 'go', 'config': {'output_fps': 99}},
                       path='/vln/task/create')
    assert status == 422 and 'output_fps' in err['message']
    status, err = post(content=b'{"instruction": "go \\ud800 on"}', path='/vln/task/create',
                       headers={'content-type': 'application/json'})
    assert status == 422 and 'unicode' in err['message']
    # Oversized body: refused by its declared length, and when streamed without one.
    big = b'{"task_id": "' + b'x' * (MAX_BODY + 10) + b'"}'
    status, err = post(content=big, headers={'content-type': 'application/json'})
    assert (status, err['code']) == (413, 'body_too_large')

    def chunked():
        for _ in range(MAX_BODY // 65536 + 2):
            yield b' ' * 65536
    status, err = post(content=chunked(), headers={'content-type': 'application/json'})
    assert status == 413
    r = client.get('/vln/nothing')
    assert r.status_code == 404 and r.json()['error']['code'] == 'not_found'
    r = client.get('/vln/frame')
    assert r.status_code == 405 and 'not allowed' in r.json()['error']['message']
    # The bridge survived all of it.
    assert client.get('/health').json()['status'] == 'ok'


# --------------------------------------------------------------------------- WebSocket

def test_websocket_stream_frames_in_results_out(client, stack):
    task_id = _create(client, 'turn left at the end', keyframe_threshold=SYNC_THRESHOLD)
    ws_url = stack['url'].replace('http://', 'ws://') + f'/vln/stream/{task_id}'

    async def session():
        got, errors = [], []
        async with websockets.connect(ws_url, max_size=2**24) as ws:
            await ws.send('{broken json')
            await ws.send(_jpeg(20))  # binary frames are the raw JPEG bytes
            deadline = time.monotonic() + 15
            i = 0
            while time.monotonic() < deadline and len(got) < 3:
                i += 1
                await ws.send(json.dumps({'frame': _b64(_jpeg(20 + i)), 'timestamp': i}))
                try:
                    while True:
                        item = json.loads(await asyncio.wait_for(ws.recv(), 0.15))
                        if item['type'] in ('result', 'error'):
                            (got if item['type'] == 'result' else errors).append(item)
                except asyncio.TimeoutError:
                    pass
            client.post(f'/vln/task/{task_id}/stop')
            while True:  # the stop is pushed too
                item = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if item['type'] == 'task_state' and item['status'] != 'active':
                    return got, errors, item

    got, errors, state = asyncio.run(session())
    assert len(got) >= 3
    assert all(r['task_id'] == task_id and r['action'] == 'turn_left' for r in got)
    assert [r['sequence'] for r in got] == sorted({r['sequence'] for r in got})
    assert errors and errors[0]['error']['code'] == 'invalid_json'
    assert state['status'] == 'stopped' and state['task_id'] == task_id


def test_debug_image_that_overtakes_its_result_is_streamed_with_it(client, stack, ros):
    """vln/debug_image and vln/result are two topics: the image may arrive first.

    It is streamed once its result names the task and sequence, never as sequence 0.
    """
    from sensor_msgs.msg import Image
    from vln_ros_interfaces.msg import NavigationResult

    from vln_ros.nodes.ros_common import RELIABLE_QOS, sec_to_stamp

    task_id = _create(client, 'turn left here', enable_visualization=True)
    debug_pub = ros.node.create_publisher(Image, 'vln/debug_image', 2)
    result_pub = ros.node.create_publisher(NavigationResult, 'vln/result', RELIABLE_QOS)

    def bridge_listens(topic):
        return any(i.node_name == 'vln_bridge'
                   for i in ros.node.get_subscriptions_info_by_topic(topic))
    ros.wait_until(lambda: bridge_listens('/vln/debug_image') and bridge_listens('/vln/result'),
                   10)
    stamp = sec_to_stamp(time.time())
    image = Image(height=4, width=4, encoding='bgr8', step=12, data=bytes(48))
    image.header.stamp = stamp
    result = NavigationResult(task_id=task_id, sequence=77, action='turn_left',
                              status=NavigationResult.STATUS_OK)
    result.header.stamp = stamp
    url = stack['url'].replace('http', 'ws') + f'/vln/stream/{task_id}?debug_images=true'

    async def session():
        async with websockets.connect(url, max_size=2**24) as ws:
            await ws.send('{broken json')  # its answer: the stream is registered
            while json.loads(await asyncio.wait_for(ws.recv(), 10))['type'] != 'error':
                pass
            debug_pub.publish(image)
            await asyncio.sleep(0.5)  # the image is at the bridge before its result
            result_pub.publish(result)
            items = []
            while not {'result', 'debug_image'} <= {i['type'] for i in items}:
                item = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if item.get('sequence') == 77:
                    items.append(item)
            return items

    items = asyncio.run(session())
    debug = next(i for i in items if i['type'] == 'debug_image')
    assert debug['task_id'] == task_id and debug['sequence'] == 77
    assert debug['stamp'] == pytest.approx(stamp.sec + stamp.nanosec * 1e-9)
    client.post(f'/vln/task/{task_id}/stop')


def test_websocket_for_unknown_or_inactive_task_is_closed_with_a_reason(stack):
    base = stack['url'].replace('http://', 'ws://')

    async def attempt(task_id):
        async with websockets.connect(f'{base}/vln/stream/{task_id}') as ws:
            message = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return message, closed.value.rcvd.code

    message, code = asyncio.run(attempt('vln_0_unknown'))
    assert code == 4404 and message['error']['code'] == 'unknown_task'


# --------------------------------------------------------------------------- OpenAI proxy

def test_openai_client_works_through_the_bridge(stack):
    oai = openai.OpenAI(base_url=stack['url'] + '/v1', api_key='unused', max_retries=0)
    models = [m.id for m in oai.models.list().data]
    assert models == ['Qwen3-VL-32B-Instruct']
    messages = [{'role': 'user', 'content': [
        {'type': 'image_url', 'image_url': {'url': 'data:image/jpeg;base64,' + _b64(_jpeg())}},
        {'type': 'text', 'text': 'Where to?\nInstruction: turn right at the door'}]}]
    reply = oai.chat.completions.create(model=models[0], messages=messages, max_tokens=300)
    answer = json.loads(reply.choices[0].message.content)
    assert answer['action'] == 'turn_right' and answer['waypoints']

    stream = oai.chat.completions.create(model=models[0], messages=messages, stream=True)
    pieces = [c.choices[0].delta.content or '' for c in stream if c.choices]
    assert len([p for p in pieces if p]) >= 2
    assert json.loads(''.join(pieces))['action'] == 'turn_right'

    with pytest.raises(openai.NotFoundError) as err:  # relayed with its status and message
        oai.chat.completions.create(model='no-such-model', messages=messages)
    assert 'no-such-model' in str(err.value)
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=models[0], messages=[{'role': 'user', 'content': [
            {'type': 'image_url', 'image_url': {'url': 'data:image/jpeg;base64,AAAA'}}]}])


def test_sse_is_passed_through_chunk_by_chunk(client, stack):
    body = {'model': 'Qwen3-VL-32B-Instruct', 'stream': True, 'messages': [
        {'role': 'user', 'content': 'Instruction: go forward'}]}
    # A 2 s answer: the server spreads its chunks over 1.2 s, far more than a stall of a
    # loaded test process could hide.
    config = stack['vlm'].removesuffix('/v1') + '/_test/config'
    httpx.post(config, json={'latency_min': 2.0, 'latency_max': 2.0}).raise_for_status()
    arrivals = []
    try:
        with client.stream('POST', '/v1/chat/completions', json=body) as r:
            assert r.status_code == 200
            assert r.headers['content-type'].startswith('text/event-stream')
            for line in r.iter_lines():
                if line.startswith('data: '):
                    arrivals.append((time.monotonic(), line[6:]))
    finally:
        httpx.post(config, json={'latency_min': 0.2, 'latency_max': 0.3}).raise_for_status()
    assert arrivals[-1][1] == '[DONE]' and len(arrivals) >= 4
    # The model server spreads the chunks over its latency; a buffering proxy would not.
    assert arrivals[-2][0] - arrivals[0][0] > 0.5
    r = client.post('/v1/chat/completions', content=b'{not json')
    assert r.status_code == 400 and r.json()['object'] == 'error'  # LMDeploy's flat shape


# --------------------------------------------------------------------------- video

def test_analyze_video_samples_frames_evenly(client, tmp_path):
    path = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 10, (160, 120))
    for i in range(30):
        writer.write(np.full((120, 160, 3), 8 * i, np.uint8))
    writer.release()
    with open(path, 'rb') as f:
        video = _b64(f.read())
    r = client.post('/analyze/video', json={'video': video, 'instruction': 'go forward',
                                            'max_frames': 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body['frames_used'] == 4 and body['action'] == 'forward'
    assert body['status'] == 'ok' and len(body['waypoints']) == 3
    r = client.post('/analyze/video', json={'video': _b64(b'\x00' * 2000),
                                            'instruction': 'go forward'})
    assert r.status_code == 400 and r.json()['error']['code'] == 'undecodable_video'
    r = client.post('/analyze/video', json={'video': '!!', 'instruction': 'go'})
    assert r.status_code == 400 and r.json()['error']['code'] == 'invalid_base64'


# --------------------------------------------------------------------------- key, rate, schema

def test_api_key_is_required_except_on_health(stack):
    url = stack['secured']
    assert httpx.get(f'{url}/health').status_code == 200
    for path in ('/openapi.json', '/v1/models', '/vln/task/vln_0_x'):
        r = httpx.get(url + path)
        assert r.status_code == 401 and r.headers['www-authenticate'] == 'Bearer'
    r = httpx.post(f'{url}/vln/frame', json={'task_id': 'x', 'frame': 'x'},
                   headers={'Authorization': 'Bearer wrong'})
    assert r.status_code == 401 and 'API key' in r.json()['error']['message']
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + '/v1', api_key='wrong', max_retries=0).models.list()
    oai = openai.OpenAI(base_url=url + '/v1', api_key=API_KEY, max_retries=0)
    assert oai.models.list().data

    async def ws(query=''):
        async with websockets.connect(url.replace('http', 'ws') + f'/vln/stream/x{query}') as c:
            message = json.loads(await c.recv())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await c.recv()
            return message['error']['code'], closed.value.rcvd.code
    assert asyncio.run(ws()) == ('unauthorized', 4401)
    assert asyncio.run(ws(f'?api_key={API_KEY}')) == ('unknown_task', 4404)


def test_frame_rate_is_limited_per_client(stack):
    headers = {'Authorization': f'Bearer {API_KEY}'}
    frames = [_b64(_jpeg(0)), _b64(_jpeg(1))]
    with httpx.Client(base_url=stack['secured'], headers=headers, timeout=10) as c:
        task_id = _create(c, 'go forward')
        codes = []
        started = time.monotonic()
        for i in range(15):
            r = c.post('/vln/frame', json={'task_id': task_id, 'frame': frames[i % 2]})
            codes.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers['retry-after']) >= 1
                assert 'frame_rate_limit' in r.json()['error']['message']
        # A burst of 5, then 5 frames/s: what a slow (loaded) client may send meanwhile.
        allowed = 5 + int(5.0 * (time.monotonic() - started)) + 1
        assert 5 <= codes.count(200) <= allowed and codes.count(429) >= 15 - allowed, codes
        assert allowed < 15, 'too slow to measure the limit'
        time.sleep(0.5)  # the bucket refills at 5 frames/s
        r = c.post('/vln/frame', json={'task_id': task_id, 'frame': _b64(_jpeg())})
        assert r.status_code == 200


def test_openapi_document_describes_the_endpoints(client):
    doc = client.get('/openapi.json').json()
    paths = doc['paths']
    for path, method in (('/health', 'get'), ('/vln/task/create', 'post'),
                         ('/vln/task/{task_id}', 'get'), ('/vln/task/{task_id}/stop', 'post'),
                         ('/vln/frame', 'post'), ('/vln/frame/sync', 'post'),
                         ('/analyze/video', 'post'), ('/v1/models', 'get'),
                         ('/v1/chat/completions', 'post')):
        assert method in paths[path], path
    frame = doc['components']['schemas']['FrameResponse']['properties']
    assert {'environment', 'action', 'waypoints', 'linear_vel', 'angular_vel',
            'visualized_frame', 'inference_time', 'frame_accepted'} <= set(frame)
    assert '409' in paths['/vln/frame']['post']['responses']


def test_raw_frames_and_a_clean_exit_on_sigterm(stack, tmp_path, ros):
    """frame_topic_type both: the frame also goes out decoded, as sensor_msgs/Image."""
    from sensor_msgs.msg import Image

    from vln_ros.nodes.ros_common import SENSOR_QOS
    images = ros.collect(Image, 'camera/image_raw', SENSOR_QOS)
    group = ProcessGroup(tmp_path)
    try:
        url = group.start_bridge('vln_bridge_raw', **{'vlm.base_url': stack['vlm'],
                                                      'frame_topic_type': 'both'})
        proc = group.procs[-1]
        with httpx.Client(base_url=url, timeout=20) as c:
            # A freshly started bridge may not have discovered the task service yet (503).
            wait_until(lambda: c.get('/health').json()['ros'].get('task_node'), 30)
            task_id = _create(c, 'go forward')
            ros.wait_until(lambda: ros.node.count_publishers('camera/image_raw') >= 1, 10)
            stamps = []

            def sent_and_seen():
                r = c.post('/vln/frame', json={'task_id': task_id, 'frame': _b64(_jpeg(9))})
                assert r.status_code == 200, r.text
                stamps.append(r.json()['frame_stamp'])
                ros.spin_for(0.2)  # best effort: the first frames may precede the matching
                return images
            wait_until(sent_and_seen, 15)
        msg = images[0]
        stamp = min(stamps, key=lambda s: abs(s - (msg.header.stamp.sec
                                                   + msg.header.stamp.nanosec * 1e-9)))
        assert (msg.width, msg.height, msg.encoding) == (640, 480, 'bgr8')
        assert msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9 == \
            pytest.approx(stamp, abs=1e-6)
        proc.signal(signal.SIGTERM)
        assert proc.proc.wait(10) == 0
    finally:
        group.stop_all()
