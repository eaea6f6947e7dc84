"""ament_python setup of vln_ros: nodes as console scripts, launch/config/scenarios as data."""
from glob import glob

from setuptools import find_packages, setup

package_name = 'vln_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={'vln_ros.sim': ['scenarios/*.yaml'], 'vln_ros.bridge': ['ui/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='vln_ros maintainers',
    maintainer_email='maintainers@vln-ros.org',
    description='Language-conditioned navigation for legged robots on ROS 2.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'perception_node = vln_ros.nodes.perception_node:main',
            'planner_node = vln_ros.nodes.planner_node:main',
            'collision_guard = vln_ros.nodes.collision_guard_node:main',
            'task_node = vln_ros.nodes.task_node:main',
            'oracle_server = vln_ros.sim.vlm_server:main',
            'sim_node = vln_ros.sim.sim_node:main',
            'vln_bridge = vln_ros.bridge.main:main',
            'vln_bag = vln_ros.tools.bag:main',
            'vln_video = vln_ros.tools.video:main',
            'vln_doctor = vln_ros.tools.doctor:main',
            'vln_model_download = vln_ros.tools.model_download:main',
        ],
    },
)
