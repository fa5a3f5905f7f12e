"""Who is at the other end of the daemon's unix socket: ``SO_PEERCRED`` into the ASGI scope.

uvicorn gives an ASGI app no socket, and reports no client address for a unix socket. The MCP
caller resolution (:mod:`contextd.mcp.resolve`) can still name the calling session there: the
kernel knows the peer's pid (``SO_PEERCRED`` on Linux, ``LOCAL_PEERPID`` on macOS), and that
process, or an ancestor, runs under a ``claude`` process. The daemon's HTTP protocol
(:class:`contextd.server.PeerCredHttpToolsProtocol`) reads the credentials once per connection
and puts them into each request's scope as ``extensions["contextd.peer"] = {"pid", "uid",
"gid"}`` (uid and gid are None where the platform does not tell them); over TCP nothing is
added. Standard library only: the stdio MCP server imports this too.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Any

PEER_EXTENSION = "contextd.peer"
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
# macOS <sys/un.h>: getsockopt(fd, SOL_LOCAL, LOCAL_PEERPID, ...) gives the peer's pid.
_SOL_LOCAL = 0
_LOCAL_PEERPID = 2


def peer_credentials(sock: Any) -> dict[str, int | None] | None:
    """``{"pid", "uid", "gid"}`` of the peer of the unix socket ``sock``; None for any other
    socket, or when the platform or the socket cannot tell."""
    if sock is None or getattr(sock, "family", None) != socket.AF_UNIX:
        return None
    try:
        if hasattr(socket, "SO_PEERCRED"):  # Linux
            pid, uid, gid = _UCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            )
            return {"pid": pid, "uid": uid, "gid": gid} if pid > 0 else None
        if sys.platform == "darwin":  # pragma: no cover (not run on the Linux CI)
            (pid,) = struct.unpack("i", sock.getsockopt(_SOL_LOCAL, _LOCAL_PEERPID, 4))
            return {"pid": pid, "uid": None, "gid": None} if pid > 0 else None
    except (OSError, struct.error):
        return None
    return None  # pragma: no cover (other platforms)


def scope_peer_pid(scope: Any) -> int | None:
    """The peer pid the daemon's protocol put into an ASGI ``scope``; None over TCP."""
    extensions = scope.get("extensions") if isinstance(scope, dict) else None
    peer = extensions.get(PEER_EXTENSION) if isinstance(extensions, dict) else None
    pid = peer.get("pid") if isinstance(peer, dict) else None
    return pid if isinstance(pid, int) and pid > 0 else None
