"""The live view end to end on real files: lines appended to a transcript show up within one
refresh, and the ``contextd usage`` command (reports, JSON, bad input).

The refresh is driven explicitly (:meth:`LiveUsage.step` is the body of the CLI's refresh
loop), with the clock injected; nothing here sleeps or looks at the wall clock's value.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from contextd.cli import main
from contextd.usage.live import LiveUsage, shorten
from contextd.usage.report import UsageOptions
from contextd.usage.service import UsageService
from tests.usage.lines import T0_MS, assistant, dump, write

NOW = T0_MS / 1000 + 30 * 60  # 10:30 UTC


def ts(minutes: float, base: float = T0_MS / 1000) -> str:
    when = datetime.fromtimestamp(base + minutes * 60, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def transcript(root: Path, project: str, session: str) -> Path:
    return root / "projects" / project / f"{session}.jsonl"


def screen_for(root: Path) -> tuple[LiveUsage, Console]:
    service = UsageService([root], clock=lambda: NOW)

    def fetch() -> dict[str, Any]:
        service.refresh()
        return service.report("live", UsageOptions())

    return LiveUsage(fetch, source="transcripts"), Console(record=True, width=140)


def shown(console: Console, screen: LiveUsage) -> str:
    console.print(screen.step())
    return console.export_text()


def test_appended_lines_appear_within_one_refresh(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    main_file = transcript(root, "-home-u-web", "S1")
    write(
        main_file, assistant("m1", "r1", out=1000, cr=0, cc=0, inp=0, ts=ts(5), cwd="/home/u/web")
    )
    screen, console = screen_for(root)
    first = shown(console, screen)
    assert screen.view is not None
    assert screen.view["block"]["tokens"]["total"] == 1000
    assert "web" in first
    assert "1.0k" in first

    # The same response grows (a later streamed line), a new response, and a sub-agent file.
    write(
        main_file,
        assistant("m1", "r1", out=1500, cr=0, cc=0, inp=0, ts=ts(5), cwd="/home/u/web"),
        assistant("m2", "r2", out=2500, cr=0, cc=0, inp=0, ts=ts(20), cwd="/home/u/web"),
        append=True,
    )
    write(
        root / "projects/-home-u-web/S1/subagents/agent-a1.jsonl",
        assistant(
            "m3", "r3", out=1000, cr=0, cc=0, inp=0, ts=ts(21), sidechain=True, cwd="/home/u/web"
        ),
    )
    second = shown(console, screen)
    assert screen.view["block"]["tokens"]["total"] == 5000
    assert "5.0k" in second

    # A new session in another project, with a very long directory name: a new row, a
    # "new session" warning, and the name shortened on screen only.
    long_cwd = "/home/u/" + "a-very-long-project-directory-name-" * 3 + "end"
    write(
        transcript(root, "-home-u-long", "S2"),
        assistant("m4", "r4", out=3000, cr=0, cc=0, inp=0, ts=ts(29), cwd=long_cwd),
    )
    third = shown(console, screen)
    projects = {p["project"]: p["tokens"]["total"] for p in screen.view["projects"]}
    assert projects == {"web": 5000, long_cwd.rsplit("/", 1)[1]: 3000}
    assert shorten(long_cwd.rsplit("/", 1)[1]) in third
    assert long_cwd.rsplit("/", 1)[1] not in third
    assert "new session S2" in third


def test_a_line_is_counted_once_it_is_complete(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    path = transcript(root, "-p", "S1")
    line = dump(assistant(out=700, inp=0, cc=0, cr=0, ts=ts(10)))
    path.parent.mkdir(parents=True)
    path.write_bytes(line[:40])
    service = UsageService([root], clock=lambda: NOW)
    assert service.refresh() == 0
    with path.open("ab") as f:
        f.write(line[40:])  # whole, still without its newline: counted
    assert service.refresh() == 1
    with path.open("ab") as f:
        f.write(b"\n")
    assert service.refresh() == 0
    assert [e.output for e in service.reader.entries()] == [700]
    path.write_bytes(b"")  # truncated: read again from the start when it grows
    service.refresh()
    write(path, assistant("m9", "r9", out=1, ts=ts(11)))
    assert service.refresh() == 1


def test_the_live_screen_says_when_no_block_is_active(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    write(transcript(root, "-p", "S1"), assistant(ts=ts(-600)))  # 10 h before now
    screen, console = screen_for(root)
    assert "no active 5-hour block" in shown(console, screen)


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def live_root(tmp_path: Path) -> Path:
    """A root whose lines are a few minutes old by the real clock (the CLI uses it)."""
    root = tmp_path / "claude"
    now = time.time()
    write(
        transcript(root, "-home-u-web", "S1"),
        assistant("m1", "r1", out=1000, ts=ts(-3, now), cwd="/home/u/web"),
        assistant("m2", "r2", out=2000, ts=ts(-2, now), cwd="/home/u/web", model="claude-foo-9"),
    )
    return root


def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, root: Path, *args: str) -> Any:
    code = main(
        ["usage", *args, "--config-dir", str(root), "--socket", str(tmp_path / "no-daemon.sock")]
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_usage_json_is_one_snapshot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, live_root: Path
) -> None:
    code, out, _ = run(capsys, tmp_path, live_root, "--json", "--token-limit", "1000")
    assert code == 0
    view = orjson.loads(out)
    assert view["block"]["tokens"]["output"] == 3000
    assert view["block"]["limit"]["exceeded"] is True
    assert {w["kind"] for w in view["warnings"]} >= {"token_limit_exceeded", "unknown_price"}


def test_usage_reports(capsys: pytest.CaptureFixture[str], tmp_path: Path, live_root: Path) -> None:
    code, out, _ = run(capsys, tmp_path, live_root, "session", "--json")
    assert code == 0
    (row,) = orjson.loads(out)["sessions"]
    assert (row["session_id"], row["project"], row["tokens"]["output"]) == ("S1", "web", 3000)
    assert row["unpriced_models"] == ["claude-foo-9"]
    code, out, _ = run(capsys, tmp_path, live_root, "daily", "--json", "--timezone", "UTC")
    assert code == 0
    assert sum(r["tokens"]["output"] for r in orjson.loads(out)["daily"]) == 3000
    code, out, _ = run(capsys, tmp_path, live_root, "daily")
    assert code == 0
    assert "total" in out
    assert "+?" in out  # an incomplete cost is marked
    code, out, _ = run(capsys, tmp_path, live_root, "blocks")
    assert code == 0
    assert "active" in out
    code, out, _ = run(capsys, tmp_path, live_root, "--compact")
    assert code == 0
    assert "web" in out
    assert "no price for claude-foo-9" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token-limit", "abc"], "--token-limit: expected a positive integer or 'max'"),
        (["--since", "2026-13-01"], "--since: expected a date YYYY-MM-DD"),
        (["--refresh-interval", "0"], "--refresh-interval: expected seconds > 0"),
        (["--cost-threshold", "lots"], "--cost-threshold: expected an amount in USD"),
        (["--session-duration", "-1"], "--session-duration: must be a positive number"),
        (["--pricing", "/nonexistent/prices.json"], "--pricing: cannot read"),
    ],
)
def test_bad_usage_options_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    live_root: Path,
    args: list[str],
    message: str,
) -> None:
    code, out, err = run(capsys, tmp_path, live_root, *args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert message in err


def test_a_pricing_file_prices_a_model_the_bundled_table_lacks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, live_root: Path
) -> None:
    prices = tmp_path / "litellm.json"
    prices.write_text(
        '{"claude-foo-9": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-05}}'
    )
    code, out, _ = run(capsys, tmp_path, live_root, "session", "--json", "--pricing", str(prices))
    assert code == 0
    (row,) = orjson.loads(out)["sessions"]
    # 1,000 opus 4.6 output tokens at $25/M + 2,000 foo-9 output tokens at $10/M
    # (+ 3 input and 100/1,000 cache tokens on each line at opus prices, foo-9 has no cache
    # prices: 0) = 0.025 + 0.000015 + 0.000625 + 0.0005 + 0.02 + 0.000003 = $0.046143.
    assert row["cost_complete"] is True
    assert row["cost_usd"] == pytest.approx(0.046143)
