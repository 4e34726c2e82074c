"""The operations scenario's tests: the shared helpers (molecule/shared/fleet.py)
and what is this scenario's own."""

from __future__ import annotations

import os
import pathlib
import sys

os.environ.setdefault("MOLECULE_SCENARIO_DIRECTORY", str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))

# pylint: disable=wrong-import-position,unused-import
from fleet import (APP_FILE, BEAT_HOSTS, BEAT_UNIT, BROKER, GROUP_VARS, HOST_VARS, LEGACY_FORMAT, PLATFORMS, PROJECT, SITE,  # noqa: E402,F401
                   TARGET, WORKER_HOSTS, all_workers, assert_rolling, celery_client, children_of, consumers_of, deadline,
                   executed_tokens, fleet_answers, fleet_state, journal, main_pid, new_run_id, node, playbook_command,
                   playbook_env, pytest_configure, recap, report, restart_windows, run_playbook, setting, start_playbook,
                   token_entries, unit, unit_events, unit_props, wait_for, wait_for_tokens, workers_of, write_override)

# The image of the worker hosts (a host restart starts it again).
HOST_IMAGE = next(p["image"] for p in PLATFORMS if p["name"] in WORKER_HOSTS)
BEAT_SCHEDULE = setting("celery_workers_state_dir") + "/beat/celerybeat-schedule"


def run_tasks(app, queue: str, count: int, prefix: str, timeout: float) -> list[dict]:
    """Send count quick sleep tasks to queue and return their results (all must come back)."""
    import time  # pylint: disable=import-outside-toplevel

    results = [app.sleep.apply_async((0.01,), {"token": f"{prefix}-{i}"}, queue=queue) for i in range(count)]
    end = time.monotonic() + timeout
    return [r.get(timeout=max(1.0, end - time.monotonic())) for r in results]
