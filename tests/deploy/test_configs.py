"""The ready-to-run configs in ``deploy/``: checked by the real tools where they exist here
(promtool, vmalert, systemd-analyze), and by their structure where the server cannot run here
(the OpenTelemetry Collector, Docker Compose, Grafana provisioning, launchd).

Every metric an expression names must be in the metric contract (:mod:`contextd.exporters.
names`) or recorded by the rules themselves: a renamed metric fails here.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from contextd import stack
from contextd.config import DEFAULT_PORT
from contextd.exporters import names
from tests.promql_servers import PROMTOOL, require_binary

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "rules" / "contextd-rules.yml"
CONTRACT = {m.name for m in names.ALL} | {
    f"{names.HTTP_DURATION.name}_{suffix}" for suffix in ("bucket", "sum", "count")
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def metric_names(expr: str) -> set[str]:
    """The contextd series an expression reads (recorded names keep their colons)."""
    return set(re.findall(r"[a-z_]*:?\bcontextd_[a-z0-9_]+(?::[a-z0-9_]+)?", expr))


# -- Prometheus and vmalert rules ---------------------------------------------------------------


def test_promtool_accepts_the_prometheus_config_and_its_rules() -> None:
    promtool = require_binary(PROMTOOL)
    checked = run([promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout
    rules = run([promtool, "check", "rules", str(RULES)])
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 10 rules found" in rules.stdout


def test_the_rules_unit_tests_pass_in_promtool() -> None:
    """deploy/rules/contextd-rules.test.yml: recorded values and when each alert fires."""
    promtool = require_binary(PROMTOOL)
    result = run([promtool, "test", "rules", str(DEPLOY / "rules" / "contextd-rules.test.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same tests against rules with the critical threshold moved: promtool says so."""
    promtool = require_binary(PROMTOOL)
    shutil.copy(DEPLOY / "rules" / "contextd-rules.test.yml", tmp_path / "t.yml")
    moved = RULES.read_text().replace(">= 90\n", ">= 96\n")
    assert moved != RULES.read_text()
    (tmp_path / "contextd-rules.yml").write_text(moved)
    result = run([promtool, "test", "rules", str(tmp_path / "t.yml")])
    assert result.returncode == 1
    assert "ContextdSessionContextCritical" in result.stdout + result.stderr


def test_vmalert_accepts_the_rules() -> None:
    vmalert = require_binary("vmalert")
    result = run([vmalert, "-dryRun", f"-rule={RULES}", "-loggerLevel=ERROR"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_read_only_contract_metrics_and_what_they_record() -> None:
    groups = load(RULES)["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert alerts == {"ContextdSessionContextHigh", "ContextdSessionContextCritical",
                      "ContextdHighBurnRate", "ContextdDown", "ContextdAbsent"}  # fmt: skip
    for group in groups:
        for rule in group["rules"]:
            used = metric_names(rule["expr"])
            for name in used:
                assert name in CONTRACT or name in recorded, (rule, name)
            if "record" in rule:
                assert used, rule


# -- VictoriaMetrics scrape configs --------------------------------------------------------------


def test_the_scrape_configs_target_the_daemons_default_address() -> None:
    for path in (DEPLOY / "victoriametrics/scrape.yml", DEPLOY / "prometheus/prometheus.yml"):
        (job,) = load(path)["scrape_configs"]
        assert job["job_name"] == "contextd"
        assert job["metrics_path"] == "/metrics"
        assert job["static_configs"] == [{"targets": [f"127.0.0.1:{DEFAULT_PORT}"]}]


def test_contextd_stack_writes_the_deploy_scrape_config_for_the_defaults() -> None:
    assert yaml.safe_load(stack.scrape_config(f"127.0.0.1:{DEFAULT_PORT}")) == load(
        DEPLOY / "victoriametrics" / "scrape.yml"
    )
    with_token = yaml.safe_load(stack.scrape_config("10.0.0.5:7323", token='t"ok'))  # noqa: S106 (a test value)
    assert with_token["scrape_configs"][0]["authorization"] == {"credentials": 't"ok'}


# -- Docker Compose, the collector, Grafana provisioning -----------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load(DEPLOY / "docker-compose.yml")
    return data


def test_compose_mounts_files_that_exist_and_publishes_loopback_only() -> None:
    services = compose()["services"]
    assert set(services) == {"contextd", "victoriametrics", "vmalert", "otel-collector",
                             "grafana"}  # fmt: skip
    build = services["contextd"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    for name, service in services.items():
        if "image" in service:
            assert re.fullmatch(r"[a-z0-9./-]+:v?\d+\.\d+\.\d+", service["image"]), name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
    env = services["contextd"]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert "contextd:7323" in env["CONTEXTD_ALLOWED_HOSTS"]


def test_the_compose_scrape_config_differs_from_the_local_one_only_in_target_and_token() -> None:
    inside = load(DEPLOY / "compose" / "victoriametrics-scrape.yml")["scrape_configs"][0]
    local = load(DEPLOY / "victoriametrics" / "scrape.yml")["scrape_configs"][0]
    assert inside.pop("authorization") == {"credentials": "%{CONTEXTD_TOKEN}"}
    assert inside.pop("static_configs") == [{"targets": ["contextd:7323"]}]
    local.pop("static_configs")
    assert inside == local


def test_the_collector_pipeline_uses_only_defined_components_and_reaches_victoriametrics() -> None:
    config = load(DEPLOY / "otel" / "collector.yml")
    pipeline = config["service"]["pipelines"]["metrics"]
    for kind in ("receivers", "processors", "exporters"):
        assert pipeline[kind], kind
        assert set(pipeline[kind]) <= set(config[kind]), kind
    assert set(config["receivers"]["otlp"]["protocols"]) == {"http", "grpc"}
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    endpoint = config["exporters"]["prometheusremotewrite"]["endpoint"]
    assert endpoint == "http://victoriametrics:8428/api/v1/write"
    assert "victoriametrics" in compose()["services"]


def test_grafana_provisioning_points_at_the_compose_services_and_the_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    (source,) = load(DEPLOY / "grafana" / "provisioning" / "datasources" / "victoriametrics.yml")[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://victoriametrics:8428"
    (provider,) = load(DEPLOY / "grafana" / "provisioning" / "dashboards" / "contextd.yml")[
        "providers"
    ]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["../dashboards"] == provider["options"]["path"]
    assert (DEPLOY / "../dashboards/contextd.json").is_file()


def test_the_dockerfile_copies_what_the_package_needs() -> None:
    copied = re.findall(r"^COPY (.+) \S+$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    sources = [s for line in copied for s in line.split()]
    assert {"pyproject.toml", "README.md", "contextd"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source


# -- service units -------------------------------------------------------------------------------


def test_systemd_accepts_the_user_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (DEPLOY / "systemd" / "contextd.service").read_text()
    assert "ExecStart=%h/.local/bin/contextd serve" in unit
    contextd = shutil.which("contextd") or str(REPO / ".venv" / "bin" / "contextd")
    (tmp_path / "contextd.service").write_text(
        unit.replace("%h/.local/bin/contextd", contextd)  # verify wants an existing binary
    )
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice"}
    result = run([analyze, "verify", str(tmp_path / "contextd.service")], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys are only warnings


def test_the_launchd_plist_runs_contextd_serve() -> None:
    with (DEPLOY / "launchd" / "dev.contextd.daemon.plist").open("rb") as fh:
        plist = plistlib.load(fh)
    assert plist["Label"] == "dev.contextd.daemon"
    assert plist["ProgramArguments"][-1].endswith('contextd" serve')
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
