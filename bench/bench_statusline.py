"""``contextd statusline`` and ``contextd hook`` as Claude Code runs them: wall time per call.

Usage::

    python bench/bench_statusline.py [--calls 50] [--json bench/out/statusline.json]

Each call spawns a console script (``<venv>/bin/contextd statusline``) with a realistic
status-line JSON on stdin and waits for it to exit, as Claude Code does; the time is from spawn
to exit. Two installs are timed: this development venv (an editable install, whose import
hook loads at every start) and a regular one, made here in a temporary venv without pip as
``pip install .`` lays it out: the ``contextd`` package copied into ``site-packages`` and the
same console script. The status line needs nothing outside the standard library, so that venv
needs no other package. Cases, interleaved call by call so that the machine's noise hits them all
alike: the status line with a live daemon (a ``contextd serve`` this script starts on a free
port with a temporary state directory) and with no daemon (an unused socket and port), the
command hook with the daemon up, and two baselines in the same invocation: the same Python
running ``-c pass`` (with ``site``, as the console script starts) and ``-S -c pass``. After the
runs the daemon's ``hook_events_StatusLine`` counter must have grown by the number of calls
made with the daemon up: every forwarded payload arrived. Target (issue 6): median < 60 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).with_name("contextd")
TARGET_MEDIAN_MS = 60.0
PAYLOAD = json.dumps({
    "session_id": "be4c0000-0000-4000-8000-000000000001", "transcript_path": "/nowhere.jsonl",
    "cwd": "/home/u/proj", "model": {"id": "claude-opus-4-6", "display_name": "Opus 4.6"},
    "workspace": {"current_dir": "/home/u/proj", "project_dir": "/home/u/proj"},
    "version": "2.1.330", "cost": {"total_cost_usd": 1.2345, "total_duration_ms": 120000},
    "context_window": {"total_input_tokens": 120000, "total_output_tokens": 900,
                       "context_window_size": 200000, "used_percentage": 60,
                       "current_usage": {"input_tokens": 3, "output_tokens": 900,
                                         "cache_creation_input_tokens": 2000,
                                         "cache_read_input_tokens": 117997}},
    "exceeds_200k_tokens": False,
}).encode()  # fmt: skip
HOOK = json.dumps({"session_id": "be4c0000-0000-4000-8000-000000000001",
                   "hook_event_name": "Stop", "cwd": "/home/u/proj"}).encode()  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def timed(argv: list[str], stdin: bytes, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, input=stdin, env=env, capture_output=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr!r}")
    return elapsed


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2),
            "min_ms": round(ordered[0], 2), "max_ms": round(ordered[-1], 2)}  # fmt: skip


def regular_install(where: Path) -> Path:
    """A venv holding contextd as a regular (non-editable) install; its console script."""
    venv.create(where, with_pip=False, symlinks=True)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)  # fmt: skip
    shutil.copytree(ROOT / "contextd", Path(site.stdout.strip()) / "contextd",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    script = where / "bin" / "contextd"
    script.write_text(f"#!{python}\nimport sys\nfrom contextd.entry import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")  # fmt: skip
    script.chmod(0o755)
    subprocess.run([str(python), "-m", "compileall", "-q", str(site.stdout.strip())],
                   check=True)  # fmt: skip
    return script


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "statusline.json")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="contextd-bench-statusline-"))
    (work / "claude" / "projects").mkdir(parents=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CONTEXTD_", "OTEL_"))}
    port = free_port()
    up = {**base, "CONTEXTD_PORT": str(port), "CONTEXTD_SOCKET": str(work / "run" / "c.sock"),
          "CONTEXTD_DB": str(work / "state" / "contextd.db")}  # fmt: skip
    down = {**base, "CONTEXTD_PORT": str(free_port()),
            "CONTEXTD_SOCKET": str(work / "down" / "c.sock"),
            "CONTEXTD_DB": str(work / "down" / "contextd.db")}  # fmt: skip
    proc = subprocess.Popen([str(SCRIPT), "serve", "--config-dir", str(work / "claude"),
                             "--log-level", "warning"], env=up)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(port, "/healthz").get("ready"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("contextd serve did not become ready")
            time.sleep(0.05)
        regular = regular_install(work / "venv")
        plain = str(regular.with_name("python"))
        cases: dict[str, tuple[list[str], bytes, dict[str, str]]] = {
            "baseline: python -S -c pass": ([plain, "-S", "-c", "pass"], b"", base),
            "baseline: python -c pass": ([plain, "-c", "pass"], b"", base),
            "statusline, daemon up": ([str(regular), "statusline"], PAYLOAD, up),
            "statusline, daemon down": ([str(regular), "statusline"], PAYLOAD, down),
            "hook, daemon up": ([str(regular), "hook"], HOOK, up),
            "dev venv baseline: python -c pass": ([sys.executable, "-c", "pass"], b"", base),
            "dev venv (editable): statusline, daemon up": (
                [str(SCRIPT), "statusline"], PAYLOAD, up),
        }  # fmt: skip
        for argv, stdin, env in cases.values():  # warm the page cache and the .pyc files
            timed(argv, stdin, env)
        before = _get(port, "/api/stats")["ingest"].get("hook_events_StatusLine", 0)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.calls):
            for name, (argv, stdin, env) in cases.items():
                times[name].append(timed(argv, stdin, env))
        expected = before + 2 * args.calls  # two cases send status lines to the daemon
        deadline = time.monotonic() + 10
        while (got := _get(port, "/api/stats")["ingest"].get("hook_events_StatusLine", 0)) < (
            expected
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    figures = {name: summary(t) for name, t in times.items()}
    baseline = figures["baseline: python -c pass"]["median_ms"]
    for figure in figures.values():
        figure["ratio_to_python_c_pass"] = round(figure["median_ms"] / baseline, 2)
    up_median = figures["statusline, daemon up"]["median_ms"]
    down_median = figures["statusline, daemon down"]["median_ms"]
    machine = (f"{platform.machine()} {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, {platform.platform()}")  # fmt: skip
    result = {
        "machine": machine, "calls": args.calls, "cases": figures,
        "forwarded": {"expected": expected - before, "arrived": got - before},
        "target_median_ms": TARGET_MEDIAN_MS,
        "met": max(up_median, down_median) < TARGET_MEDIAN_MS and got >= expected,
        "raw_ms": {name: [round(x, 2) for x in t] for name, t in times.items()},
    }  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "raw_ms"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
