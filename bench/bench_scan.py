"""Cold scan, warm restart and append latency of ``contextd scan``, side by side with ccusage.

Usage::

    python bench/bench_scan.py [--sessions 1000] [--target-bytes 1.5e9] [--runs 5]
                               [--corpus DIR] [--ccusage PATH] [--json OUT]

Generates (once, cached in ``--corpus``) a seeded corpus with ``bench/gen_corpus.py``, then in
the same invocation, alternating the order of the tools each run:

* ``ccusage session --json --offline`` (npm ``ccusage@20.0.24``, the baseline): wall time and
  peak RSS (``/usr/bin/time``);
* ``contextd scan`` into a fresh database (cold): wall time and peak RSS;
* ``contextd scan`` again on the ingested corpus (warm restart: a new process);
* in-process: one appended turn (a prompt, a response split over three lines, a tool result)
  processed by ``TranscriptIngestor.ingest_file`` including its commit, 50 times.

Both tools see the same files through the page cache (the corpus is read once before timing).
Totals: per session, contextd's token counts by type must equal the generator's ground truth
(``manifest.json``, view ``max_output``), and the grand totals must equal ccusage's; the script
exits non-zero otherwise. ccusage credits a response that a resumed file copied to whichever
file path sorts first, contextd to the session named in the line (the one that made the call),
so those few sessions differ per session while every token is counted once by both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contextd.ingest.scanner import TranscriptIngestor
from contextd.store import Store

ROOT = Path(__file__).resolve().parents[1]
CCUSAGE_VERSION = "20.0.24"
DEFAULT_CCUSAGE = Path("/work/tools/ccusage/node_modules/@ccusage/ccusage-linux-x64/bin/ccusage")


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, bytes]:
    """Run ``cmd`` under GNU time; return (wall seconds, peak RSS in KiB, stdout)."""
    with tempfile.NamedTemporaryFile("r") as report:
        started = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-o", report.name, "-f", "%M", *cmd],
            capture_output=True,
            env=env,
            check=False,
        )
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
        rss = int(report.read().strip().splitlines()[-1])
    return wall, rss, proc.stdout


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for current in found:
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as fh:
                    found.extend(int(c) for c in fh.read().split())
            except OSError:
                continue
    return found


def _pss_kib(pid: int) -> int:
    """Proportional set size: the process's private pages plus its share of shared ones, so
    summing it over a process tree counts pages shared after a fork once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_peak_rss(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run ``cmd``; return (wall seconds, peak of the summed PSS of it and all its descendants
    in KiB, sampled every 10 ms): worker processes count too."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(_pss_kib(p) for p in _descendants(proc.pid)))
        time.sleep(0.01)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode})")
    return wall, peak


def ensure_ccusage(path: Path) -> Path:
    if path.exists():
        return path
    prefix = ROOT / "bench" / "out" / "ccusage"
    subprocess.run(
        ["npm", "install", "--silent", "--prefix", str(prefix), f"ccusage@{CCUSAGE_VERSION}"],
        check=True,
    )
    found = prefix / "node_modules/@ccusage/ccusage-linux-x64/bin/ccusage"
    if not found.exists():
        sys.exit("ccusage's native binary was not installed")
    return found


def ensure_corpus(corpus: Path, sessions: int, target: float, seed: int) -> dict[str, object]:
    """Generate the corpus unless ``corpus`` already holds one; return its generator args."""
    manifest = corpus / "manifest.json"
    if not manifest.exists():
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "gen_corpus.py"), "--out", str(corpus),
             "--sessions", str(sessions), "--target-bytes", str(int(target)),
             "--seed", str(seed)],
            check=True,
        )  # fmt: skip
    args: dict[str, object] = json.loads(manifest.read_text())["args"]
    return args


def warm_page_cache(corpus: Path) -> int:
    total = 0
    for path in corpus.rglob("*.jsonl"):
        total += len(path.read_bytes())
    return total


