"""The optional API proxy (``contextd serve --proxy``): see :mod:`contextd.proxy.app`.

``ANTHROPIC_BASE_URL=http://127.0.0.1:<proxy_port>`` points a client at it; every API call is
relayed to the upstream API unchanged, and its usage, session and user are read on the way
(:mod:`contextd.proxy.tap`, :mod:`contextd.proxy.telemetry`) into the daemon's engine.
"""
