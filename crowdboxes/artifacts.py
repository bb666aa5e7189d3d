"""Every file a step reads or writes: the product's public contract.

Each :class:`Contract` names a CSV file and its columns. Columns may be added in later versions, never
renamed or removed. Readers check required columns and report the file, row and field of a bad value.
Each :class:`Artifact` names a non-CSV file (JSON summaries, restart state, exports). A step finds
every file through these declarations, never by a literal name of its own.

Every CSV the product writes goes through :func:`write_frame_csv` (``write_csv`` for the contracts): a text
cell that a spreadsheet would run as a formula is written with a leading ``'`` (:func:`crowdboxes.files.escape_cell`),
and :func:`read_csv` undoes it, so a file named ``=1+2.jpg`` reads back as itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import CELL_ESCAPE, atomic_path, escape_cell, unescape_cell


@dataclass(frozen=True)
class Contract:
    file_name: str
    columns: tuple[str, ...]

    def path(self, folder: str | os.PathLike) -> Path:
        return Path(folder) / self.file_name


PROJECTS = Contract("projects.csv", ("role", "toloka_id", "key", "name"))
IMAGES = Contract("images.csv", ("image_id", "file_name", "url", "width", "height", "sha256"))
REJECTED_IMAGES = Contract("rejected_images.csv", ("file_name", "reason"))
POOL = Contract("pool.csv", ("pool_id", "role", "project_id", "tasks", "overlap", "reward_per_assignment",
                             "estimated_cost"))
TASKS = Contract("tasks.csv", ("task_id", "pool_id", "image_id", "url"))
# answers.csv may carry an optional column ``round``: ``drawing`` (first-round drawings) or ``missed_signs``
# (boxes added in the missed-sign round); a file without it holds drawings only.
ANSWERS = Contract("answers.csv", ("assignment_id", "task_id", "image_id", "worker_id", "status",
                                   "submitted_at", "label", "x", "y", "w", "h"))
# The per-box check round's answers, beside answers.csv: one row per check of one output box. ``box_id`` is
# crowdboxes.toloka.rounds' box_key(image_id, label, x, y, w, h); ``verdict`` is yes | no_sign | loose |
# wrong_class; ``right_label`` is the class the checker chose with wrong_class, else empty.
CHECKS = Contract("checks.csv", ("image_id", "box_id", "label", "x", "y", "w", "h", "worker_id", "verdict",
                                 "right_label", "assignment_id", "status", "submitted_at"))
VERIFICATIONS = Contract("verifications.csv", ("image_id", "assignment_id", "worker_id", "verdict", "ok_votes",
                                               "bad_votes", "attempt", "outcome"))
BOXES = Contract("boxes.csv", ("image_id", "label", "x", "y", "w", "h", "score", "support"))
WORKERS = Contract("workers.csv", ("worker_id", "answers", "skill"))
# Aggregate Boxes: one row per image, the riskiest first (review the doubtful images first)
IMAGES_REVIEW = Contract("images_review.csv", ("image_id", "file_name", "risk", "expected_missed",
                                               "expected_spurious", "n_boxes", "min_score"))
# Launch Pool copies --control_csv here (beside tasks.csv) so Wait Pool can score control drawings.
CONTROL = Contract("control.csv", ("url", "width", "height", "label", "x", "y", "w", "h"))


@dataclass(frozen=True)
class Artifact:
    """A non-CSV file a step writes: a JSON summary, restart state, or an export."""

    file_name: str
    written_by: str  # a step, or the user for configs/
    about: str

    def path(self, folder: str | os.PathLike) -> Path:
        return Path(folder) / self.file_name


UPLOAD_SUMMARY = Artifact("upload_summary.json", "Upload Images",
                          "images.csv's row count and sha256 (Launch Pool refuses a cut or edited images.csv), "
                          "rejected, uploaded and already-in-S3 counts; found beside images.csv")
WAIT_SUMMARY = Artifact("wait_summary.json", "Wait Pool",
                        "pools, counts, money spent, timing, detection_fields; found beside answers.csv")
WAIT_JOURNAL = Artifact("wait_pool_journal.jsonl", "Wait Pool", "append-only collection state for re-runs")
OVERLAP_STATE = Artifact("adaptive_overlap.json", "Wait Pool", "per-image overlap targets (restart state)")
ROUND_JOURNALS = Artifact("rounds", "Wait Pool", "a folder: each round's collection journal, "
                          "rounds/<role>/wait_pool_journal.jsonl (restart state of the rounds)")
VERIFICATION_LEDGER = Artifact("verification_ledger.json", "Wait Pool", "verdicts already applied (restart state)")
VERIFICATION_CURSORS = Artifact("verification_cursors.json", "Wait Pool", "how far each pool was read")
QC_SUMMARY = Artifact("qc_summary.json", "Wait Pool", "verification-loop counts and bans")
COCO_EXPORT = Artifact("annotations.coco.json", "Export", "boxes in COCO detection format")
FLAT_EXPORT = Artifact("annotations.csv", "Export", "one row per box, with image URL and class")
DETECTIONS_EXPORT = Artifact("detections.json", "Export",
                             "a plain list of COCO detections (image_id, category_id, bbox, score) for loadRes")
YOLO_EXPORT = Artifact("yolo", "Export", "a folder: labels/<file_name stem>.txt (class cx cy w h, normalised) "
                       "and data.yaml with the class names")
VOC_EXPORT = Artifact("voc", "Export", "a folder: Pascal VOC Annotations/<stem>.xml, ImageSets/Main/default.txt, "
                      "labelmap.txt")
CVAT_EXPORT = Artifact("cvat/annotations.xml", "Export", "CVAT for images 1.1 XML, score a declared box attribute")
FORMATS_ARCHIVE = Artifact("formats.zip", "Export", "the yolo, voc and cvat exports in one archive (published)")
EXPORT_SUMMARY = Artifact("summary.json", "Export", "counts, cost and the dataset version published")
REPORT = Artifact("report.html", "Export", "a self-contained page: cost, scores and calibration, the riskiest images "
                  "with every worker's boxes, the workers")
FIFTYONE_EXPORT = Artifact("fiftyone", "Export", "a folder FiftyOne loads as fo.types.FiftyOneImageDetectionDataset: "
                           "labels.json (boxes with confidence), images found by relative file name")
# python -m crowdboxes review / import-corrections: the CVAT round trip of the riskiest images
REVIEW_TASK = Artifact("review", "python -m crowdboxes review", "a folder to import into CVAT as one task: "
                       "annotations.xml (CVAT for images 1.1), images/ and images.zip (the riskiest images, "
                       "for CVAT's create task), labels.json (CVAT's Raw labels), review.json (what was packed)")
CORRECTED_BOXES_SOURCE = "source"  # boxes.csv column added by import-corrections: crowd | review

# configs/ (--config_dir): Toloka objects as JSON, edited by users, read by Create Project and Launch Pool
DETECTION_PROJECT_CONFIG = Artifact("detection_project.json", "the user", "the detection project and its view")
VERIFICATION_PROJECT_CONFIG = Artifact("verification_project.json", "the user", "the verification project")
SKILLS_CONFIG = Artifact("skills.json", "the user", "the drawer, verifier and control skills by role")
DETECTION_POOL_CONFIG = Artifact("detection_pool.json", "the user", "the detection pool's settings and filters")
VERIFICATION_POOL_CONFIG = Artifact("verification_pool.json", "the user", "the verification pool's settings")
BOX_CHECK_PROJECT_CONFIG = Artifact("box_check_project.json", "the user",
                                   "the per-box check project: one box on its image, a verdict (mode overlap rounds)")
MISSED_SIGNS_PROJECT_CONFIG = Artifact("missed_signs_project.json", "the user",
                                      "the missed-sign project: current boxes read-only, draw what is missing")
BOX_CHECK_POOL_CONFIG = Artifact("box_check_pool.json", "the user",
                                 "the box-check pool's settings (no reward: crowdboxes.toloka.pricing derives it)")
MISSED_SIGNS_POOL_CONFIG = Artifact("missed_signs_pool.json", "the user",
                                    "the missed-sign pool's settings (no reward: crowdboxes.toloka.pricing derives it)")

# python -m crowdboxes decide: decisions on SUBMITTED assignments, written by hand, by a review or by --policy
# (decision: accept | reject; comment: the public comment the worker sees, required to reject)
DECISIONS = Contract("decisions.csv", ("assignment_id", "decision", "comment"))
DECISIONS_SUMMARY = Artifact("decisions_summary.json", "python -m crowdboxes decide",
                             "accepted, rejected, skipped and refused counts, money released and kept, one line per "
                             "refusal; answers_sync: answers.csv re-read against Toloka (assignments, status changes "
                             "by this run and outside it, ids Toloka did not know), null without --answers")
# python -m crowdboxes archive, and Export --archive: what was archived and what blocks the rest
ARCHIVE_SUMMARY = Artifact("archive_summary.json", "python -m crowdboxes archive / Export --archive",
                           "pools and projects archived, already archived, and one line per blocked object")


def _text_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that may hold text (object or string dtype); numeric columns never do."""
    return [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell escaped by :func:`crowdboxes.files.escape_cell` (numbers, also negative
    ones in numeric columns, and empty cells stay as they are); ``frame`` itself is not changed."""
    changed = {c: frame[c].map(lambda v: escape_cell(v) if isinstance(v, str) else v) for c in _text_columns(frame)}
    return frame.assign(**changed) if changed else frame


def restore_text_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`spreadsheet_safe` in place (a text cell that begins with ``'`` loses that quote); ``frame``."""
    for column in _text_columns(frame):
        values = frame[column]
        quoted = values.map(lambda v: isinstance(v, str) and v.startswith(CELL_ESCAPE))
        if quoted.any():
            frame[column] = values.map(lambda v: unescape_cell(v) if isinstance(v, str) else v)
    return frame


def write_frame_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` (no index) to ``path`` atomically, text cells made spreadsheet-safe (:func:`spreadsheet_safe`)."""
    with atomic_path(path) as tmp:
        spreadsheet_safe(frame).to_csv(tmp, index=False)
    return Path(path)


def read_frame_csv(path: str | os.PathLike, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` of a CSV the product wrote, with the spreadsheet escapes undone (:func:`restore_text_cells`)."""
    return restore_text_cells(pd.read_csv(path, **kwargs))


def read_csv(path: str | os.PathLike, contract: Contract, **kwargs) -> pd.DataFrame:
    """Read ``path`` and check it has the contract's columns; CrowdboxesError naming what is missing.

    Text cells that begin with ``'`` lose that quote (the escape :func:`write_csv` adds, see the module docs)."""
    path = Path(path)
    if not path.is_file():
        raise CrowdboxesError(f"input file {path} does not exist")
    try:
        frame = read_frame_csv(path, keep_default_na=True, **kwargs)
    except pd.errors.EmptyDataError:
        raise CrowdboxesError(f"{path}: file is empty (expected header {','.join(contract.columns)})") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CrowdboxesError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in contract.columns if c not in frame.columns]
    if missing:
        raise CrowdboxesError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def require_numeric(frame: pd.DataFrame, path: str | os.PathLike, columns: tuple[str, ...],
                    allow_empty: bool = False) -> pd.DataFrame:
    """Convert ``columns`` to numbers; CrowdboxesError naming the first bad row (1-based data row) and field."""
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & (frame[column].notna() if allow_empty else True)
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            value = frame[column].iloc[row]
            shown = "empty or NaN, not a number" if pd.isna(value) else f"{value!r} is not a number"
            raise CrowdboxesError(f"{path}: row {row + 2}, field {column!r}: {shown}")
        frame[column] = values
    return frame


