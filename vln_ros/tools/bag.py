"""vln_bag: record topics into a rosbag2 bag (MCAP), play a bag into the graph, show its info.

    vln_bag record -o run1 /camera/image_raw/compressed /odom /vln/result
    vln_bag record -o run1 --all --duration 60
    vln_bag play run1 --rate 0.5 --loop --topics /camera/image_raw/compressed
    vln_bag info run1

For machines without rosbag2 (no `ros2 bag`); the bags are ordinary rosbag2 bags that `ros2
bag info/play` read on a robot. Recording takes the CDR bytes of a raw subscription as they
are (nothing is deserialised); playback publishes them back with the original spacing scaled
by --rate, with each topic's recorded QoS.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time

from vln_ros.tools.bag_store import (
    STORAGE_PLUGINS,
    BagError,
    BagWriter,
    bag_summary,
    bag_topics,
    format_summary,
    make_qos,
    normalize_topic,
    playback_offsets,
    read_bag,
)
from vln_ros.tools.stop_signals import interrupt_once

# Never worth recording: every node has them.
_SKIPPED_TOPICS = {'/rosout', '/parameter_events'}


def message_class(msgtype: str):
    """Import the rclpy message class of 'pkg/msg/Name'."""
    package, kind, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


def _init_rclpy():
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    # Our own handlers: Ctrl-C or SIGTERM ends the loop and the bag is still closed properly.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    interrupt_once()
    return rclpy


# ---------------------------------------------------------------------------------- record

class _Recorder:
    """Subscribes (raw) to the wanted topics as their publishers appear; writes every message."""

    def __init__(self, node, writer: BagWriter, topics: list[str], record_all: bool) -> None:
        self.node = node
        self.writer = writer
        self.topics = [normalize_topic(t) for t in topics]
        self.record_all = record_all
        self.total = 0
        self._subs = []
        self._warned: set[str] = set()

    def discover(self) -> None:
        """Subscribe to wanted topics that have a publisher now."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        for topic, types in self.node.get_topic_names_and_types():
            if self.writer.has_topic(topic) or topic in self._warned:
                continue
            if not (topic in self.topics or (self.record_all and topic not in _SKIPPED_TOPICS)):
                continue
            publishers = self.node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            msgtype = types[0]
            # Match the publishers: best effort if any offers only that (a reliable reader
            # would not match it), transient local only when all keep history.
            reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                           for p in publishers)
            transient = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                            for p in publishers)
            try:
                self.writer.add_topic(topic, msgtype, make_qos(reliable, transient))
                cls = message_class(msgtype)
            except (BagError, ImportError, AttributeError, ValueError) as exc:
                self._warned.add(topic)
                self.node.get_logger().warning(f'not recording {topic}: {exc}')
                continue
            qos = QoSProfile(
                depth=100,
                reliability=ReliabilityPolicy.RELIABLE if reliable
                else ReliabilityPolicy.BEST_EFFORT,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if transient
                else DurabilityPolicy.VOLATILE)
            self._subs.append(self.node.create_subscription(
                cls, topic, self._callback(topic), qos, raw=True))
            print(f'recording {topic} [{msgtype}]', flush=True)

    def _callback(self, topic: str):
        def on_message(data: bytes, info) -> None:
            stamp = info.get('received_timestamp') if isinstance(info, dict) else None
            self.writer.write(topic, stamp or time.time_ns(), data)
            self.total += 1
        return on_message


def record(args: argparse.Namespace) -> int:
    """Record until Ctrl-C, --duration or --max-messages; return the exit status."""
    if not args.topics and not args.all:
        print('vln_bag record: name topics or pass --all', file=sys.stderr)
        return 2
    rclpy = _init_rclpy()
    from rclpy.executors import SingleThreadedExecutor

    node = rclpy.create_node('vln_bag_recorder')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        writer = BagWriter(args.output, args.storage)
    except BagError as exc:
        print(f'vln_bag record: {exc}', file=sys.stderr)
        node.destroy_node()
        rclpy.try_shutdown()
        return 1
    recorder = _Recorder(node, writer, args.topics, args.all)
    start = time.monotonic()
    next_discovery = start
    with writer:
        print(f'recording to {args.output} (Ctrl-C to stop)', flush=True)
        try:
            while rclpy.ok():
                now = time.monotonic()
                if now >= next_discovery:
                    recorder.discover()
                    next_discovery = now + args.discovery_period
                if args.duration and now - start >= args.duration:
                    break
                if args.max_messages and recorder.total >= args.max_messages:
                    break
                executor.spin_once(timeout_sec=0.05)
        except KeyboardInterrupt:
            pass
        finally:
            executor.shutdown(timeout_sec=1.0)
            node.destroy_node()
            rclpy.try_shutdown()
    counts = ', '.join(f'{t}: {n}' for t, n in sorted(writer.counts.items())) or 'nothing'
    print(f'recorded {recorder.total} messages to {args.output} ({counts})', flush=True)
    return 0


# ---------------------------------------------------------------------------------- play

def _restamp(cls, data: bytes, now_msg) -> bytes:
    """Replace header.stamp with now (for a stack that runs on wall time)."""
    from rclpy.serialization import deserialize_message, serialize_message

    msg = deserialize_message(data, cls)
    if hasattr(msg, 'header'):
        msg.header.stamp = now_msg
    return serialize_message(msg)


