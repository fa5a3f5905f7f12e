"""The real Claude Code CLI (pinned, ``-p`` mode, offline) through ``contextd serve --proxy``.

``ANTHROPIC_BASE_URL`` points at the daemon's proxy port, the proxy's upstream is the scripted
fake API of the end-to-end test (:mod:`tests.e2e.fake_anthropic`), and the daemon also reads
the transcripts the CLI writes (its config dir is the CLI's ``CLAUDE_CONFIG_DIR``): each
response is seen twice, by the proxy as it streams and by the transcript after, and must count
once. Checked: the session id, the context tokens and token totals against the scripted usage,
the user as the keyed hash of the CLI's API key, and the key in no database file, log or metric.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest

from contextd.identity import install_secret, user_id
from tests.e2e.fake_anthropic import FakeAnthropic, Reply, Request, Rule, Text, Usage, totals
from tests.e2e.test_claude_cli import (
    CLAUDE_CODE_VERSION,
    COMPACT_REQUEST,
    FAKE_API_KEY,
    SUMMARY,
    claude_binary,
    offline_env,
    run_claude,
)
from tests.proxy.traces import assert_key_absent, exposition, state_files, stop_for_log
from tests.served import Served, free_port
from tests.test_server import wait_for

pytestmark = pytest.mark.slow

SESSION_ID = "e2e0c1a0-5e55-4a1d-8c0d-00000000a9e1"
T1 = Usage(input=31, cache_creation=2_203, cache_read=40_009, output=47)
T2 = Usage(input=37, cache_creation=1_105, cache_read=42_013, output=59)
COMPACT = Usage(input=41, cache_creation=0, cache_read=3_001, output=307)
T3 = Usage(input=43, cache_creation=707, cache_read=6_007, output=61)


def _turn(marker: str) -> Any:
    return lambda request: marker in request.last_user_text()


def _compaction(request: Request) -> bool:
    return COMPACT_REQUEST in request.last_user_text()


RULES = (
    Rule("summary", _compaction, Reply((Text(SUMMARY),), COMPACT)),
    Rule("t1", _turn("[P1]"), Reply((Text("First answer through the proxy."),), T1)),
    Rule("t2", _turn("[P2]"), Reply((Text("Second answer."),), T2)),
    Rule("t3", _turn("[P3]"), Reply((Text("After the compaction."),), T3)),
)


@dataclass(frozen=True, slots=True)
class Run:
    fake: FakeAnthropic
    daemon: Served  # stopped by the time the tests look (its files are complete)
    session: dict[str, Any]
    stats: dict[str, Any]
    exposition: bytes  # /metrics
    log: bytes  # the daemon's whole stderr


def _api(daemon: Served, path: str) -> dict[str, Any]:
    status, body = daemon.get(path)
    assert status == 200, (path, status, body)
    return cast(dict[str, Any], body)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    binary = claude_binary()  # skip (or fail under CI) before starting anything
    tmp = tmp_path_factory.mktemp("cli-proxy")
    daemon = Served(tmp)
    project = tmp / "project"
    project.mkdir()
    proxy_port = free_port()
    with FakeAnthropic(RULES) as fake:
        daemon.start(
            env={"CONTEXTD_PROXY_UPSTREAM": fake.url},
            args=("--proxy", "--proxy-port", str(proxy_port), "--log-level", "info"),
        )
        try:
            env = {**offline_env(tmp, daemon.root, fake),
                   "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{proxy_port}"}  # fmt: skip
            run_claude(binary, ["[P1] Hello through the proxy.", "--session-id", SESSION_ID],
                       env, project)  # fmt: skip
            run_claude(binary, ["[P2] Go on.", "--resume", SESSION_ID], env, project)
            run_claude(binary, ["/compact", "--resume", SESSION_ID], env, project)
            run_claude(binary, ["[P3] And now?", "--resume", SESSION_ID], env, project)
            wait_for(lambda: _api(daemon, f"/api/sessions/{SESSION_ID}")["checkpoints"] >= 1,
                     timeout=20)  # fmt: skip
            session = _api(daemon, f"/api/sessions/{SESSION_ID}")
            metrics = exposition(daemon)
            stats = _api(daemon, "/api/stats")
            yield Run(fake, daemon, session, stats, metrics, stop_for_log(daemon))
        finally:
            daemon.stop()


def test_every_request_went_through_the_proxy_to_the_fake_api(run: Run) -> None:
    fake = run.fake
    assert fake.refused == []  # nothing tried to leave the machine
    assert fake.unanswered == []
    assert fake.answered_by() == ["t1", "t2", "summary", "t3"]
    for request in fake.requests:
        assert request.path == "/v1/messages?beta=true"
        assert request.headers["accept-encoding"] == "identity"  # the proxy's, not the CLI's
        assert request.headers["x-api-key"] == FAKE_API_KEY  # the client's own credential
        assert request.headers["x-claude-code-session-id"] == SESSION_ID
    assert run.stats["ingest"]["proxy_responses"] == 4


def test_the_session_id_context_and_totals_are_the_scripted_ones(run: Run) -> None:
    session = run.session
    assert session["session_id"] == SESSION_ID
    assert session["context_tokens"] == T3.context  # the last main-chain response
    assert session["model"] == "claude-opus-5-5"
    assert (session["claude_version"], session["entrypoint"]) == (CLAUDE_CODE_VERSION, "sdk-cli")
    # Each response once, though the proxy and the transcript both saw T1, T2 and T3. The
    # summary request of /compact (same session header, no agent header) is a billed call the
    # transcript never shows: only the proxy counts it.
    counted = (T1, T2, COMPACT, T3)
    assert session["responses"] == len(counted)
    assert session["tokens"] == totals(counted)
    assert session["checkpoints"] == 1
    assert session["tokens_saved"] > 0


def test_the_user_is_the_keyed_hash_of_the_clis_api_key(run: Run) -> None:
    secret = install_secret(run.daemon.db.parent)
    assert run.session["user"] == user_id(secret, FAKE_API_KEY)


def test_the_key_is_in_no_database_file_log_or_metric(run: Run) -> None:
    state = state_files(run.daemon)
    assert len(state) >= 2  # the database and the install secret at least
    assert_key_absent(FAKE_API_KEY, [*state, run.log, run.exposition,
                                     json.dumps(run.session).encode()])  # fmt: skip
    assert b"not recorded" not in run.log
    assert b"API proxy on http://127.0.0.1" in run.log
