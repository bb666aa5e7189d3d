"""The retry policy of every client the steps connect with: toloka-kit's statuses and methods, short first
waits (scattered 5xx) and long later ones (an outage, a streak of 8 failures).

toloka-kit's default backoff factor 2 waits 4 s after the second 5xx in a row and 8 s after the third;
under 30 % 5xx the verify loop's hundreds of small calls made Wait Pool ~5x slower than clean (measured on
the local Toloka: 9.0 s clean, 45.9 s at 30 %).
"""

from __future__ import annotations

import pytest
from urllib3.exceptions import MaxRetryError, ResponseError

from crowdboxes.toloka.client import RETRIES, retryer


def test_ten_retries_wait_short_then_long_and_5xx_and_429_are_retried():
    policy = retryer(RETRIES)
    waits = []
    for _ in range(RETRIES):
        policy = policy.increment(method="GET", url="/api/v1/pools/1", error=ResponseError("503"))
        waits.append(policy.get_backoff_time())
    assert waits == pytest.approx([0, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 15.0, 15.0])
    assert sum(waits[:8]) < 30 and sum(waits) > 50  # a streak of 8 costs 25 s; an outage of ~55 s is ridden
    with pytest.raises(MaxRetryError):  # the 11th failure in a row is the caller's
        policy.increment(method="GET", url="/api/v1/pools/1", error=ResponseError("503"))
    assert {500, 503, 504, 429} <= set(policy.status_forcelist)
    assert "POST" in policy.allowed_methods and "PATCH" in policy.allowed_methods
