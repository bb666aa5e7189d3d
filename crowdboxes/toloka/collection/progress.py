"""Progress of a wait: a tqdm bar on a terminal, else one log line per poll; cnvrg line charts on stdout."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from crowdboxes.cnvrg.metrics import cnvrg_linechart


class Progress:
    """A tqdm bar on stderr (only on a terminal), else one line per poll; cnvrg line charts on stdout.

    ``total`` and ``unit`` may change mid-wait (adaptive overlap raises the total; the verification
    loop counts images instead of answers).
    """

    def __init__(self, total: int | None, label: str, stream: TextIO | None = None, unit: str = "answers") -> None:
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.bar: Any = None
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit=unit.split()[0], file=self.stream, dynamic_ncols=True)

    def percent(self, done: int) -> float:
        """``done`` as a percentage of the total (0 while the total is unknown)."""
        return round(min(100.0, 100.0 * done / self.total), 2) if self.total else 0.0

    def update(self, done: int, counts: dict[str, int], spent_usd: float, state: str) -> None:
        """Show ``done`` of the total, the assignment ``counts``, the money spent and the pool's state."""
        pct = self.percent(done)
        if self.bar is not None:
            self.bar.total, self.bar.unit = self.total, self.unit.split()[0]  # both may change mid-wait
            self.bar.n = min(done, self.total or done)
            self.bar.set_postfix(accepted=counts["accepted"], rejected=counts["rejected"],
                                 spent=f"${spent_usd:.2f}", state=state, refresh=False,
                                 **({"banned": counts["banned"]} if "banned" in counts else {}))
            self.bar.refresh()
        else:
            total = self.total if self.total is not None else "?"
            print(f"{self.label}: {done}/{total} {self.unit} ({pct:.1f}%), submitted {counts['submitted']}, "
                  f"accepted {counts['accepted']}, rejected {counts['rejected']}, spent ${spent_usd:.2f}, "
                  + (f"workers banned {counts['banned']}, " if "banned" in counts else "")
                  + f"pool {state}, {time.monotonic() - self.started:.0f} s", file=self.stream, flush=True)
        cnvrg_linechart("Progress", pct)
        cnvrg_linechart("Spent", round(spent_usd, 4))

    def close(self) -> None:
        """Close the bar (a no-op for log lines)."""
        if self.bar is not None:
            self.bar.close()
