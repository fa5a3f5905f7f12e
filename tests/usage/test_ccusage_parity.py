"""Acceptance: per-session, per-day and per-block tokens equal ccusage 20.0.24's exactly, costs
within $0.000001, on a generated corpus and on the real samples.

Runs ``bench/compare_ccusage.py``'s comparison against the pinned ccusage binary that
``scripts/bootstrap`` installs into ``.tools/ccusage``; skipped only when that binary is absent.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("compare_ccusage",
                                                  ROOT / "bench/compare_ccusage.py")  # fmt: skip
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


@pytest.fixture(scope="module")
def ccusage() -> Path:
    binary: Path | None = BENCH.find_ccusage()
    if binary is None:
        pytest.skip("ccusage 20.0.24 is not installed (run scripts/bootstrap)")
    return binary


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    subprocess.run(
        [sys.executable, str(ROOT / "bench/gen_corpus.py"), "--out", str(out), "--sessions", "12",
         "--target-bytes", "4e6", "--seed", "7", "--jobs", "1", "--quiet", "--force"],
        check=True,
    )  # fmt: skip
    return out


@pytest.mark.parametrize("mode", ["auto", "calculate"])
def test_a_generated_corpus_matches_ccusage(ccusage: Path, corpus: Path, mode: str) -> None:
    result = BENCH.compare(corpus, ccusage, mode)
    assert result["differences"] == []
    assert result["sessions"] >= 10
    assert result["days"] >= 5
    assert result["blocks"] >= 10  # 5-hour blocks and gaps, compared one by one
    assert result["cost_contextd"] == pytest.approx(result["cost_ccusage"], abs=1e-6)


def test_the_real_samples_match_ccusage(ccusage: Path, samples_root: Path) -> None:
    result = BENCH.compare(samples_root, ccusage)
    assert result["differences"] == []
    assert result["sessions"] == 2
    # Figures from /work/tools/ccusage-notes.md §7: 12,976,160 + 25,366 tokens.
    assert result["tokens_total"] == 13_001_526
