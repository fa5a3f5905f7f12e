"""A live ``contextd serve`` with three sessions made through its own API (status lines), for
the fallback tests and the tmux smoke test. The sessions are driven with the helpers of
``tests/test_live_scrape.py``, so both suites feed the daemon the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.served import Served
from tests.test_live_scrape import OPUS, Plan, send

SESSIONS = (
    Plan("d-60", 200_000, OPUS, (120_000,), (), warn=(0, 0), critical=(0, 0)),
    Plan("d-92", 200_000, OPUS, (150_000, 184_000), (), warn=(1, 1), critical=(1, 1)),
    Plan("d-75", 200_000, OPUS, (150_000,), (), warn=(1, 1), critical=(0, 0)),
)
FULLEST = SESSIONS[1]


def project(plan: Plan) -> str:
    """The project the daemon derives from the session's cwd."""
    return Path(plan.cwd).name


@dataclass(frozen=True)
class LiveDaemon:
    served: Served

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.served.port}"

    @property
    def socket(self) -> Path:
        return self.served.socket


def start_daemon(tmp: Path, port: int | None = None) -> LiveDaemon:
    served = Served(tmp, port=port)
    served.start()
    try:
        for plan in SESSIONS:
            send(served, plan, plan.before)
    except BaseException:
        served.stop()
        raise
    return LiveDaemon(served)
