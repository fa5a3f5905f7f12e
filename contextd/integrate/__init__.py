"""Wiring contextd into Claude Code: ``install`` / ``uninstall`` (settings, MCP registration,
status line) and ``doctor`` (checks that wiring and the daemon)."""
