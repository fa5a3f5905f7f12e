"""The exceptions contextd raises on purpose.

::

    ContextdError                 base of everything below
    ├── ConfigError               bad settings, option or environment value (CLI exit 2)
    │   ├── ConfigDirError        a transcript root that does not exist or cannot be read
    │   └── OptionError           a bad ``contextd usage`` option / ``/api/usage`` parameter
    │       └── NotKeptError      a valid period the daemon no longer keeps (HTTP 422)
    ├── StoreError                the SQLite store cannot be opened, migrated or written
    │   ├── SchemaVersionError    the database was written by a newer contextd
    │   └── StoreLockedError      another process (the daemon) is the database's writer
    ├── TranscriptError           a transcript file cannot be read (not: a bad line, which is
    │                             counted and skipped, never raised)
    └── SourceError               a data source of a client (PromQL backend, the daemon's API)
        ├── SourceUnreachableError    nothing answers: refused, no socket, timeout, DNS
        └── QueryError                it answered, but with an error (bad PromQL, 4xx/5xx,
                                      a body that is not what the API promises)
    └── UpstreamError             the API proxy's upstream failed (contextd.proxy.client)
        ├── UpstreamTimeoutError      no connection, or nothing read, within its timeout
        ├── UpstreamUnreachableError  the connection was refused or failed (TLS included)
        └── UpstreamBrokenError       the answer broke off or is not HTTP/1.1

Library code raises these; only ``contextd.cli`` turns them into messages and exit codes.
"""

from __future__ import annotations


class ContextdError(Exception):
    """Base class of every error contextd raises deliberately."""


class ConfigError(ContextdError):
    """A setting, option or environment value is invalid."""


class ConfigDirError(ConfigError):
    """A configured Claude Code directory does not exist or cannot be read."""


class OptionError(ConfigError):
    """A usage option or query parameter is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"--{field.replace('_', '-')}: {message}")
        self.field = field
        self.detail = message


class NotKeptError(OptionError):
    """The period asked for starts before the usage entries the daemon keeps (its horizon)."""


class StoreError(ContextdError):
    """The state database cannot be opened, migrated or written."""


class SchemaVersionError(StoreError):
    """The database schema is newer than this contextd understands."""


class StoreLockedError(StoreError):
    """Another process holds the database's writer lock."""


class TranscriptError(ContextdError):
    """A transcript file cannot be opened or read."""


class SourceError(ContextdError):
    """A data source a client reads (a PromQL backend, the daemon's JSON API) failed."""


class SourceUnreachableError(SourceError):
    """Nothing answered at the source's address (refused, no socket, timed out)."""


class QueryError(SourceError):
    """The source answered, but with an error or with a body the API does not promise."""


class UpstreamError(ContextdError):
    """The API proxy's upstream failed; the proxy answers 502/504, or cuts a started stream."""


class UpstreamTimeoutError(UpstreamError):
    """No connection within the connect timeout, or nothing read within the read timeout."""


class UpstreamUnreachableError(UpstreamError):
    """The upstream refused or failed the connection."""


class UpstreamBrokenError(UpstreamError):
    """The upstream's answer broke off, or was not HTTP/1.1."""
