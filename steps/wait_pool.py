"""Wait Pool: wait until the detection pool is done, collecting every answer on the way.

Polls Toloka every ``--poll_seconds`` and appends each new or changed assignment of the detection
pool to ``wait_pool_journal.jsonl`` in the output folder (fsynced), so a re-run after a crash or a
timeout resumes from there and ends with the same ``answers.csv`` as an uninterrupted run. When the
pool is done (closed as COMPLETED/EXPIRED/MANUAL, or no task has overlap left) every submitted
assignment is read once more and the rectangles are converted to pixels. With ``--mode`` including
``verify`` (pool.csv), the verification loop (crowdboxes.toloka.verification) drives the wait instead.
The logic lives in crowdboxes.steps.wait_pool; this script parses the params and calls it.

Inputs:
  --pool_csv     pool.csv of Launch Pool (role ``detection`` row; optional ``verification`` row, ``mode``)
  --tasks_csv    tasks.csv of Launch Pool (task_id -> image_id)
  --images_csv   images.csv of Upload Images (width, height of each image)
  --projects_csv projects.csv of Create Project (passed to the verification loop)
  --poll_seconds, --timeout_hours (``none`` = wait forever), --cursor_lag_seconds (``auto``: 60 on
  Toloka, 1 on a local URL); for verification: --verdict_method, --verifiers, --max_attempts, --budget
  --max_overlap (mode overlap; none = fixed): Lean-Crowdsourcing-style adaptive overlap. Each image whose
  answers are all in is aggregated (LeanEM over everything collected); if its expected number of box
  errors is above --risk_threshold (default 0.3) its task overlap is raised by one, up to --max_overlap,
  within --budget when given. Launch with a small --overlap (e.g. 2) and --max_overlap 5.
  Rounds (mode overlap; each runs only when pool.csv has its row, i.e. Launch Pool's --rounds; refused in
  verify modes), after the detection pool is done: --missed_threshold (default 0.1, expected missed signs
  per image; none: off) picks the images for the missed-sign round (one new worker adds what is missing);
  --check_low/--check_high (default 0.05/0.97) the boxes for the check round, --checkers (default 1) per box.
  Each round spends at most its pool.csv row's estimated_cost (and what --budget leaves after the other
  pools); a re-run creates and pays nothing twice.
  Re-runs and concurrent runs: the exactly-once state is read back from Toloka when --output_dir is fresh
  (drawings, decisions and redraws from the pools' tasks and assignments); a pool this step completed is
  marked finished in its metadata, and a later run collects its answers and buys nothing. One run at a time
  per pool: a lease in the pool's metadata (plus a lock file on this machine); a second run waits up to
  --lease_wait_seconds (default 360, longer than the 300 s a killed run's lease lasts) and then stops in
  one line naming the run that holds it.
  The Toloka token comes from the environment variable named by --token_env.
Outputs (in --output_dir):
  answers.csv        assignment_id, task_id, image_id, worker_id, status, submitted_at, label, x, y, w, h
                     (pixels; one row with empty label/box when a worker drew nothing), pool_id; with
                     rounds also round (drawing | missed_signs)
  checks.csv         with a check round: image_id, box_id, label, x, y, w, h, worker_id, verdict (yes |
                     no_sign | loose | wrong_class), right_label, assignment_id, status, submitted_at
  wait_summary.json  pools, counts, spent money, start/end time, duration, timed_out, detection_fields (the
                     detection project's image input and output field names and its labels, read from Toloka);
                     with rounds a rounds section: per round tasks made, answers, money spent, skipped for budget
  wait_pool_journal.jsonl  the resumable collection state (append-only)
  rounds/<round>/wait_pool_journal.jsonl  each round's collection state
  adaptive_overlap.json    with --max_overlap: the overlap target per image (restart state)
  stdout: ``cnvrg_linechart_Progress``/``cnvrg_linechart_Spent`` per poll (key: minutes since the start; a
          round's points in group '<round>') and ``cnvrg_tag_*`` at the end.
  stderr: a progress line per poll: done/total, rate per minute, ETA, counts, spent and projected spend.
Sample command:
  toloka_token=... python steps/wait_pool.py --toloka_env http://127.0.0.1:8765 \
      --pool_csv out/launch_pool/pool.csv --tasks_csv out/launch_pool/tasks.csv \
      --images_csv out/upload_images/images.csv --poll_seconds 5 --timeout_hours 2 --output_dir out/wait_pool
Troubleshooting:
  * "timed out ... re-run to resume": the answers so far are in answers.csv; run the step again with
    the same --output_dir and it continues where it stopped.
  * A pool closed for NOT_ENOUGH_BALANCE or BLOCKED is not done: top up / fix it in Toloka and the
    step carries on (it keeps polling until --timeout_hours).
  * Answers on tasks missing from tasks.csv are skipped and counted in wait_summary.json ``problems``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crowdboxes.cnvrg.stepkit import StepArgumentParser, run_step, step_parser  # noqa: E402

from crowdboxes.params import none_or, none_or_value, number_type  # noqa: E402
from crowdboxes.steps.wait_pool import WaitPoolOptions, wait_pool  # noqa: E402
from crowdboxes.toloka.rounds.runner import RoundSettings  # noqa: E402
from crowdboxes.toloka.quality import VERDICT_METHODS  # noqa: E402


def build_parser() -> StepArgumentParser:
    """Wait Pool's params (the flow YAML passes each as ``--key value``)."""
    parser = step_parser("wait_pool", "Wait for the detection pool and collect its answers.")
    parser.add_argument("--projects_csv", type=none_or_value, default="/input/create_project/output/projects.csv",
                        help="projects.csv of Create Project (skill ids for the verification loop; none: unused)")
    parser.add_argument("--images_csv", default="/input/upload_images/output/images.csv",
                        help="images.csv of Upload Images (width, height of each image)")
    parser.add_argument("--pool_csv", default="/input/launch_pool/output/pool.csv",
                        help="pool.csv of Launch Pool (detection row; optional verification row and mode)")
    parser.add_argument("--tasks_csv", default="/input/launch_pool/output/tasks.csv",
                        help="tasks.csv of Launch Pool (task_id -> image_id); control.csv is read beside it")
    parser.add_argument("--poll_seconds", type=number_type("poll_seconds", minimum=0.01), default=60.0,
                        help="seconds between two polls of Toloka")
    parser.add_argument("--timeout_hours", type=none_or(float), default=None,
                        help="give up after this long (answers so far are kept; re-run to resume); none: wait forever")
    parser.add_argument("--cursor_lag_seconds", default="auto",
                        help="how far behind now the event cursors read (Toloka is eventually consistent)")
    parser.add_argument("--verdict_method", choices=VERDICT_METHODS, default="majority",
                        help="mode with verify: how verifiers' votes become a verdict")
    parser.add_argument("--verifiers", type=int, default=3, help="mode with verify: verifiers per drawing")
    parser.add_argument("--max_attempts", type=int, default=3,
                        help="mode with verify: drawings of one image before it is given up")
    parser.add_argument("--budget", type=none_or(float), default=None,
                        help="USD cap, fees included, over the step's pools (none: no cap)")
    parser.add_argument("--max_overlap", type=none_or(int), default=None,
                        help="mode overlap: raise an uncertain image's overlap up to this (none: fixed overlap)")
    parser.add_argument("--risk_threshold", type=float, default=0.3,
                        help="mode overlap with --max_overlap: expected box errors above which an image gets "
                             "one more drawer")
    parser.add_argument("--missed_threshold", type=none_or(float), default=RoundSettings.missed_threshold,
                        help="mode overlap, with a missed_signs row in pool.csv: images whose expected number of "
                             "missed signs (LeanEM, signs per image) is above this get a missed-sign task; "
                             "none: no missed-sign round")
    parser.add_argument("--check_low", type=float, default=RoundSettings.check_low,
                        help="mode overlap, with a box_check row in pool.csv: output boxes scored (0..1) from "
                             "--check_low to --check_high (inclusive) get a per-box check task")
    parser.add_argument("--check_high", type=float, default=RoundSettings.check_high,
                        help="the upper end of --check_low's score band (0..1, inclusive)")
    parser.add_argument("--lease_wait_seconds", type=float, default=360.0,
                        help="another run of Wait Pool on the same pool holds its lease: wait this long for it, "
                             "then stop in one line naming it (0: refuse at once)")
    parser.add_argument("--checkers", type=int, default=RoundSettings.checkers, help="checkers (workers) per checked box")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the params and run the step's logic (crowdboxes.steps.wait_pool)."""
    return wait_pool(WaitPoolOptions(**vars(build_parser().parse_args(argv))))


if __name__ == "__main__":
    raise SystemExit(run_step(main))
