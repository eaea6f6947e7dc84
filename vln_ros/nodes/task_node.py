"""Task node: create, switch, stop and inspect navigation tasks; the Navigate action.

A thin adapter around vln_ros.core.tasks.TaskManager. Every state change is published on
vln/task_state (transient local, depth 1) before the service that caused it answers, so the
perception and planner nodes follow a switch as soon as the caller sees it.
"""
from __future__ import annotations

import os
import threading

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String
from vln_ros_interfaces.action import Navigate
from vln_ros_interfaces.msg import NavigationResult, TaskState, Waypoint
from vln_ros_interfaces.msg import TaskConfig as TaskConfigMsg
from vln_ros_interfaces.srv import CreateTask, GetTask, ListTasks, StopTask

from vln_ros.core.state_dir import state_dir
from vln_ros.core.statuses import result_code, result_name
from vln_ros.core.task_records import HistoryEntry, TaskConfig, TaskRecord, TaskStatus
from vln_ros.core.task_store import TaskStore
from vln_ros.core.tasks import TaskManager
from vln_ros.nodes.parameters import LiveParameters
from vln_ros.nodes.ros_common import (
    COMMAND_STATE_TOPIC,
    LATCHED_QOS,
    RELIABLE_QOS,
    TASK_ACK_QOS,
    TASK_ACK_TOPIC,
    declare,
    parse_command_state,
    parse_task_ack,
    run_node,
    sec_to_stamp,
    stamp_to_sec,
)

# Planner command states published on vln/task_state as soon as they begin or end.
_ATTENTION = ('blocked', 'obstacle', 'stale_sensor')

def config_from_msg(msg: TaskConfigMsg) -> TaskConfig:
    """CreateTask / Navigate config to the core config: zero or negative means the default."""
    return TaskConfig.from_request(output_fps=float(msg.output_fps),
                                   keyframe_threshold=float(msg.keyframe_threshold),
                                   enable_visualization=bool(msg.enable_visualization))


def state_msg(record: TaskRecord | None) -> TaskState:
    """Core record to vln_ros_interfaces/TaskState (an empty state for None)."""
    msg = TaskState()
    if record is None:
        return msg
    msg.task_id = record.task_id
    msg.instruction = record.instruction
    msg.status = record.status.value
    msg.config = TaskConfigMsg(output_fps=float(record.config.output_fps),
                               keyframe_threshold=float(record.config.keyframe_threshold),
                               enable_visualization=bool(record.config.enable_visualization))
    msg.created = sec_to_stamp(record.created)
    msg.updated = sec_to_stamp(record.updated)
    msg.frames, msg.keyframes = record.frames, record.keyframes
    msg.inferences, msg.errors = record.inferences, record.errors
    msg.last_action = record.last_action
    msg.last_environment = record.last_environment
    msg.message = record.message
    return msg


def history_msg(entry: HistoryEntry) -> NavigationResult:
    """Stored history entry back to the NavigationResult it was recorded from."""
    msg = NavigationResult(task_id=entry.task_id, sequence=entry.sequence,
                           environment=entry.environment, action=entry.action,
                           inference_time=float(entry.inference_time),
                           status=result_code(entry.status), linear_vel=float(entry.linear_vel),
                           angular_vel=float(entry.angular_vel), error=entry.error,
                           raw_text=entry.raw_text, frames=int(entry.frames),
                           keyframes=int(entry.keyframes))
    msg.header.stamp = sec_to_stamp(entry.stamp)
    msg.header.frame_id = entry.frame_id
    msg.waypoints = [Waypoint(dx=float(a), dy=float(b), dtheta=float(c), confidence=float(d))
                     for a, b, c, d in entry.waypoints]
    return msg


def history_entry(msg: NavigationResult) -> HistoryEntry:
    """A live NavigationResult as a history entry, keeping everything get_task returns."""
    confidences = [w.confidence for w in msg.waypoints]
    return HistoryEntry(
        task_id=msg.task_id, sequence=msg.sequence, stamp=stamp_to_sec(msg.header.stamp),
        action=msg.action, environment=msg.environment, status=result_name(msg.status),
        confidence=min(confidences) if confidences else 0.0,
        inference_time=float(msg.inference_time),
        waypoints=[(w.dx, w.dy, w.dtheta, w.confidence) for w in msg.waypoints],
        frame_id=msg.header.frame_id, linear_vel=float(msg.linear_vel),
        angular_vel=float(msg.angular_vel), raw_text=msg.raw_text, error=msg.error,
        frames=int(msg.frames), keyframes=int(msg.keyframes))


