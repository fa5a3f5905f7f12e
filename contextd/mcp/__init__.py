"""contextd as an MCP server: session-aware tools Claude Code can call.

* :mod:`contextd.mcp.resolve` — which Claude Code session is calling (pure logic);
* :mod:`contextd.mcp.backend` — the :class:`Backend` protocol and :class:`DaemonBackend`;
* :mod:`contextd.mcp.outputs` — the tools' structured outputs;
* :mod:`contextd.mcp.server` — :func:`build_mcp` (tools, resources, prompt, middleware) and
  :func:`http_app` (streamable HTTP, mounted at ``/mcp`` by ``contextd serve``).
"""

from __future__ import annotations

from contextd.mcp.backend import Backend, DaemonBackend, ReadOnlyError
from contextd.mcp.server import build_mcp, http_app

__all__ = ["Backend", "DaemonBackend", "ReadOnlyError", "build_mcp", "http_app"]
