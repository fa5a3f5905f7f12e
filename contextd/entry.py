"""The ``contextd`` console script. ``statusline`` and ``hook`` run on Claude Code's hot path:
they are dispatched here, before :mod:`contextd.cli` and its imports are loaded."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # keeps typing out of the status line's start-up
if TYPE_CHECKING:
    from collections.abc import Sequence

LEAN_COMMANDS = frozenset({"statusline", "hook"})


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in LEAN_COMMANDS:
        from contextd import statusline  # noqa: PLC0415

        code = statusline.main(args)
        if argv is None:  # the console script: nothing left to clean up
            statusline.exit_now(code)
        return code
    from contextd import cli  # noqa: PLC0415

    return cli.main(args)
