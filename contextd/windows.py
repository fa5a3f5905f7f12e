"""Context-window sizes by model id.

Facts from Claude Code 2.1.330's model table (see shared/reference/claude-code-formats.md §2.2):
models from Opus 4.7 / Sonnet 5 / Haiku 5.5 on run with a native 1M window; older ones with 200k
unless ``[1m]`` is selected, which the transcript's ``message.model`` never shows. So a session
whose observed context exceeds the table's window is promoted to 1M by the session engine.
"""

from __future__ import annotations

DEFAULT_WINDOW = 200_000
LONG_WINDOW = 1_000_000

# Prefixes of API model ids that run with a native 1M window.
_NATIVE_1M_PREFIXES: tuple[str, ...] = (
    "claude-opus-4-7",
    "claude-opus-4-8",
    "claude-opus-5",
    "claude-sonnet-5",
    "claude-haiku-5-5",
    "claude-fable-5",
    "claude-mythos-5",
)


def window_for_model(model: str | None, default: int = DEFAULT_WINDOW) -> int:
    """Return the context window of ``model`` in tokens (``default`` when unknown)."""
    if not model:
        return default
    name = model.strip().lower()
    if name.endswith("[1m]"):
        return LONG_WINDOW
    # Bedrock/Vertex ids carry a vendor prefix ("us.anthropic.claude-…", "claude-…@2025…").
    core = name.rsplit(".", 1)[-1] if name.startswith(("us.", "eu.", "apac.", "global.")) else name
    core = core.removeprefix("anthropic.")
    if core.startswith(_NATIVE_1M_PREFIXES):
        return LONG_WINDOW
    return default


def promoted_window(window: int, observed_context: int) -> int:
    """The window to assume once a session has shown ``observed_context`` tokens of context."""
    if observed_context > window and window < LONG_WINDOW:
        return LONG_WINDOW
    return window
