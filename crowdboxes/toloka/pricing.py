"""What one assignment costs the requester: Toloka's reward plus Toloka's fee.

Fee rules (Toloka's price list, the same in the local Toloka, :mod:`crowdboxes.local_toloka.models.base`):

* the requester pays per *assignment* (one task suite), never per task: a suite of 5 images at $0.05
  costs $0.05 plus fee, not 5 x $0.05;
* the fee is ``max(FEE_RATE * reward, MIN_FEE)``: 30 % of the reward, but at least $0.005;
* a pool's ``reward_per_assignment`` is at least ``MIN_REWARD`` ($0.005);
* only paid-or-payable assignments cost anything (ACCEPTED, and SUBMITTED ones that review or
  auto-accept will pay); rejected, expired and skipped ones cost nothing.

The rounds of mode overlap (per-box checks, missed signs) are priced from the drawing's reward by the
seconds their tasks take (:func:`check_price`, :func:`missed_sign_price`), in suites large enough that
the minimum fee is not more than 30 % of what the worker gets.

>>> round(toloka_fee(0.01), 4), round(toloka_fee(0.10), 4)
(0.005, 0.03)
>>> round(assignment_price(0.02), 4)
0.026
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from crowdboxes.errors import CrowdboxesError

FEE_RATE = 0.30
MIN_FEE = 0.005
MIN_REWARD = 0.005


def toloka_fee(reward: float) -> float:
    """Toloka's fee for one assignment paid ``reward``: 30 % of it, at least $0.005."""
    return max(FEE_RATE * float(reward), MIN_FEE)


def assignment_price(reward: float) -> float:
    """What one accepted (or submitted) assignment costs the requester: reward + fee."""
    return float(reward) + toloka_fee(reward)


# --- rewards of the rounds of mode overlap, derived from timings -------------------------------------------
# Seconds of work (the local crowd's timing model, crowdboxes.local_toloka.crowd.timing, uses the same
# figures; this module must not import it): a drawing is a look at the image plus 25 s per box; a per-box
# check is one choice on one shown box, 3-9 s (VERIFY_SECONDS), 6 s on average.
SECONDS_PER_IMAGE = 6.0
SECONDS_PER_BOX = 25.0
CHECK_SECONDS = 6.0
BOXES_PER_IMAGE = 1.5  # signs per image of the road-sign sample, the drawing's expected work
# An image reaches the missed-sign round because LeanEM expects a missed sign on it (above --missed_threshold,
# 0.1 by default), and most such images have none or one: half a box is the expected drawing on it.
MISSING_BOXES_PER_TASK = 0.5
REWARD_STEP = 0.001  # rewards are rounded up to a tenth of a cent


@dataclass(frozen=True)
class RoundPrice:
    """The reward of a round's assignment and the tasks in it, and what one task costs the requester."""

    reward: float  # USD per assignment (suite), without the fee
    tasks_per_suite: int
    task_reward: float  # the derived reward per task before rounding

    @property
    def price_per_task(self) -> float:
        """USD one task costs, Toloka's fee included (the suite's price shared by its tasks)."""
        return assignment_price(self.reward) / self.tasks_per_suite


def drawing_seconds(boxes_per_image: float = BOXES_PER_IMAGE) -> float:
    """Seconds one image's drawing takes: ``SECONDS_PER_IMAGE + SECONDS_PER_BOX * boxes_per_image`` (43.5 s)."""
    return SECONDS_PER_IMAGE + SECONDS_PER_BOX * float(boxes_per_image)


def _round_up(value: float, step: float = REWARD_STEP) -> float:
    return round(math.ceil(value / step - 1e-9) * step, 6)


def _priced(task_reward: float, min_tasks_per_suite: int) -> RoundPrice:
    """Suites of at least ``min_tasks_per_suite`` tasks, and enough of them that the minimum fee is no more
    than ``FEE_RATE`` of the suite's reward: ``n >= MIN_FEE / (FEE_RATE * task_reward)``."""
    if task_reward <= 0:
        raise CrowdboxesError(f"a round's reward per task must be positive (got {task_reward:g})")
    n = max(int(min_tasks_per_suite), 1, math.ceil(MIN_FEE / (FEE_RATE * task_reward) - 1e-9))
    return RoundPrice(max(_round_up(n * task_reward), MIN_REWARD), n, task_reward)


def check_price(drawing_reward: float, tasks_per_suite: int = 1, *, min_tasks_per_suite: int = 1,
                check_seconds: float = CHECK_SECONDS, boxes_per_image: float = BOXES_PER_IMAGE) -> RoundPrice:
    """The reward of a suite of per-box checks, priced as a fraction of a drawing by their time.

    A drawing pays :math:`R_d = R / n_d` per image (``drawing_reward`` R per suite of ``tasks_per_suite``
    :math:`n_d` images) for :math:`t_d` = :func:`drawing_seconds` of work; a check takes :math:`t_c` =
    ``check_seconds``, so it pays at the same hourly rate

    .. math:: r_c = R_d \\, t_c / t_d .

    Toloka charges each assignment ``max(FEE_RATE * reward, MIN_FEE)``: a lone check of a few tenths of a
    cent would pay the $0.005 minimum fee, several times its reward. Checks therefore go in suites of
    :math:`n \\ge` MIN_FEE / (FEE_RATE r_c) (and at least ``min_tasks_per_suite``, the pool config's
    ``real_tasks_count``), where the fee is the plain 30 %. The suite's reward :math:`n r_c` is rounded
    up to $0.001.

    >>> price = check_price(0.05)  # $0.05 per drawn image: 43.5 s, so a 6 s check is worth $0.0069
    >>> round(price.task_reward, 5), price.tasks_per_suite, price.reward
    (0.0069, 3, 0.021)
    >>> price = check_price(0.05, min_tasks_per_suite=10)  # the shipped box_check_pool.json: 10 per suite
    >>> price.tasks_per_suite, price.reward, round(price.price_per_task, 5)
    (10, 0.069, 0.00897)
    """
    per_image = float(drawing_reward) / max(1, int(tasks_per_suite))
    return _priced(per_image * float(check_seconds) / drawing_seconds(boxes_per_image), min_tasks_per_suite)


def missed_sign_price(drawing_reward: float, tasks_per_suite: int = 1, *, min_tasks_per_suite: int = 1,
                      missing_boxes: float = MISSING_BOXES_PER_TASK,
                      boxes_per_image: float = BOXES_PER_IMAGE) -> RoundPrice:
    """The reward of a missed-sign task: a drawing of the missing signs only, priced by its time.

    The worker looks at the image (``SECONDS_PER_IMAGE``), compares it with the boxes already shown (one
    more look, ``SECONDS_PER_IMAGE``) and draws the ``missing_boxes`` expected to be missing
    (``SECONDS_PER_BOX`` each): :math:`t_m = 2 t_{img} + 25 m` = 24.5 s for m = 0.5, so with
    :math:`t_d` = :func:`drawing_seconds` the task pays :math:`r_m = R_d \\, t_m / t_d`, 56 % of a
    drawing at the defaults. Suites as in :func:`check_price` (one image per suite clears the minimum fee
    at any usual drawing reward).

    >>> price = missed_sign_price(0.05)
    >>> round(price.task_reward, 5), price.tasks_per_suite, price.reward
    (0.02816, 1, 0.029)
    """
    per_image = float(drawing_reward) / max(1, int(tasks_per_suite))
    seconds = 2 * SECONDS_PER_IMAGE + SECONDS_PER_BOX * float(missing_boxes)
    return _priced(per_image * seconds / drawing_seconds(boxes_per_image), min_tasks_per_suite)
