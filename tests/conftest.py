from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "marot-spotter"
MAIN_SESSION = "4d5611e5-241a-462a-8d15-5122611a9569"
SHORT_SESSION = "55604662-cf2a-4331-851a-ec234028f8ca"


@pytest.fixture
def samples_root(tmp_path: Path) -> Path:
    """A Claude config root holding the real sample transcripts (writable copies)."""
    if not SAMPLES.is_dir():
        pytest.fail(f"samples not found at {SAMPLES}")
    project = tmp_path / "claude" / "projects" / "-home-USER-projects-spotter"
    shutil.copytree(SAMPLES, project, ignore=shutil.ignore_patterns("README.md"))
    for path in project.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return tmp_path / "claude"


# Real PromQL backends (VictoriaMetrics, Prometheus) for any test; see tests/promql_servers.py.
# Bound here, after the local fixtures, so pytest registers them for every test module.
from tests import promql_servers as _promql_servers  # noqa: E402  (appended, shared fixtures)

victoria_metrics = _promql_servers.victoria_metrics
prometheus_backfilled = _promql_servers.prometheus_backfilled
prometheus_scraping = _promql_servers.prometheus_scraping
