"""Manual review: decisions on SUBMITTED assignments, applied to Toloka by ``python -m crowdboxes decide``.

With ``--auto_accept false`` (mode overlap) Wait Pool collects SUBMITTED assignments and decides nothing; the
requester decides, within the pool's review period (``auto_accept_period_day``, after which Toloka accepts
by itself). One module per job:

* :mod:`.policy`: the ``disagree`` policy, decisions.csv from answers.csv and the aggregate (boxes.csv);
* :mod:`.apply`: decisions.csv applied to Toloka, idempotent, with a summary of the money released and kept;
* :mod:`.sync`: answers.csv with each status as Toloka has it now (decided here, by hand, or by the review's end);
* :mod:`.cli`: the ``decide`` command.
"""
