"""Sources: adapters that turn what Claude Code writes into observations for the engine."""
