#!/usr/bin/env python3
"""Screenshot of the lab's Flower dashboard (docs/flower-dashboard.png).

    .venv/bin/python lab/flower-screenshot.py [--out docs/flower-dashboard.png] [--timeout 90]

Run it after `scripts/lab up` (ideally after the demo, so the counters are not
all zero). Headless Chromium (Debian's chromium + chromedriver, through
Selenium) logs in with the lab's Flower user (inventory/lab/group_vars/
celery_flower.yml, password in .lab/flower_password), waits until the workers
table lists every worker of inventory/lab/host_vars, and saves a 1400x900
screenshot. Exits 1 if Flower does not show them within the timeout.
"""

from __future__ import annotations

import argparse
import base64
import pathlib
import sys
import time

import yaml

from browser import chrome

REPO = pathlib.Path(__file__).resolve().parents[1]
INVENTORY = REPO / "inventory" / "lab"
NODES_JS = "return Array.from(document.querySelectorAll('table#workers-table a.worker-name-link')).map(a => a.title);"


def expected_nodes() -> set[str]:
    nodes = set()
    for path in (INVENTORY / "host_vars").glob("*.yml"):
        for worker in (yaml.safe_load(path.read_text()) or {}).get("celery_workers", []):
            nodes.add(f"{worker['name']}@{path.stem}")
    return nodes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "flower-dashboard.png"))
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args()

    flower = yaml.safe_load((INVENTORY / "group_vars" / "celery_flower.yml").read_text())
    url = f"http://{flower['celery_flower_address']}:{flower['celery_flower_port']}/"
    user = flower["celery_flower_basic_auth"][0]["user"]
    password = (REPO / ".lab" / "flower_password").read_text().split()[0]
    want = expected_nodes()

    driver = chrome()
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
        deadline = time.monotonic() + args.timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            driver.get(url)
            for _ in range(10):
                seen = set(driver.execute_script(NODES_JS))
                if seen == want:
                    break
                time.sleep(1)
            if seen == want:
                break
        if seen != want:
            print(f"Flower at {url} shows {sorted(seen)}, expected {sorted(want)}", file=sys.stderr)
            return 1
        time.sleep(1)  # the summary cards update with the table
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(args.out)
        print(f"{args.out}: Flower at {url} with {len(want)} workers: {', '.join(sorted(want))}")
        return 0
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