def contextd_totals(db: Path) -> dict[str, tuple[int, int, int, int]]:
    store = Store(db)
    try:
        return {
            s.session_id: (s.tokens.input, s.tokens.output, s.tokens.cache_creation,
                           s.tokens.cache_read)
            for s in store.sessions()
        }  # fmt: skip
    finally:
        store.close()


def ccusage_totals(output: bytes) -> dict[str, tuple[int, int, int, int]]:
    data = json.loads(output)
    totals: dict[str, tuple[int, int, int, int]] = {}
    for row in data["sessions"]:
        totals[row["sessionId"]] = (row["inputTokens"], row["outputTokens"],
                                    row["cacheCreationTokens"], row["cacheReadTokens"])  # fmt: skip
    return totals


def manifest_totals(corpus: Path, view: str) -> dict[str, tuple[int, int, int, int]]:
    """The generator's own ground truth for each session (``max_output``: contextd's rule)."""
    sessions = json.loads((corpus / "manifest.json").read_text())["sessions"]
    return {
        sid: (t["input"], t["output"], t["cache_creation"], t["cache_read"])
        for sid, meta in sessions.items()
        for t in [meta["tokens"][view]]
    }


def compare(ours: dict[str, tuple[int, int, int, int]],
            theirs: dict[str, tuple[int, int, int, int]]) -> dict[str, object]:  # fmt: skip
    """Per-session and grand-total agreement; sessions a side omits count as zero."""
    zero = (0, 0, 0, 0)
    names = set(ours) | set(theirs)
    differ = sorted(s for s in names if ours.get(s, zero) != theirs.get(s, zero))
    grand = [[sum(v[i] for v in side.values()) for i in range(4)] for side in (ours, theirs)]
    return {
        "sessions": len(names),
        "sessions_differing": len(differ),
        "grand_totals_equal": grand[0] == grand[1],
        "examples": {s: {"contextd": ours.get(s), "other": theirs.get(s)} for s in differ[:3]},
    }


def append_latency(corpus: Path, db: Path, repeats: int) -> list[float]:
    """Milliseconds to ingest and commit one appended turn, per repeat."""
    target = max((p for p in corpus.rglob("*.jsonl") if "subagents" not in p.parts),
                 key=lambda p: p.stat().st_size)  # fmt: skip
    session = target.stem
    original_size = target.stat().st_size
    store = Store(db)
    ingestor = TranscriptIngestor.open(store)
    samples: list[float] = []
    try:
        _append_turns(target, session, ingestor, repeats, samples)
    finally:
        os.truncate(target, original_size)  # leave the corpus as generated
        store.close()
    return samples


