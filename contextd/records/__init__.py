"""Session history: one record per ended session, stored, collected and reported.

``model`` (the record schema), ``build`` (snapshot → record: hashes, branch SHA, cost),
``store`` (SQLite and PostgreSQL backends), ``spool`` (emitted marks and the forwarding
outbox), ``forward`` (delivery to a central contextd), ``service`` (the daemon's part),
``report`` (``contextd report`` and ``contextd history``).
"""
