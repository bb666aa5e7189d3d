"""Wait Pool: wait until the detection pool is done, collecting every answer on the way.

Polls Toloka every ``--poll_seconds`` and appends each new or changed assignment of the detection
pool to ``wait_pool_journal.jsonl`` in the output folder (fsynced), so a re-run after a crash or a
timeout resumes from there and ends with the same ``answers.csv`` as an uninterrupted run. When the
pool is done (closed as COMPLETED/EXPIRED/MANUAL, or no task has overlap left) every submitted
assignment is read once more and the rectangles are converted to pixels. With ``--mode`` including
``verify`` (pool.csv), the verification loop (crowdboxes.toloka.verification) drives the wait instead.

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
  The Toloka token comes from the environment variable named by --token_env.
Outputs (in --output_dir):
  answers.csv        assignment_id, task_id, image_id, worker_id, status, submitted_at, label, x, y, w, h
                     (pixels; one row with empty label/box when a worker drew nothing), pool_id
  wait_summary.json  pools, counts, spent money, start/end time, duration, timed_out, detection_fields (the
                     detection project's image input and output field names and its labels, read from Toloka)
  wait_pool_journal.jsonl  the resumable collection state (append-only)
  adaptive_overlap.json    with --max_overlap: the overlap target per image (restart state)
  stdout: ``cnvrg_linechart_Progress``/``cnvrg_linechart_Spent`` per poll and ``cnvrg_tag_*`` at the end.
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

import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crowdboxes.toloka import collection as ans  # noqa: E402
from crowdboxes.artifacts import ANSWERS, IMAGES, POOL, TASKS, read_csv, require_numeric, write_csv  # noqa: E402
from crowdboxes.toloka.quality import VERDICT_METHODS  # noqa: E402
from crowdboxes.cnvrg.stepkit import StepError, output_dir, run_step, step_parser  # noqa: E402
from crowdboxes.files import write_text_atomic  # noqa: E402
from crowdboxes.cnvrg.metrics import cnvrg_tag

SUMMARY_NAME = "wait_summary.json"


def _none_or(convert):
    def parse(value: str):
        if value is None or str(value).strip().lower() in {"none", ""}:
            return None
        return convert(value)

    parse.__name__ = convert.__name__
    return parse


def build_parser():
    parser = step_parser("wait_pool", "Wait for the detection pool and collect its answers.")
    parser.add_argument("--projects_csv", type=_none_or(str), default="/input/create_project/output/projects.csv")
    parser.add_argument("--images_csv", default="/input/upload_images/output/images.csv")
    parser.add_argument("--pool_csv", default="/input/launch_pool/output/pool.csv")
    parser.add_argument("--tasks_csv", default="/input/launch_pool/output/tasks.csv")
    parser.add_argument("--poll_seconds", type=float, default=60.0)
    parser.add_argument("--timeout_hours", type=_none_or(float), default=None)
    parser.add_argument("--cursor_lag_seconds", default="auto",
                        help="how far behind now the event cursors read (Toloka is eventually consistent)")
    parser.add_argument("--verdict_method", choices=VERDICT_METHODS, default="majority")
    parser.add_argument("--verifiers", type=int, default=3)
    parser.add_argument("--max_attempts", type=int, default=3)
    parser.add_argument("--budget", type=_none_or(float), default=None)
    parser.add_argument("--max_overlap", type=_none_or(int), default=None,
                        help="mode overlap: raise an uncertain image's overlap up to this (none: fixed overlap)")
    parser.add_argument("--risk_threshold", type=float, default=0.3,
                        help="mode overlap with --max_overlap: expected box errors above which an image gets "
                             "one more drawer")
    return parser


def _adaptive_wanted(args, pools, detection, mode) -> bool:
    """Whether to run adaptive overlap; refuses impossible settings before anything is read from Toloka."""
    if args.max_overlap is None:
        return False
    if mode != "overlap":
        print(f"warning: --max_overlap is for mode overlap; mode {mode} redraws by verification instead",
              file=sys.stderr)
        return False
    overlap = int(pools.loc[detection.name, "overlap"])
    if args.max_overlap < overlap:
        raise StepError(f"--max_overlap {args.max_overlap} is below the pool's overlap {overlap} "
                        f"({args.pool_csv}); use at least {overlap}, or none for a fixed overlap")
    if args.risk_threshold < 0:
        raise StepError(f"--risk_threshold {args.risk_threshold}: must be 0 or more (expected box errors per image)")
    return True


def _overlap_controller(args, client, pools, detection, tasks, images, out, fields):
    """The adaptive-overlap controller (mode overlap with --max_overlap)."""
    from crowdboxes.toloka.overlap import OverlapController
    from crowdboxes.toloka.spending import BudgetGuard, reserve, slot_price

    reward = float(pools.loc[detection.name, "reward_per_assignment"])
    guard = None
    if args.budget is not None:
        guard = BudgetGuard(client, args.budget)
        guard.add_pool(str(detection["pool_id"]), reward)
        reserve(client, guard, str(detection["pool_id"]), slot_price(reward), cut=False)
    return OverlapController(client, str(detection["pool_id"]), tasks, images, out, args.max_overlap,
                             args.risk_threshold, guard=guard, unit_price=slot_price(reward),
                             output_field=fields.output)


def _cursor_lag(value: str, toloka_env: str) -> float:
    if value == "auto":
        return 60.0 if toloka_env in ("production", "sandbox") else 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        raise StepError(f"--cursor_lag_seconds {value!r}: expected a number of seconds or auto") from None


def _pool_row(pools, role: str, path):
    rows = pools[pools["role"].astype(str).str.startswith(role)]
    if len(rows) > 1:
        raise StepError(f"{path}: {len(rows)} rows with role {role!r}, expected one")
    return None if rows.empty else rows.iloc[0]


def _control_set(tasks_csv):
    """Known boxes of control images: Launch Pool copies --control_csv beside tasks.csv as control.csv."""
    path = Path(tasks_csv).parent / "control.csv"
    if not path.is_file():
        return None
    from crowdboxes.toloka.known_boxes import load_control_csv

    return load_control_csv(path)


def read_pools(path):
    """(detection row, verification row or None, mode) from pool.csv."""
    pools = read_csv(path, POOL, dtype={"pool_id": str, "project_id": str})
    detection = _pool_row(pools, "detection", path)
    if detection is None:
        raise StepError(f"{path}: no row with role 'detection'")
    verification = _pool_row(pools, "verification", path)
    if "mode" in pools.columns and str(detection.get("mode", "")).strip() not in ("", "nan"):
        mode = str(detection["mode"]).strip()
    else:
        mode = "overlap+verify" if verification is not None else "overlap"
    if "verify" in mode and verification is None:
        raise StepError(f"{path}: mode {mode!r} needs a row with role 'verification'")
    return pools, detection, verification, mode


def total_spent(outcome, collector, pool_id) -> float:
    """USD spent: the verification loop's figure covers both pools, else the accepted detection assignments."""
    if getattr(outcome, "spent_usd", None) is not None:
        return float(outcome.spent_usd)
    return sum(collector.spent_estimate(pool_id))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.poll_seconds <= 0:
        raise StepError(f"--poll_seconds {args.poll_seconds}: must be positive")
    out = output_dir(args.output_dir)
    pools, detection, verification, mode = read_pools(args.pool_csv)
    pool_id = str(detection["pool_id"])
    require_numeric(pools, args.pool_csv, ("tasks", "overlap"))
    tasks = read_csv(args.tasks_csv, TASKS, dtype={"task_id": str, "pool_id": str, "image_id": str})
    images = require_numeric(read_csv(args.images_csv, IMAGES, dtype={"image_id": str}), args.images_csv,
                             ("width", "height"))
    expected = int(pools.loc[detection.name, "tasks"] * pools.loc[detection.name, "overlap"])
    lag = _cursor_lag(args.cursor_lag_seconds, args.toloka_env)
    adaptive = _adaptive_wanted(args, pools, detection, mode)

    from crowdboxes.toloka.client import connect

    from crowdboxes.toloka.fields import fields_from_toloka

    client = connect(args.toloka_env, args.token_env)
    # the detection project's field names, as Toloka has the project the pool runs on (a re-run of this
    # step alone, with a fresh output folder, finds them again the same way)
    fields = fields_from_toloka(client, detection["project_id"])
    started_wall, started = ans.now_utc(), time.monotonic()
    deadline = started + args.timeout_hours * 3600 if args.timeout_hours is not None else None
    collector = ans.AnswerCollector(client, [pool_id], out, lag_seconds=lag, image_field=fields.image_input)
    if collector.resumed:
        print(f"wait_pool: resuming from {collector.journal.path} "
              f"({len(collector.snapshots)} assignments collected before)", file=sys.stderr, flush=True)
    progress = ans.Progress(expected, f"wait_pool {pool_id}")
    controller = None
    try:
        if "verify" in mode:
            from crowdboxes.toloka.verification import run_verification_loop

            outcome = run_verification_loop(
                client, detection_pool_id=pool_id, verification_pool_id=str(verification["pool_id"]),
                collector=collector, progress=progress, tasks=tasks, images=images, projects_csv=args.projects_csv,
                output_dir=out, poll_seconds=args.poll_seconds, deadline=deadline,
                verdict_method=args.verdict_method, verifiers=args.verifiers, max_attempts=args.max_attempts,
                budget=args.budget, control=_control_set(args.tasks_csv), fields=fields)
        else:
            if adaptive:
                controller = _overlap_controller(args, client, pools, detection, tasks, images, out, fields)
                expected = progress.total = controller.expected_answers
            outcome = ans.wait_for_pool(client, pool_id, collector, progress, poll_seconds=args.poll_seconds,
                                        deadline=deadline, expected_answers=expected, controller=controller)
        # the final state of every assignment, with no lag (the last events may be inside the lag window)
        collector.rescan()
        final = collector.counts(pool_id)
        progress.update(final["task_answers"], final, total_spent(outcome, collector, pool_id), outcome.state)
    except (Exception, KeyboardInterrupt) as exc:
        # whatever broke the wait, what was collected so far still reaches answers.csv
        if isinstance(exc, (StepError, KeyboardInterrupt)):
            message = str(exc) or "interrupted"
        else:
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        frame, _ = ans.answers_frame(collector.records(pool_id), tasks, images, output_field=fields.output)
        write_csv(frame, out, ANSWERS)
        raise StepError(f"wait_pool: {message} (the {len(collector.snapshots)} assignments collected so far are "
                        f"in {out / ANSWERS.file_name}; re-run with the same --output_dir to resume)") from None
    finally:
        progress.close()

    frame, problems = ans.answers_frame(collector.records(pool_id), tasks, images, output_field=fields.output)
    write_csv(frame, out, ANSWERS)
    counts = collector.counts(pool_id)
    rewards, fees = collector.spent_estimate(pool_id)
    spent = total_spent(outcome, collector, pool_id)
    finished_wall = ans.now_utc()
    summary = {
        "pool_ids": {"detection": pool_id, **({"verification": str(verification["pool_id"])} if verification is not None
                                              else {})},
        "mode": mode,
        # for Export (no Toloka access): the project's output and image fields and its labels
        "detection_fields": fields.as_dict(),
        "counts": counts,
        "answer_rows": int(len(frame)),
        "images_answered": int(frame["image_id"].nunique()),
        "images_accepted": int(frame.loc[frame["status"] == "ACCEPTED", "image_id"].nunique()),
        "expected_task_answers": expected,
        "spent_usd": round(spent, 4),
        "detection_reward_usd": round(rewards, 4),
        "detection_fee_usd": round(fees, 4),
        # Toloka's own figure for the detection pool (documented as rewards without the fee)
        "toloka_spent_budget_usd": ans.spent_from_analytics(client, pool_id) if outcome.done else None,
        "pool_state": outcome.state,
        **({"adaptive_overlap": {
            "max_overlap": controller.max_overlap, "risk_threshold": controller.risk_threshold,
            "raises": controller.raises, "refused_by_budget": len(controller.refused),
            "mean_overlap": round(float(controller.targets.mean()), 3)}} if controller is not None else {}),
        "timed_out": not outcome.done,
        "polls": outcome.polls,
        "problems": problems[:100],
        "problem_count": len(problems),
        "first_started_at": collector.first_started,
        "started_at": ans.iso(started_wall),
        "finished_at": ans.iso(finished_wall),
        "duration_seconds": round(time.monotonic() - started, 1),
    }
    write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    for problem in problems[:10]:
        print(f"warning: {problem}", file=sys.stderr)
    if len(problems) > 10:
        print(f"warning: {len(problems) - 10} more problems in {SUMMARY_NAME}", file=sys.stderr)
    for key in ("submitted", "accepted", "rejected"):
        cnvrg_tag(key, counts[key])
    cnvrg_tag("answer_rows", len(frame))
    cnvrg_tag("spent_usd", summary["spent_usd"])
    cnvrg_tag("wait_seconds", summary["duration_seconds"])
    if not outcome.done:
        raise StepError(f"wait_pool: timed out after {args.timeout_hours} h with pool {pool_id} {outcome.state}: "
                        f"{counts['task_answers']}/{expected} answers collected, written to "
                        f"{out / ANSWERS.file_name}; re-run with the same --output_dir to resume")
    print(f"wait_pool: pool {pool_id} done ({outcome.state}): {counts['submitted']} assignments, "
          f"{len(frame)} answer rows, spent ${summary['spent_usd']:.2f} in {summary['duration_seconds']:.0f} s",
          file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_step(main))
