r"""Launch the simulator, an oracle model server and the full vln_ros stack: no robot, no GPU.

    ros2 launch vln_ros sim.launch.py
    ros2 launch vln_ros sim.launch.py scenario:=turn_to_landmark rviz:=true
    ros2 launch vln_ros sim.launch.py oracle:=keyword oracle_latency_min:=0.5 \
        oracle_latency_max:=1.0

sim_node (a 2D world with a first-person camera, in the spirit of nav2's loopback simulator)
publishes camera/image_raw and odom and follows cmd_vel. The model server is either the
simulator's own oracle (oracle:=sim, answers from the true pose at the keyframe's capture) or
the standalone keyword test server oracle_server (oracle:=keyword); both speak LMDeploy's
OpenAI API with a configurable latency. The stack is vln.launch.py with vlm_base_url pointing
at that server. Give the robot a task with:

    ros2 service call /vln/create_task vln_ros_interfaces/srv/CreateTask \
        "{instruction: 'go to the red door'}"
"""
import os

from ament_index_python.packages import get_package_prefix, get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    SetEnvironmentVariable,
)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def _dds_profile(context, *args, **kwargs):
    """Set the loopback DDS profile for every process here, unless the user chose one."""
    profile = LaunchConfiguration('dds_profile').perform(context).strip()
    if not profile or context.environment.get('FASTRTPS_DEFAULT_PROFILES_FILE'):
        return []
    return [SetEnvironmentVariable('FASTRTPS_DEFAULT_PROFILES_FILE', profile)]


def generate_launch_description():
    """Declare the arguments; start sim_node, the oracle, the stack and optionally rviz2."""
    share = get_package_share_directory('vln_ros')
    oracle_script = os.path.join(get_package_prefix('vln_ros'), 'lib', 'vln_ros', 'oracle_server')
    arg = LaunchConfiguration
    arguments = [
        DeclareLaunchArgument('scenario', default_value='corridor_door',
                              description='Scenario YAML path or packaged name '
                                          '(corridor_door, turn_to_landmark, switch_mid_way)'),
        DeclareLaunchArgument('oracle', default_value='sim',
                              description="Model server: sim (the simulator's oracle, answers "
                                          'from ground truth) or keyword (oracle_server)'),
        DeclareLaunchArgument('oracle_port', default_value='23334',
                              description='Port of the oracle model server (23333 stays free '
                                          'for a real LMDeploy)'),
        DeclareLaunchArgument('oracle_latency_min', default_value='5.0',
                              description='Shortest oracle answer time (s); 32B at TP 4: ~5 s'),
        DeclareLaunchArgument('oracle_latency_max', default_value='8.0',
                              description='Longest oracle answer time (s)'),
        DeclareLaunchArgument('seed', default_value='0',
                              description='Seed of the simulator noise and oracle faults'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the simulator and the stack'),
        DeclareLaunchArgument('params_file', default_value=f'{share}/config/vln.yaml',
                              description='Parameter YAML of the stack'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='Simulator publishes /clock and the stack uses it'),
        DeclareLaunchArgument('start_bridge', default_value='false',
                              description='Also start the REST/WebSocket bridge (port 20000)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='Start rviz2 with config/vln.rviz'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='Log level of the nodes (debug, info, warn, error)'),
        DeclareLaunchArgument('dds_profile',
                              default_value=f'{share}/config/fastdds_localhost.xml',
                              description='Fast DDS profile: the shipped one keeps the '
                                          'simulated robot on this host (shared memory + '
                                          'loopback UDP); empty: DDS defaults'),
    ]
    base_url = ['http://127.0.0.1:', arg('oracle_port'), '/v1']

    sim = Node(
        package='vln_ros', executable='sim_node', name='sim_node',
        namespace=arg('namespace'), output='screen',
        parameters=[{
            'scenario': arg('scenario'),
            'seed': ParameterValue(arg('seed'), value_type=int),
            # The simulator is the clock source: it publishes /clock but runs on wall time.
            'publish_clock': ParameterValue(arg('use_sim_time'), value_type=bool),
            'oracle_port': ParameterValue(PythonExpression(
                [arg('oracle_port'), " if '", arg('oracle'), "' == 'sim' else -1"]),
                value_type=int),
            # '[5.0, 8.0]': floats even when an argument is written as an integer.
            'oracle_latency': PythonExpression(
                ['str([float(', arg('oracle_latency_min'), '), float(',
                 arg('oracle_latency_max'), ')])']),
        }],
        arguments=['--ros-args', '--log-level', arg('log_level')],
    )
    keyword_oracle = ExecuteProcess(
        name='oracle_server', output='screen',
        cmd=[oracle_script, '--port', arg('oracle_port'),
             '--latency', arg('oracle_latency_min'), arg('oracle_latency_max'),
             '--seed', arg('seed')],
        condition=IfCondition(PythonExpression(["'", arg('oracle'), "' == 'keyword'"])),
    )
    stack = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'vln.launch.py')),
        launch_arguments={
            'namespace': arg('namespace'),
            'params_file': arg('params_file'),
            'use_sim_time': arg('use_sim_time'),
            'start_bridge': arg('start_bridge'),
            'log_level': arg('log_level'),
            'vlm_base_url': base_url,
            'dds_profile': arg('dds_profile'),
        }.items(),
    )
    rviz = Node(
        package='rviz2', executable='rviz2', name='rviz2', output='screen',
        arguments=['-d', os.path.join(share, 'config', 'vln.rviz')],
        parameters=[{'use_sim_time': ParameterValue(arg('use_sim_time'), value_type=bool)}],
        condition=IfCondition(arg('rviz')),
    )
    # The simulated robot stays on this host: the profile is set before any process starts.
    dds = OpaqueFunction(function=_dds_profile)
    return LaunchDescription(arguments + [dds, sim, keyword_oracle, stack, rviz])
