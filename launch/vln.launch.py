"""Launch the vln_ros stack: perception, planner and task nodes, optionally bridge and LMDeploy.

    ros2 launch vln_ros vln.launch.py
    ros2 launch vln_ros vln.launch.py camera_topic:=/front_camera/image_raw use_compressed:=true
    ros2 launch vln_ros vln.launch.py start_lmdeploy:=true model_path:=/models/Qwen3-VL-32B-Instruct
    ros2 launch vln_ros vln.launch.py namespace:=robot1 start_bridge:=true

The nodes read config/vln.yaml (argument params_file); the arguments below override a few of
its values. What the stack launches is computed by `stack_plan()` from plain strings, so the
same logic is checked by the tests on machines without launch_ros; launch_ros is imported only
inside `generate_launch_description()`.
"""
from __future__ import annotations

import os

PACKAGE = 'vln_ros'
# The nodes of the stack: (executable, node name); both are the names in setup.py / the YAML.
STACK_NODES = (('perception_node', 'perception_node'), ('planner_node', 'planner_node'),
               ('task_node', 'task_node'))
BRIDGE_NODE = ('vln_bridge', 'vln_bridge')
DEFAULT_MODEL_NAME = 'Qwen3-VL-32B-Instruct'
DEFAULT_LMDEPLOY_PORT = '23333'
DDS_PROFILE_VARIABLE = 'FASTRTPS_DEFAULT_PROFILES_FILE'

# (name, default, description). Default None: computed from the installed package share.
ARGUMENTS = (
    ('namespace', '', 'Namespace of all nodes; topic names stay relative to it'),
    ('params_file', None, 'Parameter YAML of the nodes (default: share/vln_ros/config/vln.yaml)'),
    ('camera_topic', 'camera/image_raw',
     'Raw camera topic; the compressed one is <camera_topic>/compressed'),
    ('use_compressed', 'false',
     'Subscribe to <camera_topic>/compressed (sensor_msgs/CompressedImage) instead of raw'),
    ('use_sim_time', 'false', 'Use /clock (simulator or bag playback) instead of wall time'),
    ('log_level', 'info', 'Log level of the nodes (debug, info, warn, error)'),
    ('start_bridge', 'false', 'Also start the REST/WebSocket bridge (vln_bridge, port 20000)'),
    ('bridge_host', '',
     'Address the bridge serves on (0.0.0.0: all interfaces); empty: params file (127.0.0.1)'),
    ('bridge_api_key', '', 'Bearer key the bridge requires; empty: params file'),
    ('vlm_base_url', '',
     'Model server URL for perception and bridge; empty: params file, or the co-launched '
     'LMDeploy when start_lmdeploy is true'),
    ('start_lmdeploy', 'false',
     'Co-launch `lmdeploy serve api_server` (needs lmdeploy and the GPUs on this host); '
     'perception retries until it answers /health'),
    ('model_path', '/models/' + DEFAULT_MODEL_NAME,
     'Model directory or Hugging Face id for LMDeploy'),
    ('model_name', DEFAULT_MODEL_NAME, 'Name LMDeploy serves the model under (--model-name)'),
    ('tp', '4', 'LMDeploy tensor parallelism: number of GPUs (--tp)'),
    ('session_len', '16384', 'LMDeploy context length in tokens (--session-len)'),
    ('cache_max_entry_count', '0.8',
     'Fraction of free GPU memory LMDeploy gives the KV cache (--cache-max-entry-count)'),
    ('lmdeploy_port', DEFAULT_LMDEPLOY_PORT, 'Port of the co-launched LMDeploy (--server-port)'),
    ('dds_profile', None,
     'Fast DDS profile (shared memory + loopback-only UDP) set as '
     'FASTRTPS_DEFAULT_PROFILES_FILE unless already set; empty: DDS defaults (multi-host)'),
)


def is_true(value: str) -> bool:
    """Read a launch argument as a boolean, the way launch's IfCondition does."""
    text = str(value).strip().lower()
    if text in ('true', '1', 'yes', 'on'):
        return True
    if text in ('false', '0', 'no', 'off', ''):
        return False
    raise ValueError(f'expected true or false, got {value!r}')


