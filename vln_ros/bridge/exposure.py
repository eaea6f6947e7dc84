"""Who may reach the bridge: an address off this host needs an API key (ROS-free).

The API drives a robot (tasks, e-stop release, the camera topic): served beyond loopback
without a key, anyone on the network could. The bridge refuses that unless the operator
says so with the parameter allow_insecure.
"""
from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ('localhost', 'localhost.localdomain', 'ip6-localhost')


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; False for anything else ('' is every address)."""
    name = host.strip().strip('[]').lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to a network address


def exposure_check(host: str, api_key: str, allow_insecure: bool) -> tuple[str, str]:
    """(error, warning) for serving ``host``: at most one of them is non-empty."""
    if api_key or is_loopback(host):
        return '', ''
    if allow_insecure:
        return '', (f'serving {host or "every address"} without an api_key '
                    '(allow_insecure is true): anyone who reaches this port can create tasks, '
                    'release the e-stop and publish camera frames')
    return (f'refusing to serve {host or "every address"} without an api_key: off loopback '
            'the API would let anyone on the network drive the robot; set the parameter '
            'api_key (or allow_insecure:=true to accept that risk)'), ''
