"""Where a robot's persistent files live: one directory per namespace (ROS-free)."""
from __future__ import annotations

import os


def state_dir(namespace: str = '', ros_home: str | None = None) -> str:
    """Directory of this robot's persistent files: $ROS_HOME/vln_ros[/<namespace>].

    ROS_HOME defaults to ~/.ros, as for ROS logs. Each namespace gets its own directory, so
    two robots on one host never share a task database or an e-stop.
    """
    home = ros_home or os.environ.get('ROS_HOME') or os.path.join('~', '.ros')
    parts = [p for p in namespace.strip('/').split('/') if p]
    return os.path.join(os.path.expanduser(home), 'vln_ros', *parts)
