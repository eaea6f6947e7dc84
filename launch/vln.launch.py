"""Launch the vln_ros stack: perception, planner and task nodes, optionally bridge and LMDeploy.

    ros2 launch vln_ros vln.launch.py
    ros2 launch vln_ros vln.launch.py camera_topic:=/front_camera/image_raw use_compressed:=true
    ros2 launch vln_ros vln.launch.py odom_topic:=/spot/odometry base_frame:=body \
        cmd_vel_topic:=/spot/cmd_vel
    ros2 launch vln_ros vln.launch.py start_lmdeploy:=true model_path:=/models/Qwen3-VL-32B-Instruct
    ros2 launch vln_ros vln.launch.py namespace:=robot1 start_bridge:=true

The nodes read config/vln.yaml (argument params_file); the arguments below override a few of
its values. DDS is left at the ROS defaults (RMW_IMPLEMENTATION and its settings as the
environment gives them), so the stack talks to drivers on other computers; the loopback-only
Fast DDS profile is for the simulator, the tests and the demo (sim.launch.py passes it).
What the stack launches is computed by `stack_plan()` from plain strings, so the same logic
is checked by the tests on machines without launch_ros; launch_ros is imported only inside
`generate_launch_description()`.
"""
from __future__ import annotations

import os
import shutil

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
    ('camera_info_topic', 'camera/camera_info', 'Camera intrinsics (sensor_msgs/CameraInfo)'),
    ('odom_topic', 'odom', 'Odometry of the base (nav_msgs/Odometry, reliable or best effort)'),
    ('cmd_vel_topic', 'cmd_vel',
     'Velocity commands to the base (or to twist_mux, e.g. cmd_vel_vln; see twist_mux.yaml)'),
    ('base_frame', '', 'Robot base frame (e.g. body on Spot); empty: params file (base_link)'),
    ('odom_frame', '', 'Odometry frame of the path; empty: params file (odom)'),
    ('use_stamped_cmd_vel', '',
     'true: geometry_msgs/TwistStamped on cmd_vel, false: Twist; empty: params file'),
    ('use_sim_time', 'false', 'Use /clock (simulator or bag playback) instead of wall time'),
    ('log_level', 'info', 'Log level of the nodes (debug, info, warn, error)'),
    ('start_bridge', 'false', 'Also start the REST/WebSocket bridge (vln_bridge, port 20000)'),
    ('bridge_host', '',
     'Address the bridge serves on (0.0.0.0: all interfaces); empty: params file (127.0.0.1)'),
    ('bridge_api_key', '', 'Bearer key the bridge requires; empty: params file'),
    ('allow_insecure', 'false',
     'Let the bridge serve a non-loopback address without an api key (trusted networks only)'),
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
    ('dds_profile', '',
     'Fast DDS profile file set as FASTRTPS_DEFAULT_PROFILES_FILE unless already set; empty: '
     'the ROS DDS defaults (talks to other computers; any RMW). The shipped '
     'share/vln_ros/config/fastdds_localhost.xml keeps traffic on this host'),
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
    return {'params_file': os.path.join(share_dir, 'config', 'vln.yaml')}


def localhost_profile(share_dir: str) -> str:
    """The shipped loopback-only Fast DDS profile (simulator, tests, demo)."""
    return os.path.join(share_dir, 'config', 'fastdds_localhost.xml')


class LaunchSetupError(RuntimeError):
    """A launch that cannot work as asked; launch prints the message as one error line."""


def lmdeploy_problem(model_path: str, which=shutil.which, exists=os.path.exists) -> str:
    """Why `start_lmdeploy:=true` cannot work here ('' when it can), with the fix."""
    if which('lmdeploy') is None:
        return ('start_lmdeploy:=true but `lmdeploy` is not on PATH: install it in this '
                'environment (pip install "lmdeploy>=0.11", PyTorch engine, NVIDIA GPUs), or '
                'run it on the GPU host and pass vlm_base_url:=http://HOST:23333/v1')
    path = model_path.strip()
    # A local path must exist; anything else is a Hugging Face id LMDeploy downloads.
    if path.startswith(('/', '.', '~')) and not exists(os.path.expanduser(path)):
        return (f'model_path {path} does not exist: download the model (ros2 run vln_ros '
                'vln_model_download) or pass model_path:=<model directory or Hugging Face id>')
    return ''


def _remaps(pairs) -> list[tuple[str, str]]:
    """Remappings for the topics whose target differs from the default name."""
    return [(src, dst) for src, dst in pairs if dst and dst != src]


def stack_plan(values: dict[str, str], environ: dict[str, str] | None = None,
               which=shutil.which, exists=os.path.exists) -> dict:
    """Compute what to launch from the resolved argument values (all strings).

    Returns {'env': {name: value}, 'nodes': [node spec], 'processes': [process spec]}. A node
    spec holds the keyword arguments of launch_ros' Node; a process spec those of ExecuteProcess.
    Raises LaunchSetupError when start_lmdeploy cannot work, ValueError for a bad boolean.
    """
    environ = os.environ if environ is None else environ
    sim_time = is_true(values['use_sim_time'])
    compressed = is_true(values['use_compressed'])
    lmdeploy = is_true(values['start_lmdeploy'])
    if lmdeploy:
        problem = lmdeploy_problem(values['model_path'], which, exists)
        if problem:
            raise LaunchSetupError(problem)
    base_url = values['vlm_base_url'].strip()
    if not base_url and lmdeploy:
        base_url = f'http://127.0.0.1:{values["lmdeploy_port"]}/v1'
    camera = values['camera_topic'].strip() or 'camera/image_raw'
    camera_topics = [('camera/image_raw', camera),
                     ('camera/image_raw/compressed', camera.rstrip('/') + '/compressed')]
    cmd_vel = ('cmd_vel', values['cmd_vel_topic'].strip())
    frames = {name: values[name].strip() for name in ('base_frame', 'odom_frame')
              if values[name].strip()}
    stamped = values['use_stamped_cmd_vel'].strip()

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
            overrides.update({k: v for k, v in frames.items() if k == 'base_frame'})
            remappings = camera_topics + [('camera/camera_info',
                                           values['camera_info_topic'].strip())]
        elif executable == 'planner_node':
            overrides.pop('vlm.base_url', None)
            overrides.update(frames)
            if stamped:
                overrides['use_stamped_cmd_vel'] = is_true(stamped)
            remappings = [('odom', values['odom_topic'].strip()), cmd_vel]
        elif executable == 'vln_bridge':
            # The bridge publishes frames as the camera: on the same (remapped) topics.
            overrides['frame_topic_type'] = 'compressed' if compressed else 'raw'
            overrides['allow_insecure'] = is_true(values['allow_insecure'])
            if values['bridge_host'].strip():
                overrides['host'] = values['bridge_host'].strip()
            if values['bridge_api_key']:
                overrides['api_key'] = values['bridge_api_key']
            remappings = camera_topics + [cmd_vel]
        else:
            overrides.pop('vlm.base_url', None)
        nodes.append({
            'package': PACKAGE, 'executable': executable, 'name': name,
            'namespace': values['namespace'], 'output': 'screen',
            'parameters': [values['params_file'], overrides],
            'remappings': _remaps(remappings),
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
