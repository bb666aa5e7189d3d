"""Aggregate Boxes' logic: read the answers (and verdicts, and per-box checks), run an aggregator, write boxes.csv
and workers.csv.

``steps/aggregate_boxes.py`` parses the params into :class:`AggregateBoxesOptions` and calls
:func:`aggregate_boxes`. The methods themselves are :mod:`crowdboxes.aggregation`; this module turns the
step's CSVs into the frames they take (``image_id``, ``worker``, the box) and their results back.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crowdboxes.artifacts import (ANSWERS, BOXES, CHECKS, IMAGES_REVIEW, VERIFICATIONS, WAIT_SUMMARY, WORKERS,
                                  read_csv, read_images, require_numeric, write_csv)
from crowdboxes.cnvrg.metrics import cnvrg_tag, one_line
from crowdboxes.params import is_none
from crowdboxes.cnvrg.stepkit import output_dir
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import read_json

USED_STATUSES = ("SUBMITTED", "ACCEPTED")
KNOWN_STATUSES = USED_STATUSES + ("REJECTED",)
MAX_WARNINGS = 20


@dataclass(frozen=True)
class AggregateBoxesOptions:
    """Aggregate Boxes' params as ``steps/aggregate_boxes.py`` parses them (meanings and defaults are there)."""

    toloka_env: str
    token_env: str
    output_dir: str | None
    answers_csv: str
    images_csv: str
    method: str
    verifications_csv: str


