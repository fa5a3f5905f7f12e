"""Pinned npm tools that ``scripts/bootstrap`` installs under ``.tools/`` (git-ignored).

A test that needs one skips when it is missing, except under ``CI=true``, where that is a
failure: CI runs ``scripts/bootstrap`` first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NoReturn

import pytest

TOOLS = Path(__file__).resolve().parents[1] / ".tools"


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it under ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: run scripts/bootstrap before the tests)")
    pytest.skip(f"{reason}; run scripts/bootstrap")


def require_version(prefix: Path, package: str, version: str) -> Path:
    """The directory of ``package`` installed under the npm ``prefix``, if it is ``version``
    (else the test is :func:`unavailable`)."""
    directory = prefix / "node_modules" / package
    try:
        installed = json.loads((directory / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        unavailable(f"{package} is not installed under {prefix}")
    if installed != version:
        unavailable(f"{prefix} holds {package} {installed}, not the pinned {version}")
    return directory
