"""Publish a known sequence of Odometry and NavigationResult messages, then exit.

Run as `python -m test.integration.bag_publisher COUNT`: waits until both topics have a
subscriber (the recorder), publishes COUNT messages of each at 50 Hz and waits until the
reliable readers acknowledged all of them.
"""
import sys
import time

from nav_msgs.msg import Odometry
import rclpy
from rclpy.duration import Duration
from vln_ros_interfaces.msg import NavigationResult, Waypoint


def main() -> int:
    count = int(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node('bag_publisher')
    # History for every message: the recorder's reader may match this writer a little after
    # this writer matched it, and must still get the first messages.
    odom_pub = node.create_publisher(Odometry, 'odom', count)
    result_pub = node.create_publisher(NavigationResult, 'vln/result', count)
    deadline = time.monotonic() + 20.0
    while odom_pub.get_subscription_count() < 1 or result_pub.get_subscription_count() < 1:
        if time.monotonic() > deadline:
            print('no subscriber', flush=True)
            return 1
        time.sleep(0.02)
    for i in range(count):
        odom = Odometry()
        odom.header.frame_id, odom.child_frame_id = 'odom', 'base_link'
        odom.header.stamp.sec, odom.header.stamp.nanosec = 1000 + i, 500
        odom.pose.pose.position.x = 0.01 * i
        result = NavigationResult(task_id='vln_bagtest', sequence=i + 1, action='forward',
                                  environment=f'corridor {i}', inference_time=0.5)
        result.waypoints = [Waypoint(dx=0.3, dy=0.0, dtheta=0.1, confidence=0.9)]
        odom_pub.publish(odom)
        result_pub.publish(result)
        time.sleep(0.02)
    for pub in (odom_pub, result_pub):
        pub.wait_for_all_acked(Duration(seconds=5.0))
    print(f'published {count}', flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
