"""A scripted stand-in for the Anthropic Messages API, on loopback, for the real Claude Code CLI.

What Claude Code 2.1.330 calls and expects (shared/reference/claude-code-verified.md §2-4):
``POST /v1/messages?beta=true`` with ``stream: true``, answered as server-sent events
(``message_start`` carrying the usage, one ``content_block_*`` group per block,
``message_delta`` with the stop reason and the final usage, ``message_stop``). A request with
``stream: false`` gets the same message as one JSON object. ``POST /v1/messages/count_tokens``
and the gateway warm-up ``HEAD /api/hello`` are answered too, although 2.1.330 was not seen
calling them.

The test's script decides every answer: an ordered list of :class:`Rule`\\ s, the first whose
``match`` accepts the request answers it (a request no rule accepts gets a 500 and is recorded
as unanswered, so the test fails on it rather than hanging). Every request is recorded, headers
and decoded body, with the rule that answered it.

The server doubles as the CLI's ``HTTPS_PROXY``: a ``CONNECT`` (an attempt to reach anything
else, e.g. ``api.anthropic.com:443``) is refused with 403 and its target recorded in
:attr:`FakeAnthropic.refused`, so a test can assert that the CLI stayed offline.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

MODEL = "claude-opus-5-5"  # what 2.1.330 asks for with an API key (reference §1)
_MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Usage:
    """The four token counts of one response, as the API reports them."""

    input: int
    cache_creation: int
    cache_read: int
    output: int

    @property
    def context(self) -> int:
        """Context tokens as Claude Code and contextd count them (output excluded)."""
        return self.input + self.cache_creation + self.cache_read

    def wire(self, *, output: int | None = None) -> dict[str, int]:
        return {
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_creation,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": self.output if output is None else output,
        }


def totals(usages: Sequence[Usage]) -> dict[str, int]:
    """The token totals of ``usages`` as the daemon reports a session's ``tokens``."""
    return {
        "input": sum(u.input for u in usages),
        "output": sum(u.output for u in usages),
        "cache_creation": sum(u.cache_creation for u in usages),
        "cache_read": sum(u.cache_read for u in usages),
        "total": sum(u.context + u.output for u in usages),
    }


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class ToolUse:
    id: str
    name: str
    input: dict[str, Any] = field(default_factory=dict)


Block = Text | ToolUse


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted assistant message."""

    blocks: tuple[Block, ...]
    usage: Usage

    @property
    def stop_reason(self) -> str:
        return "tool_use" if any(isinstance(b, ToolUse) for b in self.blocks) else "end_turn"


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the fake server received it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]
    rule: str | None = None  # the rule that answered a /v1/messages request

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    def last_user(self) -> dict[str, Any]:
        """The last message with role ``user`` (``{}`` if none)."""
        for message in reversed(self.messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return message
        return {}

    def last_user_text(self) -> str:
        """The text blocks (or the string content) of the last user message, joined."""
        return _text_of(self.last_user().get("content"))

    def tool_results(self) -> dict[str, str]:
        """``tool_use_id → content as text`` of every tool_result in the conversation sent."""
        found: dict[str, str] = {}
        for message in self.messages:
            content = message.get("content") if isinstance(message, dict) else None
            for block in content if isinstance(content, list) else ():
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    found[str(block.get("tool_use_id"))] = _text_of(block.get("content"))
        return found

    def answers_tool_use(self, tool_use_id: str) -> bool:
        """Whether the last user message carries the result of ``tool_use_id``."""
        content = self.last_user().get("content")
        return any(
            isinstance(block, dict)
            and block.get("type") == "tool_result"
            and block.get("tool_use_id") == tool_use_id
            for block in (content if isinstance(content, list) else ())
        )


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(
        str(block.get("text", ""))
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    )


@dataclass(frozen=True, slots=True)
class Rule:
    """``reply`` answers the first request ``match`` accepts (first rule in the list wins).

    With ``once``, the rule answers one request and is then skipped.
    """

    name: str
    match: Callable[[Request], bool]
    reply: Reply
    once: bool = True


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _content(blocks: Sequence[Block]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, Text):
            out.append({"type": "text", "text": block.text})
        else:
            out.append({"type": "tool_use", "id": block.id, "name": block.name,
                        "input": block.input})  # fmt: skip
    return out


def sse(reply: Reply, message_id: str, model: str) -> bytes:
    """``reply`` as the event stream the Messages API sends for ``stream: true``."""
    start = message(Reply((), reply.usage), message_id, model)
    start |= {"stop_reason": None, "usage": reply.usage.wire(output=1)}
    chunks = [_event("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(reply.blocks):
        if isinstance(block, Text):
            opened: dict[str, Any] = {"type": "text", "text": ""}
            delta: dict[str, Any] = {"type": "text_delta", "text": block.text}
        else:
            opened = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block.input)}
        chunks += [
            _event("content_block_start",
                   {"type": "content_block_start", "index": index, "content_block": opened}),
            _event("content_block_delta",
                   {"type": "content_block_delta", "index": index, "delta": delta}),
            _event("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]  # fmt: skip
    chunks += [
        _event("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": reply.stop_reason,
                                           "stop_sequence": None},
                                 "usage": reply.usage.wire()}),
        _event("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    return b"".join(chunks)


def message(reply: Reply, message_id: str, model: str) -> dict[str, Any]:
    """``reply`` as the one JSON object the Messages API sends for ``stream: false``."""
    return {"id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": _content(reply.blocks), "stop_reason": reply.stop_reason,
            "stop_sequence": None, "usage": reply.usage.wire()}  # fmt: skip


class FakeAnthropic:
    """The fake API on ``127.0.0.1`` (a free port), answering by ``rules`` (see the module)."""

    def __init__(self, rules: Sequence[Rule], model: str = MODEL) -> None:
        self.rules = list(rules)
        self.model = model
        self.requests: list[Request] = []
        self.refused: list[str] = []  # CONNECT targets
        self.unanswered: list[Request] = []
        self._used: set[str] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for the serving loop's next poll.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="fake-anthropic", daemon=True)  # fmt: skip

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def messages_requests(self) -> list[Request]:
        """The recorded ``POST /v1/messages`` requests, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.rule is not None]

    def answered_by(self) -> list[str]:
        """The name of the rule that answered each ``/v1/messages`` request, in order."""
        return [r.rule for r in self.messages_requests() if r.rule is not None]

    def _choose(self, request: Request) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.once and rule.name in self._used:
                    continue
                if rule.match(request):
                    if rule.once:
                        self._used.add(rule.name)
                    return rule
        return None

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: everything is in fake.requests

            def _read_body(self) -> dict[str, Any]:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(min(length, _MAX_BODY)) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"_undecodable": raw[:200].decode("latin-1")}
                return body if isinstance(body, dict) else {"_body": body}

            def _request(self, rule: str | None = None) -> Request:
                return Request(self.command, self.path,
                               {k.lower(): v for k, v in self.headers.items()},
                               self._read_body(), rule)  # fmt: skip

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.send_header("request-id", f"req_fake_{next(fake._ids):04d}")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, code: int, data: object) -> None:
                self._send(code, json.dumps(data).encode(), "application/json")

            def _error(self, code: int, kind: str, message: str) -> None:
                self._json(code, {"type": "error", "error": {"type": kind, "message": message}})

            def do_CONNECT(self) -> None:
                with fake._lock:
                    fake.refused.append(self.path)
                self.send_response(403)
                self.send_header("content-length", "0")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True

            def do_HEAD(self) -> None:
                fake._record(self._request())
                self._send(200, b"", "text/plain")

            def do_GET(self) -> None:
                fake._record(self._request())
                self._error(404, "not_found_error", self.path)

            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                if path == "/v1/messages/count_tokens":
                    request = self._request()
                    fake._record(request)
                    size = len(json.dumps(request.body.get("messages", [])))
                    self._json(200, {"input_tokens": max(1, size // 4)})
                    return
                if path != "/v1/messages":
                    fake._record(self._request())
                    self._error(404, "not_found_error", self.path)
                    return
                request = self._request()
                rule = fake._choose(request)
                if rule is None:
                    fake._record(request)
                    with fake._lock:
                        fake.unanswered.append(request)
                    self._error(500, "api_error", "the fake API has no rule for this request")
                    return
                fake._record(Request(request.method, request.path, request.headers,
                                     request.body, rule.name))  # fmt: skip
                message_id = f"msg_fake_{rule.name}_{next(fake._ids):04d}"
                if request.body.get("stream"):
                    self._send(200, sse(rule.reply, message_id, fake.model), "text/event-stream")
                else:
                    self._json(200, message(rule.reply, message_id, fake.model))

        return Handler