def _append_turns(target: Path, session: str, ingestor: TranscriptIngestor, repeats: int,
                  samples: list[float]) -> None:  # fmt: skip
    for i in range(repeats):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{i % 1000:03d}Z"
        base = {"sessionId": session, "cwd": "/bench/project", "timestamp": stamp,
                "isSidechain": False, "userType": "external", "version": "2.1.330"}  # fmt: skip
        lines = [{**base, "type": "user", "uuid": f"u{i}",
                  "message": {"role": "user", "content": "benchmark prompt " * 20}}]  # fmt: skip
        for block, output in enumerate((5, 5, 240)):
            lines.append({**base, "type": "assistant", "uuid": f"a{i}-{block}",
                          "requestId": f"req_bench_{i}",
                          "message": {"id": f"msg_bench_{i}", "model": "claude-opus-4-6",
                                      "role": "assistant", "type": "message",
                                      "content": [{"type": "text", "text": "answer " * 30}],
                                      "usage": {"input_tokens": 3,
                                                "cache_creation_input_tokens": 900,
                                                "cache_read_input_tokens": 50_000 + i,
                                                "output_tokens": output}}})  # fmt: skip
        lines.append({**base, "type": "user", "uuid": f"r{i}",
                      "message": {"role": "user", "content": [
                          {"type": "tool_result", "tool_use_id": f"t{i}",
                           "content": "x" * 2000}]}})  # fmt: skip
        data = b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)
        with target.open("ab") as fh:
            fh.write(data)
        started = time.perf_counter()
        ingestor.ingest_file(target)
        samples.append((time.perf_counter() - started) * 1000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--target-bytes", type=float, default=1.5e9)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--corpus", type=Path, default=ROOT / "bench" / "out" / "corpus")
    ap.add_argument("--ccusage", type=Path, default=DEFAULT_CCUSAGE)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "scan.json")
    args = ap.parse_args()

    ccusage = ensure_ccusage(args.ccusage)
    generated = ensure_corpus(args.corpus, args.sessions, args.target_bytes, args.seed)
    size = warm_page_cache(args.corpus)
    files = sum(1 for _ in args.corpus.rglob("*.jsonl"))
    contextd = [sys.executable, "-m", "contextd", "scan", "--config-dir", str(args.corpus)]
    work = Path(tempfile.mkdtemp(prefix="contextd-bench-"))
    (work / "home").mkdir()
    # A scratch HOME: ccusage would otherwise also read other agents' data found there.
    env = {**os.environ, "CLAUDE_CONFIG_DIR": str(args.corpus), "TZ": "UTC",
           "HOME": str(work / "home")}  # fmt: skip
    names = ("cc_wall", "cc_rss", "cold_wall", "cold_rss", "cold_tree_rss", "warm_wall")
    rows: dict[str, list[float]] = {k: [] for k in names}
    cc_out = b""
    try:
        for run in range(args.runs):
            db = work / f"run{run}.db"
            order = ("cc", "cd") if run % 2 == 0 else ("cd", "cc")
            for tool in order:
                if tool == "cc":
                    wall, rss, cc_out = timed(
                        [str(ccusage), "claude", "session", "--json", "--offline"], env
                    )
                    rows["cc_wall"].append(wall)
                    rows["cc_rss"].append(rss / 1024)
                else:
                    wall, rss, _ = timed([*contextd, "--db", str(db)])
                    rows["cold_wall"].append(wall)
                    rows["cold_rss"].append(rss / 1024)
                    # The same cold scan again, for the whole process tree's memory (workers
                    # included, as PSS), which GNU time's peak of one process leaves out.
                    _, tree = tree_peak_rss([*contextd, "--db", str(work / f"tree{run}.db")])
                    rows["cold_tree_rss"].append(tree / 1024)
                    wall, _, _ = timed([*contextd, "--db", str(db)])
                    rows["warm_wall"].append(wall)
            print(
                f"run {run + 1}/{args.runs}: "
                + ", ".join(f"{k}={v[-1]:.2f}" for k, v in rows.items())
            )
        db = work / f"run{args.runs - 1}.db"
        ours = contextd_totals(db)
        vs_ccusage = compare(ours, ccusage_totals(cc_out))
        vs_truth = compare(ours, manifest_totals(args.corpus, "max_output"))
        append_ms = append_latency(args.corpus, db, 50)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in rows.items()}
    result = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "corpus": {"files": files, "bytes": size, "generator_args": generated},
        "runs": args.runs,
        "median": med,
        "ratio_cold_vs_ccusage": med["cold_wall"] / med["cc_wall"],
        "append_turn_ms": {
            "median": statistics.median(append_ms),
            "p95": sorted(append_ms)[int(0.95 * len(append_ms)) - 1],
        },
        "vs_ccusage": vs_ccusage,
        "vs_generator_truth": vs_truth,
        "raw": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=2))
    # Per session, contextd must equal the generator's truth; against ccusage the grand totals
    # must be equal (per session they differ only where resumed copies are credited, see README).
    ok = vs_truth["sessions_differing"] == 0 and vs_ccusage["grand_totals_equal"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
