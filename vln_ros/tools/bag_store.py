"""rosbag2 bags (MCAP or sqlite3) through the pure-Python `rosbags` package, without rclpy.

Messages are kept as CDR bytes exactly as DDS carries them, so a recorder can write what an
rclpy raw subscription hands it and a player can publish the bytes back unchanged. The
typestore (`Stores.ROS2_JAZZY`) supplies the message definitions that MCAP stores with each
topic, so `ros2 bag info` and `ros2 bag play` on a robot understand the bags; types it does not
know (the project's vln_ros_interfaces) are registered from their .msg files.
"""
from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import re
from typing import Iterable, Iterator

from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

STORAGE_PLUGINS = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
BAG_VERSION = 9  # rosbag2 metadata version written by Jazzy
_REPO_ROOT = Path(__file__).resolve().parents[2]
_MSGTYPE = re.compile(r'^([A-Za-z][\w]*)/msg/([A-Za-z]\w*)$')


class BagError(RuntimeError):
    """A bag cannot be written or read as asked."""


@dataclass(frozen=True)
class BagMessage:
    """One message of a bag: topic, type, receive time (ns since the epoch) and CDR bytes."""

    topic: str
    msgtype: str
    timestamp: int
    data: bytes
    reliable: bool = True
    transient_local: bool = False


def _msg_dir(package: str) -> Path | None:
    """Find the msg/ folder of an interface package: installed share dir, else this checkout."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            candidate = Path(get_package_share_directory(package)) / 'msg'
            if candidate.is_dir():
                return candidate
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH unset
            pass
    except ImportError:  # no ament index: a plain checkout
        pass
    candidate = _REPO_ROOT / package / 'msg'
    return candidate if candidate.is_dir() else None


def register_package(typestore, package: str) -> list[str]:
    """Register every .msg of an interface package in the typestore; return the type names."""
    folder = _msg_dir(package)
    if folder is None:
        return []
    types: dict = {}
    for path in sorted(folder.glob('*.msg')):
        name = f'{package}/msg/{path.stem}'
        types.update(get_types_from_msg(path.read_text(encoding='utf-8'), name))
    typestore.register(types)
    return sorted(types)


def ensure_msgtype(typestore, msgtype: str) -> bool:
    """Make sure the typestore knows msgtype ('pkg/msg/Name'); return False when it cannot."""
    if msgtype in typestore.types:
        return True
    match = _MSGTYPE.match(msgtype)
    if not match:
        return False
    register_package(typestore, match.group(1))
    return msgtype in typestore.types


def make_typestore(packages: Iterable[str] = ('vln_ros_interfaces',)):
    """Return the Jazzy typestore with the given interface packages registered."""
    typestore = get_typestore(Stores.ROS2_JAZZY)
    for package in packages:
        register_package(typestore, package)
    return typestore


def make_qos(reliable: bool = True, transient_local: bool = False, depth: int = 10) -> Qos:
    """Return a rosbag2 offered-QoS profile (what `ros2 bag play` reuses)."""
    zero = QosTime(sec=0, nsec=0)
    return Qos(history=QosHistory.KEEP_LAST, depth=depth,
               reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               durability=QosDurability.TRANSIENT_LOCAL if transient_local
               else QosDurability.VOLATILE,
               deadline=zero, lifespan=zero, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=zero, avoid_ros_namespace_conventions=False)


class BagWriter:
    """Write CDR messages to a new bag directory; use as a context manager."""

    def __init__(self, path: str | os.PathLike, storage: str = 'mcap', typestore=None) -> None:
        if storage not in STORAGE_PLUGINS:
            raise BagError(f'storage must be one of {sorted(STORAGE_PLUGINS)}, got {storage!r}')
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'{self.path} exists already; choose a new output folder')
        self.typestore = typestore or make_typestore()
        self._writer = Writer(self.path, version=BAG_VERSION,
                              storage_plugin=STORAGE_PLUGINS[storage])
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self._open = False

    def __enter__(self) -> 'BagWriter':
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Create the bag directory and its storage file."""
        self._writer.open()
        self._open = True

    def add_topic(self, topic: str, msgtype: str, qos: Qos | None = None) -> None:
        """Declare a topic before writing to it."""
        if topic in self._connections:
            return
        if not ensure_msgtype(self.typestore, msgtype):
            raise BagError(f'unknown message type {msgtype} (no .msg definition found)')
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self.typestore,
            offered_qos_profiles=[qos or make_qos()])
        self.counts[topic] = 0

    def has_topic(self, topic: str) -> bool:
        """Return True once add_topic was called for topic."""
        return topic in self._connections

    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        """Append one CDR-serialised message of a declared topic."""
        self._writer.write(self._connections[topic], int(timestamp_ns), bytes(data))
        self.counts[topic] += 1

    def close(self) -> None:
        """Finish the bag (writes metadata.yaml); safe to call twice."""
        if self._open:
            self._open = False
            self._writer.close()


