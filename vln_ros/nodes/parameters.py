"""Node parameters: declarations with descriptors and ranges, and live changes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: name, default, description, optional range, live or read_only."""

    name: str
    default: Any
    description: str
    lo: float | None = None
    hi: float | None = None
    read_only: bool = False


def declare(node, name: str, default: Any, description: str,
            lo: float | None = None, hi: float | None = None, read_only: bool = False) -> Any:
    """Declare a parameter with a descriptor (and range), return its value."""
    desc = ParameterDescriptor(description=description, read_only=read_only)
    if lo is not None and hi is not None:
        if isinstance(default, bool):
            pass
        elif isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        elif isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo),
                                                            to_value=float(hi), step=0.0)]
    return node.declare_parameter(name, default, desc).value


class LiveParameters:
    """Make parameters live: `ros2 param set` takes effect at once or is refused with a reason.

    ``build(values)`` gets the value of every named parameter (live and read_only, so the
    builder sees the whole configuration) as it would be after the change, and returns a
    function that applies them; it raises ValueError (or TypeError) to refuse the change with
    a message naming the problem. Build the same objects start-up builds, so a change is
    validated the way start-up validates. rclpy has already checked the declared type, range
    and read_only flag. Register after every declaration: rclpy runs these callbacks for
    declarations too.
    """

    def __init__(self, node, names: Iterable[str],
                 build: Callable[[dict[str, Any]], Callable[[], None]]) -> None:
        self._node = node
        self._names = tuple(names)
        self._build = build
        self._pending: Callable[[], None] | None = None
        node.add_on_set_parameters_callback(self._check)
        node.add_post_set_parameters_callback(self._apply)

    def _check(self, params) -> SetParametersResult:
        changed = {p.name: p.value for p in params if p.name in self._names}
        self._pending = None
        if not changed:
            return SetParametersResult(successful=True)
        values = {name: self._node.get_parameter(name).value for name in self._names}
        values.update(changed)
        try:
            self._pending = self._build(values)
        except (ValueError, TypeError) as exc:
            self._node.get_logger().warn(f'parameter change refused: {exc}')
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply(self, params) -> None:
        apply, self._pending = self._pending, None
        if apply is None:
            return
        apply()
        changes = ', '.join(f'{p.name}={p.value!r}' for p in params if p.name in self._names)
        self._node.get_logger().info(f'parameters changed: {changes}')




def declare_all(node, specs: Iterable[ParamSpec]) -> dict[str, Any]:
    """Declare every spec on the node; return name -> value (overrides applied)."""
    return {s.name: declare(node, s.name, s.default, s.description, s.lo, s.hi, s.read_only)
            for s in specs}


def live_names(specs: Iterable[ParamSpec]) -> list[str]:
    """Names of the specs that are not read_only."""
    return [s.name for s in specs if not s.read_only]
