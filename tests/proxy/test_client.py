"""The proxy's upstream client through the proxy: TLS, connection reuse and its failures, HEAD,
interim answers, large answers. Against the scripted upstream (:mod:`tests.proxy.upstream`)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proxy.running import running_proxy
from tests.proxy.test_relay import TEXT, ask, headers, post
from tests.proxy.upstream import Script, Upstream, streamed


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made by the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True,
                   capture_output=True)  # fmt: skip
    return cert, key


def test_an_https_upstream_is_verified_against_the_system_trust_and_relayed(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    script = streamed(TEXT, "msg_tls")
    with Upstream([script], tls=server_side) as upstream:
        assert upstream.url.startswith("https://127.0.0.1:")
        with running_proxy(upstream.url) as proxy:  # not trusted: the handshake fails
            refused = post(proxy, ask())
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # what the default context trusts
        with running_proxy(upstream.url) as proxy:
            response = post(proxy, ask())
    assert refused.status_code == 502
    assert "CERTIFICATE_VERIFY_FAILED" in refused.json()["error"]
    assert (response.status_code, response.content) == (200, script.body)


def test_kept_alive_connections_are_reused(upstream: Upstream) -> None:
    scripts = [streamed(TEXT, f"msg_reuse_{i}") for i in range(5)]
    upstream.add(*scripts)
    with running_proxy(upstream.url) as proxy:
        bodies = [post(proxy, ask()).content for _ in scripts]
    assert bodies == [s.body for s in scripts]
    assert upstream.connections == 1


def test_connections_the_upstream_closes_are_not_reused(upstream: Upstream) -> None:
    announced = streamed(TEXT, "msg_close_1")
    silent = Script(announced.status, announced.headers, announced.chunks, drop=True)
    closing = Script(announced.status, announced.headers, announced.chunks, close=True)
    after = [streamed(TEXT, "msg_close_2"), streamed(TEXT, "msg_close_3")]
    upstream.add(closing, after[0], silent, after[1])
    with running_proxy(upstream.url) as proxy:
        statuses = [post(proxy, ask()).status_code for _ in range(4)]
    assert statuses == [200] * 4
    assert upstream.connections == 3


def test_head_and_interim_answers_pass_through(upstream: Upstream) -> None:
    upstream.add(Script(200, (("content-type", "application/json"),), (b'{"ok":1}',),
                        length=True),
                 Script(200, (("content-type", "application/json"),), (b'{"ok":2}',),
                        length=True, interim=True))  # fmt: skip
    with running_proxy(upstream.url) as proxy, proxy.client() as client:
        head = client.head("/v1/models", headers=headers())
        interim = client.post("/v1/messages", content=json.dumps(ask()).encode(),
                              headers=headers(expect="100-continue"))  # fmt: skip
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "8", b"")
    assert (interim.status_code, interim.content) == (200, b'{"ok":2}')
    assert upstream.seen[1].header("expect") is None  # the proxy's hop, not upstream's


def test_a_large_answer_to_a_slow_reader_arrives_whole(upstream: Upstream) -> None:
    chunks = tuple(bytes([65 + i % 26]) * 65_536 for i in range(64))  # 4 MiB
    upstream.add(Script(chunks=chunks))
    with (
        running_proxy(upstream.url) as proxy,
        proxy.client() as client,
        client.stream("POST", "/v1/messages", content=b"{}", headers=headers()) as response,
    ):
        received = b"".join(response.iter_raw(chunk_size=1024))
    assert received == b"".join(chunks)


def test_an_answer_ended_by_closing_the_connection_arrives_whole(upstream: Upstream) -> None:
    body = b'{"type":"message","id":"msg_eof"}' * 100
    upstream.add(Script(200, (("content-type", "application/json"),), (body,), eof=True),
                 streamed(TEXT, "msg_after_eof"))  # fmt: skip
    with running_proxy(upstream.url) as proxy:
        first, second = post(proxy, ask()), post(proxy, ask())
    assert (first.status_code, first.content) == (200, body)
    assert second.status_code == 200  # on a new connection
    assert upstream.connections == 2
