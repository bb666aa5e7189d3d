"""Toloka work, through toloka-kit: everything the flow asks of Toloka and what it costs.

* :mod:`.client`: the TolokaClient for production, sandbox or a URL (the local Toloka).
* :mod:`.projects`: projects and skills from ``configs/``, found again by their idempotency key
  (``ensure_*`` gets or creates, ``find_*`` only looks up).
* :mod:`.fields`: the detection and verification projects' field names and labels, read from their views.
* :mod:`.pools`: the detection and verification pools and their tasks.
* :mod:`.quality`: quality settings (verifiers, attempts, bans) and their checks.
* :mod:`.pricing`: Toloka's fee rules; :mod:`.spending`: money spent, estimates and the budget cap.
* :mod:`.known_boxes`: control images with known boxes, and scoring a worker's drawing against them.
* :mod:`.overlap`: adaptive overlap (more drawers only where the crowd disagrees).
* :mod:`.collection`: collecting answers exactly once (journal, cursor, wait loop, progress).
* :mod:`.verification`: the crowd-verification loop (verdicts, restart state, the loop, its runner).
"""
