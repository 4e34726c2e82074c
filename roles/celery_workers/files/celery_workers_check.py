# Deployed by the celery_workers role (celery_fleet.celery); local changes are overwritten.
"""Health gate, drain and broker probe of the Celery workers of this host.

Run by the role as the workers' user with the virtualenv's Python:

    python celery_workers_check.py --env-file ENV gate --timeout SECONDS < workers.json
    python celery_workers_check.py --env-file ENV drain --timeout SECONDS < workers.json
    python celery_workers_check.py --env-file ENV probe

ENV is an environment file the role writes (KEY="value", systemd's double
quotes): the broker URL and, for ``amqps://``, the TLS paths, read through
celery_broker_tls.py beside this file. Only the broker settings are loaded,
never the application: a control broadcast needs a connection, not the app's
tasks. workers.json is a list of the role's plan rows, one per worker:
``{"name": NAME, "queues": [...], "pool": POOL, "min": N, "max": M}``.

gate   Asks the broker, in one broadcast per round, until every worker
       ``NAME@<hostname>`` answers, consumes exactly its queues and has a
       pool size from min to max (checked for the prefork and threads pools,
       whose pool.max-concurrency is their configured size; solo always says
       1, gevent and eventlet are not checked). Exit 0 when all do; exit 1
       with the last state of each one that does not when --timeout runs out,
       or at once when the broker's certificate does not verify.
drain  Before a restart: cancels the workers' consumers (no new messages
       are delivered to them), then waits until the messages they reserved
       but have not started are gone (started on a free pool process, or
       nothing was reserved), at most --timeout seconds. Says how long each
       took, or how many messages are still reserved (all its pool processes
       busy: those go back to the queue when the worker stops). Always exit 0:
       a drain that cannot finish must not block the restart.
probe  Connects once with the settings of ENV (TCP, TLS and the certificate's
       name, login, virtual host) and exits 0, or 1 with one line naming the
       cause: certificate, server name, credentials, unreachable.
"""

import argparse
import json
import os
import shlex
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from celery_broker_tls import tls_options  # noqa: E402  pylint: disable=wrong-import-position

# The pools whose `inspect stats` pool.max-concurrency is their configured size.
SIZED_POOLS = ("prefork", "threads")
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH: the certificate is valid but names another host.
HOSTNAME_MISMATCH = 62


def load_env(path):
    """Parse the KEY="value" lines the role writes (systemd double-quote rules)."""
    env = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith(("#", ";")) or "=" not in line:
                continue
            key, _sep, value = line.partition("=")
            env[key.strip()] = "".join(shlex.split(value))
    return env


def broker_app(env):
    from celery import Celery  # pylint: disable=import-outside-toplevel

    app = Celery("celery-workers-check", broker=env["CELERY_BROKER_URL"])
    app.conf.broker_use_ssl = tls_options(env)
    return app


def causes(exc):
    """The exception and the ones it was raised from or during (kombu wraps the library's errors)."""
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def cause_of(exc, env):
    """One line naming why a connection failed: certificate, server name, credentials, unreachable."""
    from amqp.exceptions import AccessRefused, NotAllowed  # pylint: disable=import-outside-toplevel

    for err in causes(exc):
        if isinstance(err, ssl.SSLCertVerificationError):
            if getattr(err, "verify_code", None) == HOSTNAME_MISMATCH:
                name = env.get("CELERY_BROKER_TLS_SERVER_NAME") or "the URL's host"
                return f"server name: the broker's certificate does not name {name}: {err.verify_message}"
            return f"certificate: the broker's certificate does not verify against the CA: {err.verify_message}"
        if isinstance(err, ssl.SSLError):
            return f"certificate: the TLS handshake failed (a client certificate the broker refuses, or none): {err}"
        if isinstance(err, AccessRefused):
            return f"credentials: the broker refused the login: {err}"
        if isinstance(err, NotAllowed):
            return f"credentials: the user may not use this virtual host: {err}"
    for err in causes(exc):
        if isinstance(err, (OSError, socket.timeout)):
            return f"unreachable: {type(err).__name__}: {err}"
    return f"{type(exc).__name__}: {exc}"


