"""Launch the REST/WebSocket bridge alone, next to a running vln_ros stack.

    ros2 launch vln_ros bridge.launch.py
    ros2 launch vln_ros bridge.launch.py host:=0.0.0.0 api_key:=secret namespace:=robot1

The bridge serves http://HOST:PORT (default 127.0.0.1:20000): task and frame endpoints on the
stack's topics and services, and the OpenAI endpoints proxied to the model server.
"""
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description():
    """Declare the bridge's arguments and start vln_bridge with the shared params file."""
    share = get_package_share_directory('vln_ros')
    arguments = [
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the stack the bridge talks to'),
        DeclareLaunchArgument('params_file',
                              default_value=f'{share}/config/vln.yaml',
                              description='Parameter YAML (the vln_bridge section is used)'),
        DeclareLaunchArgument('host', default_value='127.0.0.1',
                              description='Address to serve on (0.0.0.0: all interfaces)'),
        DeclareLaunchArgument('port', default_value='20000', description='HTTP port'),
        DeclareLaunchArgument('api_key', default_value='',
                              description='Bearer key clients must send (empty: none)'),
        DeclareLaunchArgument('vlm_base_url', default_value='http://127.0.0.1:23333/v1',
                              description='Model server the OpenAI endpoints are proxied to'),
        DeclareLaunchArgument('frame_topic_type', default_value='raw',
                              description='Publish frames as raw or compressed camera images'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='Use /clock instead of wall time'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='Log level (debug, info, warn, error)'),
    ]
    bridge = Node(
        package='vln_ros', executable='vln_bridge', name='vln_bridge',
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[
            LaunchConfiguration('params_file'),
            {
                'host': LaunchConfiguration('host'),
                'port': ParameterValue(LaunchConfiguration('port'), value_type=int),
                # A key given on the command line must stay a string, even when it is digits.
                'api_key': ParameterValue(LaunchConfiguration('api_key'), value_type=str),
                'vlm.base_url': LaunchConfiguration('vlm_base_url'),
                'frame_topic_type': LaunchConfiguration('frame_topic_type'),
                'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                               value_type=bool),
            },
        ],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
    )
    return LaunchDescription(arguments + [bridge])
