"""The simulated crowd behind the local Toloka: workers who answer any project by its task spec.

Parameters follow box-aggregation.md section 5.3 (measured on real Toloka crowd boxes and the
literature). For a worker *w* and a true box of width *W* and height *H*:

* **Edge noise.** Each edge moves by :math:`\\varepsilon \\sim N(b_w s S,\\ \\sqrt{\\sigma_{px}^2 + (\\sigma_w S)^2})`
  with :math:`S = W` for x-edges, :math:`S = H` for y-edges, :math:`s = -1` for left/top and :math:`+1` for
  right/bottom (so :math:`b_w > 0` is a looser box), and the standard deviation times 1.4 on the right/bottom
  edges (the drag direction). :math:`\\sigma_{px} \\approx 1`-1.5 px is a pixel floor
  (measured on 640 px images; times the image's long side / 640 for smaller images, at least 0.5, because
  they are enlarged on screen);
  :math:`\\sigma_w \\sim U(0.012, 0.025)` for careful workers (Toloka's best-of-crowd is 0.017), 0.04-0.06 for
  sloppy ones; :math:`b_w \\sim N(0.01, 0.015)` (careful) or :math:`N(0.03, 0.02)` (sloppy).
* **Misses.** :math:`p_{miss,w} \\sim Beta(2, 18)` (mean 0.10), doubled for small boxes
  (:math:`\\sqrt{WH} < 32` px, the COCO "small" bucket), and times :math:`1 + 2.5 h` for a sign with a
  hidden fraction :math:`h` (annotation ``visible`` = 1 - h; ``occluded`` without it counts as h = 0.2,
  i.e. x1.5); the
  ``small_misser`` skips most small signs (0.5-0.8).
* **Gross errors** (box on the wrong object or wildly off, IoU < 0.5): 3-5 % of medium/large boxes,
  2.5 times that (about 10 %) for small ones.
* **False positives:** Poisson(:math:`\\lambda_w`) per image, :math:`\\lambda_w \\sim Gamma(1, 0.1)`; mostly
  small squares (sign-like clutter), some larger rectangles.
* **Class label:** correct with probability ~N(0.9, 0.05); a wrong label is mostly a related class
  (:data:`RELATED_CLASSES`).
* **Spammers:** ``spammer_empty`` submits nothing; ``spammer_random`` submits 1 + Poisson(2) random boxes;
  ``verifier_always_ok`` draws like a sloppy worker and says OK to every outline.
* **Verification** (:func:`judge_outlines`): the true verdict (BAD with a reason if a sign of at least
  :data:`NOTICEABLE_PX` is missed, an outline is on nothing, a box is loose, or a class is wrong) is given
  with the worker's accuracy (careful ~0.9, sloppy ~0.75); spammers answer at random.
* **Per-box check** (:mod:`.checking`): one box shown on its image, options yes / no sign / loose / wrong
  class (recognised by value or label: yes|ok|correct|tight, no_sign|nothing|not_a_sign, loose|not_tight,
  wrong_class|wrong_type), optionally the right class. True state against the truth: no sign with IoU >=
  :data:`ON_OBJECT_IOU` -> ``no_sign``; IoU < :data:`LOOSE_IOU` -> ``loose``; another class -> ``wrong_class``;
  else ``yes``. A worker gives it with their ``verify_accuracy``; an erring worker says ``yes`` with
  probability :data:`YES_BIAS` = 0.6 when that is wrong (else one of the other wrong answers uniformly), and
  one of the three "no" answers uniformly on a right box. The right class: the true one with
  ``class_accuracy``, else uniform over the other classes. ``verifier_always_ok`` says yes, ``spammer_empty``
  the first option, ``spammer_random`` anything.
* **Missed signs** (:mod:`.adding`): an image with boxes shown read-only and an editable drawing; the worker
  draws, with the drawing kernel above, only the true signs no shown box covers (one-to-one match at IoU >=
  :data:`ON_OBJECT_IOU`), false positives at :data:`ADDITION_FP_SHARE` = 0.3 of their rate; nothing missing
  gives an empty drawing.
* **Time** (:func:`seconds_for`, :mod:`.timing`): about 25 s per box drawn plus a look at the image, 3-9 s per
  verification or choice, ~4 s + 0.35 s per character of text, 40-90 s to find a link; ``slow`` workers take
  3 times as long, spammers a fraction.
* **Any project** (:class:`Crowd`, :mod:`.answering`): each answer follows the project's task spec (output
  types, options, view labels and shapes, patterns); drawings and judgements use the model above, choices,
  texts and links the truth's image-level ``label``/``labels``/``text``/``link`` or its ``tasks`` (format in
  :mod:`.truth`) with each worker's accuracy, and anything the truth does not cover gets a valid, uninformed
  answer.

:func:`simulate_answers` is the vectorised bulk version (answers.csv rows) for the aggregation benchmark;
:func:`draw_boxes` runs the same kernel for one worker and one image, so both agree by construction. Likewise
:func:`simulate_additions` (missed-sign rows, ``round`` = ``missed_signs``) and :func:`simulate_checks`
(checks.csv-like verdicts) for the two later rounds, on the kernels of the online tasks.

Modules: :mod:`.workers` (profiles, workforce), :mod:`.boxes` (the drawing kernel, bulk answers),
:mod:`.judging` (verdicts on shown shapes), :mod:`.checking` (per-box checks), :mod:`.adding` (missed signs),
:mod:`.timing` (seconds per kind of task), :mod:`.images` (fetch, decode, cache), :mod:`.truth` (the crowd's
own COCO truth reader; its docstring has the format), :mod:`.matching` (the crowd's own IoU matcher),
:mod:`.spec` / :mod:`.values` (a project's task spec and valid values), :mod:`.viewrefs` / :mod:`.choices`
(what a TB view adds; options matched to classes and words), :mod:`.answering` (:class:`Crowd`: the answer to
one task from its spec). Nothing here imports the product (``crowdboxes`` outside
``crowdboxes.local_toloka``): the simulator must not share its idea of a right answer with the code it tests.
"""

