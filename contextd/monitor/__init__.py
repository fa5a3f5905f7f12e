"""``contextd monitor``: a live terminal view of every session's context, built on PromQL.

``data`` turns PromQL (or, as a fallback, the daemon's JSON API) into typed snapshots; ``app``
and ``widgets`` draw them with Textual. Only ``app`` and ``widgets`` import Textual, and only
``command`` imports ``app``, lazily, when a terminal UI is asked for.
"""
