"""A peer process for the interface round-trip test: echoes every vln_ros_interfaces type.

Messages on echo/in/<Type> come back on echo/out/<Type>; each service answers from its request;
the Navigate action sends two feedbacks and a result built from the goal.
"""
import time

import rclpy
from rclpy.action import ActionServer
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from vln_ros_interfaces.action import Navigate
from vln_ros_interfaces.msg import NavigationResult, TaskConfig, TaskState, Waypoint
from vln_ros_interfaces.srv import CreateTask, GetTask, ListTasks, StopTask

MESSAGES = (Waypoint, NavigationResult, TaskConfig, TaskState)


class EchoNode(Node):
    def __init__(self):
        super().__init__('echo_interfaces')
        self._pubs = []
        for msg_type in MESSAGES:
            pub = self.create_publisher(msg_type, f'echo/out/{msg_type.__name__}', 10)
            self._pubs.append(pub)
            self.create_subscription(msg_type, f'echo/in/{msg_type.__name__}', pub.publish, 10)
        self.create_service(CreateTask, 'echo/create_task', self._create)
        self.create_service(StopTask, 'echo/stop_task', self._stop)
        self.create_service(GetTask, 'echo/get_task', self._get)
        self.create_service(ListTasks, 'echo/list_tasks', self._list)
        ActionServer(self, Navigate, 'echo/navigate', self._navigate)
        self.get_logger().info('echo node ready')

    def _create(self, req, resp):
        resp.accepted = True
        resp.task_id = f'id:{req.instruction}:{req.config.output_fps:.1f}'
        resp.message = f'thr={req.config.keyframe_threshold:.2f}'
        return resp

    def _stop(self, req, resp):
        resp.success = req.task_id == 'known'
        resp.message = f'stop {req.task_id}'
        return resp

    def _get(self, req, resp):
        resp.found = True
        resp.state = TaskState(task_id=req.task_id, status=TaskState.STATUS_ACTIVE)
        resp.history = [NavigationResult(task_id=req.task_id, sequence=i)
                        for i in range(req.history_limit)]
        return resp

    def _list(self, req, resp):
        n = 1 if req.active_only else 3
        resp.tasks = [TaskState(task_id=f't{i}') for i in range(n)]
        return resp

    def _navigate(self, goal_handle):
        for i in range(2):
            fb = Navigate.Feedback()
            fb.result = NavigationResult(task_id=goal_handle.request.instruction, sequence=i)
            goal_handle.publish_feedback(fb)
            time.sleep(0.05)
        goal_handle.succeed()
        result = Navigate.Result()
        result.state = TaskState(instruction=goal_handle.request.instruction,
                                 status=TaskState.STATUS_COMPLETED)
        return result


def main():
    rclpy.init()
    node = EchoNode()
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
