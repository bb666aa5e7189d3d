"""Progress of a wait: a tqdm bar on a terminal, else one log line per poll; cnvrg line charts on stdout.

Each update reports, besides ``done`` of ``total``, the pace measured since the first update
(a resumed wait starts with what earlier runs collected, which is no measure of the pace):

.. math::

    r = 60 \\, \\frac{d - d_0}{t - t_0} \\quad \\text{(per minute)}, \\qquad
    \\mathrm{ETA} = \\frac{T - d}{r}, \\qquad
    \\hat{S} = S \\, \\frac{\\max(T, d)}{d}

with :math:`(t_0, d_0)` the clock and count at the first update, :math:`T` the total and :math:`S` the money
spent so far (the projected spend scales it to the expected total). The cnvrg charts ``Progress`` (percent)
and ``Spent`` (USD) take the minutes since ``origin`` as their ``key`` (cnvrg's x value), so cnvrg plots
them against time rather than poll number.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from crowdboxes.cnvrg.metrics import cnvrg_linechart


@dataclass(frozen=True)
class Pace:
    """What one update adds to the counts: the rate (per minute), the ETA (seconds), the projected spend (USD).

    Each is None while it cannot be known yet (no progress measured, total unknown, nothing done).
    """

    rate_per_minute: float | None
    eta_seconds: float | None
    projected_usd: float | None


def pace(done: int, total: int | None, spent_usd: float, now: float,
         first: tuple[float, int] | None) -> Pace:
    """Rate since ``first`` = (clock, done) of the first update, the ETA at that rate, the projected spend.

    The math is in the module docstring. ``now`` and ``first[0]`` are seconds of the same clock.
    """
    rate = None
    if first is not None and now > first[0] and done > first[1]:
        rate = 60.0 * (done - first[1]) / (now - first[0])
    eta = None
    if total is not None:
        if done >= total:
            eta = 0.0
        elif rate is not None:
            eta = 60.0 * (total - done) / rate
    projected = spent_usd * max(total, done) / done if total is not None and done > 0 else None
    return Pace(rate, eta, projected)


def duration_text(seconds: float | None) -> str:
    """``?``, ``40 s``, ``12 min`` or ``3 h 05 min`` (rounded to the second or minute)."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """A tqdm bar on stderr (only on a terminal), else one line per poll; cnvrg line charts on stdout.

    ``total`` and ``unit`` may change mid-wait (adaptive overlap raises the total; the verification
    loop counts images instead of answers: the rate is measured afresh from a change of unit).
    ``clock`` gives seconds (tests inject one); ``origin`` is the clock reading the charts' time key
    counts from (default: now), so the rounds' charts continue the detection pool's time axis;
    ``group`` names the charts' series (e.g. a round's role; None: the chart's only series).
    """

    def __init__(self, total: int | None, label: str, stream: TextIO | None = None, unit: str = "answers", *,
                 clock: Callable[[], float] = time.monotonic, origin: float | None = None,
                 group: str | None = None) -> None:
        self.total, self.label, self.unit, self.group = total, label, unit, group
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self.origin = self.started if origin is None else origin
        self.first: tuple[float, int] | None = None  # (clock, done) of the first update in self.first_unit
        self.first_unit = unit
        self.bar: Any = None
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit=unit.split()[0], file=self.stream, dynamic_ncols=True)

    def percent(self, done: int) -> float:
        """``done`` as a percentage of the total (0 while the total is unknown)."""
        return round(min(100.0, 100.0 * done / self.total), 2) if self.total else 0.0

    def update(self, done: int, counts: dict[str, int], spent_usd: float, state: str) -> Pace:
        """Show ``done`` of the total, the pace, the assignment ``counts``, the money spent and the pool's state."""
        now = self.clock()
        if self.first is None or self.unit != self.first_unit:
            self.first, self.first_unit = (now, done), self.unit
        step = pace(done, self.total, spent_usd, now, self.first)
        pct = self.percent(done)
        unit = self.unit.split()[0]
        rate = "?" if step.rate_per_minute is None else f"{step.rate_per_minute:.1f}"
        projected = "?" if step.projected_usd is None else f"${step.projected_usd:.2f}"
        if self.bar is not None:
            self.bar.total, self.bar.unit = self.total, unit  # both may change mid-wait
            self.bar.n = min(done, self.total or done)
            self.bar.set_postfix(accepted=counts["accepted"], rejected=counts["rejected"],
                                 spent=f"${spent_usd:.2f}", projected=projected, eta=duration_text(step.eta_seconds),
                                 state=state, refresh=False,
                                 **({"banned": counts["banned"]} if "banned" in counts else {}))
            self.bar.refresh()
        else:
            total = self.total if self.total is not None else "?"
            print(f"{self.label}: {done}/{total} {self.unit} ({pct:.1f}%), {rate} {unit}/min, "
                  f"ETA {duration_text(step.eta_seconds)}, submitted {counts['submitted']}, "
                  f"accepted {counts['accepted']}, rejected {counts['rejected']}, spent ${spent_usd:.2f} "
                  f"(projected {projected}), "
                  + (f"workers banned {counts['banned']}, " if "banned" in counts else "")
                  + f"pool {state}, {duration_text(now - self.started)}", file=self.stream, flush=True)
        minutes = round((now - self.origin) / 60.0, 2)
        cnvrg_linechart("Progress", pct, key=minutes, group=self.group)
        cnvrg_linechart("Spent", round(spent_usd, 4), key=minutes, group=self.group)
        return step

    def close(self) -> None:
        """Close the bar (a no-op for log lines)."""
        if self.bar is not None:
            self.bar.close()
