"""Status names shared by the nodes, the bridge and the stored history (ROS-free).

The wire carries small integers (NavigationResult.STATUS_*) and strings (TaskState.STATUS_*);
everything a person reads (logs, REST, the web UI, the task database) uses the names below.
One table, so a node never imports another node for it. test_statuses checks it against the
generated message constants.
"""
from __future__ import annotations

# NavigationResult.status codes and their names.
RESULT_OK = 0
RESULT_FALLBACK = 1
RESULT_VLM_ERROR = 2
RESULT_STOP = 3
RESULT_NAMES = {RESULT_OK: 'ok', RESULT_FALLBACK: 'fallback', RESULT_VLM_ERROR: 'vlm_error',
                RESULT_STOP: 'stop'}
RESULT_CODES = {name: code for code, name in RESULT_NAMES.items()}
# A REST placeholder while a task has no result yet (never on the wire).
RESULT_PENDING = 'pending'

# TaskState.status strings (also the core TaskStatus values).
TASK_ACTIVE = 'active'
TASK_STOPPED = 'stopped'
TASK_COMPLETED = 'completed'
TASK_FAILED = 'failed'
TASK_NAMES = (TASK_ACTIVE, TASK_STOPPED, TASK_COMPLETED, TASK_FAILED)


def result_name(code: int) -> str:
    """Name of a NavigationResult status code; an unknown code counts as an error."""
    return RESULT_NAMES.get(int(code), 'vlm_error')


def result_code(name: str) -> int:
    """NavigationResult status code of a name; an unknown name counts as an error."""
    return RESULT_CODES.get(name, RESULT_VLM_ERROR)


def answer_status(method: str, action: str) -> str:
    """Status name of a parsed answer (parser method 'json', 'repaired', 'text' or 'failed')."""
    if method == 'failed':
        return 'vlm_error'
    if action == 'stop':
        return 'stop'
    return 'ok' if method == 'json' else 'fallback'
