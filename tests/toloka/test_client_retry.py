"""The retry policy of every client the steps connect with: toloka-kit's, with a shorter backoff.

toloka-kit's default backoff factor 2 waits 4 s after the second 5xx in a row and 8 s after the third;
under 30 % 5xx the verify loop's hundreds of small calls made Wait Pool ~5x slower than clean (measured on
the local Toloka: 9.0 s clean, 45.9 s at 30 %; 17.1 s with this policy).
"""

from __future__ import annotations

from urllib3.exceptions import ResponseError

from crowdboxes.toloka.client import RETRY_BACKOFF_FACTOR, retryer


def test_five_retries_wait_0_1_2_4_8_seconds_and_5xx_and_429_are_retried():
    policy = retryer(5)
    waits = []
    for _ in range(5):
        policy = policy.increment(method="GET", url="/api/v1/pools/1", error=ResponseError("503"))
        waits.append(policy.get_backoff_time())
    assert RETRY_BACKOFF_FACTOR == 0.5 and waits == [0, 1.0, 2.0, 4.0, 8.0]
    assert {500, 503, 504, 429} <= set(policy.status_forcelist)
    assert "POST" in policy.allowed_methods and "PATCH" in policy.allowed_methods
