"""Known sessions for the monitor's tests, as timestamped Prometheus text for VictoriaMetrics.

Seven sessions are sampled every minute over the 30 minutes up to ``T0`` (a fixed instant in
the past: the monitor's clock is set to it, so nothing depends on the wall clock). Their
usage ramps linearly from ``start`` to ``end`` percent, so a sparkline has a known shape.
The figures are chosen for the edges: exactly 90 % (CRITICAL), exactly 70 % (WARNING), 69.9 %
(OK), a 1M window, and a 70 % crossing in the last minute (a non-zero crossing rate).
Session ids do not sort like usage, so an order that comes out right was not alphabetical.
"""

from __future__ import annotations

from dataclasses import dataclass

from contextd.exporters import names
from contextd.monitor.data import State

T0 = 1_767_229_200  # 2026-01-01T01:00:00Z
STEP = 60
STAMPS = tuple(T0 - 1800 + STEP * i for i in range(31))
USER = "0123456789abcdef"
OPUS = "claude-opus-4-6"
OPUS_1M = "claude-opus-4-6[1m]"
SONNET = "claude-sonnet-4-5"


@dataclass(frozen=True)
class Plan:
    session_id: str
    project: str
    model: str
    window: int
    start: float  # percent at STAMPS[0]
    end: float  # percent at STAMPS[-1] (= T0)
    state: State  # the badge at T0
    checkpoints: int = 0
    saved: int = 0
    duration: float = 600.0
    warn: int = 0
    critical: int = 0
    warn_from: int = 0  # index of the first stamp where the 70 % counter has its value

    def percent(self, i: int = len(STAMPS) - 1) -> float:
        return round(self.start + (self.end - self.start) * i / (len(STAMPS) - 1), 3)

    def tokens(self, i: int = len(STAMPS) - 1) -> int:
        return round(self.percent(i) * self.window / 100)

    @property
    def history(self) -> list[float]:
        return [self.percent(i) for i in range(len(STAMPS))]


PLANS = (
    Plan("0a7e-notes", "notes", SONNET, 200_000, 10, 10, State.OK),
    Plan("1c44-api", "api", SONNET, 200_000, 90, 90, State.CRITICAL, checkpoints=1,
         saved=30_000, duration=3_000, warn=1, critical=1),
    Plan("2b9d-docs", "docs", OPUS_1M, 1_000_000, 69.9, 69.9, State.OK, duration=7_300),
    Plan("3e01-web", "web", SONNET, 200_000, 30, 30, State.OK),
    Plan("7f3a-payments", "payments", OPUS, 200_000, 80, 95, State.CRITICAL, checkpoints=2,
         saved=160_000, duration=5_400, warn=1, critical=1),
    Plan("8d20-search", "search", OPUS, 200_000, 55, 70, State.WARNING, warn=1, warn_from=30),
    Plan("9a55-infra", "infra", OPUS, 200_000, 40, 50, State.OK, duration=45),
)  # fmt: skip
# Usage accounting: costs of live sessions ("b0b0-payments" has a cost series only, so the
# project "payments" sums two sessions), and the gauges of an active block whose non-cache
# burn rate (750/min) is MODERATE.
COSTS = {"7f3a-payments": 4.5, "8d20-search": 2.0, "1c44-api": 1.25, "b0b0-payments": 0.75}
PROJECT_COSTS = {"payments": 5.25, "search": 2.0, "api": 1.25}
BLOCK = {
    names.BLOCK_ACTIVE: 1, names.BLOCK_TOKENS: 1_234_567, names.BLOCK_COST: 12.5,
    names.BLOCK_BURN_RATE: 20_000.0, names.BLOCK_NON_CACHE_BURN_RATE: 750.0,
    names.BLOCK_PROJECTED_TOKENS: 3_000_000, names.BLOCK_PROJECTED_COST: 30.25,
    names.BLOCK_REMAINING: 5400.0,
}  # fmt: skip
RANKED = tuple(sorted(PLANS, key=lambda p: -p.percent()))
TOP5 = RANKED[:5]


def _labels(plan: Plan) -> str:
    return (f'session_id="{plan.session_id}",project="{plan.project}",model="{plan.model}",'
            f'user="{USER}"')  # fmt: skip


def scrape(i: int, plans: tuple[Plan, ...] = PLANS) -> str:
    """What the daemon would expose at ``STAMPS[i]`` (text format, no timestamps)."""
    lines = []
    for plan in plans:
        values = {
            names.CONTEXT_PERCENT: plan.percent(i),
            names.CONTEXT_TOKENS: plan.tokens(i),
            names.CONTEXT_WINDOW: plan.window,
            names.THRESHOLD_70: plan.warn if i >= plan.warn_from else 0,
            names.THRESHOLD_90: plan.critical,
            names.CHECKPOINTS: plan.checkpoints,
            names.TOKENS_SAVED: plan.saved,
            names.DURATION: plan.duration,
        }
        lines += [f"{m.name}{{{_labels(plan)}}} {v}" for m, v in values.items()]
    lines.append(f"{names.ACTIVE_SESSIONS.name} {len(plans)}")
    for sid, cost in COSTS.items():
        project = sid.split("-", 1)[1]
        lines.append(f'{names.COST.name}{{session_id="{sid}",project="{project}",'
                     f'model="{OPUS}",user="{USER}"}} {cost}')  # fmt: skip
    lines += [f"{metric.name} {value}" for metric, value in BLOCK.items()]
    return "\n".join(lines) + "\n"


def exposition(plans: tuple[Plan, ...] = PLANS, stamps: tuple[int, ...] = STAMPS) -> str:
    """Every series of ``plans`` at every stamp, each line with its own millisecond time.

    With ``stamps`` past ``STAMPS``, the sessions keep their values at ``T0``.
    """
    return "".join(
        f"{line} {at * 1000}\n"
        for i, at in enumerate(stamps)
        for line in scrape(min(i, len(STAMPS) - 1), plans).splitlines()
    )
