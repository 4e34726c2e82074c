#!/usr/bin/env python3
"""Screenshot of the lab's Prometheus alerts page (docs/prometheus-alerts.png).

    .venv/bin/python lab/prometheus-screenshot.py [--stop NODE] [--out docs/prometheus-alerts.png]
                                                  [--url http://127.0.0.1:9090] [--timeout 300]

Run it after `scripts/lab up` (Prometheus: lab/prometheus.yml, on the broker
host). With --stop NODE (e.g. reports@lab-worker2, the only consumer of the
queue reports), it first stops that worker's unit (podman exec HOST systemctl
stop celery-worker@NAME.service) and waits until Prometheus reports
CeleryWorkerDown for NODE and CeleryQueueNoConsumer for every queue left
without a consumer (inventory/lab/host_vars) as firing: with the documented
for: (1m, 2m) that takes about 2.5 minutes. Then headless Chromium (Debian's
chromium + chromedriver, through Selenium) opens the alerts page, expands the
firing alerts, and saves a 1400-pixel-wide screenshot of the whole page.
Afterwards the worker is started again and the script waits until those
alerts have resolved. Every wait is bounded (--timeout each); exits 1 if one
times out.

Debian's Prometheus 2.42 has the classic web UI only: the page is
/classic/alerts (/alerts answers 404).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time
import urllib.request

import yaml

from browser import WIDTH, chrome, viewport

REPO = pathlib.Path(__file__).resolve().parents[1]
INVENTORY = REPO / "inventory" / "lab"
UNIT_FORMAT = yaml.safe_load((REPO / "roles" / "celery_workers" / "vars" / "main.yml").read_text())["__celery_workers_unit_format"]


def workers() -> dict[str, list[str]]:
    """NAME@HOST -> its queues, from inventory/lab/host_vars."""
    out = {}
    for path in sorted((INVENTORY / "host_vars").glob("*.yml")):
        for worker in (yaml.safe_load(path.read_text()) or {}).get("celery_workers", []):
            out[f"{worker['name']}@{path.stem}"] = list(worker.get("queues") or [worker["queue"]])
    return out


def active_alerts(url: str) -> dict[tuple[str, str], str]:
    """(alertname, worker or queue) -> state, of Prometheus' active alerts."""
    with urllib.request.urlopen(f"{url}/api/v1/alerts", timeout=10) as response:
        alerts = json.load(response)["data"]["alerts"]
    return {(a["labels"]["alertname"], a["labels"].get("worker") or a["labels"].get("queue", "")): a["state"] for a in alerts}


def wait(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    while not check():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(2)
    print(f"{what}: after {time.monotonic() - start:.0f}s", flush=True)


def systemctl(verb: str, node: str) -> None:
    name, host = node.split("@", 1)
    subprocess.run(["podman", "exec", host, "timeout", "90", "systemctl", verb, UNIT_FORMAT % name], check=True, timeout=120)


def screenshot(url: str, out: str) -> None:
    driver = chrome()
    try:
        driver.get(f"{url}/classic/alerts")
        # Expand the firing alerts (each rule's header row toggles its details).
        for header in driver.find_elements("css selector", "tr.alert_header.alert-danger"):
            if not header.find_element("xpath", "following-sibling::tr[1]").is_displayed():
                header.click()
        time.sleep(1)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        viewport(driver, WIDTH, min(int(height), 3000))
        time.sleep(0.5)
        pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(out)
    finally:
        driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:9090")
    parser.add_argument("--out", default=str(REPO / "docs" / "prometheus-alerts.png"))
    parser.add_argument("--stop", metavar="NODE", help="stop this worker (NAME@HOST) until its alerts fire")
    parser.add_argument("--timeout", type=float, default=300, help="bound of each wait (seconds)")
    args = parser.parse_args()

    fleet = workers()
    expected: list[tuple[str, str]] = []
    if args.stop:
        if args.stop not in fleet:
            parser.error(f"{args.stop} is not a worker of inventory/lab: {sorted(fleet)}")
        emptied = [q for q in fleet[args.stop] if all(n == args.stop for n, qs in fleet.items() if q in qs)]
        expected = [("CeleryWorkerDown", args.stop)] + [("CeleryQueueNoConsumer", q) for q in emptied]
    try:
        if args.stop:
            print(f"stopping {args.stop}; waiting for {expected} to fire", flush=True)
            systemctl("stop", args.stop)
            wait("the alerts firing", lambda: all(active_alerts(args.url).get(k) == "firing" for k in expected), args.timeout)
        screenshot(args.url, args.out)
        print(f"{args.out}: {args.url}/classic/alerts, active: {active_alerts(args.url)}")
    except (TimeoutError, OSError, subprocess.SubprocessError) as err:
        print(err, file=sys.stderr)
        return 1
    finally:
        if args.stop:
            systemctl("start", args.stop)
    if args.stop:
        try:
            wait("the alerts resolved", lambda: not set(expected) & set(active_alerts(args.url)), args.timeout)
        except TimeoutError as err:
            print(err, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
