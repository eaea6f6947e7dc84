"""Child processes with guaranteed cleanup: nodes and servers for tests, demo and benchmarks.

Every process gets its own process group and dies with its parent (PR_SET_PDEATHSIG), so a
failed or interrupted run leaves no orphans.
"""
from __future__ import annotations

import ctypes
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Iterable

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
_PR_SET_PDEATHSIG = 1


def wait_until(predicate: Callable[[], object], timeout: float, period: float = 0.02,
               spin: Callable[[float], None] | None = None) -> object:
    """Return the predicate's first truthy value, or raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f'condition not met within {timeout:.1f} s')
        if spin is not None:
            spin(min(period, remaining))
        else:
            time.sleep(min(period, remaining))


def wait_for_health(url: str, ready: Callable[[dict], object], timeout: float = 60.0) -> dict:
    """Poll a server's /health until ready(body) holds; return that body.

    A server that does not answer yet, or answers without JSON, counts as not ready.
    """
    import httpx

    def poll():
        try:
            body = httpx.get(f'{url}/health', timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return None
        return body if ready(body) else None
    return wait_until(poll, timeout, period=0.2)


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this child when the test process dies."""
    try:
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class ManagedProcess:
    """A child process with its own group, a log file and guaranteed cleanup."""

    def __init__(self, name: str, argv: list[str], log_dir: pathlib.Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f'{name}.log'
        n = 1
        while self.log_path.exists():  # a restarted node keeps its predecessor's log
            n += 1
            self.log_path = log_dir / f'{name}-{n}.log'
        self._log = open(self.log_path, 'w+b')
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=str(ROOT), start_new_session=True,
            preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        """Process id (also the process group id)."""
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def output(self) -> str:
        """Everything the process printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    def wait_for_output(self, text: str, timeout: float) -> str:
        """Wait until text appears in the process output; fail early if the process died."""
        def seen():
            out = self.output()
            if text in out:
                return out
            if not self.alive():
                raise RuntimeError(f'{self.name} exited ({self.proc.returncode}):\n{out[-3000:]}')
            return None
        return wait_until(seen, timeout, period=0.05)

    def signal(self, sig: int) -> None:
        """Send sig to the whole process group."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGINT (clean rclpy shutdown), then SIGKILL the whole group after timeout."""
        self.signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers in the group
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.proc.returncode


class ProcessGroup:
    """Starts nodes and servers for one test and stops all of them in its cleanup."""

    def __init__(self, log_dir: pathlib.Path) -> None:
        self.log_dir = log_dir
        self.procs: list[ManagedProcess] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None
              ) -> ManagedProcess:
        """Start argv as a managed process named name.

        Every process of the group shares one ROS_HOME under the log directory (unless env
        names another): task databases and the persisted e-stop of one run never leak into
        the next, nor into the user's ~/.ros.
        """
        env = {'ROS_HOME': str(self.log_dir / 'ros_home'), **(env or {})}
        proc = ManagedProcess(name, argv, self.log_dir, env)
        self.procs.append(proc)
        return proc

    def start_node(self, executable: str, name: str | None = None,
                   params: dict | None = None, params_file: str | None = None,
                   remap: dict[str, str] | None = None, namespace: str = '',
                   env: dict[str, str] | None = None, module: str | None = None
                   ) -> ManagedProcess:
        """Start `ros2 run vln_ros <executable>` as a process: params, remappings, namespace."""
        module = module or f'vln_ros.nodes.{executable}'
        argv = [sys.executable, '-m', module, '--ros-args']
        if name:
            argv += ['-r', f'__node:={name}']
        if namespace:
            argv += ['-r', f'__ns:={namespace}']
        for src, dst in (remap or {}).items():
            argv += ['-r', f'{src}:={dst}']
        if params_file:
            argv += ['--params-file', params_file]
        if params:
            argv += ['--params-file', self.write_params(name or executable, params)]
        return self.start(name or executable, argv, env)

    def start_vlm_server(self, *args: str, name: str = 'vlm_server') -> str:
        """Start the project's OpenAI-compatible test server on a free port; return /v1 URL."""
        proc = self.start(name, [sys.executable, '-m', 'vln_ros.sim.vlm_server', '--port', '0',
                                 *args])
        out = proc.wait_for_output('listening on', timeout=30)
        return re.search(r'listening on (http://\S+)', out).group(1)

    def start_bridge(self, name: str = 'vln_bridge', **params) -> str:
        """Start the REST bridge node on a free port (params override); return its URL."""
        proc = self.start_node('vln_bridge', name=name, module='vln_ros.bridge.main',
                               params={'port': 0, **params})
        out = proc.wait_for_output('vln bridge listening on', timeout=60)
        return re.search(r'vln bridge listening on (http://\S+)', out).group(1)

    def write_params(self, node_name: str, params: dict) -> str:
        """Write a ROS 2 params YAML for one node (nested dicts become dotted names)."""
        fd, path = tempfile.mkstemp(prefix=f'{node_name}-', suffix='.yaml', dir=self.log_dir)
        with os.fdopen(fd, 'w') as f:
            yaml.safe_dump({'/**': {'ros__parameters': params}}, f)
        return path

    def stop_all(self) -> None:
        """Stop every process, newest first."""
        for proc in reversed(self.procs):
            proc.stop()

    def dump_logs(self, names: Iterable[str] | None = None, tail: int = 4000) -> str:
        """The last lines of the named (default: all) processes' logs."""
        parts = []
        for proc in self.procs:
            if names is None or proc.name in names:
                rc = proc.proc.poll()
                state = 'running' if rc is None else f'exited with {rc}'
                parts.append(f'----- {proc.name} ({state}) -----\n{proc.output()[-tail:]}')
        return '\n'.join(parts)


