"""contextd: context-window telemetry for every Claude Code session on a machine."""

__version__ = "0.1.0"