def check(expect, replies, hostname):
    """Names of the unhealthy workers mapped to what was seen of them."""
    bad = {}
    for worker in expect:
        node = f"{worker['name']}@{hostname}"
        if node not in replies["ping"]:
            bad[worker["name"]] = "no answer to ping"
            continue
        queues = sorted(q["name"] for q in replies["active_queues"].get(node) or [])
        stats = replies["stats"].get(node) or {}
        size = stats.get("pool", {}).get("max-concurrency")
        want = sorted(set(worker["queues"]))
        low, high = worker.get("min"), worker.get("max")
        if worker.get("pool", "prefork") not in SIZED_POOLS:
            low = high = None
        # An autoscaled pool reports its current size: anything from min to max.
        sized = low is None or (isinstance(size, int) and low <= size <= high)
        if queues != want or not sized:
            bad[worker["name"]] = "queues=%s pool=%s (expected queues=%s pool=%s)" % (
                ",".join(queues), size, ",".join(want), low if low == high else f"{low}..{high}")
    return bad


def gate(app, env, expect, timeout):
    hostname = socket.gethostname()
    nodes = [f"{w['name']}@{hostname}" for w in expect]
    start = time.monotonic()
    bad = {w["name"]: "no answer to ping" for w in expect}
    while True:
        try:
            # Connect first: a refused connection or a certificate that does
            # not verify is reported as such, not as workers that do not answer.
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
            inspect = app.control.inspect(destination=nodes, timeout=1.0)
            replies = {"ping": inspect.ping() or {}, "active_queues": {}, "stats": {}}
            if replies["ping"]:
                replies["active_queues"] = inspect.active_queues() or {}
                replies["stats"] = inspect.stats() or {}
            bad = check(expect, replies, hostname)
        except Exception as exc:  # pylint: disable=broad-except  # broker unreachable, reset, ...
            if any(isinstance(err, ssl.SSLCertVerificationError) for err in causes(exc)):
                # The same CA and name on every try: waiting does not help.
                print(f"cannot reach the broker over TLS: {cause_of(exc, env)} (the workers use the same CA and name)")
                return 1
            bad = {w["name"]: f"{type(exc).__name__}: {exc}" for w in expect}
        if not bad:
            print("healthy after %.1fs: %s" % (time.monotonic() - start, ", ".join(w["name"] for w in expect)))
            return 0
        if time.monotonic() - start >= timeout:
            break
        time.sleep(0.5)
    for name, seen in sorted(bad.items()):
        print(f"{name}@{hostname} not healthy after {timeout}s: {seen}")
    return 1


def drain(app, expect, timeout):
    hostname = socket.gethostname()
    start = time.monotonic()
    pending = {}
    for worker in expect:
        node = f"{worker['name']}@{hostname}"
        try:
            for queue in worker["queues"]:
                app.control.cancel_consumer(queue, destination=[node], reply=True, timeout=2.0)
            pending[node] = None
        except Exception as exc:  # pylint: disable=broad-except
            print(f"{node}: not drained, the consumers could not be cancelled: {type(exc).__name__}: {exc}")
    while pending:
        try:
            reserved = app.control.inspect(destination=list(pending), timeout=1.0).reserved() or {}
        except Exception as exc:  # pylint: disable=broad-except
            print(f"{', '.join(pending)}: drain stopped, the broker did not answer: {type(exc).__name__}: {exc}")
            return 0
        for node in list(pending):
            pending[node] = len(reserved[node]) if node in reserved else None
            if pending[node] == 0:
                print("%s drained in %.2fs" % (node, time.monotonic() - start))
                del pending[node]
        if pending and time.monotonic() - start >= timeout:
            for node, count in pending.items():
                if count is None:
                    print(f"{node}: not drained: no answer in {timeout}s (a solo pool answers only between tasks)")
                else:
                    print(f"{node}: not drained: {count} message(s) still reserved after {timeout}s, all its pool processes busy; "
                          "they go back to the queue when the worker stops")
            return 0
        if pending:
            time.sleep(0.05)
    return 0


def probe(env):
    from kombu import Connection  # pylint: disable=import-outside-toplevel

    try:
        with Connection(env["CELERY_BROKER_URL"], ssl=tls_options(env), connect_timeout=10) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # pylint: disable=broad-except
        print(f"cannot connect to the broker with the new settings: {cause_of(exc, env)}")
        return 1
    print("the broker accepts the new settings")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", required=True, help="an environment file of the role (broker settings)")
    parser.add_argument("command", choices=["gate", "drain", "probe"])
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    env = load_env(args.env_file)
    if args.command == "probe":
        return probe(env)
    expect = json.load(sys.stdin)
    if args.command == "drain":
        return drain(broker_app(env), expect, args.timeout)
    return gate(broker_app(env), env, expect, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
