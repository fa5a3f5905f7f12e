"""Fixtures of the MCP tests: an in-process daemon, its app, and a client of its HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from contextd.daemon import Daemon
from contextd.server import Guard, build_app
from tests.test_server import BASE, make_settings, wait_for


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    return Daemon(make_settings(tmp_path))


@pytest.fixture
def app(daemon: Daemon) -> Guard:
    return build_app(daemon)


@pytest.fixture
def api(app: Guard, daemon: Daemon) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE) as c:
        wait_for(lambda: daemon.ready)
        yield c
