"""Wait Pool's two optional rounds in mode ``overlap``: a missed-sign round and a per-box check round.

After the detection drawings are in, LeanEM's per-image and per-box risk picks the work:

* **missed_signs**: images whose ``expected_missed`` is above ``--missed_threshold`` get one task each in
  the missed-signs pool (the image, its current boxes read-only, a new worker adds what is missing); the
  additions join answers.csv with ``round = missed_signs``.
* **box_check**: output boxes whose score is in ``[--check_low, --check_high]`` get one task each in the
  box-check pool (overlap ``--checkers``); the verdicts go to checks.csv (``artifacts.CHECKS``).

One module per job: :mod:`.keys` (``box_key``, the one box identity), :mod:`.selection` (what to send and
what the budget allows), :mod:`.tasks` (the Toloka task inputs and the exactly-once creation),
:mod:`.collect` (answers as answers.csv / checks.csv rows), :mod:`.runner` (the order of it all).
"""

from crowdboxes.toloka.rounds.keys import box_key

__all__ = ["box_key"]
