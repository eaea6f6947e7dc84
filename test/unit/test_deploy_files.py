"""Launch files, params YAML, rviz config and Docker files: consistent with the code and each other.

launch_ros, ros2cli and a Docker engine are not available in CI, so most checks read the files:
the launch plan of vln.launch.py is computed from plain strings, the other launch files are
parsed, and the params YAML is compared with the parameters the nodes declare in their source.
Where launch_ros or `docker compose` exist, they are used as well.
"""
from __future__ import annotations

import ast
import importlib.util
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCH = ROOT / 'launch'
PARAMS = ROOT / 'config' / 'vln.yaml'
DOCKER = ROOT / 'docker'
# Node name in the YAML -> the source files that declare its parameters.
NODE_SOURCES = {
    'perception_node': ['vln_ros/nodes/perception_node.py', 'vln_ros/nodes/perception_params.py'],
    'planner_node': ['vln_ros/nodes/planner_node.py', 'vln_ros/nodes/planner_params.py',
                     'vln_ros/nodes/collision_params.py'],
    'task_node': ['vln_ros/nodes/task_node.py'],
    'collision_guard': ['vln_ros/nodes/collision_guard_node.py',
                        'vln_ros/nodes/collision_params.py'],
    'vln_bridge': ['vln_ros/bridge/ros_side.py', 'vln_ros/bridge/main.py'],
}
_MISSING = object()