def _qos_of(connection) -> tuple[bool, bool]:
    """Return (reliable, transient_local) from a connection's recorded offered QoS."""
    profiles = getattr(getattr(connection, 'ext', None), 'offered_qos_profiles', None) or []
    if not profiles:
        return True, False
    reliable = all(p.reliability != QosReliability.BEST_EFFORT for p in profiles)
    transient = all(p.durability == QosDurability.TRANSIENT_LOCAL for p in profiles)
    return reliable, transient


def read_bag(path: str | os.PathLike, topics: Iterable[str] | None = None
             ) -> Iterator[BagMessage]:
    """Yield the messages of a bag in time order, optionally only those of some topics."""
    wanted = {normalize_topic(t) for t in topics} if topics else None
    with Reader(Path(path)) as reader:
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        qos = {c.id: _qos_of(c) for c in connections}
        for connection, timestamp, data in reader.messages(connections=connections):
            reliable, transient = qos[connection.id]
            yield BagMessage(connection.topic, connection.msgtype, timestamp, bytes(data),
                             reliable, transient)


def bag_topics(path: str | os.PathLike, topics: Iterable[str] | None = None
               ) -> dict[str, tuple[str, bool, bool]]:
    """Return {topic: (msgtype, reliable, transient_local)} of a bag (optionally filtered)."""
    wanted = {normalize_topic(t) for t in topics} if topics else None
    with Reader(Path(path)) as reader:
        return {c.topic: (c.msgtype, *_qos_of(c)) for c in reader.connections
                if wanted is None or c.topic in wanted}


def normalize_topic(topic: str) -> str:
    """Return the absolute topic name a bag stores ('odom' -> '/odom')."""
    topic = topic.strip()
    return topic if topic.startswith('/') else '/' + topic


def bag_summary(path: str | os.PathLike) -> dict:
    """Return duration, time range, storage and per-topic type and count of a bag."""
    path = Path(path)
    with Reader(path) as reader:
        topics = {}
        for connection in reader.connections:
            entry = topics.setdefault(connection.topic, {'type': connection.msgtype, 'count': 0})
            entry['count'] += connection.msgcount
        count = reader.message_count
        start = reader.start_time if count else 0
        end = reader.end_time if count else 0
    files = [p for p in path.iterdir() if p.suffix in ('.mcap', '.db3')] if path.is_dir() \
        else [path]
    return {'path': str(path), 'storage': files[0].suffix.lstrip('.') if files else '',
            'size_bytes': sum(p.stat().st_size for p in files), 'messages': count,
            'start_ns': start, 'end_ns': end, 'duration_s': (end - start) * 1e-9,
            'topics': topics}


def format_summary(summary: dict) -> str:
    """Render bag_summary() like `ros2 bag info` does."""
    lines = [f'Files:      {summary["path"]}',
             f'Storage:    {summary["storage"]}',
             f'Bag size:   {summary["size_bytes"] / 1024:.1f} KiB',
             f'Duration:   {summary["duration_s"]:.3f} s',
             f'Start:      {summary["start_ns"] * 1e-9:.3f}',
             f'End:        {summary["end_ns"] * 1e-9:.3f}',
             f'Messages:   {summary["messages"]}',
             'Topics:']
    for topic, entry in sorted(summary['topics'].items()):
        lines.append(f'  {topic} | {entry["type"]} | {entry["count"]} msgs')
    return '\n'.join(lines)


def playback_offsets(timestamps_ns: Iterable[int], rate: float = 1.0) -> list[float]:
    """Seconds after playback start at which each message is due, for a rate factor."""
    if not rate > 0.0:
        raise ValueError(f'rate must be positive, got {rate}')
    stamps = list(timestamps_ns)
    if not stamps:
        return []
    t0 = stamps[0]
    return [max(0.0, (t - t0) * 1e-9 / rate) for t in stamps]
