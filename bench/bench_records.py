"""Session records: ingest of 100k records into each backend, and a per-identity time query.

Usage::

    python bench/bench_records.py [--records 100000] [--runs 3] [--queries 200]
                                  [--postgres URL] [--json bench/out/records.json]

Seeded records (200 identities, 50 projects, ends spread over 90 days) are made first (not
timed). Per backend and run, into a fresh store: **ingest** — the records added in batches of
1,000 (the largest ``POST /v1/session-events`` batch; one transaction each), then the same
records again (all duplicates: what a redelivery costs); **query** — ``--queries`` times one
identity's records over a 30-day window (``RecordQuery(identity, since, until)``, the
``(identity_hash, ended_at)`` index), median and p95. SQLite: a file in a temp dir (WAL,
``synchronous=NORMAL``, as the daemon runs it). PostgreSQL: ``--postgres URL`` (a database
the bench may fill), else a server of its own from the Debian package on a free loopback
port (``tests/postgres_server.py``; ``fsync=off``, so that figure is an upper bound).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contextd.records.model import SessionRecord  # noqa: E402
from contextd.records.store import (  # noqa: E402
    RecordQuery,
    RecordStore,
    add_all,
    open_record_store,
)

DAY = 86_400.0
T0 = 1_780_000_000.0


def make_records(count: int, seed: int = 1) -> list[SessionRecord]:
    rng = random.Random(seed)
    identities = [f"{rng.getrandbits(64):016x}" for _ in range(200)]
    projects = [f"project-{i}" for i in range(50)]
    out = []
    for n in range(count):
        started = T0 + rng.uniform(0, 90 * DAY)
        tokens = {"input": rng.randint(0, 5000), "output": rng.randint(0, 50_000),
                  "cache_creation": rng.randint(0, 200_000),
                  "cache_read": rng.randint(0, 5_000_000)}  # fmt: skip
        out.append(SessionRecord.model_validate({
            "identity_hash": rng.choice(identities), "session_id_hash": f"{n:032x}",
            "project": rng.choice(projects), "started_at": started,
            "ended_at": started + rng.uniform(60, 6 * 3600),
            "status": rng.choice(("ended", "ended", "superseded", "expired")),
            "models": ["claude-opus-4-6"], "model": "claude-opus-4-6",
            "tool_calls": rng.randint(0, 300), "responses": rng.randint(1, 400),
            "tokens": tokens, "cost_usd": round(rng.uniform(0, 40), 6),
            "window_tokens": 200_000, "peak_percent": round(rng.uniform(5, 99), 2),
            "warn_crossings": rng.randint(0, 3), "critical_crossings": rng.randint(0, 2),
            "checkpoints": rng.randint(0, 4), "tokens_saved": rng.randint(0, 400_000),
            "branch_sha": f"{rng.getrandbits(160):040x}", "session_type": "interactive",
        }))  # fmt: skip
    return out


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_backend(
    name: str, fresh: Callable[[int], str], records: list[SessionRecord], runs: int, queries: int
) -> dict[str, Any]:
    identities = sorted({r.identity_hash for r in records})
    rng = random.Random(7)
    ingest, again, query_ms, found = [], [], [], []
    for run in range(runs):
        store: RecordStore = open_record_store(fresh(run))
        try:
            ingest.append(timed(lambda s=store: add_all(s, records)))  # type: ignore[misc]
            assert store.count() == len(records)
            again.append(timed(lambda s=store: add_all(s, records)))  # type: ignore[misc]
            assert store.count() == len(records)
            for _ in range(queries):
                since = T0 + rng.uniform(0, 60 * DAY)
                query = RecordQuery(identity=rng.choice(identities), since=since,
                                    until=since + 30 * DAY)  # fmt: skip
                started = time.perf_counter()
                rows = store.records(query)
                query_ms.append((time.perf_counter() - started) * 1000)
                found.append(len(rows))
        finally:
            store.close()
    n = len(records)
    result = {
        "backend": name,
        "records": n,
        "ingest_seconds": [round(s, 3) for s in ingest],
        "ingest_median_s": round(statistics.median(ingest), 3),
        "ingest_records_per_s": round(n / statistics.median(ingest)),
        "reingest_duplicates_median_s": round(statistics.median(again), 3),
        "query_median_ms": round(statistics.median(query_ms), 2),
        "query_p95_ms": round(statistics.quantiles(query_ms, n=20)[-1], 2),
        "query_rows_median": statistics.median(found),
    }
    print(json.dumps(result))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "records.json")
    args = parser.parse_args()
    records = make_records(args.records)
    results = []
    with tempfile.TemporaryDirectory(prefix="contextd-bench-records-") as tmp:
        results.append(bench_backend("sqlite", lambda run: f"{tmp}/history-{run}.db", records,
                                     args.runs, args.queries))  # fmt: skip
        server = None
        if args.postgres is None:
            from tests.postgres_server import start_postgres  # noqa: PLC0415

            server = start_postgres(Path(tmp))
        try:

            def fresh_pg(run: int) -> str:
                if server is not None:
                    return server.database(f"bench_{run}")
                store = open_record_store(args.postgres)  # reuse: empty it first
                store.sweep(float("inf"))
                store.close()
                return str(args.postgres)

            results.append(bench_backend("postgresql", fresh_pg, records, args.runs,
                                         args.queries))  # fmt: skip
        finally:
            if server is not None:
                server.stop()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    summary = {"machine": platform.platform(), "python": platform.python_version(),
               "results": results}  # fmt: skip
    args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
