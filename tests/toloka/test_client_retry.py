"""The retry policy of every client the steps connect with: toloka-kit's statuses and methods, short first
waits (scattered 5xx) and long later ones (an outage, a streak of 8 failures); and ``keep_found``, the object a
create settles on when retries made more than one.

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


def test_keep_found_uses_the_first_found_and_archives_every_other_one():
    """Two lost replies in a row made projects 21 and 22 before 23 was answered: 21 is used, 22 and 23 are
    archived; an object made but not listed yet is archived too; a skill (no archive) is left unused."""
    from types import SimpleNamespace as Obj

    from crowdboxes.toloka.client import keep_found

    archived, lines = [], []
    made = [Obj(id=str(i)) for i in (21, 22, 23)]
    assert keep_found(made[2], made, archive=archived.append, what="pool", log=lines.append) is made[0]
    assert archived == ["22", "23"]
    assert lines == ["pool: 21 already existed (a lost reply's retry or a rival run made more); using 21; "
                     "22: archived; 23: archived"]
    archived.clear()
    assert keep_found(Obj(id="24"), made[:1], archive=archived.append, what="pool", log=lines.append) is made[0]
    assert archived == ["24"]
    assert keep_found(made[0], made[:1], archive=archived.append, what="pool", log=lines.append) is made[0]
    assert keep_found(made[0], [], archive=archived.append, what="pool", log=lines.append) is made[0]
    assert archived == ["24"] and len(lines) == 2

    def refuse(object_id):
        raise RuntimeError("busy")

    keep_found(made[1], made[:2], archive=refuse, what="pool", log=lines.append)
    keep_found(made[1], made[:2], archive=None, what="skill", log=lines.append)
    assert lines[2].endswith("22: could not archive it (Toloka refused (RuntimeError))"), lines[2]
    assert lines[3].endswith("22: left unused")