def lmdeploy_command(model_path, tp, port, model_name, session_len, cache_fraction) -> list:
    """Return the `lmdeploy serve api_server` command line (items may be substitutions)."""
    return ['lmdeploy', 'serve', 'api_server', model_path,
            '--backend', 'pytorch',  # Qwen3-VL runs on the PyTorch engine only
            '--tp', tp,
            '--server-port', port,
            '--model-name', model_name,
            '--session-len', session_len,
            '--cache-max-entry-count', cache_fraction]


def default_paths(share_dir: str) -> dict[str, str]:
    """Return the defaults of the path arguments for a package share directory."""
    return {'params_file': os.path.join(share_dir, 'config', 'vln.yaml'),
            'dds_profile': os.path.join(share_dir, 'config', 'fastdds_localhost.xml')}


def stack_plan(values: dict[str, str], environ: dict[str, str] | None = None) -> dict:
    """Compute what to launch from the resolved argument values (all strings).

    Returns {'env': {name: value}, 'nodes': [node spec], 'processes': [process spec]}. A node
    spec holds the keyword arguments of launch_ros' Node; a process spec those of ExecuteProcess.
    """
    environ = os.environ if environ is None else environ
    sim_time = is_true(values['use_sim_time'])
    compressed = is_true(values['use_compressed'])
    lmdeploy = is_true(values['start_lmdeploy'])
    base_url = values['vlm_base_url'].strip()
    if not base_url and lmdeploy:
        base_url = f'http://127.0.0.1:{values["lmdeploy_port"]}/v1'
    camera = values['camera_topic'].strip() or 'camera/image_raw'

    common = {'use_sim_time': sim_time}
    if base_url:
        common['vlm.base_url'] = base_url
    nodes = []
    names = list(STACK_NODES) + ([BRIDGE_NODE] if is_true(values['start_bridge']) else [])
    for executable, name in names:
        overrides = dict(common)
        remappings = []
        if executable == 'perception_node':
            overrides['image_transport'] = 'compressed' if compressed else 'raw'
            remappings = [('camera/image_raw', camera),
                          ('camera/image_raw/compressed', camera.rstrip('/') + '/compressed')]
        elif executable == 'vln_bridge':
            # The bridge publishes frames as the camera: on the same (remapped) topics.
            overrides['frame_topic_type'] = 'compressed' if compressed else 'raw'
            if values['bridge_host'].strip():
                overrides['host'] = values['bridge_host'].strip()
            if values['bridge_api_key']:
                overrides['api_key'] = values['bridge_api_key']
            remappings = [('camera/image_raw', camera),
                          ('camera/image_raw/compressed', camera.rstrip('/') + '/compressed')]
        else:
            overrides.pop('vlm.base_url', None)
        nodes.append({
            'package': PACKAGE, 'executable': executable, 'name': name,
            'namespace': values['namespace'], 'output': 'screen',
            'parameters': [values['params_file'], overrides],
            'remappings': remappings,
            'arguments': ['--ros-args', '--log-level', values['log_level']],
        })

    processes = []
    if lmdeploy:
        processes.append({
            'name': 'lmdeploy', 'output': 'screen',
            'cmd': lmdeploy_command(values['model_path'], values['tp'], values['lmdeploy_port'],
                                    values['model_name'], values['session_len'],
                                    values['cache_max_entry_count']),
        })

    env = {}
    profile = values['dds_profile'].strip()
    if profile and not environ.get(DDS_PROFILE_VARIABLE):
        env[DDS_PROFILE_VARIABLE] = profile
    return {'env': env, 'nodes': nodes, 'processes': processes}


def _launch_setup(context, *args, **kwargs):
    from launch.actions import ExecuteProcess, SetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGUMENTS}
    plan = stack_plan(values, dict(context.environment))
    actions = [SetEnvironmentVariable(name, value) for name, value in plan['env'].items()]
    actions += [ExecuteProcess(**spec) for spec in plan['processes']]
    actions += [Node(**spec) for spec in plan['nodes']]
    return actions


def generate_launch_description():
    """Declare the arguments and launch the stack (see the module docstring)."""
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchDescription

    defaults = default_paths(get_package_share_directory(PACKAGE))
    declared = [DeclareLaunchArgument(name, default_value=defaults.get(name, default),
                                      description=description)
                for name, default, description in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=_launch_setup)])
