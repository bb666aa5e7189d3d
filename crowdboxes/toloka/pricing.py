"""What one assignment costs the requester: Toloka's reward plus Toloka's fee.

Fee rules (Toloka's price list, the same in the local Toloka, :mod:`crowdboxes.local_toloka.models.base`):

* the requester pays per *assignment* (one task suite), never per task: a suite of 5 images at $0.05
  costs $0.05 plus fee, not 5 x $0.05;
* the fee is ``max(FEE_RATE * reward, MIN_FEE)``: 30 % of the reward, but at least $0.005;
* a pool's ``reward_per_assignment`` is at least ``MIN_REWARD`` ($0.005);
* only paid-or-payable assignments cost anything (ACCEPTED, and SUBMITTED ones that review or
  auto-accept will pay); rejected, expired and skipped ones cost nothing.

>>> round(toloka_fee(0.01), 4), round(toloka_fee(0.10), 4)
(0.005, 0.03)
>>> round(assignment_price(0.02), 4)
0.026
"""

from __future__ import annotations

FEE_RATE = 0.30
MIN_FEE = 0.005
MIN_REWARD = 0.005


def toloka_fee(reward: float) -> float:
    """Toloka's fee for one assignment paid ``reward``: 30 % of it, at least $0.005."""
    return max(FEE_RATE * float(reward), MIN_FEE)


def assignment_price(reward: float) -> float:
    """What one accepted (or submitted) assignment costs the requester: reward + fee."""
    return float(reward) + toloka_fee(reward)
