"""Per-session and per-day usage: contextd against ccusage 20.0.24, on one corpus.

Also the 5-hour blocks (``claude blocks --json``): every block and gap keyed by its start — end,
last activity, entry count, tokens by type exactly, models, and cost within $0.000001.

Usage::

    python bench/compare_ccusage.py [--corpus DIR | --sessions 20 --target-bytes 20e6 --seed 1]
                                    [--ccusage PATH] [--mode auto] [--json OUT]

Without ``--corpus`` a corpus is generated with ``bench/gen_corpus.py`` into a temporary
directory. ccusage runs as ``claude session --json --offline`` and ``claude daily --json
--offline`` (its native binary, ``TZ=UTC``, a scratch ``HOME``, ``CLAUDE_CONFIG_DIR=<corpus>``);
contextd computes the same reports in process (:mod:`contextd.usage`, bundled price table, UTC
days). Compared: every session row keyed by (project directory, session id) and every day —
input, output, cache-creation, cache-read and total tokens exactly, models used, first and
last activity, per-model tokens exactly, and costs (row and per model) within $0.000001.

Exit status: 0 when nothing differs, 1 when something does, 0 with "skipped" when no ccusage
binary is found (``--ccusage``, ``$CCUSAGE_BIN``, ``.tools/ccusage`` from scripts/bootstrap, or
/work/tools/ccusage).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from contextd.usage.entries import DedupMode
from contextd.usage.pricing import CostMode
from contextd.usage.report import UsageOptions, blocks_report, daily_report, session_report
from contextd.usage.service import UsageService

ROOT = Path(__file__).resolve().parents[1]
CCUSAGE_VERSION = "20.0.24"
_BINARY = "node_modules/@ccusage/ccusage-linux-x64/bin/ccusage"
CANDIDATES = (ROOT / ".tools/ccusage" / _BINARY, Path("/work/tools/ccusage") / _BINARY)
TOLERANCE = Decimal("0.000001")
_TOKENS = (
    ("input", "inputTokens"),
    ("output", "outputTokens"),
    ("cache_creation", "cacheCreationTokens"),
    ("cache_read", "cacheReadTokens"),
    ("total", "totalTokens"),
)


def find_ccusage(explicit: str | None = None) -> Path | None:
    for candidate in (explicit, os.environ.get("CCUSAGE_BIN"), *CANDIDATES):
        if candidate and Path(candidate).is_file():
            path = Path(candidate)
            if not os.access(path, os.X_OK):
                path.chmod(0o755)  # npm installs the native binary without the x bit
            return path
    return None


def run_ccusage(binary: Path, corpus: Path, report: str, mode: str) -> Any:
    with tempfile.TemporaryDirectory() as home:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": home,
            "TZ": "UTC",
            "CLAUDE_CONFIG_DIR": str(corpus),
        }
        out = subprocess.run(
            [str(binary), "claude", report, "--json", "--offline", "--mode", mode],
            env=env,
            capture_output=True,
            check=True,
        )
    return json.loads(out.stdout)


def _cost_close(ours: object, theirs: object) -> bool:
    if ours is None:
        # Display mode without costUSD: contextd says "unknown" (null), ccusage 0. Documented
        # in README.md ("Cost modes"); not counted as a difference.
        return theirs == 0
    return abs(Decimal(repr(ours)) - Decimal(repr(theirs))) <= TOLERANCE


def _diff_row(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, object]:
    diff: dict[str, object] = {}
    for key, their_key in _TOKENS:
        if ours["tokens"][key] != theirs[their_key]:
            diff[key] = (ours["tokens"][key], theirs[their_key])
    if not _cost_close(ours["cost_usd"], theirs["totalCost"]):
        diff["cost"] = (ours["cost_usd"], theirs["totalCost"])
    models = {m["model"]: m for m in ours["models"]}
    if sorted(models) != sorted(theirs["modelsUsed"]):
        diff["models"] = (sorted(models), sorted(theirs["modelsUsed"]))
    for their in theirs["modelBreakdowns"]:
        mine = models.get(their["modelName"])
        if mine is None:
            continue
        for key, their_key in _TOKENS[:4]:
            if mine["tokens"][key] != their[their_key]:
                diff[f"{their['modelName']}.{key}"] = (mine["tokens"][key], their[their_key])
        if not _cost_close(mine["cost_usd"], their["cost"]):
            diff[f"{their['modelName']}.cost"] = (mine["cost_usd"], their["cost"])
    return diff


def _session_diff(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, object]:
    diff = _diff_row(ours, theirs)
    for ours_key, their_key in (
        ("first_activity", "firstActivity"),
        ("last_activity", "lastActivity"),
    ):
        if ours[ours_key] != theirs[their_key]:
            diff[ours_key] = (ours[ours_key], theirs[their_key])
    return diff


def _block_diff(mine: Mapping[str, Any], their: Mapping[str, Any]) -> dict[str, object]:
    """A block or gap: end, last activity, entries, tokens, models, cost."""
    counts = their["tokenCounts"]
    pairs = {
        "end": (mine["end"], their["endTime"]),
        "last_activity": (mine["last_activity"], their["actualEndTime"]),
        "entries": (mine["entries"], their["entries"]),
        "input": (mine["tokens"]["input"], counts["inputTokens"]),
        "output": (mine["tokens"]["output"], counts["outputTokens"]),
        "cache_creation": (mine["tokens"]["cache_creation"], counts["cacheCreationInputTokens"]),
        "cache_read": (mine["tokens"]["cache_read"], counts["cacheReadInputTokens"]),
        "total": (mine["tokens"]["total"], their["totalTokens"]),
        "models": (sorted(mine["models"]), sorted(their["models"])),
    }
    diff: dict[str, object] = {k: v for k, v in pairs.items() if v[0] != v[1]}
    if not _cost_close(mine["cost_usd"], their["costUSD"]):
        diff["cost"] = (mine["cost_usd"], their["costUSD"])
    return diff


def _keyed_diffs(
    label: str,
    ours: Mapping[Any, Mapping[str, Any]],
    theirs: Mapping[Any, Mapping[str, Any]],
    differ: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, object]],
) -> list[dict[str, object]]:
    """Rows of both tools matched by key: the missing ones and those that differ."""
    diffs: list[dict[str, object]] = []
    for key in sorted(ours.keys() | theirs.keys()):
        mine, their = ours.get(key), theirs.get(key)
        if mine is None or their is None:
            diffs.append({label: key, "missing_in": "contextd" if mine is None else "ccusage"})
        elif diff := differ(mine, their):
            diffs.append({label: key, **diff})
    return diffs


def compare(corpus: Path, binary: Path, mode: str = "auto") -> dict[str, Any]:
    """Run both tools on ``corpus``; the differences and the figures compared."""
    started = time.perf_counter()
    service = UsageService([corpus])
    service.refresh()
    options = UsageOptions(mode=CostMode(mode))
    sessions = session_report(service.reader.entries(), service.table, options)
    daily = daily_report(service.reader.entries(DedupMode.DAILY), service.table, options)
    ours_seconds = time.perf_counter() - started
    blocks = blocks_report(service.reader.entries(), service.table, options, service.now_ms())
    their_sessions = run_ccusage(binary, corpus, "session", mode)
    their_daily = run_ccusage(binary, corpus, "daily", mode)
    their_blocks = run_ccusage(binary, corpus, "blocks", mode)
    diffs: list[dict[str, object]] = []

    diffs += _keyed_diffs(
        "session",
        {(r["project_dir"], r["session_id"]): r for r in sessions["sessions"]},
        {(r["projectPath"], r["sessionId"]): r for r in their_sessions["sessions"]},
        _session_diff,
    )
    diffs += _keyed_diffs(
        "day",
        {r["date"]: r for r in daily["daily"]},
        {r["date"]: r for r in their_daily["daily"]},
        _diff_row,
    )
    diffs += _keyed_diffs(
        "block",
        {(b["start"], b["gap"]): b for b in blocks["blocks"]},
        {(b["startTime"], b["isGap"]): b for b in their_blocks["blocks"]},
        _block_diff,
    )
    totals = sessions["totals"]
    return {
        "corpus": str(corpus),
        "mode": mode,
        "sessions": len(their_sessions["sessions"]),
        "days": len(their_daily["daily"]),
        "blocks": len(their_blocks["blocks"]),
        "differences": diffs,
        "tokens_total": totals["tokens"]["total"],
        "cost_contextd": totals["cost_usd"],
        "cost_ccusage": their_sessions["totals"]["totalCost"],
        "contextd_seconds": round(ours_seconds, 3),
    }


def generate(out: Path, sessions: int, target_bytes: str, seed: int) -> None:
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/gen_corpus.py"),
            "--out",
            str(out),
            "--sessions",
            str(sessions),
            "--target-bytes",
            target_bytes,
            "--seed",
            str(seed),
            "--quiet",
            "--force",
        ],
        check=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--corpus", type=Path, help="an existing corpus (else one is generated)")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--target-bytes", default="20e6")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ccusage", help=f"the ccusage {CCUSAGE_VERSION} native binary")
    ap.add_argument("--mode", default="auto", choices=[m.value for m in CostMode])
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the result as JSON")
    args = ap.parse_args(argv)
    binary = find_ccusage(args.ccusage)
    if binary is None:
        print(f"skipped: no ccusage {CCUSAGE_VERSION} binary (run scripts/bootstrap)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            corpus = Path(tmp) / "corpus"
            generate(corpus, args.sessions, args.target_bytes, args.seed)
        result = compare(corpus, binary, args.mode)
    for diff in result["differences"][:20]:
        print("DIFF", diff)
    print(
        f"{result['sessions']} sessions, {result['days']} days, {result['blocks']} blocks: "
        f"{len(result['differences'])} differ (tokens exact, cost within $0.000001); "
        f"total {result['tokens_total']:,} tokens, "
        f"cost contextd ${result['cost_contextd'] or 0:.6f} "
        f"ccusage ${result['cost_ccusage']:.6f}; contextd {result['contextd_seconds']} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if result["differences"] else 0


if __name__ == "__main__":
    sys.exit(main())
