"""Checked fields of the scenario YAML: every error names the field that is wrong."""
from __future__ import annotations

import math
from typing import Any

__all__ = ['ScenarioError', 'mapping', 'no_unknown_keys', 'number', 'text', 'vector']


class ScenarioError(ValueError):
    """A scenario file or dictionary that does not follow the format; names the field."""


def number(value: Any, where: str, low: float | None = None, high: float | None = None,
            positive: bool = False) -> float:
    """Return ``value`` as a float, checking its range, or raise naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScenarioError(f'{where}: expected a number, got {value!r}')
    value = float(value)
    if positive and value <= 0.0:
        raise ScenarioError(f'{where}: must be > 0, got {value}')
    if low is not None and value < low:
        raise ScenarioError(f'{where}: must be >= {low}, got {value}')
    if high is not None and value > high:
        raise ScenarioError(f'{where}: must be <= {high}, got {value}')
    return value


def vector(value: Any, where: str, length: int) -> tuple[float, ...]:
    """Return ``value`` as a tuple of ``length`` floats, or raise naming ``where``."""
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise ScenarioError(f'{where}: expected a list of {length} numbers, got {value!r}')
    return tuple(number(v, f'{where}[{i}]') for i, v in enumerate(value))


def mapping(value: Any, where: str) -> dict:
    """Return ``value`` if it is a mapping (None counts as empty), or raise naming ``where``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ScenarioError(f'{where}: expected a mapping, got {type(value).__name__}')
    return value


def text(value: Any, where: str) -> str:
    """Return ``value`` as a non-empty string, or raise naming ``where``."""
    if not isinstance(value, str) or not value.strip():
        raise ScenarioError(f'{where}: expected a non-empty string, got {value!r}')
    return value.strip()


def no_unknown_keys(d: dict, allowed: set[str], where: str) -> None:
    """Reject keys a user probably misspelt."""
    unknown = sorted(set(d) - allowed)
    if unknown:
        prefix = f'{where}.' if where else ''
        raise ScenarioError(f'{prefix}{unknown[0]}: unknown field (allowed: '
                            f'{", ".join(sorted(allowed))})')