def read_answers(path: str | Path) -> pd.DataFrame:
    """answers.csv with numeric boxes (empty = nothing drawn) and upper-case statuses, each one we know."""
    frame = read_csv(path, ANSWERS, dtype={"assignment_id": str, "task_id": str, "image_id": str,
                                           "worker_id": str, "status": str, "label": str})
    require_numeric(frame, path, ("x", "y", "w", "h"), allow_empty=True)
    status = frame["status"].astype(str).str.strip().str.upper()
    bad = ~status.isin(KNOWN_STATUSES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise CrowdboxesError(f"{path}: row {row + 2}, field 'status': {frame['status'].iloc[row]!r} is not one of "
                              f"{', '.join(KNOWN_STATUSES)}")
    frame["status"] = status
    return frame


def read_verifications(path: str | Path, answers: pd.DataFrame) -> pd.DataFrame:
    """Votes per drawing as the aggregators take them: ``image_id``, ``worker`` (the drawer), ok/bad votes."""
    frame = read_csv(path, VERIFICATIONS, dtype={"image_id": str, "assignment_id": str, "worker_id": str})
    require_numeric(frame, path, ("ok_votes", "bad_votes"))
    if "kind" in frame.columns:  # control tasks are scored against known boxes, not voted on
        frame = frame[frame["kind"].astype(str) != "control"]
    drawer = dict(zip(answers["assignment_id"], answers["worker_id"]))
    return pd.DataFrame({"image_id": frame["image_id"].to_numpy(),
                         "worker": [drawer.get(a, w) for a, w in zip(frame["assignment_id"], frame["worker_id"])],
                         "ok_votes": frame["ok_votes"].to_numpy(), "bad_votes": frame["bad_votes"].to_numpy()})


def read_checks(path: str | Path) -> pd.DataFrame:
    """checks.csv's usable rows (not REJECTED) as LeanEM takes them (``worker_id`` -> ``worker``); the index
    keeps each row's position in the file, for warnings."""
    frame = read_csv(path, CHECKS, dtype={"image_id": str, "box_id": str, "label": str, "worker_id": str,
                                          "verdict": str, "right_label": str, "assignment_id": str, "status": str})
    require_numeric(frame, path, ("x", "y", "w", "h"))
    status = frame["status"].astype(str).str.strip().str.upper()
    return frame[status != "REJECTED"].rename(columns={"worker_id": "worker"})


def require_usable_answers(path: str | Path, answers: pd.DataFrame, used: pd.DataFrame) -> None:
    """CrowdboxesError (one line, file and counts) when no answer row can be aggregated: a header-only file,
    or every row REJECTED. Nothing is written then: an empty boxes.csv would read as "no signs anywhere"."""
    if answers.empty:
        raise CrowdboxesError(f"{path}: no answer rows (header only): nothing to aggregate; did Wait Pool collect "
                              "any assignments?")
    if used.empty:
        raise CrowdboxesError(f"{path}: all {len(answers)} answer rows are REJECTED (0 SUBMITTED or ACCEPTED, "
                              f"{answers['assignment_id'].nunique()} assignments): nothing to aggregate")


def verifications_path(verifications_csv: str, answers_csv: str | Path) -> Path:
    """``--verifications_csv``, or (none) the verifications.csv beside answers.csv."""
    if is_none(verifications_csv):
        return VERIFICATIONS.path(Path(answers_csv).parent)
    return Path(verifications_csv)


def resolve_method(method: str, answers_csv: str | Path) -> str:
    """``auto``: best_verified after Wait Pool's mode verify (one accepted drawing per image leaves LeanEM
    nothing to compare; the verdicts rank the boxes), lean_em otherwise. The mode is read from the
    wait_summary.json beside answers.csv; without one, lean_em."""
    if method.strip().lower() != "auto":
        return method
    summary = WAIT_SUMMARY.path(Path(answers_csv).parent)
    data = read_json(summary, "wait summary") if summary.is_file() else None
    mode = data.get("mode") if isinstance(data, dict) else None
    return "best_verified" if mode == "verify" else "lean_em"


def workers_frame(answers: pd.DataFrame, used: pd.DataFrame, skills: pd.Series,
                  model: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per worker: images answered, skill, boxes drawn, empty answers, rejected assignments, and the
    aggregator's own per-worker estimates (``workers_``, e.g. lean_em's miss/false-positive rates)."""
    has_box = used[["x", "y", "w", "h"]].notna().all(axis=1)
    per_worker = pd.DataFrame({
        "answers": used.groupby("worker_id")[["assignment_id", "image_id"]].apply(
            lambda g: len(g.drop_duplicates())),
        "boxes": has_box.groupby(used["worker_id"]).sum(),
        "empty_answers": (~has_box).groupby(used["worker_id"]).sum(),
    })
    rejected = answers[answers["status"] == "REJECTED"].groupby("worker_id")["assignment_id"].nunique()
    workers = pd.Index(sorted(set(answers["worker_id"].astype(str))), name="worker_id")
    out = per_worker.reindex(workers)
    out["skill"] = skills.reindex(workers).astype(float)
    out["rejected_assignments"] = rejected.reindex(workers).fillna(0).astype(int)
    for column in ("answers", "boxes", "empty_answers"):
        out[column] = out[column].fillna(0).astype(int)
    out = out[["answers", "skill", "boxes", "empty_answers", "rejected_assignments"]]
    if isinstance(model, pd.DataFrame) and not model.empty:
        extra = model.drop(columns=[c for c in model.columns if c in out.columns or c == "images"])
        extra.index = extra.index.astype(str)
        out = out.join(extra, how="left")
    return out.reset_index()


def aggregator_frames(used: pd.DataFrame, images: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The answers and images as an aggregator's ``fit`` takes them."""
    frame = pd.DataFrame({"image_id": used["image_id"].to_numpy(), "worker": used["worker_id"].to_numpy(),
                          "x": used["x"].to_numpy(), "y": used["y"].to_numpy(), "w": used["w"].to_numpy(),
                          "h": used["h"].to_numpy(),
                          "label": used["label"].to_numpy(dtype=object, na_value=None)})
    if "round" in used.columns:  # missed-sign additions (LeanEM: their silence at shown boxes is no evidence)
        frame["round"] = used["round"].fillna("").astype(str).to_numpy()
    image_frame = images[["image_id", "width", "height"]]
    return frame, image_frame


def fit_options(aggregator: Any, method: str, options: AggregateBoxesOptions,
                answers: pd.DataFrame) -> dict[str, Any]:
    """Extra ``fit`` arguments the method asks for: the verification verdicts (best_verified), the per-box
    checks (lean_em, when checks.csv sits beside answers.csv; other methods ignore it with one warning)."""
    parameters = inspect.signature(aggregator.fit).parameters
    checks_file = CHECKS.path(Path(options.answers_csv).parent)
    if checks_file.is_file():
        if "checks" in parameters:
            return {"checks": read_checks(checks_file)}
        print(one_line(f"warning: --method {method} does not use per-box checks: {checks_file} ignored"),
              file=sys.stderr)
    if "verifications" not in parameters:
        return {}
    path = verifications_path(options.verifications_csv, options.answers_csv)
    if not path.is_file():
        raise CrowdboxesError(f"--method {method} needs the verification verdicts: {path} does not exist "
                              f"(run Wait Pool with --mode verify or overlap+verify, or pick another method)")
    return {"verifications": read_verifications(path, answers)}


REVIEW_SCORE = 0.5  # the boxes a user keeps by default (Export's --min_score)


def review_frame(boxes: pd.DataFrame, images: pd.DataFrame, risk: pd.DataFrame | None) -> pd.DataFrame:
    """images_review.csv (``artifacts.IMAGES_REVIEW``): per image, the riskiest first.

    ``n_boxes`` and ``min_score`` are of the boxes scored at least :data:`REVIEW_SCORE` (what Export keeps by
    default); ``expected_spurious`` = the sum of ``1 - score`` over them (a score is the probability that a box
    is right, so this is the expected number of wrong ones among them); ``expected_missed`` is the method's
    expected number of signs nobody drew (LeanEM's ``images_``; empty for methods that do not estimate it);
    ``risk`` is LeanEM's expected number of wrong, missing or mislabelled boxes, or ``expected_spurious`` for
    other methods. Ties keep images.csv's order.
    """
    kept = boxes[boxes["score"] >= REVIEW_SCORE].assign(image_id=lambda f: f["image_id"].astype(str))
    per_image = kept.groupby("image_id")["score"].agg(n_boxes="size", min_score="min",
                                                      expected_spurious=lambda s: float((1 - s).sum()))
    frame = images[["image_id", "file_name"]].astype({"image_id": str}).set_index("image_id")
    frame = frame.join(per_image, how="left")
    frame["n_boxes"] = frame["n_boxes"].fillna(0).astype(int)
    frame["expected_spurious"] = frame["expected_spurious"].fillna(0.0)
    if risk is not None and {"risk", "expected_missed"} <= set(risk.columns):
        by_image = risk.set_axis(risk.index.astype(str))
        frame["expected_missed"] = by_image["expected_missed"].reindex(frame.index)
        frame["risk"] = by_image["risk"].reindex(frame.index)
    else:
        frame["expected_missed"] = np.nan
        frame["risk"] = frame["expected_spurious"]
    frame = frame.reset_index().sort_values("risk", ascending=False, kind="stable", na_position="last")
    return frame[list(IMAGES_REVIEW.columns)]


def report_problems(problems: list[tuple[int, str]], used: pd.DataFrame, answers_csv: str) -> None:
    """A warning per skipped row (the first MAX_WARNINGS), naming its line in answers.csv."""
    csv_lines = used.index.to_numpy() + 2  # header is line 1
    for row, reason in problems[:MAX_WARNINGS]:
        print(one_line(f"warning: {answers_csv} line {int(csv_lines[row])}: {reason} (skipped)"), file=sys.stderr)
    if len(problems) > MAX_WARNINGS:
        print(one_line(f"warning: {len(problems) - MAX_WARNINGS} more skipped rows in {answers_csv}"), file=sys.stderr)


def aggregate_boxes(options: AggregateBoxesOptions) -> int:
    """Run the step: boxes.csv and workers.csv in the output folder, counts as cnvrg tags; exit code 0."""
    from crowdboxes.aggregation import get_aggregator

    method = resolve_method(options.method, options.answers_csv)
    try:
        aggregator = get_aggregator(method)
    except ValueError as exc:
        raise CrowdboxesError(f"--method: {exc}") from None
    answers = read_answers(options.answers_csv)
    images = read_images(options.images_csv)
    used = answers[answers["status"].isin(USED_STATUSES)]
    require_usable_answers(options.answers_csv, answers, used)
    out = output_dir(options.output_dir)  # made only once the inputs are known to be usable
    frame, image_frame = aggregator_frames(used, images)
    if method != "lean_em" and "round" in frame.columns and (frame["round"] == "missed_signs").any():
        print(f"warning: --method {method} counts the missed-sign round's additions as full drawings (the adder's "
              f"silence at the boxes shown counts against them); lean_em models them", file=sys.stderr)
    extra = fit_options(aggregator, method, options, answers)
    try:
        aggregator.fit(frame, image_frame, **extra)
    except ValueError as exc:  # a schema problem the method reports (row problems never raise)
        raise CrowdboxesError(f"--method {method}: {exc}") from None
    problems = sorted(aggregator.problems_)
    report_problems(problems, used, options.answers_csv)
    if "checks" in extra:
        report_problems(sorted(getattr(aggregator, "checks_problems_", [])), extra["checks"],
                        str(CHECKS.path(Path(options.answers_csv).parent)))

    boxes = aggregator.boxes_
    boxes = boxes[list(BOXES.columns) + [c for c in boxes.columns if c not in BOXES.columns]]
    write_csv(boxes, out, BOXES)
    workers = workers_frame(answers, used, aggregator.skills_, getattr(aggregator, "workers_", None))
    write_csv(workers, out, WORKERS)
    write_csv(review_frame(boxes, images, getattr(aggregator, "images_", None)), out, IMAGES_REVIEW)

    cnvrg_tag("boxes", len(boxes))
    cnvrg_tag("images_with_boxes", boxes["image_id"].nunique())
    cnvrg_tag("workers", len(workers))
    cnvrg_tag("problem_rows", len(problems))
    if "checks" in extra:
        cnvrg_tag("checks", len(extra["checks"]))
        cnvrg_tag("checks_skipped", int(getattr(aggregator, "checks_skipped_", 0)))
    print(f"aggregate_boxes ({method}): {len(used)} answer rows of {used['worker_id'].nunique()} workers "
          f"on {used['image_id'].nunique()} images -> {len(boxes)} boxes on {boxes['image_id'].nunique()} images"
          f" ({len(answers) - len(used)} rejected rows ignored, {len(problems)} skipped)", file=sys.stderr)
    return 0