class TaskNode(Node):
    """Serves vln/create_task, stop_task, get_task, list_tasks and the vln/navigate action."""

    def __init__(self) -> None:
        super().__init__('task_node')
        db_path = declare(self, 'db_path', '',
                          'SQLite file of tasks and history (":memory:" keeps nothing); empty: '
                          '$ROS_HOME/vln_ros/<namespace>/tasks.db, one per robot',
                          read_only=True)
        history_size = declare(self, 'history_size', 50,
                               'Results kept per task and returned by get_task', 1, 10000,
                               read_only=True)
        max_tasks = declare(self, 'max_tasks', 200, 'Tasks kept in the database', 1, 100000,
                            read_only=True)
        completion_confidence = declare(self, 'completion_confidence', 0.7,
                                        'Confidence of a "stop" answer that counts as arrival',
                                        0.0, 1.0)
        completion_count = declare(self, 'completion_count', 2,
                                   'Consecutive confident "stop" answers that complete a task',
                                   1, 100)
        search_limit = declare(self, 'search_limit', 20,
                               'Fail a task after this many answers in a row that only turn in '
                               'place, about two full turns (0: never give up)', 0, 1000)
        self._ack_timeout = declare(self, 'switch_ack_timeout', 1.0,
                                    'Wait this long (s, wall time: a paused /clock must not '
                                    'hang a service) for perception and planner to follow a '
                                    'task change before answering the service', 0.0, 10.0)
        self._expected_followers = declare(
            self, 'expected_followers', 0,
            'Nodes that must acknowledge a task change (perception and planner: 2); 0 counts '
            'the followers discovered at that moment, which may miss a node still starting',
            0, 16)
        if not db_path:
            db_path = os.path.join(state_dir(self.get_namespace()), 'tasks.db')
        if db_path != ':memory:':
            db_path = os.path.expanduser(db_path)
            os.makedirs(os.path.dirname(db_path) or '.', exist_ok=True)
        self._store = TaskStore(db_path, max_tasks=max_tasks, max_history=history_size)
        if self._store.warning:
            self.get_logger().warn(self._store.warning)
        self._manager = TaskManager(self._store, clock=self._now, history_size=history_size,
                                    completion_confidence=completion_confidence,
                                    completion_count=completion_count,
                                    search_limit=search_limit)
        LiveParameters(self, ('completion_confidence', 'completion_count', 'search_limit',
                              'switch_ack_timeout', 'expected_followers'), self._reconfigure)
        self._changed = threading.Condition()
        self._acks: dict[str, str] = {}  # node -> task id it follows ('' = none)
        self._ack_cv = threading.Condition()
        self._latest_result: dict[str, NavigationResult] = {}
        self._command = ('', '')  # (task id, reason): the planner's latest command state

        group = ReentrantCallbackGroup()
        self._state_pub = self.create_publisher(TaskState, 'vln/task_state', LATCHED_QOS)
        self._manager.on_change = self._on_change
        # Results one at a time, in order: on a reentrant group two could run at once and the
        # older one's frame counters land last (seen in CI) or break the stop streak's order.
        self.create_subscription(NavigationResult, 'vln/result', self._on_result, RELIABLE_QOS,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.create_subscription(String, TASK_ACK_TOPIC, self._on_ack, TASK_ACK_QOS,
                                 callback_group=group)
        self.create_subscription(String, COMMAND_STATE_TOPIC, self._on_command_state,
                                 LATCHED_QOS, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(CreateTask, 'vln/create_task', self._on_create, callback_group=group)
        self.create_service(StopTask, 'vln/stop_task', self._on_stop, callback_group=group)
        self.create_service(GetTask, 'vln/get_task', self._on_get, callback_group=group)
        self.create_service(ListTasks, 'vln/list_tasks', self._on_list, callback_group=group)
        self._action = ActionServer(self, Navigate, 'vln/navigate', self._execute,
                                    goal_callback=lambda goal: GoalResponse.ACCEPT,
                                    cancel_callback=lambda handle: CancelResponse.ACCEPT,
                                    callback_group=group)
        # Latch the current state at once, so late joiners learn that nothing is active.
        self._state_pub.publish(self._state(self._manager.active))
        self.get_logger().info(f'task node ready: db {db_path}, '
                               f'{len(self._manager.list())} stored tasks')

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _state(self, record: TaskRecord | None) -> TaskState:
        """state_msg with the planner's command state, while the task is the active one."""
        msg = state_msg(record)
        if record is not None and record.status == TaskStatus.ACTIVE:
            task_id, reason = self._command
            msg.command = reason if task_id == record.task_id else ''
        return msg

    def _on_command_state(self, msg: String) -> None:
        task_id, reason = parse_command_state(msg.data)
        before = self._command[1] if self._command[0] == task_id else ''
        self._command = (task_id, reason)
        active = self._manager.active
        # The states an operator must see at once (ros2 topic echo vln/task_state): a robot
        # held by its guard or blocked, and the end of it.
        if active is not None and active.task_id == task_id and (
                reason in _ATTENTION) != (before in _ATTENTION):
            self._state_pub.publish(self._state(active))

    def _on_change(self, record: TaskRecord) -> None:
        self._state_pub.publish(self._state(record))
        with self._changed:
            self._changed.notify_all()

    def _on_result(self, msg: NavigationResult) -> None:
        entry = history_entry(msg)
        completed = self._manager.record_result(msg.task_id, entry, frames=msg.frames,
                                                keyframes=msg.keyframes)
        with self._changed:
            self._latest_result[msg.task_id] = msg
            self._changed.notify_all()
        if completed:
            self.get_logger().info(f'task {msg.task_id} completed: arrived')

    def _reconfigure(self, values: dict):
        """Live task settings: the next answer and the next task change use them."""
        def apply() -> None:
            manager = self._manager
            manager.completion_confidence = float(values['completion_confidence'])
            manager.completion_count = max(1, int(values['completion_count']))
            manager.search_limit = max(0, int(values['search_limit']))
            self._ack_timeout = float(values['switch_ack_timeout'])
            self._expected_followers = int(values['expected_followers'])
        return apply

    def _on_ack(self, msg: String) -> None:
        node, task_id = parse_task_ack(msg.data)
        with self._ack_cv:
            self._acks[node] = task_id
            self._ack_cv.notify_all()

    def _await_acks(self, task_id: str) -> None:
        """Wait until every node that follows tasks has switched to task_id ('' = none).

        The task state is published before this; waiting for the followers (perception,
        planner) makes the service's answer a guarantee: once the caller has it, no result
        or command of the previous task is published any more.
        """
        expected = max(self._expected_followers, self.count_publishers(TASK_ACK_TOPIC))
        if expected == 0 or self._ack_timeout <= 0:
            return
        with self._ack_cv:
            done = self._ack_cv.wait_for(
                lambda: sum(1 for t in self._acks.values() if t == task_id) >= expected,
                timeout=self._ack_timeout)
        if not done:
            self.get_logger().warn(f'task change to "{task_id or "none"}" not acknowledged by '
                                   f'all {expected} followers within {self._ack_timeout} s')

    def _on_create(self, request: CreateTask.Request, response: CreateTask.Response):
        ok, record, message = self._manager.create(request.instruction,
                                                   config_from_msg(request.config))
        response.accepted, response.message = ok, message
        response.task_id = record.task_id if record else ''
        if ok:
            self._await_acks(record.task_id)
            self.get_logger().info(f'task {record.task_id} active: "{record.instruction}"')
        else:
            self.get_logger().warn(f'create_task refused: {message}')
        return response

    def _on_stop(self, request: StopTask.Request, response: StopTask.Response):
        response.success, response.message = self._manager.stop(request.task_id)
        if response.success:
            active = self._manager.active
            self._await_acks(active.task_id if active else '')
        return response

    def _on_get(self, request: GetTask.Request, response: GetTask.Response):
        task_id = request.task_id or (self._manager.active.task_id
                                      if self._manager.active else '')
        record = self._manager.get(task_id) if task_id else None
        if record is None:
            response.found = False
            response.message = (f'unknown task id "{request.task_id}"' if request.task_id
                                else 'no active task')
            return response
        limit = request.history_limit or None
        response.found, response.message = True, record.message
        response.state = self._state(record)
        response.history = [history_msg(e) for e in self._manager.history(task_id, limit)]
        return response

    def _on_list(self, request: ListTasks.Request, response: ListTasks.Response):
        records = self._manager.list()
        if request.active_only:
            records = [r for r in records if r.status == TaskStatus.ACTIVE]
        response.tasks = [self._state(r) for r in records]
        return response

    def _execute(self, goal_handle):
        goal = goal_handle.request
        ok, record, message = self._manager.create(goal.instruction,
                                                   config_from_msg(goal.config))
        result = Navigate.Result()
        if not ok:
            self.get_logger().warn(f'navigate goal refused: {message}')
            result.state = self._state(None)
            result.state.message = message
            goal_handle.abort()
            return result
        task_id = record.task_id
        self._await_acks(task_id)
        # On the node clock, like every timeout of the stack: with use_sim_time a paused or
        # slowed simulation gets the time the goal asked for.
        since = None
        sent = None
        while True:
            with self._changed:
                self._changed.wait(timeout=0.1)
                latest = self._latest_result.get(task_id)
            current = self._manager.get(task_id)
            if goal_handle.is_cancel_requested:
                self._manager.stop(task_id)
                goal_handle.canceled()
                break
            if latest is not None and latest is not sent:
                sent = latest
                feedback = Navigate.Feedback(result=latest, state=self._state(current))
                goal_handle.publish_feedback(feedback)
            if current.status != TaskStatus.ACTIVE:
                (goal_handle.succeed if current.status == TaskStatus.COMPLETED
                 else goal_handle.abort)()
                break
            now = self._now()
            if since is None or now < since:
                # Counted from the first tick of a running clock (a sim clock that has not
                # started reads 0), and again after a jump back (a bag that loops).
                since = now if now > 0.0 else None
            if goal.timeout > 0 and since is not None and now - since > goal.timeout:
                self._manager.fail(task_id, f'timed out after {goal.timeout:.0f} s')
                goal_handle.abort()
                break
            if not goal_handle.is_active:
                break
        with self._changed:
            self._latest_result.pop(task_id, None)
        result.state = self._state(self._manager.get(task_id))
        return result

    def close(self) -> None:
        """Close the database (history is already on disk: every change is written at once)."""
        self._store.close()


def main(args=None) -> None:
    """Run the task node."""
    run_node(TaskNode, args, multithreaded=True, on_shutdown=lambda node: node.close())


if __name__ == '__main__':
    main()