_DOMAIN_LOCK = None  # keeps the reserved domain's lock file open for the process's life


def reserve_domain_id(first: int = 1, last: int = 100) -> int:
    """Reserve a ROS_DOMAIN_ID no other run on this host holds, and export it.

    Parallel test runs, demos and benchmarks on one machine must not see each other's topics
    (a second simulator's ground truth or planner's cmd_vel would corrupt a run). Each run
    holds an exclusive lock on /tmp/vln_ros_domain_<id>.lock until it exits. An id already
    set in the environment is kept as it is.
    """
    import fcntl

    global _DOMAIN_LOCK
    if os.environ.get('ROS_DOMAIN_ID'):
        return int(os.environ['ROS_DOMAIN_ID'])
    start = os.getpid() % (last - first + 1)
    for i in range(last - first + 1):
        domain = first + (start + i) % (last - first + 1)
        f = open(f'/tmp/vln_ros_domain_{domain}.lock', 'w')
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _DOMAIN_LOCK = f
        os.environ['ROS_DOMAIN_ID'] = str(domain)
        remove_stale_port_segments(domain)
        return domain
    raise RuntimeError(f'no free ROS domain id in {first}..{last}')


def remove_stale_port_segments(domain: int) -> list[str]:
    """Delete the Fast DDS shared-memory port segments of a domain that no process maps.

    A participant killed while creating its port segment leaves it half initialised, and the
    next participant of the same domain spins forever in Fast DDS's open-or-create (seen as a
    node that never logs its ready line). Called with the domain's lock held, so no run of
    ours is opening these segments; segments mapped by any live process are kept.
    """
    base = 7400 + 250 * domain  # RTPS port range of the domain (PB + DG * domain)
    shm = pathlib.Path('/dev/shm')

    def port_of(name: str) -> int | None:
        # fastrtps_port<N>, fastrtps_port<N>_el, sem.fastrtps_port<N>_mutex
        digits = name.removeprefix('sem.').removeprefix('fastrtps_port')
        digits = digits.removesuffix('_el').removesuffix('_mutex')
        return int(digits) if digits.isdigit() else None

    candidates = [p for p in shm.glob('*fastrtps_port*')
                  if (port := port_of(p.name)) is not None and base <= port < base + 250]
    if not candidates:
        return []
    in_use = set()
    for maps in pathlib.Path('/proc').glob('[0-9]*/maps'):
        try:
            text = maps.read_text(errors='replace')
        except OSError:
            continue
        for line in text.splitlines():
            if 'fastrtps_port' in line:
                in_use.add(port_of(line.rsplit('/', 1)[-1].strip()))
    removed = []
    for path in candidates:
        if port_of(path.name) in in_use:
            continue
        try:
            path.unlink()
            removed.append(path.name)
        except OSError:
            pass
    return removed


def clean_shm_zombies() -> None:
    """Remove Fast DDS shared-memory segments left by killed processes (`fastdds shm clean`).

    A process killed with SIGKILL leaves its segments and port locks in /dev/shm; hundreds of
    them accumulate over a test run and have been seen to stall a new participant's start-up.
    Only segments whose owner is gone are removed. A missing `fastdds` tool is not an error.
    """
    import shutil

    tool = shutil.which('fastdds')
    if tool is None:
        return
    try:
        subprocess.run([tool, 'shm', 'clean'], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass
