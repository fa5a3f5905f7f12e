"""One proxied exchange → what the session engine takes in.

Pure functions (no I/O, time passed in). The session comes from the request: the
``X-Claude-Code-Session-Id`` header Claude Code sends (or ``X-Claude-Session-ID``), else a
configured header, else ``metadata.user_id``'s ``session_id`` (a JSON string inside the body,
reference/claude-code-verified.md §3). Without any, a client with a key is filed under the
pseudo-session ``api-<user id>``; a request without key or session records nothing.

The user is the keyed hash (:func:`contextd.identity.user_id`) of the ``x-api-key`` or the
bearer token: the key itself goes no further than this module's call. The response becomes a
:class:`~contextd.ingest.transcripts.ResponseLine` keyed like a transcript line, by the message
id and the ``request-id`` header, so the daemon's ledger counts a response seen by both the proxy
and the transcript once. A request with ``x-claude-code-agent-id`` is a sub-agent's: its usage
counts in the session's totals, never as its context (as a sub-agent transcript's does).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from contextd.events import Activity, ApiError, Observation, Origin
from contextd.identity import user_id
from contextd.ingest.transcripts import ResponseLine
from contextd.ledger import response_key, tool_key
from contextd.proxy.tap import Answer

SESSION_HEADERS = ("x-claude-code-session-id", "x-claude-session-id")
AGENT_HEADER = "x-claude-code-agent-id"
RATE_LIMIT_PREFIX = "anthropic-ratelimit-"
MESSAGES = "/v1/messages"
_SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CLAUDE_CLI = re.compile(  # "claude-cli/2.1.330 (external, sdk-cli)"
    r"^claude-cli/([0-9][0-9A-Za-z.+-]{0,40}) \(([^,()]{1,40}),\s*([^,()]{1,40})\)"
)
_HEADER_VALUE = 200  # longest header value copied into an event

Item = Observation | ResponseLine
"""What the daemon takes from the proxy (a ResponseLine is de-duplicated by its ledger)."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request through the proxy and how it ended.

    ``failure`` says why an exchange did not complete: ``timeout`` or ``unreachable`` (then
    ``status`` is None when no answer had started), ``broken`` (the answer broke off),
    ``disconnected`` (the client left first). ``answer`` is None when the tap failed or could
    not read the answer.
    """

    path: str
    headers: Mapping[str, str]  # request headers, names lower-cased
    body: bytes
    at: float
    status: int | None = None
    response_headers: Mapping[str, str] | None = None
    answer: Answer | None = None
    failure: str | None = None


def _session(value: object) -> str | None:
    return value if isinstance(value, str) and _SESSION_ID.match(value) else None


def session_of(exchange: Exchange, session_header: str | None = None) -> str | None:
    """The session id the request names (see the module docstring), or None."""
    headers = exchange.headers
    for name in (*SESSION_HEADERS, *((session_header.lower(),) if session_header else ())):
        found = _session(headers.get(name))
        if found is not None:
            return found
    if not exchange.path.startswith(MESSAGES) or b'"metadata"' not in exchange.body:
        return None
    try:
        body = orjson.loads(exchange.body)
        metadata = body.get("metadata") if isinstance(body, dict) else None
        user = metadata.get("user_id") if isinstance(metadata, dict) else None
        inner = orjson.loads(user) if isinstance(user, str) and user.startswith("{") else None
    except orjson.JSONDecodeError:
        return None
    return _session(inner.get("session_id")) if isinstance(inner, dict) else None


def key_of(headers: Mapping[str, str]) -> str | None:
    """The credential a request carries: ``x-api-key``, else a bearer token."""
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def origin_of(headers: Mapping[str, str], user: str | None) -> Origin | None:
    """The user, and Claude Code's version and entry point from its ``user-agent``."""
    match = _CLAUDE_CLI.match(headers.get("user-agent", ""))
    version, entrypoint = (match.group(1), match.group(3).strip()) if match else (None, None)
    if user is None and version is None:
        return None
    return Origin(version=version, entrypoint=entrypoint, user=user)


def _error(exchange: Exchange, session_id: str) -> ApiError | None:
    answer = exchange.answer
    error_type = answer.error_type if answer is not None else None
    status = exchange.status
    if exchange.failure in ("timeout", "unreachable", "broken"):
        return ApiError(session_id, exchange.at, None, exchange.failure)
    if status is None or (status < 400 and error_type is None):
        return None
    headers = exchange.response_headers or {}
    retry_after = headers.get("retry-after")
    limits = tuple(sorted(
        (name, value[:_HEADER_VALUE]) for name, value in headers.items()
        if name.startswith(RATE_LIMIT_PREFIX)
    ))  # fmt: skip
    return ApiError(session_id, exchange.at, status, error_type,
                    retry_after[:_HEADER_VALUE] if retry_after else None, limits)  # fmt: skip


def _response(exchange: Exchange, session_id: str) -> ResponseLine | None:
    answer = exchange.answer
    if answer is None or answer.usage is None or answer.model is None:
        return None
    if exchange.status != 200 or exchange.failure is not None:
        return None  # an answer cut short (client gone, upstream broke off) has no final usage
    request_id = (exchange.response_headers or {}).get("request-id")
    usage = answer.usage
    return ResponseLine(
        session_id=session_id,
        at=exchange.at,
        origin=None,
        model=answer.model,
        key=response_key(answer.message_id, request_id),
        usage=(usage.input, usage.output, usage.cache_creation, usage.cache_read),
        context=answer.context_tokens,
        sidechain=bool(exchange.headers.get(AGENT_HEADER)),
        tool_keys=tuple(tool_key(tool_id) for tool_id in answer.tool_use_ids),
        last_at=exchange.at,
    )


def exchange_items(
    exchange: Exchange, secret: bytes, session_header: str | None = None
) -> list[Item]:
    """What one exchange tells the engine: activity (with the user), the response, an error."""
    key = key_of(exchange.headers)
    user = user_id(secret, key) if key else None
    session_id = session_of(exchange, session_header) or (f"api-{user}" if user else None)
    if session_id is None:
        return []
    items: list[Item] = [Activity(session_id, exchange.at, origin_of(exchange.headers, user))]
    if exchange.path.rstrip("/") == MESSAGES:
        response = _response(exchange, session_id)
        if response is not None:
            items.append(response)
    error = _error(exchange, session_id)
    if error is not None:
        items.append(error)
    return items
