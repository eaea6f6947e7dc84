# Source me: the built workspace plus same-host DDS settings (loopback only, shared memory).
# Usage: . scripts/env.sh   (after scripts/setup.sh)
_vln_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)
if [ -z "${ROS_DISTRO:-}" ] || [ "${VLN_FORCE_WHEELS:-0}" = 1 ]; then
  export PATH="$_vln_root/.venv/bin:$PATH"
  export AMENT_PREFIX_PATH="$_vln_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export VIRTUAL_ENV="$_vln_root/.venv"
fi
# colcon's setup.sh reads unset variables; keep it away from `set -u` callers.
case $- in *u*) _vln_u=1; set +u;; *) _vln_u=0;; esac
COLCON_CURRENT_PREFIX="$_vln_root/install" . "$_vln_root/install/setup.sh"
[ $_vln_u = 1 ] && set -u
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export FASTRTPS_DEFAULT_PROFILES_FILE=${FASTRTPS_DEFAULT_PROFILES_FILE:-$_vln_root/config/fastdds_localhost.xml}
export PYTHONUNBUFFERED=1
unset _vln_root _vln_u
