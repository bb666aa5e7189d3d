"""The verification round: every drawing is judged by other workers, then accepted or redrawn.

Toloka's road-sign recipe (toloka-kit's object-detection notebook), made restartable. One module per job:

* :mod:`~crowdboxes.toloka.verification.verdicts`: OK/BAD votes aggregated per drawing (an exact tie is
  BAD) and the comments a drawer is told;
* :mod:`~crowdboxes.toloka.verification.state`: the ledger and the cursor positions in the state folder
  (exactly once across restarts);
* :mod:`~crowdboxes.toloka.verification.loop`: the handlers and decisions (:class:`VerificationLoop`)
  and the outcome; :mod:`~crowdboxes.toloka.verification.stalls`: the stall warnings;
* :mod:`~crowdboxes.toloka.verification.rebuild`: the ledger read back from Toloka when the state folder
  is fresh (a re-run in a new cnvrg output folder), so a re-run buys nothing twice;
* :mod:`~crowdboxes.toloka.verification.streaming`: toloka-kit's streaming glue (imports toloka-kit);
* :mod:`~crowdboxes.toloka.verification.runner`: :func:`run_verification_loop` and its settings,
  :class:`VerificationRun`.

The verification pool itself is built by :mod:`crowdboxes.toloka.pools` (``ensure_verification_pool``).
"""

from crowdboxes.toloka.verification.loop import LoopOutcome, VerificationLoop
from crowdboxes.toloka.verification.stalls import StallWatch
from crowdboxes.toloka.verification.runner import VerificationRun, run_verification_loop, skill_ids_from_projects
from crowdboxes.toloka.verification.verdicts import aggregate_verdicts

__all__ = ["LoopOutcome", "StallWatch", "VerificationLoop", "VerificationRun", "aggregate_verdicts",
           "run_verification_loop", "skill_ids_from_projects"]
