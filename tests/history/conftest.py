from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests import postgres_server as _postgres

postgres_server = _postgres.postgres_server
_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a record store lives: a fresh SQLite file, or a fresh database on the test
    PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "records" / "history.db")
    server: _postgres.PostgresServer = request.getfixturevalue("postgres_server")
    return server.database(f"records_{next(_databases)}")
