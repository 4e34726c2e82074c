"""The Prometheus rules of prometheus/ hold, and what documents them stays true.

* promtool (Debian's prometheus package) checks prometheus/alerts.yml and
  prometheus/scrape.example.yml and runs the unit tests of
  prometheus/tests/alerts_test.yml; without promtool these tests fail.
* Every alert has a severity, a summary and a description, and at least one
  unit test case where it fires and one where it does not.
* The defaults table at the top of alerts.yml matches the rules (for:,
  severity, the numbers and durations of expr) and the table of
  prometheus/README.md; annotations restate no threshold.
* The queue alerts use the internal-queue regex documented in alerts.yml and
  README.md; the *MetricsAbsent alerts name the jobs of scrape.example.yml.
"""

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROM = ROOT / "prometheus"
ALERTS = PROM / "alerts.yml"
UNIT_TESTS = PROM / "tests" / "alerts_test.yml"
SCRAPE = PROM / "scrape.example.yml"
README = PROM / "README.md"

REGEX_LINE = "# Internal queues regex: "
# A number or a duration (0, 0.1, 100, 15m), not part of a name.
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:ms|[smhdwy])?(?![\w.])")


def _rules():
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


RULES = _rules()


def _numbers(text, strings=r'"[^"]*"'):
    """Numbers and durations of a text, outside the string literals that `strings` matches."""
    return sorted(set(NUMBER.findall(re.sub(strings, "", text))))


def _expr_numbers(expr):
    # PromQL strings: "...", '...' and `...` (the internal queues regex).
    return _numbers(expr, strings=r'"[^"]*"|\'[^\']*\'|`[^`]*`')


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _defaults_table():
    """Rows (alert, threshold, for, severity) of the table at the top of alerts.yml."""
    lines = [line[2:] for line in ALERTS.read_text().splitlines() if line.startswith("# |")]
    return [tuple(_cells(line)) for line in lines[2:]]


def _readme_table():
    """Rows (alert, threshold, for, severity) of README.md's table (without "Fires when")."""
    rows = []
    for line in README.read_text().splitlines():
        cells = _cells(line) if line.startswith("|") else []
        if cells and cells[0] in RULES:
            alert, _words, threshold, for_, severity = cells
            rows.append((alert, threshold, for_, severity))
    return rows


def _documented_regex():
    lines = [line[len(REGEX_LINE):] for line in ALERTS.read_text().splitlines() if line.startswith(REGEX_LINE)]
    assert len(lines) == 1, f"alerts.yml must document the internal queues regex once, on a line '{REGEX_LINE}...'"
    return lines[0].strip()


def _promtool(*args):
    """Runs promtool ARGS in the checkout; fails (never skips) without promtool."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found on PATH: install Debian's prometheus package "
                    "(apt-get install --no-install-recommends prometheus)")
    args = (path, *args)
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_promtool_check_rules():
    out = _promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert f"SUCCESS: {len(RULES)} rules found" in out, out


def test_promtool_check_scrape_example():
    _promtool("check", "config", str(SCRAPE.relative_to(ROOT)))


def test_promtool_unit_tests():
    _promtool("test", "rules", str(UNIT_TESTS.relative_to(ROOT)))


def test_rules_found():
    assert set(RULES) == {"CeleryWorkerDown", "CeleryQueueNoConsumer", "CeleryQueueBacklogGrowing",
                          "CeleryTaskFailureRatioHigh", "CeleryFlowerMetricsAbsent", "CeleryBrokerMetricsAbsent"}


@pytest.mark.parametrize("alert", sorted(RULES))
def test_alert_has_severity_summary_description(alert):
    rule = RULES[alert]
    assert rule.get("labels", {}).get("severity") in ("critical", "warning", "info"), rule
    for key in ("summary", "description"):
        assert rule.get("annotations", {}).get(key, "").strip(), f"{alert}: no annotations.{key}"


@pytest.mark.parametrize("alert", sorted(RULES))
def test_annotations_restate_no_threshold(alert):
    # A number in an annotation would drift from expr and for: when an operator edits them.
    for key, text in RULES[alert]["annotations"].items():
        assert not _numbers(text), f"{alert}: annotations.{key} restates {_numbers(text)}"


def test_unit_tests_fire_and_stay_silent_for_every_alert():
    unit = yaml.safe_load(UNIT_TESTS.read_text())
    assert unit["rule_files"] == ["../alerts.yml"]
    fires, silent = set(), set()
    for case in (c for t in unit["tests"] for c in t.get("alert_rule_test", [])):
        assert case["alertname"] in RULES, f"unit test of an unknown alert {case['alertname']}"
        (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    assert not set(RULES) - fires, f"no case where these fire: {sorted(set(RULES) - fires)}"
    assert not set(RULES) - silent, f"no case where these do not fire: {sorted(set(RULES) - silent)}"


def test_defaults_table_matches_the_rules():
    table = _defaults_table()
    assert [row[0] for row in table] == list(RULES), "the defaults table lists the alerts in the file's order"
    for alert, threshold, for_, severity in table:
        rule = RULES[alert]
        assert rule["for"] == for_, f"{alert}: for: {rule['for']} in the rule, {for_} in the table"
        assert rule["labels"]["severity"] == severity, f"{alert}: severity differs from the table"
        assert _expr_numbers(rule["expr"]) == _numbers(threshold), (
            f"{alert}: numbers of expr {_expr_numbers(rule['expr'])} differ from the table's {_numbers(threshold)}")


def test_readme_table_matches_alerts_yml():
    assert _readme_table() == _defaults_table()


def test_queue_alerts_use_the_documented_regex():
    regex = _documented_regex()
    assert f"\n{regex}\n" in README.read_text(), "README.md does not show the internal queues regex"
    queue_rules = {a: r for a, r in RULES.items() if "rabbitmq_queue_" in r["expr"]}
    assert set(queue_rules) == {"CeleryQueueNoConsumer", "CeleryQueueBacklogGrowing"}
    for alert, rule in queue_rules.items():
        selectors = re.findall(r"rabbitmq_queue_\w+\{((?:`[^`]*`|\"[^\"]*\"|[^}`\"])*)\}", rule["expr"])
        assert selectors, alert
        for selector in selectors:
            assert 'queue!=""' in selector, f"{alert}: {selector} does not skip series without a queue label"
            assert re.findall(r"queue!~`([^`]*)`", selector) == [regex], f"{alert}: {selector} does not exclude the documented regex"


def test_absent_alerts_name_the_example_jobs():
    jobs = {job["job_name"] for job in yaml.safe_load(SCRAPE.read_text())["scrape_configs"]}
    assert jobs == {"celery_flower", "rabbitmq"}
    for alert in ("CeleryFlowerMetricsAbsent", "CeleryBrokerMetricsAbsent"):
        named = set(re.findall(r'job="([^"]*)"', RULES[alert]["expr"]))
        assert len(named) == 1 and named <= jobs, f"{alert} names {named}, scrape.example.yml has {jobs}"
