"""``contextd monitor`` on the command line: ``--once [--json]``, settings, bad options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from contextd.cli import main
from tests.monitor import known
from tests.monitor.conftest import closed_url
from tests.promql_servers import VictoriaMetrics

pytestmark = pytest.mark.slow


@pytest.fixture
def vm_now(victoria_metrics: VictoriaMetrics) -> VictoriaMetrics:
    """The known sessions as they are at ``T0``, stamped a second ago (``--once`` reads now)."""
    victoria_metrics.push(known.scrape(len(known.STAMPS) - 1))
    return victoria_metrics


def test_once_json_prints_one_snapshot(
    vm_now: VictoriaMetrics, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["monitor", "--once", "--json", "--prometheus", vm_now.url,
                 "--daemon", str(tmp_path / "none.sock")])  # fmt: skip

    data = orjson.loads(capsys.readouterr().out)
    assert code == 0
    assert (data["source"], data["backend"], data["address"]) == (
        "promql", "VictoriaMetrics", vm_now.url)  # fmt: skip
    assert data["top"] == [p.session_id for p in known.TOP5]
    assert [s["state"] for s in data["sessions"]] == [p.state.value for p in known.RANKED]
    assert data["aggregate"]["active_sessions"] == len(known.PLANS)


def test_once_prints_a_table_of_the_top_sessions(
    vm_now: VictoriaMetrics, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("CONTEXTD_PROMETHEUS_URL", vm_now.url)  # the setting, not the flag
    monkeypatch.setenv("CONTEXTD_SOCKET", str(tmp_path / "none.sock"))

    code = main(["monitor", "--once"])

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == f"VictoriaMetrics {vm_now.url} · 7 active sessions · daemon uptime unknown"
    assert out[1].startswith("context tokens: 1.4M  per session: 198.4k (59.3 %)")
    assert out[2].split() == ["STATE", "PROJECT", "MODEL", "CONTEXT", "USE%", "CKPT", "AVG",
                              "SAVED", "DURATION", "SESSION"]  # fmt: skip
    assert [row.split()[1] for row in out[3:]] == [p.project for p in known.TOP5]
    assert out[3].split()[:6] == ["CRITICAL", "payments", "claude-opus-4-6", "190.0k/200.0k",
                                  "95.0", "2"]  # fmt: skip


def test_once_with_nothing_reachable_says_why_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = closed_url()

    code = main(["monitor", "--once", "--prometheus", url, "--daemon",
                 str(tmp_path / "none.sock")])  # fmt: skip

    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[:2] == ["no data source reachable", "No data source reachable:"]
    assert out[2].startswith(f"PromQL: cannot reach {url}: ")
    assert out[3].startswith(f"daemon: cannot reach the daemon at {tmp_path / 'none.sock'}: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--refresh", "0"], "contextd: error: --refresh: expected at least 0.2 seconds, got 0"),
        (["--refresh", "nan"],
         "contextd: error: --refresh: expected at least 0.2 seconds, got nan"),
        (["--prometheus", "localhost:8428"],
         "contextd: error: --prometheus: expected an http(s) URL, got 'localhost:8428'"),
        (["--prometheus", "http://127.0.0.1:99999"],
         "contextd: error: --prometheus: bad port in 'http://127.0.0.1:99999'"),
        (["--daemon", "http://"], "contextd: error: --daemon: expected an http(s) URL, got 'http://'"),
        (["--json"], "contextd: error: --json: only with --once"),
        (["--refresh", "soon"],
         "contextd monitor: error: argument --refresh: invalid float value: 'soon'"),
    ],
)  # fmt: skip
def test_bad_options_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["monitor", *args])
    except SystemExit as exit_:
        code = int(exit_.code or 0)

    err = capsys.readouterr().err
    assert code == 2
    assert err == message + "\n"


def test_once_and_the_other_commands_never_import_textual(
    vm_now: VictoriaMetrics, tmp_path: Path
) -> None:
    script = (
        "import sys; from contextd.cli import main; "
        f"code = main(['monitor', '--once', '--json', '--prometheus', {vm_now.url!r}, "
        f"'--daemon', {str(tmp_path / 'none.sock')!r}]); "
        "sys.stderr.write(repr(sorted(m for m in sys.modules if m.split('.')[0] == 'textual')))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert done.stderr == "[]"
