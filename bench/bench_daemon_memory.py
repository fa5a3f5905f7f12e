"""The daemon's memory on a transcript corpus: PSS after its start-up scan and after two usage
refreshes.

Usage::

    python bench/bench_daemon_memory.py [--corpus DIR ...] [--runs 3] [--src DIR] [--env K=V]

Per corpus and run: starts ``contextd serve --config-dir <corpus>`` on a free loopback port
with a temporary state database and socket, waits for ``/healthz`` to say ``ready`` (the
session scan is done) and reads the PSS (``/proc/<pid>/smaps_rollup``); then asks
``GET /api/usage`` twice (each answer refreshes the usage reader first, so the start-up usage
read is finished too) and reads it again. ``--src`` runs another checkout's ``contextd`` package
(e.g. a ``git archive`` of an older commit) with this interpreter, for a before/after
comparison in one invocation; ``--env`` passes settings such as
``CONTEXTD_USAGE_HORIZON_HOURS=240``. A corpus that is not there is skipped with a message (the
generated corpora live outside the repository). Results: printed, and written as JSON to
``bench/out/daemon_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench_daemon import ROOT, free_port, pss_kib

CORPORA = (Path("/work/tools/corpus-20m"), Path("/work/tools/corpus-1.5g"))


def get_json(port: int, path: str, timeout: float = 600.0) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
        body: dict[str, object] = json.loads(answer.read())
        return body


def wait_ready(port: int, proc: subprocess.Popen[bytes], limit: float = 600.0) -> float:
    """Seconds until ``/healthz`` says ready."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if proc.poll() is not None:
            raise SystemExit(f"contextd serve exited with {proc.returncode}")
        try:
            if get_json(port, "/healthz", timeout=2).get("ready") is True:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the daemon was not ready within {limit:.0f} s")


def one_run(corpus: Path, src: Path, extra_env: dict[str, str]) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="contextd-bench-memory-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTEXTD_", "OTEL_"))}
    env.update(extra_env)
    env["PYTHONPATH"] = str(src)
    proc = subprocess.Popen(
        [sys.executable, "-m", "contextd", "serve", "--port", str(port), "--config-dir",
         str(corpus), "--db", str(work / "state" / "contextd.db"),
         "--socket", str(work / "run" / "contextd.sock"), "--log-level", "warning"],
        env=env, cwd=src,  # -m puts the working directory first on sys.path
    )  # fmt: skip
    try:
        ready_s = wait_ready(port, proc)
        at_ready = pss_kib(proc.pid) / 1024
        for _ in range(2):
            get_json(port, "/api/usage")
        after = pss_kib(proc.pid) / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {"ready_s": round(ready_s, 2), "pss_mb_ready": round(at_ready, 1),
            "pss_mb_after_2_usage_refreshes": round(after, 1)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--corpus", type=Path, action="append", help="default: the two corpora")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--src", type=Path, default=ROOT, help="checkout whose contextd to run")
    ap.add_argument("--env", action="append", default=[], help="K=V for the daemon")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "daemon_memory.json")
    args = ap.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    results: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "src": str(args.src), "env": extra,
    }  # fmt: skip
    for corpus in args.corpus or CORPORA:
        if not (corpus / "projects").is_dir():
            print(f"skipped {corpus}: no such corpus (generate one with bench/gen_corpus.py)")
            continue
        runs = [one_run(corpus, args.src, extra) for _ in range(args.runs)]
        for run in runs:
            print(f"{corpus.name}: {json.dumps(run)}")
        results[str(corpus)] = {
            "runs": runs,
            **{f"median_{key}": statistics.median(r[key] for r in runs) for key in runs[0]},
        }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
