#!/usr/bin/env python3
"""Send tasks through the lab and show which worker ran each one.

Run with the controller venv (``scripts/lab demo`` does):

    .venv/bin/python lab/demo.py [--count 6] [--timeout 60]

It imports the role's application (files/celery_app.py)
with CELERY_BROKER_URL pointing at the lab broker on 127.0.0.1 (password from
.lab/broker_password), asks the workers which queues they consume
(``inspect().active_queues()``), sends ``--count`` tasks to each queue
(``whoami`` -> default, ``other_whoami`` -> other, ``report`` -> reports),
waits for the results (rpc:// backend) and prints task -> queue -> worker.

Exit status 0 only if every task succeeded in time, was delivered on the
queue it was sent to, and ran on a worker that consumes that queue; 1 if one
did not; 2 if the lab is not usable (no broker, no worker answering).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
APP_FILE = REPO / "files" / "celery_app.py"
PASSWORD_FILE = REPO / ".lab" / "broker_password"

# task name -> (queue it must arrive on, args)
PLAN = (
    ("celery_app.whoami", "default"),
    ("celery_app.other_whoami", "other"),
    ("celery_app.report", "reports"),
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=int(os.environ.get("LAB_DEMO_COUNT", 6)),
                   help="tasks sent to each queue (default 6)")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("LAB_DEMO_TIMEOUT", 60)),
                   help="seconds to wait for all results (default 60)")
    p.add_argument("--broker-url", default=os.environ.get("LAB_BROKER_URL"),
                   help="default: amqp://USER:PASSWORD@127.0.0.1:PORT/VHOST from .lab/broker_password")
    p.add_argument("--port", type=int, default=int(os.environ.get("LAB_BROKER_AMQP_PORT", 5672)))
    p.add_argument("--user", default=os.environ.get("LAB_BROKER_USER", "celery"))
    p.add_argument("--vhost", default=os.environ.get("LAB_BROKER_VHOST", "celery"))
    p.add_argument("--app", type=Path, default=APP_FILE, help="the Celery app module file")
    args = p.parse_args()
    if args.count < 1:
        p.error("--count must be at least 1")
    return args


def broker_url(args: argparse.Namespace) -> str:
    if args.broker_url:
        return args.broker_url
    try:
        # Ansible's password lookup file: the password, maybe followed by " salt=...".
        password = PASSWORD_FILE.read_text().split()[0]
    except (OSError, IndexError):
        sys.exit(f"demo: cannot read the broker password from {PASSWORD_FILE} (run scripts/lab up)")
    return f"amqp://{quote(args.user, safe='')}:{quote(password, safe='')}@127.0.0.1:{args.port}/{quote(args.vhost, safe='')}"


def load_app(path: Path, url: str):
    """Import the role's app module with the broker URL in its environment."""
    os.environ["CELERY_BROKER_URL"] = url
    os.environ.setdefault("CELERY_RESULT_BACKEND", "rpc://")
    spec = importlib.util.spec_from_file_location("celery_app", path)
    if spec is None or spec.loader is None:
        sys.exit(f"demo: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["celery_app"] = module
    spec.loader.exec_module(module)
    return module


def redact(url: str) -> str:
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme_user = head.rsplit(":", 1)[0]
    return f"{scheme_user}:***@{tail}"


def main() -> int:
    args = parse_args()
    url = broker_url(args)
    mod = load_app(args.app, url)
    app = mod.app
    print(f"demo: broker {redact(url)}, app {args.app.relative_to(REPO) if args.app.is_relative_to(REPO) else args.app}")

    # Which worker consumes which queue.
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=2, timeout=5)
    except Exception as exc:  # noqa: BLE001 - any connection error ends the demo
        print(f"demo: ERROR: cannot connect to the broker: {exc}", file=sys.stderr)
        return 2
    active = app.control.inspect(timeout=5.0).active_queues() or {}
    consumers: dict[str, set[str]] = {node: {q["name"] for q in queues} for node, queues in active.items()}
    if not consumers:
        print("demo: ERROR: no worker answered inspect().active_queues()", file=sys.stderr)
        return 2
    print("\nworkers and the queues they consume:")
    for node in sorted(consumers):
        print(f"  {node:<28} {', '.join(sorted(consumers[node]))}")
    served = set().union(*consumers.values())
    unserved = [q for _, q in PLAN if q not in served]
    if unserved:
        print(f"demo: WARNING: no worker consumes {', '.join(unserved)}: those tasks will time out",
              file=sys.stderr)

    # Send.
    sent = []  # (index, task name, expected queue, AsyncResult)
    t0 = time.monotonic()
    for name, queue in PLAN:
        task = app.tasks[name]
        for i in range(args.count):
            r = task.apply_async(args=(f"demo-{i + 1}",)) if name == "celery_app.report" else task.apply_async()
            sent.append((len(sent) + 1, name, queue, r))
    print(f"\nsent {len(sent)} tasks ({args.count} per queue) in {time.monotonic() - t0:.2f}s; "
          f"waiting up to {args.timeout:.0f}s for the results\n")

    # Collect.
    deadline = time.monotonic() + args.timeout
    rows = []
    failures = 0
    for idx, name, queue, r in sent:
        worker = arrived_on = "-"
        try:
            value = r.get(timeout=max(0.1, deadline - time.monotonic()), propagate=False)
            if r.successful() and isinstance(value, dict):
                worker = str(value.get("worker"))
                arrived_on = str(value.get("queue"))
                if arrived_on != queue:
                    status = f"FAIL: delivered on {arrived_on}"
                elif queue not in consumers.get(worker, set()):
                    status = f"FAIL: {worker} does not consume {queue}"
                else:
                    status = "ok"
            else:
                status = f"FAIL: {r.state} {value!r}"[:60]
        except Exception as exc:  # noqa: BLE001 - TimeoutError and broker errors alike
            status = f"FAIL: {type(exc).__name__}"
            if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
                status = "FAIL: timed out"
        if status != "ok":
            failures += 1
        rows.append((idx, name, queue, arrived_on, worker, status, r.id))
    elapsed = time.monotonic() - t0

    header = ("#", "task", "queue", "delivered on", "worker", "result")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths)))
    for row in rows:
        print(fmt.format(*row[:6]))

    print("\ntasks per queue and worker:")
    per = defaultdict(Counter)
    for _, _, queue, _, worker, status, _ in rows:
        per[queue][worker if status == "ok" else "(failed)"] += 1
    for queue in (q for _, q in PLAN):
        spread = ", ".join(f"{w} x{n}" for w, n in sorted(per[queue].items()))
        print(f"  {queue:<8} {spread}")

    if failures:
        print(f"\ndemo: FAILED: {failures} of {len(rows)} tasks ({elapsed:.1f}s)", file=sys.stderr)
        return 1
    print(f"\ndemo: OK: {len(rows)} tasks ran on workers consuming their queue ({elapsed:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