from __future__ import annotations

from crowdboxes.local_toloka.crowd.adding import ADDITION_FP_SHARE, ADDITIONS_ROUND, draw_additions, simulate_additions
from crowdboxes.local_toloka.crowd.answering import LOGGER, Crowd, solve_accepts_spec, task_kind
from crowdboxes.local_toloka.crowd.boxes import (
    ANSWER_COLUMNS, SMALL_PX, draw_boxes, normalised_rects, simulate_answers, to_image_annotation)
from crowdboxes.local_toloka.crowd.checking import CHECK_COLUMNS, CHECK_VERDICTS, YES_BIAS, simulate_checks
from crowdboxes.local_toloka.crowd.classes import CLASS_NAMES, RELATED_CLASSES, RELATED_SHARE
from crowdboxes.local_toloka.crowd.judging import (
    LOOSE_IOU, NOTICEABLE_PX, ON_OBJECT_IOU, VERDICT_REASONS, judge_outlines, parse_shapes, true_verdict)
from crowdboxes.local_toloka.crowd.matching import iou_matrix, match, to_normalised, to_pixels
from crowdboxes.local_toloka.crowd.timing import (
    EXPECTED_BOXES_PER_TASK, SECONDS_PER_BOX, SECONDS_PER_IMAGE, VERIFY_SECONDS, seconds_for)
from crowdboxes.local_toloka.crowd.truth import Truth, TruthError, load_truth
from crowdboxes.local_toloka.crowd.workers import DEFAULT_MIX, KINDS, WorkerProfile, make_workforce

__all__ = ["ADDITIONS_ROUND", "ADDITION_FP_SHARE", "ANSWER_COLUMNS", "CHECK_COLUMNS", "CHECK_VERDICTS",
           "CLASS_NAMES", "Crowd", "DEFAULT_MIX", "EXPECTED_BOXES_PER_TASK", "KINDS", "LOGGER", "LOOSE_IOU",
           "NOTICEABLE_PX", "ON_OBJECT_IOU", "RELATED_CLASSES", "RELATED_SHARE", "SECONDS_PER_BOX",
           "SECONDS_PER_IMAGE", "SMALL_PX", "Truth", "TruthError", "VERDICT_REASONS", "VERIFY_SECONDS",
           "WorkerProfile", "YES_BIAS", "draw_additions", "draw_boxes", "iou_matrix", "judge_outlines", "load_truth",
           "make_workforce", "match", "normalised_rects", "parse_shapes", "seconds_for", "simulate_additions",
           "simulate_answers", "simulate_checks", "solve_accepts_spec", "task_kind", "to_image_annotation",
           "to_normalised", "to_pixels", "true_verdict"]
