"""The scanner: the parallel decode path gives exactly the sequential result."""

from __future__ import annotations

from pathlib import Path

import pytest

from contextd.ingest import scanner
from contextd.ingest.discovery import transcript_files
from contextd.ingest.scanner import TranscriptIngestor
from contextd.store import Store

NOW = 1_800_000_000.0


def _scan(root: Path, db: Path, jobs: int) -> Store:
    store = Store(db)
    result = TranscriptIngestor.open(store).scan(transcript_files([root]), now=NOW, jobs=jobs)
    assert result.files == 4
    return store


def test_parallel_decode_gives_the_sequential_state(
    samples_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanner, "PARALLEL_MIN_BYTES", 0)
    sequential = _scan(samples_root, tmp_path / "seq.db", jobs=1)
    parallel = _scan(samples_root, tmp_path / "par.db", jobs=2)
    assert parallel.sessions() == sequential.sessions()
    assert parallel.events(limit=10_000) == sequential.events(limit=10_000)
    assert parallel.cursors() == sequential.cursors()
    assert parallel.counters() == sequential.counters()
    assert sequential.counters()["transcript_lines"] > 0


def test_a_parallel_rescan_reads_nothing_new(
    samples_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scanner, "PARALLEL_MIN_BYTES", 0)
    store = _scan(samples_root, tmp_path / "s.db", jobs=2)
    before = store.sessions()
    again = TranscriptIngestor.open(store).scan(transcript_files([samples_root]), now=NOW, jobs=2)
    assert again.lines == 0
    assert store.sessions() == before
