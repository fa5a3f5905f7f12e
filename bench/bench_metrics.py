"""Time to answer a ``/metrics`` scrape, and one OTLP collection, for many live sessions.

Usage::

    python bench/bench_metrics.py [--renders 50] [--json bench/out/metrics.json]

For 100 and 1,000 live sessions (seeded, realistic snapshots: UUID ids, a few projects,
models and users, spread context percentages), a ``SessionCollector`` is registered on a
fresh ``CollectorRegistry`` and the registry is rendered ``--renders`` times with
``contextd.exporters.prometheus.render`` (collect + text exposition, what the daemon's
``/metrics`` handler does). Two caps: the default 500 (1,000 sessions → 500 series plus
``_other``) and a cap above the session count (every session its own series, the worst
case). For comparison the same registry is also rendered with prometheus_client's
``generate_latest``; both must give the same bytes. Also timed: one OTLP collection of the
same snapshot through an ``InMemoryMetricReader`` (the work the exporter's thread does before
sending). Target (issue): ``/metrics`` < 50 ms at 1,000 sessions.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

from contextd.exporters.otlp import OtlpExporter
from contextd.exporters.prometheus import SessionCollector, render
from contextd.models import SessionSnapshot, SessionStatus, TokenCounts

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_790_000_000.0
TARGET_MS = 50.0


def sessions(count: int, seed: int = 1) -> tuple[SessionSnapshot, ...]:
    rng = random.Random(seed)
    projects = [f"project-{i}" for i in range(25)]
    models = ["claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5"]
    users = ["3f2a9c0d1e4b5a67", "9b8c7d6e5f4a3b21"]
    out = []
    for _ in range(count):
        window = rng.choice((200_000, 200_000, 1_000_000))
        context = rng.randint(5_000, window)
        started = NOW - rng.uniform(60, 86_400)
        out.append(
            SessionSnapshot(
                session_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                status=rng.choice((SessionStatus.ACTIVE, SessionStatus.IDLE)),
                started_at=started,
                last_activity=rng.uniform(started, NOW),
                project=rng.choice(projects),
                model=rng.choice(models),
                user=rng.choice(users),
                context_tokens=context,
                window_tokens=window,
                warn_crossings=rng.randint(0, 4),
                critical_crossings=rng.randint(0, 2),
                checkpoints=rng.randint(0, 5),
                tokens_saved=rng.randint(0, 2_000_000),
                tokens=TokenCounts(
                    rng.randint(0, 10**6),
                    rng.randint(0, 10**7),
                    rng.randint(0, 10**8),
                    rng.randint(0, 10**10),
                ),
            )
        )
    return tuple(out)


COUNTERS = {
    "transcript_lines": 875_628,
    "transcript_rejected_invalid_json": 612,
    "transcript_rejected_oversize": 3,
    "hook_events_PreToolUse": 40_000,
    "hook_events_PostToolUse": 39_990,
    "hook_events_Stop": 1_200,
}


def _summary(times: list[float], prefix: str) -> dict[str, float]:
    times = sorted(times)
    return {
        f"{prefix}median_ms": statistics.median(times),
        f"{prefix}p95_ms": times[max(0, round(0.95 * len(times)) - 1)],
        f"{prefix}max_ms": times[-1],
    }


def timings(fn: Callable[[], object], runs: int) -> dict[str, float]:
    """Wall time and this process's CPU time per call, in ms.

    The VM is shared: wall time includes waiting for a core, CPU time does not.
    """
    fn()  # warm-up: first-call imports and caches are not what a scrape costs
    gc.collect()  # start each series from the same heap; collections during it still count
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        cpu.append((time.process_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)
    return {**_summary(wall, ""), **_summary(cpu, "cpu_")}


def bench_case(count: int, cap: int, runs: int) -> tuple[dict[str, float], dict[str, object]]:
    """(render timings, the case's full report)."""
    snapshot = sessions(count)
    registry = CollectorRegistry()
    registry.register(SessionCollector(lambda: snapshot, lambda: COUNTERS, max_series=cap))
    body = render(registry)
    if body != generate_latest(registry):
        raise SystemExit("render() and generate_latest() disagree")
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    rendered = timings(lambda: render(registry), runs)
    baseline = timings(lambda: generate_latest(registry), runs)

    reader = InMemoryMetricReader()
    exporter = OtlpExporter(lambda: snapshot, lambda: COUNTERS, reader=reader, max_series=cap)
    exporter.start()
    try:
        otlp = timings(reader.get_metrics_data, runs)
    finally:
        exporter.shutdown(1.0)

    return rendered, {
        "sessions": count,
        "max_series": cap,
        "series": cap + 1 if count > cap else count,
        "samples": samples,
        "bytes": len(body),
        "render": rendered,
        "generate_latest": baseline,
        "otlp_collect": otlp,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=50, help="timed renders per case (>= 30)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "metrics.json")
    args = parser.parse_args()
    runs = max(30, args.renders)

    results = [(n, *bench_case(n, cap, runs)) for n, cap in ((100, 500), (1000, 500), (1000, 1000))]
    worst = max(rendered["p95_ms"] for n, rendered, _ in results if n == 1000)
    report = {
        "machine": f"{platform.machine()} {platform.python_version()}",
        "renders_per_case": runs,
        "target_ms_at_1000": TARGET_MS,
        "worst_p95_ms_at_1000": worst,
        "met": worst < TARGET_MS,
        "cases": [case for _, _, case in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