def load_launch_module(name: str):
    """Import a launch file as a module (vln.launch.py imports launch_ros lazily)."""
    spec = importlib.util.spec_from_file_location(name.replace('.', '_'), LAUNCH / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def vln_launch():
    return load_launch_module('vln.launch.py')


def console_scripts() -> set[str]:
    text = (ROOT / 'setup.py').read_text()
    return set(re.findall(r"'(\w+) = vln_ros\.[\w.]+:main'", text))


def _constant(node: ast.AST):
    """Value of a literal or constant arithmetic (10 * 1024 * 1024); _MISSING otherwise."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator, ast.unaryop)
    if all(isinstance(n, allowed) for n in ast.walk(ast.Expression(node))):
        return eval(compile(ast.Expression(node), '<const>', 'eval'), {'__builtins__': {}})
    return _MISSING


def declared_parameters(paths: list[str]) -> dict[str, object]:
    """Parameters declared in node sources: declare(self, 'name', default, ...),
    self.declare_parameter('name', default, ...) and ParamSpec('name', default, ...);
    value = the default (or _MISSING)."""
    found: dict[str, object] = {}
    for rel in paths:
        path = ROOT / rel
        if not path.exists():
            continue
        for call in ast.walk(ast.parse(path.read_text())):
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, 'attr', '')
            args = call.args
            if name == 'declare' and len(args) >= 3:
                key, default = args[1], args[2]
            elif name in ('declare_parameter', 'ParamSpec') and len(args) >= 2:
                key, default = args[0], args[1]
            else:
                continue
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found[key.value] = _constant(default)
    return found


def flatten(params: dict, prefix: str = '') -> dict[str, object]:
    """Nested YAML mapping -> dotted parameter names, as rcl reads them."""
    out = {}
    for key, value in params.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(flatten(value, name + '.'))
        else:
            out[name] = value
    return out


def params_yaml() -> dict[str, dict[str, object]]:
    """The params file as {section: {dotted name: value}}, section '/**' or the node name."""
    data = yaml.safe_load(PARAMS.read_text())
    sections = {}
    for key, body in data.items():
        assert list(body) == ['ros__parameters'], f'{key}: only ros__parameters expected'
        node = key if key == '/**' else key.removeprefix('/**/')
        sections[node] = flatten(body['ros__parameters'])
    return sections


def _same_type(yaml_value, default) -> bool:
    # rclpy refuses an int for a declared float (and the reverse): types must match exactly.
    return type(yaml_value) is type(default)


# ------------------------------------------------------------------------------ params YAML

def test_params_yaml_has_one_section_per_node_and_shared_values():
    sections = params_yaml()
    assert set(sections) == {'/**', *NODE_SOURCES}
    raw = yaml.safe_load(PARAMS.read_text())
    # Keys match the node in any namespace (launch argument `namespace`).
    assert all(key == '/**' or key.startswith('/**/') for key in raw)
    # `/**` last: command-line -p rules merge into it and must win over node sections.
    assert list(raw)[-1] == '/**'


# Values the launch YAML sets on purpose away from the node's own default, and why.
LAUNCH_OVERRIDES = {
    # The launch starts both followers; a task node run alone counts whoever is discovered.
    ('task_node', 'expected_followers'): 2,
}


@pytest.mark.parametrize('node', sorted(NODE_SOURCES))
def test_every_yaml_key_is_declared_by_the_node_with_its_type_and_default(node):
    sources = NODE_SOURCES[node]
    if not any((ROOT / s).exists() for s in sources):
        pytest.skip(f'{node}: source not present')
    declared = declared_parameters(sources)
    assert declared, f'no declarations found in {sources}'
    section = params_yaml()[node]
    unknown = sorted(set(section) - set(declared))
    assert not unknown, f'{node}: YAML keys the node does not declare (typos?): {unknown}'
    for name, value in section.items():
        default = declared[name]
        if default is _MISSING:
            continue
        assert _same_type(value, default), f'{node}.{name}: YAML {value!r} vs {default!r}'
        expected = LAUNCH_OVERRIDES.get((node, name), default)
        assert value == expected, f'{node}.{name}: YAML {value!r} differs from {expected!r}'


@pytest.mark.parametrize('node', ['perception_node', 'planner_node', 'task_node'])
def test_every_declared_parameter_of_the_stack_is_in_the_yaml(node):
    sections = params_yaml()
    present = set(sections[node])
    declared = declared_parameters(NODE_SOURCES[node])
    # Shared values count when the node declares them.
    present |= {k for k in sections['/**'] if k in declared}
    assert sorted(set(declared) - present) == []


def test_shared_values_are_declared_by_some_node_with_the_same_default():
    sections = params_yaml()
    shared = sections['/**']
    assert {'base_frame', 'max_linear_vel', 'max_angular_vel'} <= set(shared)
    for name, value in shared.items():
        owners = {node: declared_parameters(src).get(name, _MISSING)
                  for node, src in NODE_SOURCES.items()}
        owners = {n: d for n, d in owners.items() if d is not _MISSING}
        assert owners, f'/** {name}: no node declares it'
        for node, default in owners.items():
            assert _same_type(value, default) and value == default, (name, node, default)
            assert name not in sections[node], f'{name} both in /** and in {node}'


def test_the_static_parser_catches_a_misspelled_key(tmp_path):
    declared = declared_parameters(NODE_SOURCES['planner_node'])
    assert 'result_timeout' in declared and declared['rate_hz'] == 50.0
    assert 'result_timout' not in declared


# ------------------------------------------------------------------------------ vln.launch.py

def _values(module, **overrides) -> dict[str, str]:
    values = {name: default for name, default, _ in module.ARGUMENTS}
    values.update(module.default_paths('/opt/ros/jazzy/share/vln_ros'))
    values.update(overrides)
    return values


def test_vln_launch_arguments_have_descriptions(vln_launch):
    names = [a[0] for a in vln_launch.ARGUMENTS]
    assert len(names) == len(set(names))
    required = {'namespace', 'params_file', 'camera_topic', 'use_compressed', 'use_sim_time',
                'log_level', 'start_bridge', 'start_lmdeploy', 'model_path', 'model_name', 'tp',
                'session_len', 'cache_max_entry_count', 'lmdeploy_port'}
    assert required <= set(names)
    assert all(len(description) > 10 for _, _, description in vln_launch.ARGUMENTS)
    defaults = {name: default for name, default, _ in vln_launch.ARGUMENTS}
    assert defaults['tp'] == '4' and defaults['lmdeploy_port'] == '23333'
    paths = vln_launch.default_paths(str(ROOT))
    assert pathlib.Path(paths['params_file']) == PARAMS
    assert pathlib.Path(vln_launch.localhost_profile(str(ROOT))).exists()
    # The robot launch keeps the ROS DDS defaults: it must reach drivers on other computers.
    assert defaults['dds_profile'] == ''


def test_vln_launch_default_plan(vln_launch):
    plan = vln_launch.stack_plan(_values(vln_launch), environ={})
    nodes = {n['name']: n for n in plan['nodes']}
    assert set(nodes) == {'perception_node', 'planner_node', 'task_node'}
    assert {n['executable'] for n in plan['nodes']} <= console_scripts()
    # collision_guard guards other cmd_vel streams (teleop, nav2): started on its own.
    assert set(params_yaml()) - {'/**', 'vln_bridge', 'collision_guard'} == set(nodes)
    perception = nodes['perception_node']
    assert perception['parameters'][0].endswith('config/vln.yaml')
    assert perception['parameters'][1] == {'use_sim_time': False, 'image_transport': 'raw'}
    assert all(n['remappings'] == [] for n in plan['nodes'])  # the default names
    assert perception['arguments'] == ['--ros-args', '--log-level', 'info']
    assert plan['processes'] == []
    # Nothing in the robot path pins a DDS profile or an RMW (a Go2 stack runs CycloneDDS).
    assert plan['env'] == {}
    profile = vln_launch.localhost_profile('/opt/ros/jazzy/share/vln_ros')
    chosen = vln_launch.stack_plan(_values(vln_launch, dds_profile=profile), environ={})
    assert chosen['env'] == {'FASTRTPS_DEFAULT_PROFILES_FILE': profile}
    # A profile already in the environment is kept.
    kept = vln_launch.stack_plan(_values(vln_launch, dds_profile=profile),
                                 environ={'FASTRTPS_DEFAULT_PROFILES_FILE': '/x.xml'})
    assert kept['env'] == {}


def test_vln_launch_remaps_the_robot_topics_and_frames(vln_launch):
    # A Spot: odometry and cmd_vel under the robot's name, base frame "body", stamped cmd_vel.
    plan = vln_launch.stack_plan(_values(
        vln_launch, odom_topic='/spot/odometry', cmd_vel_topic='/spot/cmd_vel',
        camera_topic='/spot/camera/frontleft/image', camera_info_topic='/spot/camera/info',
        base_frame='body', odom_frame='odom', use_stamped_cmd_vel='true', start_bridge='true'),
        environ={})
    nodes = {n['name']: n for n in plan['nodes']}
    planner = nodes['planner_node']
    assert set(planner['remappings']) == {('odom', '/spot/odometry'),
                                          ('cmd_vel', '/spot/cmd_vel')}
    assert planner['parameters'][1] == {'use_sim_time': False, 'base_frame': 'body',
                                        'odom_frame': 'odom', 'use_stamped_cmd_vel': True}
    perception = nodes['perception_node']
    assert ('camera/image_raw', '/spot/camera/frontleft/image') in perception['remappings']
    assert ('camera/camera_info', '/spot/camera/info') in perception['remappings']
    assert perception['parameters'][1]['base_frame'] == 'body'
    assert 'odom_frame' not in perception['parameters'][1]  # perception declares none
    assert ('cmd_vel', '/spot/cmd_vel') in nodes['vln_bridge']['remappings']
    assert nodes['task_node']['remappings'] == []
    # Empty frame and stamping arguments leave the params file in charge.
    plain = vln_launch.stack_plan(_values(vln_launch), environ={})
    assert 'use_stamped_cmd_vel' not in plain['nodes'][1]['parameters'][1]


@pytest.mark.parametrize('which, exists, model, words', [
    (lambda _: None, lambda _: True, '/models/q', ['lmdeploy', 'not on PATH', 'vlm_base_url']),
    (lambda _: '/usr/bin/lmdeploy', lambda _: False, '/models/missing',
     ['/models/missing', 'does not exist', 'vln_model_download']),
])
def test_vln_launch_start_lmdeploy_fails_with_one_clear_line(vln_launch, which, exists, model,
                                                            words):
    with pytest.raises(vln_launch.LaunchSetupError) as caught:
        vln_launch.stack_plan(_values(vln_launch, start_lmdeploy='true', model_path=model),
                              environ={}, which=which, exists=exists)
    message = str(caught.value)
    assert '\n' not in message and all(w in message for w in words), message
    # A Hugging Face id is LMDeploy's to download; an existing directory is fine.
    for ok in ('Qwen/Qwen3-VL-32B-Instruct', '/models/q'):
        plan = vln_launch.stack_plan(_values(vln_launch, start_lmdeploy='true', model_path=ok),
                                     environ={}, which=lambda _: '/usr/bin/lmdeploy',
                                     exists=lambda _: True)
        assert plan['processes'][0]['cmd'][3] == ok


def test_vln_launch_camera_remap_compressed_sim_time_namespace(vln_launch):
    plan = vln_launch.stack_plan(_values(
        vln_launch, camera_topic='/front/image_raw', use_compressed='true', use_sim_time='true',
        namespace='robot1', log_level='debug'), environ={})
    for node in plan['nodes']:
        assert node['namespace'] == 'robot1'
        assert node['parameters'][1]['use_sim_time'] is True
        assert node['arguments'][-1] == 'debug'
    perception = next(n for n in plan['nodes'] if n['name'] == 'perception_node')
    assert perception['parameters'][1]['image_transport'] == 'compressed'
    assert ('camera/image_raw/compressed', '/front/image_raw/compressed') \
        in perception['remappings']


def test_vln_launch_with_lmdeploy_and_bridge(vln_launch):
    here = {'which': lambda _: '/usr/bin/lmdeploy', 'exists': lambda _: True}
    plan = vln_launch.stack_plan(_values(
        vln_launch, start_lmdeploy='true', start_bridge='true', lmdeploy_port='24000',
        model_path='/m/Qwen3-VL-8B-Instruct', model_name='qwen8b', tp='2',
        bridge_host='0.0.0.0', bridge_api_key='k'), environ={}, **here)
    [process] = plan['processes']
    assert process['cmd'] == [
        'lmdeploy', 'serve', 'api_server', '/m/Qwen3-VL-8B-Instruct', '--backend', 'pytorch',
        '--tp', '2', '--server-port', '24000', '--model-name', 'qwen8b',
        '--session-len', '16384', '--cache-max-entry-count', '0.8']
    nodes = {n['name']: n for n in plan['nodes']}
    assert nodes['vln_bridge']['executable'] in console_scripts()
    for name in ('perception_node', 'vln_bridge'):
        assert nodes[name]['parameters'][1]['vlm.base_url'] == 'http://127.0.0.1:24000/v1'
    assert 'vlm.base_url' not in nodes['planner_node']['parameters'][1]
    bridge = nodes['vln_bridge']['parameters'][1]
    assert bridge['host'] == '0.0.0.0' and bridge['api_key'] == 'k'
    assert bridge['frame_topic_type'] == 'raw' and bridge['allow_insecure'] is False
    # An explicit URL wins over the co-launched server.
    plan = vln_launch.stack_plan(_values(vln_launch, start_lmdeploy='true',
                                         vlm_base_url='http://gpu:23333/v1'), environ={},
                                 **here)
    perception = next(n for n in plan['nodes'] if n['name'] == 'perception_node')
    assert perception['parameters'][1]['vlm.base_url'] == 'http://gpu:23333/v1'


def test_vln_launch_rejects_a_bad_boolean(vln_launch):
    with pytest.raises(ValueError):
        vln_launch.stack_plan(_values(vln_launch, use_compressed='maybe'), environ={})


# ------------------------------------------------------------------------------ other launch files

def _launch_calls(name: str) -> list[ast.Call]:
    tree = ast.parse((LAUNCH / name).read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _kw(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


@pytest.mark.parametrize('name', ['bridge.launch.py', 'sim.launch.py'])
def test_declarative_launch_files_reference_what_exists(name, vln_launch):
    calls = _launch_calls(name)
    declared = {}
    for call in calls:
        if getattr(call.func, 'id', '') == 'DeclareLaunchArgument':
            arg_name = call.args[0].value
            description = _kw(call, 'description')
            assert description is not None, f'{name}: {arg_name} has no description'
            declared[arg_name] = call
    assert {'namespace', 'params_file', 'use_sim_time', 'log_level'} <= set(declared)
    used = {c.args[0].value for c in calls
            if getattr(c.func, 'id', '') in ('LaunchConfiguration', 'arg')
            and c.args and isinstance(c.args[0], ast.Constant)}
    assert used <= set(declared), f'{name}: undeclared arguments {used - set(declared)}'
    executables = {_kw(c, 'executable').value for c in calls
                   if getattr(c.func, 'id', '') == 'Node'}
    assert executables - {'rviz2'} <= console_scripts()
    text = (LAUNCH / name).read_text()
    for rel in re.findall(r"'(config|launch)', '([\w.]+)'", text):
        assert (ROOT / rel[0] / rel[1]).exists(), rel
    for rel in re.findall(r"/(config/[\w.]+)'", text):
        assert (ROOT / rel).exists(), rel
    if name == 'sim.launch.py':
        include = next(c for c in calls if getattr(c.func, 'id', '') == 'IncludeLaunchDescription')
        passed = {k.value for k in _kw(include, 'launch_arguments').func.value.keys}
        assert passed <= {a[0] for a in vln_launch.ARGUMENTS}
        assert 'oracle_server' in console_scripts() and 'sim_node' in console_scripts()


def test_launch_files_build_with_launch_ros():
    pytest.importorskip('launch_ros')
    pytest.importorskip('ament_index_python')
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    try:
        get_package_share_directory('vln_ros')
    except (PackageNotFoundError, OSError):
        pytest.skip('vln_ros not installed in an ament prefix')
    from launch import LaunchDescription
    for name in ('vln.launch.py', 'bridge.launch.py', 'sim.launch.py'):
        description = load_launch_module(name).generate_launch_description()
        assert isinstance(description, LaunchDescription)
        assert description.get_launch_arguments()


# ------------------------------------------------------------------------------ rviz

def test_rviz_config_shows_the_stack_topics_in_the_odom_frame():
    config = yaml.safe_load((ROOT / 'config' / 'vln.rviz').read_text())
    manager = config['Visualization Manager']
    assert manager['Global Options']['Fixed Frame'] == 'odom'
    displays = {d['Class']: d for d in manager['Displays']}
    topics = {d['Class']: d.get('Topic', {}).get('Value') for d in manager['Displays']
              if d.get('Enabled')}
    assert {'rviz_default_plugins/Grid', 'rviz_default_plugins/TF'} <= set(displays)
    assert topics['rviz_default_plugins/Path'] == '/vln/path'
    assert topics['rviz_default_plugins/MarkerArray'] == '/vln/markers'
    assert topics['rviz_default_plugins/Odometry'] == '/odom'
    assert topics['rviz_default_plugins/Image'] == '/vln/debug_image'
    # Every topic shown is one a node of this package publishes or subscribes.
    sources = '\n'.join(p.read_text() for p in (ROOT / 'vln_ros').rglob('*.py'))
    for display in manager['Displays']:
        topic = display.get('Topic', {}).get('Value')
        if topic:
            assert f"'{topic.lstrip('/')}'" in sources, topic


# ------------------------------------------------------------------------------ Docker

def _env_example() -> dict[str, str]:
    out = {}
    for line in (DOCKER / '.env.example').read_text().splitlines():
        if line.strip() and not line.lstrip().startswith('#'):
            key, _, value = line.partition('=')
            out[key.strip()] = value.strip()
    return out


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-style ${VAR} / ${VAR:-default} substitution."""
    def sub(match):
        name, default = match.group(1), match.group(3) or ''
        return env.get(name) or default
    return re.sub(r'\$\{(\w+)(:-([^}]*))?\}', sub, text)


def _compose(env: dict[str, str]) -> dict:
    return yaml.safe_load(_interpolate((DOCKER / 'compose.yaml').read_text(), env))


def test_compose_variables_are_documented_in_env_example():
    used = set(re.findall(r'\$\{(\w+)', (DOCKER / 'compose.yaml').read_text()))
    assert used <= set(_env_example()), used - set(_env_example())


@pytest.mark.parametrize('env', ['defaults', 'example'])
def test_compose_ports_model_and_gpus_are_consistent(env, vln_launch):
    compose = _compose({} if env == 'defaults' else _env_example())
    lmdeploy, vln = compose['services']['lmdeploy'], compose['services']['vln']
    command = lmdeploy['command'].split()
    model_name = {name: default for name, default, _ in vln_launch.ARGUMENTS}['model_name']
    assert command[:3] == ['lmdeploy', 'serve', 'api_server']
    assert command[3] == f'/models/{model_name}'
    options = dict(zip(command[4::2], command[5::2], strict=True))
    assert options['--backend'] == 'pytorch' and options['--tp'] == '4'
    assert options['--server-port'] == vln_launch.DEFAULT_LMDEPLOY_PORT == '23333'
    assert options['--model-name'] == model_name == _env_example()['MODEL_NAME']
    # LMDeploy is published on the host's loopback only; the vln stack is on the host network
    # (the robot's DDS), where its bridge binds port 20000 itself.
    assert lmdeploy['ports'] == ['127.0.0.1:23333:23333'] and 'network_mode' not in lmdeploy
    assert vln['network_mode'] == 'host'
    assert 'ports' not in vln and 'networks' not in vln and 'networks' not in compose
    assert any(v.endswith(':/models:ro') for v in lmdeploy['volumes'])
    [device] = lmdeploy['deploy']['resources']['reservations']['devices']
    assert device['driver'] == 'nvidia' and device['count'] == 'all'
    assert device['capabilities'] == ['gpu']
    assert '/health' in ' '.join(lmdeploy['healthcheck']['test'])
    assert vln['depends_on']['lmdeploy']['condition'] == 'service_started'
    args = dict(a.split(':=', 1) for a in vln['command'] if ':=' in a)
    assert vln['command'][:4] == ['ros2', 'launch', 'vln_ros', 'vln.launch.py']
    assert set(args) <= {a[0] for a in vln_launch.ARGUMENTS}
    assert args['vlm_base_url'] == 'http://127.0.0.1:23333/v1'
    assert args['start_bridge'] == 'true' and args['bridge_host'] == '0.0.0.0'
    # ROS DDS defaults on the robot path: no loopback-only profile, the RMW and domain from .env.
    assert args['dds_profile'] == ''
    domain = _env_example()['ROS_DOMAIN_ID'] if env == 'example' else '0'
    assert str(vln['environment']['ROS_DOMAIN_ID']) == domain
    assert vln['environment']['RMW_IMPLEMENTATION'] == 'rmw_fastrtps_cpp'
    assert '/health' in ' '.join(vln['healthcheck']['test'])


def test_compose_vln_command_plans_the_robot_stack(vln_launch):
    """The compose command, run through the launch plan: DDS defaults, bridge on 0.0.0.0."""
    compose = _compose({**_env_example(), 'VLN_API_KEY': 'k'})
    args = dict(a.split(':=', 1) for a in compose['services']['vln']['command'] if ':=' in a)
    plan = vln_launch.stack_plan(_values(vln_launch, **args), environ={})
    assert plan['env'] == {} and plan['processes'] == []
    nodes = {n['name']: n for n in plan['nodes']}
    assert set(nodes) == {'perception_node', 'planner_node', 'task_node', 'vln_bridge'}
    bridge = nodes['vln_bridge']['parameters'][1]
    assert bridge['host'] == '0.0.0.0' and bridge['api_key'] == 'k'
    assert bridge['allow_insecure'] is False
    assert nodes['perception_node']['parameters'][1]['vlm.base_url'] == \
        'http://127.0.0.1:23333/v1'


def test_env_example_leaves_the_bridge_key_to_the_user_and_names_the_dds_settings():
    env = _env_example()
    # No placeholder that would work as a key: the bridge refuses 0.0.0.0 until one is set.
    assert env['VLN_API_KEY'] == ''
    assert env['RMW_IMPLEMENTATION'] == 'rmw_fastrtps_cpp'
    assert 0 <= int(env['ROS_DOMAIN_ID']) <= 101
    text = (DOCKER / '.env.example').read_text()
    for name in ('rmw_cyclonedds_cpp', 'CYCLONEDDS_URI', 'FASTDDS_BUILTIN_TRANSPORTS'):
        assert name in text, name


def test_yaml_ports_match_compose_and_dockerfile():
    sections = params_yaml()
    assert sections['perception_node']['vlm.base_url'] == 'http://127.0.0.1:23333/v1'
    assert sections['vln_bridge']['vlm.base_url'] == 'http://127.0.0.1:23333/v1'
    assert sections['vln_bridge']['port'] == 20000
    dockerfile = (DOCKER / 'Dockerfile').read_text()
    assert re.search(r'^EXPOSE 20000$', dockerfile, re.M)


def test_dockerfile_builds_the_workspace_from_ros_jazzy():
    text = (DOCKER / 'Dockerfile').read_text()
    assert re.search(r'^FROM ros:jazzy\s*$', text, re.M)
    for copied in re.findall(r'^COPY (\S+) ', text, re.M):
        assert (ROOT / copied).exists(), copied
    assert '--break-system-packages' in text
    assert 'colcon build --base-paths src/vln_ros src/vln_ros/vln_ros_interfaces' in text
    assert (ROOT / 'vln_ros_interfaces' / 'package.xml').exists()
    assert 'source /ws/install/setup.bash' in text
    assert 'CMD ["ros2", "launch", "vln_ros", "vln.launch.py"]' in text
    # Every ros-jazzy-* message package the code imports is installed by apt.
    package_xml = (ROOT / 'package.xml').read_text()
    for dep in re.findall(r'<depend>(\w+_msgs|std_srvs)</depend>', package_xml):
        assert f'ros-jazzy-{dep.replace("_", "-")}' in text, dep
    # The RMW is the user's choice (compose takes it from .env); both are installed.
    assert 'RMW_IMPLEMENTATION' not in text.split('# No RMW_IMPLEMENTATION here', 1)[-1]
    assert not re.search(r'^\s*(ENV|ARG)\b.*RMW_IMPLEMENTATION', text, re.M)
    for rmw in ('ros-jazzy-rmw-fastrtps-cpp', 'ros-jazzy-rmw-cyclonedds-cpp'):
        assert rmw in text, rmw


# Python dependencies and their rosdep keys: every runtime requirement is either an apt
# package through rosdep (keys checked against rosdistro's rosdep/python.yaml: they map to an
# apt package on Ubuntu 24.04) or comes from the workspace venv (README, "On the robot").
ROSDEP_KEYS = {
    'numpy': 'python3-numpy', 'opencv-python-headless': 'python3-opencv',
    'pyyaml': 'python3-yaml', 'httpx': 'python3-httpx', 'fastapi': 'python3-fastapi',
    'uvicorn': 'python3-uvicorn', 'websockets': 'python3-websockets',
    'pydantic': 'python3-pydantic',
}
VENV_ONLY = {'openai', 'rosbags'}  # only "-pip" rosdep keys: a system-wide pip install


def _requirement_names(path: pathlib.Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            names.add(re.split(r'[<>=!~\[; ]', line, maxsplit=1)[0].lower())
    return names


def test_package_xml_declares_the_python_dependencies_with_rosdep_keys():
    required = _requirement_names(ROOT / 'requirements' / 'python.txt')
    assert required == set(ROSDEP_KEYS) | VENV_ONLY, required
    keys = set(re.findall(r'<exec_depend>(python3-[\w-]+)</exec_depend>',
                          (ROOT / 'package.xml').read_text()))
    # pydantic is the bridge's direct import (through fastapi on PyPI).
    assert keys == set(ROSDEP_KEYS.values()) | {'python3-pydantic'}, keys
    assert not any(key.endswith('-pip') for key in keys)


def _readme_section(title: str) -> str:
    text = (ROOT / 'README.md').read_text()
    start = text.index(f'## {title}\n')
    end = text.find('\n## ', start + 1)
    return text[start:end if end > 0 else None]


def test_readme_robot_install_uses_rosdep_a_system_site_venv_and_the_venv_colcon():
    section = _readme_section('On the robot (ROS 2 Jazzy installed)')
    commands = re.search(r'```bash\n(.*?)```', section, re.S).group(1)
    assert 'rosdep install --from-paths src/vln_ros src/vln_ros/vln_ros_interfaces' \
        ' --ignore-src -y' in commands
    assert 'python3 -m venv --system-site-packages' in commands
    assert "echo 'numpy<2'" in commands and ' -c .venv/constraints.txt' in commands
    assert 'python -m colcon build --base-paths src/vln_ros src/vln_ros/vln_ros_interfaces' \
        in commands
    assert '-DPython3_EXECUTABLE="$VIRTUAL_ENV/bin/python"' in commands
    # No system-wide pip: Ubuntu 24.04 refuses it (PEP 668).
    for line in commands.splitlines():
        if re.search(r'\bpip3? install\b', line):
            assert line.lstrip().startswith('python -m pip install'), line
    # The requirements filter keeps exactly what apt provides out of pip's hands.
    pattern = re.search(r"grep -v -i -E '([^']+)'", commands).group(1)
    filtered = {n for n in _requirement_names(ROOT / 'requirements' / 'python.txt')
                if re.match(pattern, n)}
    assert filtered == {'numpy', 'opencv-python-headless', 'pyyaml'}
    assert 'docs/robot-install.md' in section and (ROOT / 'docs' / 'robot-install.md').exists()


def test_readme_robot_examples_use_launch_arguments_that_exist(vln_launch):
    section = _readme_section('Robot setup notes')
    names = {a[0] for a in vln_launch.ARGUMENTS}
    used = set()
    for block in re.findall(r'```bash\n(.*?)```', section, re.S):
        for command in block.replace('\\\n', ' ').splitlines():
            if 'vln.launch.py' in command:
                used |= set(re.findall(r'\b(\w+):=', command))
    assert {'camera_topic', 'odom_topic', 'cmd_vel_topic', 'base_frame'} <= used
    assert used <= names, used - names


# ------------------------------------------------------------------------------ twist_mux

def test_twist_mux_example_puts_the_joystick_over_vln_ros_and_locks_on_the_estop():
    path = ROOT / 'config' / 'twist_mux.yaml'
    data = yaml.safe_load(path.read_text())
    assert list(data) == ['/**/twist_mux']
    params = data['/**/twist_mux']['ros__parameters']
    # Plain Twist, as vln_ros publishes by default (twist_mux's Jazzy default is stamped).
    assert params['use_stamped'] is False
    topics, locks = params['topics'], params['locks']
    for entry in list(topics.values()) + list(locks.values()):
        assert set(entry) == {'topic', 'timeout', 'priority'}, entry
        assert isinstance(entry['topic'], str) and not entry['topic'].startswith('/')
        assert isinstance(entry['timeout'], float) and entry['timeout'] >= 0.0
        assert isinstance(entry['priority'], int) and 0 <= entry['priority'] <= 255
    assert topics['joystick']['priority'] == 100 and topics['vln_ros']['priority'] == 10
    assert topics['vln_ros']['topic'] == 'cmd_vel_vln'
    # The lock is the planner's latched e-stop state (std_msgs/Bool), and masks vln_ros only.
    common = (ROOT / 'vln_ros' / 'nodes' / 'ros_common.py').read_text()
    estop_topic = re.search(r"^ESTOP_STATE_TOPIC = '([^']+)'", common, re.M).group(1)
    [lock] = locks.values()
    assert lock['topic'] == estop_topic
    assert topics['vln_ros']['priority'] < lock['priority'] <= topics['joystick']['priority']
    # The comments say how to run it, with arguments that exist.
    text = path.read_text()
    assert 'ros2 launch vln_ros vln.launch.py cmd_vel_topic:=cmd_vel_vln' in text
    assert '-r cmd_vel_out:=cmd_vel' in text and '--params-file' in text


def test_docker_compose_config_validates():
    docker = shutil.which('docker')
    if docker is None:
        pytest.skip('no docker client')
    probe = subprocess.run([docker, 'compose', 'version'], capture_output=True, timeout=20)
    if probe.returncode != 0:
        pytest.skip('docker client has no compose plugin')
    env_file = DOCKER / '.env.example'
    result = subprocess.run(
        [docker, 'compose', '--env-file', str(env_file), '-f', str(DOCKER / 'compose.yaml'),
         'config', '--quiet'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