def play(args: argparse.Namespace) -> int:
    """Publish the bag's messages with their original spacing / rate; return the exit status."""
    try:
        topics = bag_topics(args.bag, args.topics or None)
    except (BagError, OSError, ValueError) as exc:
        print(f'vln_bag play: cannot read {args.bag}: {exc}', file=sys.stderr)
        return 1
    if not topics:
        print(f'vln_bag play: no topics to play in {args.bag}', file=sys.stderr)
        return 1
    rclpy = _init_rclpy()
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    node = rclpy.create_node('vln_bag_player')
    publishers, classes = {}, {}
    for topic, (msgtype, reliable, transient) in topics.items():
        classes[topic] = message_class(msgtype)
        # Reliable topics keep 100 messages, so a reader that matches a moment after this
        # writer matched it still gets the first ones (odometry at 50 Hz: 2 s).
        qos = QoSProfile(
            depth=100 if reliable else 10,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if transient
            else DurabilityPolicy.VOLATILE)
        publishers[topic] = node.create_publisher(classes[topic], topic, qos)
    clock_pub = node.create_publisher(Clock, '/clock', 10) if args.clock else None
    sent = 0
    try:
        if args.wait_for_subscribers > 0:
            deadline = time.monotonic() + args.wait_for_subscribers
            while not all(p.get_subscription_count() >= args.min_subscribers
                          for p in publishers.values()):
                if time.monotonic() > deadline:
                    short = [t for t, p in publishers.items()
                             if p.get_subscription_count() < args.min_subscribers]
                    print(f'vln_bag play: playing anyway after {args.wait_for_subscribers:g} s; '
                          f'too few subscribers on {", ".join(short)}', file=sys.stderr)
                    break
                time.sleep(0.02)
        print(f'playing {len(publishers)} topics from {args.bag} at rate {args.rate:g}',
              flush=True)
        while True:
            start, first = time.monotonic(), None
            # Streamed, not loaded: a long bag of camera frames need not fit in memory.
            for msg in read_bag(args.bag, topics):
                first = msg.timestamp if first is None else first
                offset = playback_offsets([first, msg.timestamp], args.rate)[1]
                delay = start + offset - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                data = msg.data
                if args.restamp:
                    data = _restamp(classes[msg.topic], data, node.get_clock().now().to_msg())
                if clock_pub is not None:
                    clock = Clock()
                    clock.clock.sec, clock.clock.nanosec = divmod(msg.timestamp, 1_000_000_000)
                    clock_pub.publish(clock)
                publishers[msg.topic].publish(data)
                sent += 1
            if not args.loop:
                break
        # Let reliable readers fetch the last messages before the publishers go away.
        for pub in publishers.values():
            pub.wait_for_all_acked(Duration(seconds=2.0))
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(f'played {sent} messages', flush=True)
    return 0


# ---------------------------------------------------------------------------------- info

def info(args: argparse.Namespace) -> int:
    """Print the bag's summary; return the exit status."""
    try:
        print(format_summary(bag_summary(args.bag)))
    except (OSError, ValueError, BagError) as exc:
        print(f'vln_bag info: cannot read {args.bag}: {exc}', file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of vln_bag."""
    parser = argparse.ArgumentParser(
        prog='vln_bag', description='Record, play and inspect rosbag2 bags (MCAP) '
                                    'without rosbag2.')
    sub = parser.add_subparsers(dest='command', required=True)

    rec = sub.add_parser('record', help='record topics into a new bag folder')
    rec.add_argument('topics', nargs='*', help='topics to record (e.g. /odom /vln/result)')
    rec.add_argument('-a', '--all', action='store_true', help='record every topic seen')
    rec.add_argument('-o', '--output', default=time.strftime('vln_bag_%Y_%m_%d-%H_%M_%S'),
                     help='bag folder to create (must not exist)')
    rec.add_argument('-s', '--storage', choices=sorted(STORAGE_PLUGINS), default='mcap',
                     help='storage format (mcap)')
    rec.add_argument('-d', '--duration', type=float, default=0.0,
                     help='stop after this many seconds (0: until Ctrl-C)')
    rec.add_argument('--max-messages', type=int, default=0,
                     help='stop after this many messages (0: no limit)')
    rec.add_argument('--discovery-period', type=float, default=0.2,
                     help='seconds between looks for new topics')
    rec.set_defaults(func=record)

    ply = sub.add_parser('play', help='publish a bag with its original timing')
    ply.add_argument('bag', help='bag folder (or .mcap file)')
    ply.add_argument('-r', '--rate', type=float, default=1.0,
                     help='speed factor (2: twice as fast)')
    ply.add_argument('-l', '--loop', action='store_true', help='play again and again')
    ply.add_argument('--topics', nargs='+', help='play only these topics')
    ply.add_argument('--clock', action='store_true',
                     help='publish /clock with the bag time (for use_sim_time)')
    ply.add_argument('--restamp', action='store_true',
                     help='set header.stamp to the time of publication')
    ply.add_argument('--wait-for-subscribers', type=float, default=0.0, metavar='SECONDS',
                     help='first wait up to this long until every topic has a subscriber')
    ply.add_argument('--min-subscribers', type=int, default=1, metavar='COUNT',
                     help='with --wait-for-subscribers: how many subscribers each topic needs '
                          '(default 1)')
    ply.set_defaults(func=play)

    inf = sub.add_parser('info', help='show topics, counts and duration of a bag')
    inf.add_argument('bag', help='bag folder (or .mcap file)')
    inf.set_defaults(func=info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the vln_bag console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, 'rate', 1.0) <= 0.0:
        print('vln_bag: --rate must be positive', file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
