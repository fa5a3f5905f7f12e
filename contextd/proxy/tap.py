"""The usage tap: reads the facts of a Messages API answer from its bytes as they pass.

:class:`UsageTap` is fed every chunk the proxy relays, in order, and keeps only what telemetry
needs: the message id and model (``message_start``), the usage (``message_start``, updated by
``message_delta``), the ids of ``tool_use`` blocks, and an error's type. It never holds a whole
stream: for server-sent events it buffers at most the current line, and only the data of the
few event kinds it reads (``content_block_delta`` text passes by unbuffered). A JSON answer
(``stream: false``, an error) is buffered up to ``max_json`` bytes and decoded at the end.

A ``gzip``/``deflate`` answer (the proxy asks for ``identity``, but an upstream may ignore it)
is decoded into a copy for parsing; other encodings leave the tap blind (:attr:`blind`). No I/O,
no clock: the proxy owns both.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import orjson

from contextd.ingest.transcripts import context_of, usage_counts
from contextd.models import TokenCounts

# The stream events whose data the tap decodes; everything else is skipped unread.
_READ = frozenset(
    {
        b"message_start",
        b"message_delta",
        b"message_stop",
        b"content_block_start",
        b"error",
    }
)
MAX_EVENT = 1024 * 1024
MAX_JSON = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """What the tap learned from one answer."""

    message_id: str | None = None
    model: str | None = None
    usage: TokenCounts | None = None
    context_tokens: int = 0
    tool_use_ids: tuple[str, ...] = ()
    error_type: str | None = None
    complete: bool = False  # ``message_stop`` seen (stream) or a JSON message decoded


def _short(value: object) -> str | None:
    """An identifier-like string from the API (an id, a model, an error type), bounded."""
    if isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable():
        return value
    return None


class UsageTap:
    """Incremental parser of one answer (see the module docstring)."""

    def __init__(
        self,
        content_type: str,
        content_encoding: str = "",
        *,
        max_event: int = MAX_EVENT,
        max_json: int = MAX_JSON,
    ) -> None:
        self.sse = content_type.split(";", 1)[0].strip().lower() == "text/event-stream"
        self.max_event = max_event
        self.max_json = max_json
        encoding = content_encoding.strip().lower()
        self._inflate = zlib.decompressobj(wbits=47) if encoding in ("gzip", "deflate") else None
        self.blind = encoding not in ("", "identity", "gzip", "deflate")
        self.overflow = False  # an event or JSON body over its cap was skipped
        self._line = bytearray()
        self._skip_line = False  # the rest of the current line is unread data
        self._event: bytes | None = None
        self._data: list[bytes] = []
        self._body = bytearray()
        self._usage: dict[str, object] = {}
        self._message_id: str | None = None
        self._model: str | None = None
        self._tools: list[str] = []
        self._error: str | None = None
        self._complete = False

    # -- input ---------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the answer, exactly as relayed."""
        if self.blind or not chunk:
            return
        if self._inflate is not None:
            chunk = self._inflate.decompress(chunk)
        if not self.sse:
            if len(self._body) + len(chunk) > self.max_json:
                self.overflow = True
                self.blind = True
                self._body = bytearray()
                return
            self._body += chunk
            return
        self._lines(chunk)

    def _lines(self, chunk: bytes) -> None:
        start = 0
        end = len(chunk)
        while start < end:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                self._partial(chunk[start:])
                return
            if self._skip_line:
                self._skip_line = False
            elif self._line:
                self._line += chunk[start:newline]
                self._field(bytes(self._line))
                self._line.clear()
            else:
                self._field(chunk[start:newline])
            start = newline + 1

    def _partial(self, piece: bytes) -> None:
        """The unterminated end of a chunk: kept only when it may be a line the tap reads."""
        if self._skip_line:
            return
        unread = self._event is not None and self._event not in _READ
        if unread and not self._line and piece.startswith(b"data"):
            self._skip_line = True  # the data of an event the tap does not read: let it pass
            return
        if len(self._line) + len(piece) > self.max_event:
            self.overflow = True
            self._line.clear()
            self._skip_line = True
            self._data = []
            self._event = b"-overflow"
            return
        self._line += piece

    def _field(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            self._dispatch()
            return
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"event":
            self._event = value
        elif name == b"data" and (self._event is None or self._event in _READ):
            if sum(map(len, self._data)) + len(value) > self.max_event:
                self.overflow = True
                self._data = []
                self._event = b"-overflow"
            else:
                self._data.append(value)

    def _dispatch(self) -> None:
        event, data = self._event, self._data
        self._event, self._data = None, []
        if not data or (event is not None and event not in _READ):
            return
        try:
            decoded = orjson.loads(b"\n".join(data))
        except orjson.JSONDecodeError:
            return
        if isinstance(decoded, dict):
            self._event_object(decoded)

    def _event_object(self, event: dict[str, object]) -> None:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                self._message(message)
        elif kind == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, dict):
                # Later counts replace earlier ones; a count the delta leaves out is kept.
                self._usage.update({k: v for k, v in usage.items() if v is not None})
        elif kind == "content_block_start":
            block = event.get("content_block")
            if isinstance(block, dict):
                self._block(block)
        elif kind == "message_stop":
            self._complete = True
        elif kind == "error":
            self._error_of(event)

    def _message(self, message: dict[str, object]) -> None:
        self._message_id = _short(message.get("id"))
        self._model = _short(message.get("model"))
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._usage = dict(usage)

    def _block(self, block: dict[str, object]) -> None:
        if block.get("type") in ("tool_use", "server_tool_use"):
            tool_id = _short(block.get("id"))
            if tool_id is not None:
                self._tools.append(tool_id)

    def _error_of(self, body: dict[str, object]) -> None:
        error = body.get("error")
        kind = _short(error.get("type")) if isinstance(error, dict) else None
        self._error = kind[:64] if kind else "error"

    # -- output --------------------------------------------------------------------------------

    def answer(self) -> Answer:
        """What was learned; call once the answer has passed completely."""
        if self.blind:
            return Answer()
        if not self.sse:
            self._json()
        elif self._line and not self._skip_line:  # a last event without its blank line
            self._field(bytes(self._line))
            self._line.clear()
        if self.sse:
            self._dispatch()
        usage = self._usage
        counts = usage_counts(usage) if usage else None
        return Answer(
            message_id=self._message_id,
            model=self._model,
            usage=counts,
            context_tokens=context_of(usage, counts) if counts is not None else 0,
            tool_use_ids=tuple(self._tools),
            error_type=self._error,
            complete=self._complete,
        )

    def _json(self) -> None:
        body, self._body = bytes(self._body), bytearray()
        if self._inflate is not None:
            body += self._inflate.flush()
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if not isinstance(decoded, dict):
            return
        if decoded.get("type") == "error":
            self._error_of(decoded)
            return
        if decoded.get("type") != "message":
            return
        self._message(decoded)
        content = decoded.get("content")
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict):
                self._block(block)
        self._complete = True