def require_finite(frame: pd.DataFrame, path: str | os.PathLike, columns: tuple[str, ...],
                   positive: bool = False) -> pd.DataFrame:
    """Check numeric ``columns`` (after :func:`require_numeric`) are finite (and ``> 0`` with ``positive``),
    empty cells aside; CrowdboxesError naming the first bad row (1-based data row) and field."""
    for column in columns:
        values = frame[column].to_numpy(dtype=float)
        bad = np.isinf(values) | ((values <= 0) if positive else False)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = "a positive number" if positive else "a finite number"
            raise CrowdboxesError(f"{path}: row {row + 2}, field {column!r}: {frame[column].iloc[row]:g} is not {what}")
    return frame


def read_images(path: str | Path) -> pd.DataFrame:
    """images.csv with non-empty ``image_id``, ``url``, ``sha256``, http(s) URLs and positive finite sizes,
    else CrowdboxesError naming the row and field (a width of 0 would zero every box scaled by it)."""
    images = read_csv(path, IMAGES, dtype={"image_id": str, "url": str, "sha256": str, "file_name": str})
    if images.empty:
        raise CrowdboxesError(f"{path}: no images (every image was rejected by Upload Images?)")
    for column in ("image_id", "url", "sha256"):
        blank = images[column].isna() | (images[column].astype(str).str.strip() == "")
        if blank.any():
            raise CrowdboxesError(f"{path}: row {int(blank.to_numpy().nonzero()[0][0]) + 2}, field {column!r} is empty")
    bad = ~images["url"].str.match(r"^https?://")
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise CrowdboxesError(f"{path}: row {row + 2}, field 'url': {images['url'].iloc[row]!r} is not an http(s) URL")
    require_numeric(images, path, ("width", "height"))
    return require_finite(images, path, ("width", "height"), positive=True)


def write_csv(frame: pd.DataFrame, folder: str | os.PathLike, contract: Contract) -> Path:
    """Write ``frame`` atomically with the contract's columns first, then any extra ones; text cells are
    spreadsheet-safe (:func:`write_frame_csv`)."""
    missing = [c for c in contract.columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{contract.file_name}: frame lacks column(s) {', '.join(missing)}")
    extra = [c for c in frame.columns if c not in contract.columns]
    return write_frame_csv(frame[list(contract.columns) + extra], contract.path(folder))
