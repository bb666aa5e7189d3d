"""The pools: the detection pool, built from ``configs/detection_pool.json`` plus the step's settings,
created once (:func:`ensure_detection_pool`), filled with one task per image without duplicates or
losses, then opened; and the verification pool (:func:`ensure_verification_pool`, from
``configs/verification_pool.json``), which starts empty and which the verification loop fills; and the
pools of mode overlap's rounds (:func:`build_round_pool`, from ``configs/box_check_pool.json`` and
``configs/missed_signs_pool.json``), which also start empty: Wait Pool adds their tasks and opens them.

Idempotence rests on two keys:

* the pool's ``private_comment`` is ``<detection project key>:pool:<digest>``, the digest covering
  the project id, the *content* of the images (their sorted sha256, so presigned URLs re-signed by
  a re-run of Upload Images do not count as new images), the pool config and the settings. A re-run
  with the same inputs finds the pool (archived ones too: a finished job is not bought again) instead of
  creating another;
* a task is identified by its image URL without the query string (the object key holds the
  image's sha256), or by ``input_values.image_id`` when the project's input spec has that field.
  Tasks already in the pool are never sent again, and each batch is sent with a deterministic
  ``operation_id`` (uuid5 of pool, batch index and batch content), so a retried request is
  recognised by Toloka as the same operation.

Two runs at once: a pool that is missing is created, and missing tasks are uploaded, under the job's lease
on the project (:mod:`crowdboxes.toloka.lease`); a run that waited looks again and finds the other's work.

Money and modes are :mod:`crowdboxes.toloka.pricing` / :mod:`crowdboxes.toloka.spending` /
:mod:`crowdboxes.toloka.quality` concepts; this module only applies them to the pools. Both pools
are found again by their key (:func:`find_pool`, a look-up that never creates).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import sys
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from crowdboxes.artifacts import DETECTION_POOL_CONFIG, VERIFICATION_POOL_CONFIG
from crowdboxes.toloka.client import LIST_PAGE, keep_found, toloka_refusal
from crowdboxes.toloka.pricing import MIN_REWARD
from crowdboxes.toloka.quality import (QualitySettings, check_verification_pool_config, for_verification_loop,
                                       resolve_skill_placeholders)
from crowdboxes.errors import CrowdboxesError
from crowdboxes.params import is_none, parse_bool, parse_number

DETECTION_POOL_ROLE = "detection_pool"
VERIFICATION_POOL_ROLE = "verification_pool"
MISSED_SIGNS_POOL_ROLE = "missed_signs"  # pool.csv roles of the rounds' pools (= their projects' roles)
BOX_CHECK_POOL_ROLE = "box_check"
ROUND_POOL_ROLES = (MISSED_SIGNS_POOL_ROLE, BOX_CHECK_POOL_ROLE)  # the order Wait Pool runs them in
# uuid5 namespace of task-batch operation ids (any fixed UUID; it must never change)
OPERATION_NAMESPACE = uuid.UUID("6f1c9a52-2b7e-5d0c-9a57-3c3f5f0e8d11")
_SERVER_FIELDS = ("id", "status", "created", "owner", "last_close_reason", "last_started", "last_stopped",
                  "type", "project_id", "private_comment", "will_expire")
_LANG_RE = re.compile(r"^[A-Z]{2}$")
MAX_REVIEW_DAYS = 21  # Toloka's limit for auto_accept_period_day


def parse_languages(value: object) -> tuple[str, ...]:
    """``en, de`` -> ``('EN', 'DE')``; ``none`` -> ``()`` (no language filter)."""
    if is_none(value):
        return ()
    codes = tuple(dict.fromkeys(c.strip().upper() for c in str(value).split(",") if c.strip()))
    bad = [c for c in codes if not _LANG_RE.match(c)]
    if bad or not codes:
        raise CrowdboxesError(f"--languages {value!r}: expected ISO 639-1 codes separated by commas, e.g. EN,DE")
    return codes


@dataclass(frozen=True)
class PoolSettings:
    """The step's pool params, checked. ``overlap`` and ``auto_accept`` are what the user asked for;
    the detection pool uses :attr:`detection_overlap` (1 when the mode is plain ``verify``) and
    :attr:`detection_auto_accept` (false whenever verification decides what is paid)."""

    mode: str
    reward: float
    overlap: int
    tasks_per_suite: int
    time_per_suite: int  # seconds a worker has for one suite
    auto_accept: bool
    review_days: int
    languages: tuple[str, ...]
    expiry_days: float
    adult_content: bool

    @property
    def detection_overlap(self) -> int:
        return 1 if self.mode == "verify" else self.overlap

    @property
    def detection_auto_accept(self) -> bool:
        # with verification, the verdicts accept or reject drawings: they must wait SUBMITTED
        return False if "verify" in self.mode else self.auto_accept

    def key_material(self) -> dict:
        data = asdict(self)
        data["languages"] = list(self.languages)
        data["detection_overlap"] = self.detection_overlap
        data["detection_auto_accept"] = self.detection_auto_accept
        return data


def parse_pool_settings(*, mode: str, reward: object, overlap: object, tasks_per_suite: object,
                        time_per_suite: object, auto_accept: object, review_days: object, languages: object,
                        expiry_days: object, adult_content: object) -> PoolSettings:
    """PoolSettings from cnvrg's string params (``mode`` already checked by quality_settings)."""
    reward_value = parse_number("reward", reward, minimum=MIN_REWARD)
    return PoolSettings(
        mode=mode, reward=float(reward_value),
        overlap=int(parse_number("overlap", overlap, minimum=1, maximum=100, integer=True)),
        tasks_per_suite=int(parse_number("tasks_per_suite", tasks_per_suite, minimum=1, maximum=100, integer=True)),
        time_per_suite=int(parse_number("time_per_suite", time_per_suite, minimum=5, maximum=86400, integer=True)),
        auto_accept=parse_bool("auto_accept", auto_accept),
        review_days=int(parse_number("review_days", review_days, minimum=1, maximum=MAX_REVIEW_DAYS, integer=True)),
        languages=parse_languages(languages),
        expiry_days=float(parse_number("expiry_days", expiry_days, minimum=0.01, maximum=366)),
        adult_content=parse_bool("adult_content", adult_content),
    )


def _normalize_filter(filter_json: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Toloka filter JSON as a list of AND-ed ``{"or": [...]}`` groups (its normal form)."""
    if not filter_json:
        return []
    if "and" in filter_json:
        groups = filter_json["and"] or []
    else:
        groups = [filter_json]
    return [g if isinstance(g, dict) and "or" in g else {"or": [g]} for g in groups]


def _is_language(cond: object) -> bool:
    return isinstance(cond, dict) and cond.get("category") == "profile" and cond.get("key") == "languages"


def with_languages(filter_json: dict[str, Any] | None, languages: tuple[str, ...]) -> dict[str, Any] | None:
    """``filter_json`` with its language conditions replaced by ``languages`` (any of them)."""
    groups = [g for g in _normalize_filter(filter_json)
              if not (g["or"] and all(_is_language(c) for c in g["or"]))]
    if languages:
        groups.append({"or": [{"category": "profile", "key": "languages", "operator": "IN", "value": code}
                              for code in languages]})
    return {"and": groups} if groups else None


def load_pool_config(path: str | os.PathLike) -> dict[str, Any]:
    """The pool config as JSON, checked to structure as a toloka-kit ``Pool``."""
    from toloka.client.pool import Pool

    from crowdboxes.files import read_json_object

    data = read_json_object(path, holding="with a Toloka pool")
    try:
        Pool.structure(copy.deepcopy(data))
    except Exception as exc:  # cattrs raises several types; one line naming the file is what helps
        raise CrowdboxesError(f"{path}: not a valid toloka-kit Pool ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return data


def _rule_count(config: dict) -> int:
    return sum(len(qc.get("rules") or []) for qc in (config.get("quality_control") or {}).get("configs") or [])


def build_detection_pool(config: dict, settings: PoolSettings, *, project_id: str, skill_ids: dict[str, str],
                         key: str, will_expire: datetime, config_path: str = DETECTION_POOL_CONFIG.file_name) -> Any:
    """A ``toloka.client.Pool`` ready for ``create_pool``: the config with the settings applied."""
    data = resolve_skill_placeholders(copy.deepcopy(config), skill_ids)
    if "verify" in settings.mode:
        before = _rule_count(data)
        data = for_verification_loop(data)  # the loop sets overlaps and bans drawers itself
        if _rule_count(data) < before:
            print(f"note: {config_path}: mode {settings.mode} leaves out {before - _rule_count(data)} quality-control "
                  f"rule(s) the verification loop replaces (CHANGE_OVERLAP, rejected/accepted-share restrictions)",
                  file=sys.stderr)
    for field in _SERVER_FIELDS:
        data.pop(field, None)
    name = data.get("private_name") or "Road signs: detection"
    data.update(
        project_id=str(project_id), private_comment=key,
        private_name=f"{name} [mode {settings.mode}, overlap {settings.detection_overlap}]"[:200],
        reward_per_assignment=settings.reward,
        assignment_max_duration_seconds=settings.time_per_suite,
        auto_accept_solutions=settings.detection_auto_accept,
        auto_accept_period_day=settings.review_days,
        may_contain_adult_content=settings.adult_content,
        defaults={"default_overlap_for_new_task_suites": settings.detection_overlap,
                  "default_overlap_for_new_tasks": settings.detection_overlap},
        mixer_config={"golden_tasks_count": 0, "training_tasks_count": 0, **(data.get("mixer_config") or {}),
                      "real_tasks_count": settings.tasks_per_suite},
        metadata={**(data.get("metadata") or {}), SETTINGS_METADATA: [settings_record(config, settings)]},
    )
    return structured_pool(data, settings.languages, will_expire, config_path)


# pool metadata key: the settings and config digest the pool was made or last edited with (JSON), so a re-run
# can say what the user changed (Toloka's own fields cannot tell a re-computed expiry from a changed one)
SETTINGS_METADATA = "crowdboxes_settings"
# PoolSettings fields a re-run may change on an existing pool, with what they are called in messages
EDITABLE_SETTINGS = {"reward": "reward", "detection_overlap": "overlap", "tasks_per_suite": "tasks per suite",
                     "time_per_suite": "time per suite", "detection_auto_accept": "auto-accept",
                     "review_days": "review days", "languages": "languages", "expiry_days": "expiry days",
                     "adult_content": "adult content", "config": "detection_pool.json"}


def settings_record(config: dict, settings: PoolSettings) -> str:
    """What :data:`SETTINGS_METADATA` holds: the settings and the pool config's digest, as JSON."""
    config_digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return json.dumps({**settings.key_material(), "config": config_digest}, sort_keys=True)


def structured_pool(data: dict, languages: tuple[str, ...], will_expire: datetime, config_path: str) -> Any:
    """The toloka-kit Pool of a config's ``data`` with the params applied: the languages filter, the expiry
    (UTC, naive as toloka-kit sends it); a config toloka-kit cannot read is refused in one line."""
    from toloka.client.pool import Pool

    languages_filter = with_languages(data.get("filter"), languages)
    if languages_filter is None:
        data.pop("filter", None)
    else:
        data["filter"] = languages_filter
    try:
        pool = Pool.structure(data)
    except Exception as exc:
        raise CrowdboxesError(f"{config_path}: not a valid toloka-kit Pool after applying the params "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    pool.will_expire = will_expire.astimezone(timezone.utc).replace(tzinfo=None) if will_expire.tzinfo else will_expire
    return pool


def images_digest(sha256s: Iterable[object]) -> str:
    """Identity of an image set that survives re-signed URLs: sha256 over the sorted image hashes."""
    return hashlib.sha256("\n".join(sorted(str(s) for s in sha256s)).encode()).hexdigest()


def pool_key(detection_key: str, mode: str) -> str:
    """The detection pool's key (its ``private_comment``): the job and its mode. Settings and images are not
    part of it: a re-run with a changed price edits the pool (:func:`edit_pool`), and new images become
    new tasks in it (:func:`upload_tasks`)."""
    return f"{detection_key}:pool:{mode}"


# keys of pools made before the key named the mode: the job's key, then a digest of images and settings
_LEGACY_KEY = re.compile(r":pool:[0-9a-f]{16}$")


def legacy_job_pool(client: Any, project_id: str, detection_key: str, mode: str) -> Any:
    """The live pool an earlier version made for this job and mode (its key ended in a digest), else None:
    a re-run after an upgrade goes on with it instead of buying the job again in a new pool."""
    found = [p for p in client.get_pools(project_id=str(project_id))
             if pool_status(p) != "ARCHIVED" and str(p.private_comment or "").startswith(f"{detection_key}:pool:")
             and _LEGACY_KEY.search(str(p.private_comment)) and f"[mode {mode}," in str(p.private_name or "")]
    return min(found, key=lambda p: int(p.id) if str(p.id).isdigit() else 0) if found else None


def refuse_other_modes(client: Any, project_id: str, detection_key: str, mode: str) -> None:
    """One line when a live pool runs this job in another mode: a mode is how the job buys its answers, not
    a setting Toloka edits; a job in a new mode is a new job (a new ``--project_key``)."""
    for pool in client.get_pools(project_id=str(project_id)):
        comment = str(pool.private_comment or "")
        other = comment[len(f"{detection_key}:pool:"):] if comment.startswith(f"{detection_key}:pool:") else ""
        if other and ":" not in other and other != mode and not _LEGACY_KEY.search(comment) \
                and pool_status(pool) != "ARCHIVED":
            raise CrowdboxesError(f"pool {pool.id} runs this job in mode {other}; --mode {mode} would buy the images "
                                  f"again: keep --mode {other}, or archive pool {pool.id} (python -m crowdboxes "
                                  f"archive) or use a new --project_key for a new job")


@dataclass(frozen=True)
class PoolEdit:
    """What :func:`edit_pool` changed: ``(name, before, after)`` per setting, whether the pool was open, and
    how many existing tasks got a higher overlap (None: their overlap was not touched)."""

    changes: tuple[tuple[str, str, str], ...]
    was_open: bool
    tasks_raised: int | None = None

    def line(self, pool_id: str) -> str:
        """``pool 12: changed reward 0.05 -> 0.06, overlap 3 -> 5 (closed to edit, as Toloka requires)``."""
        what = ", ".join(f"{name} {before} -> {after}" for name, before, after in self.changes)
        return f"pool {pool_id}: changed {what}" + (" (closed to edit, as Toloka requires)" if self.was_open else "")


def _recorded_settings(pool: Any) -> dict[str, Any] | None:
    values = (getattr(pool, "metadata", None) or {}).get(SETTINGS_METADATA) or []
    try:
        record = json.loads(values[0]) if values else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def edit_pool(client: Any, pool: Any, spec: Any, *, task_overlap: int | None = None) -> PoolEdit:
    """Bring the existing ``pool`` to ``spec`` (:func:`build_detection_pool` of this run's settings) where a
    setting changed since the pool was made or last edited (:data:`SETTINGS_METADATA`).

    Toloka edits a pool only while it is closed (``PUT /pools/{id}``), so an open pool is closed first; the
    caller reopens it (:func:`ensure_open`). With ``task_overlap`` (overlap modes: Wait Pool's verification
    loop sets overlaps itself otherwise), a changed overlap is also set on the existing tasks
    (:func:`set_task_overlaps`), before the new settings are recorded: a run killed in between changes them
    again. The expiry is kept unless ``expiry_days`` changed; the pool's key stays. An archived pool is
    refused in one line. A pool without the record (made by an earlier version) is compared on the fields
    Toloka holds. Returns what changed (nothing: no request made).
    """
    before, after = _recorded_settings(pool), _recorded_settings(spec) or {}
    if before is None:  # an earlier version's pool: what Toloka holds
        before = {**after, "reward": float(pool.reward_per_assignment),
                  "time_per_suite": int(pool.assignment_max_duration_seconds or 0),
                  "detection_overlap": int(getattr(pool.defaults, "default_overlap_for_new_tasks", 0) or 0),
                  "detection_auto_accept": bool(pool.auto_accept_solutions),
                  "adult_content": bool(pool.may_contain_adult_content)}
    changes = tuple((label, _shown(before.get(name)), _shown(after.get(name)))
                    for name, label in EDITABLE_SETTINGS.items() if before.get(name) != after.get(name))
    if not changes:
        return PoolEdit((), False)
    status = pool_status(pool)
    what = ", ".join(f"{name} {old} -> {new}" for name, old, new in changes)
    if status == "ARCHIVED":
        raise CrowdboxesError(f"pool {pool.id} is archived (its job is finished): {what} cannot be changed; run the "
                              f"job again as a new job (a new --project_key)")
    was_open = status == "OPEN"
    if was_open:
        client.close_pool(pool.id)
    raised = None
    if task_overlap is not None and before.get("detection_overlap") != after.get("detection_overlap"):
        raised = set_task_overlaps(client, str(pool.id), task_overlap)
    body = copy.deepcopy(spec)
    body.private_comment = pool.private_comment
    if before.get("expiry_days") == after.get("expiry_days") and pool.will_expire is not None:
        body.will_expire = pool.will_expire
    try:
        client.update_pool(pool.id, body)
    except Exception as exc:
        reopened = ""
        if was_open:
            client.open_pool(pool.id)
            reopened = "; the pool was reopened unchanged"
        raise CrowdboxesError(f"pool {pool.id}: {what}: {toloka_refusal(exc)}{reopened}") from None
    return PoolEdit(changes, was_open, raised)


def set_task_overlaps(client: Any, pool_id: str, overlap: int) -> int:
    """Give the pool's existing tasks ``overlap`` (a changed ``--overlap``; new tasks take the pool's default):
    Toloka lowers none below what was already issued (``set-overlap-or-min``). Returns how many were raised."""
    raised = 0
    for task in client.get_tasks(pool_id=str(pool_id), batch_size=LIST_PAGE):
        if int(task.overlap or 0) != overlap:
            client.patch_task_overlap_or_min(task.id, overlap=overlap, infinite_overlap=False)
            raised += int(task.overlap or 0) < overlap
    return raised


def pools_with_key(client: Any, project_id: str, key: str) -> list[Any]:
    """The pools of ``project_id`` whose ``private_comment`` is ``key``: the live ones, oldest first, then
    the archived ones, oldest first."""
    found = [p for p in client.get_pools(project_id=str(project_id)) if (p.private_comment or "") == key]
    return sorted(found, key=lambda p: (pool_status(p) == "ARCHIVED", int(p.id) if str(p.id).isdigit() else 0))


def find_pool(client: Any, project_id: str, key: str) -> Any:
    """The pool of ``project_id`` whose ``private_comment`` is ``key`` (the oldest; a live one before an
    archived one), else None. An archived pool is still found: the job it ran is finished and paid for, and
    a re-run must not buy it again in a new pool."""
    found = pools_with_key(client, project_id, key)
    return found[0] if found else None


def ensure_detection_pool(client: Any, spec: Any, *, project_id: str, key: str,
                          earlier: Callable[[], Any] | None = None) -> tuple[Any, bool]:
    """``(pool, created)``: the pool whose ``private_comment`` is ``key`` (:func:`find_pool`), else what
    ``earlier()`` finds (:func:`legacy_job_pool`), else ``spec`` (:func:`build_detection_pool`,
    :func:`build_round_pool`) created on Toloka (closed, without tasks)."""
    if earlier is not None and find_pool(client, project_id, key) is None:
        found = earlier()
        if found is not None:
            return found, False
    return _find_or_create_pool(client, spec, project_id=project_id, key=key)


def _find_or_create_pool(client: Any, spec: Any, *, project_id: str, key: str) -> tuple[Any, bool]:
    """Find the pool by ``key``; if missing, create it under the job's lease on its project
    (:mod:`crowdboxes.toloka.lease`: one creator at a time; a run that waited finds the other's pool), then
    look again and use what :func:`find_pool` finds (:func:`~crowdboxes.toloka.client.keep_found`): a create
    whose reply was lost and was retried made two pools, and every run must use the same one."""
    pool = find_pool(client, project_id, key)
    if pool is not None:
        return pool, False
    from crowdboxes.toloka.lease import DEFAULT_WAIT_SECONDS, WAIT_ENV, MetadataTarget, env_seconds, job_lease

    scope = "pool-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    with job_lease(MetadataTarget(client, "project", project_id), scope,
                   env_seconds(WAIT_ENV, DEFAULT_WAIT_SECONDS)) as lease:
        pool = find_pool(client, project_id, key)
        if pool is not None:
            return pool, False
        lease.confirm()
        made = client.create_pool(spec)
        live = [p for p in pools_with_key(client, project_id, key) if pool_status(p) != "ARCHIVED"]
        return keep_found(made, live, archive=client.archive_pool, what="pool",
                          log=lambda line: print(line, file=sys.stderr)), True


def url_identity(url: str) -> str:
    """The URL without query and fragment: a presigned URL re-signed later is the same image."""
    parts = urlsplit(str(url).strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, "", ""))


@dataclass
class TaskUploadResult:
    created: int
    already_there: int
    failed: list[tuple[str, str]]  # (image_id, reason)
    tasks: pd.DataFrame  # task_id, pool_id, image_id, url, control: every wanted image found in the pool


def _task_image_key(input_values: dict, use_image_id: bool, image_field: str = "image") -> str | None:
    if use_image_id and input_values.get("image_id"):
        return "id:" + str(input_values["image_id"])
    if input_values.get(image_field):
        return "url:" + url_identity(input_values[image_field])
    return None


def _wanted_key(row: Any, use_image_id: bool) -> str:
    return "id:" + str(row["image_id"]) if use_image_id else "url:" + url_identity(row["url"])


def operation_id(pool_id: str, batch_index: int, image_ids: Iterable[object]) -> uuid.UUID:
    """The deterministic id of one task batch: uuid5 of pool, batch index and the batch's image ids."""
    content = hashlib.sha256("\n".join(map(str, image_ids)).encode()).hexdigest()
    return uuid.uuid5(OPERATION_NAMESPACE, f"{pool_id}/{batch_index}/{content}")


def upload_tasks(client: Any, pool_id: str, wanted: pd.DataFrame, *, batch_size: int, use_image_id: bool,
                 image_field: str = "image", log: Callable[[str], None] = print,
                 archived: bool = False) -> TaskUploadResult:
    """Create one task per row of ``wanted`` (image_id, url, control) that the pool does not have yet.

    An ``archived`` pool takes none: a missing task is then one CrowdboxesError line, before any write.
    Existing tasks are listed first; new ones go in batches of ``batch_size`` through toloka-kit's
    async ``create_tasks`` with ``allow_defaults`` (the pool's overlap) and a deterministic
    ``operation_id``. Invalid items are skipped by Toloka and reported in ``failed``. The returned
    ``tasks`` frame is read back from Toloka, so it is what the pool really holds. The URL goes in the
    project's image input field ``image_field`` (:class:`crowdboxes.toloka.fields.DetectionFields`).
    """
    def existing_by_key() -> dict[str, Any]:
        found = {}
        for task in client.get_tasks(pool_id=str(pool_id), batch_size=LIST_PAGE):
            key = _task_image_key(task.input_values or {}, use_image_id, image_field)
            if key is not None and key not in found:
                found[key] = task
        return found

    keys = [_wanted_key(row, use_image_id) for _, row in wanted.iterrows()]
    first = ~pd.Series(keys).duplicated().to_numpy()  # one task per image, the first row wins
    wanted = wanted[first].reset_index(drop=True)
    keys = [k for k, keep in zip(keys, first) if keep]
    present = existing_by_key()
    missing = [i for i, key in enumerate(keys) if key not in present]
    if missing and archived:
        raise CrowdboxesError(f"pool {pool_id} is archived and takes no tasks, but {len(missing)} image(s) are not "
                              f"in it (first: {keys[missing[0]]}); annotate them as a new job (a new --project_key)")
    if not missing:
        return _upload(client, pool_id, wanted, keys, present, [], existing_by_key, batch_size, use_image_id,
                       image_field, log)
    # tasks to create: one uploader per pool at a time (a rival run's half-done upload would be sent again
    # under other batch ids); after the wait, the list is read again
    from crowdboxes.toloka.lease import DEFAULT_WAIT_SECONDS, WAIT_ENV, MetadataTarget, env_seconds, job_lease

    project = MetadataTarget(client, "project", str(client.get_pool(str(pool_id)).project_id))
    with job_lease(project, f"upload-{pool_id}", env_seconds(WAIT_ENV, DEFAULT_WAIT_SECONDS)) as lease:
        # a killed run's batch may still be running on Toloka: its tasks are not listed yet
        _wait_for_running_batches(client, pool_id, wanted, missing, batch_size, log)
        present = existing_by_key()
        missing = [i for i, key in enumerate(keys) if key not in present]
        lease.confirm()
        return _upload(client, pool_id, wanted, keys, present, missing, existing_by_key, batch_size, use_image_id,
                       image_field, log)


def _upload(client: Any, pool_id: str, wanted: pd.DataFrame, keys: list[str], present: dict[str, Any],
            missing: list[int], existing_by_key: Callable[[], dict[str, Any]], batch_size: int, use_image_id: bool,
            image_field: str, log: Callable[[str], None]) -> TaskUploadResult:
    """:func:`upload_tasks` once the pool's tasks are listed: send the ``missing`` rows in batches."""
    from toloka.client import Task
    from toloka.client.exceptions import FailedOperation

    already = len(wanted) - len(missing)
    reasons: dict[str, str] = {}
    for batch_index, indices in _batches(wanted, missing, batch_size):
        rows = [wanted.iloc[i] for i in indices]
        tasks = []
        for row in rows:
            values = {image_field: str(row["url"])}
            if use_image_id:
                values["image_id"] = str(row["image_id"])
            tasks.append(Task(pool_id=str(pool_id), input_values=values))
        op_id = operation_id(pool_id, batch_index, [r["image_id"] for r in rows])
        try:
            created, errors_by_index = _send_batch(client, tasks, op_id)
        except FailedOperation:
            # the same batch was sent by an earlier run and its operation failed: nothing of it was
            # created (the listing above found none), so it is safe to send it under a new id
            log(f"tasks: batch {batch_index + 1}: operation {op_id} failed earlier; sending again")
            created, errors_by_index = _send_batch(client, tasks, uuid.uuid4())
        for index, errors in errors_by_index.items():
            errors = errors if isinstance(errors, dict) else {"task": errors}
            detail = "; ".join(f"{f}: {getattr(e, 'message', None) or (e.get('message') if isinstance(e, dict) else e)}"
                               for f, e in errors.items())
            reasons[str(rows[index]["image_id"])] = detail or "rejected by Toloka"
        log(f"tasks: batch {batch_index + 1}: sent {len(rows)}, {created} created")

    # what the pool really holds decides, not the operation's report
    present = existing_by_key() if missing else present
    created = sum(keys[i] in present for i in missing)
    failed = [(str(wanted.iloc[i]["image_id"]), reasons.get(str(wanted.iloc[i]["image_id"]), "not created by Toloka"))
              for i in missing if keys[i] not in present]
    rows = []
    for (_, row), key in zip(wanted.iterrows(), keys):
        found = present.get(key)
        if found is not None:
            rows.append({"task_id": str(found.id), "pool_id": str(pool_id), "image_id": str(row["image_id"]),
                         "url": str(row["url"]), "control": bool(row.get("control", False))})
    frame = pd.DataFrame(rows, columns=["task_id", "pool_id", "image_id", "url", "control"])
    return TaskUploadResult(created=created, already_there=already, failed=failed, tasks=frame)


def _batches(wanted: pd.DataFrame, missing: list[int], batch_size: int) -> list[tuple[int, list[int]]]:
    """``(batch index, rows to send)``: batches are cut from the whole wanted list, not from what is missing,
    so that a re-run after a kill sends a batch that was in flight under the same operation id (Toloka then
    answers OPERATION_ALREADY_EXISTS and toloka-kit waits for the first one) instead of cutting the rows
    anew under other ids and creating them twice."""
    wanted_missing = set(missing)
    out = []
    for batch_index, start in enumerate(range(0, len(wanted), batch_size)):
        rows = [i for i in range(start, min(start + batch_size, len(wanted))) if i in wanted_missing]
        if rows:
            out.append((batch_index, rows))
    return out


def _wait_for_running_batches(client: Any, pool_id: str, wanted: pd.DataFrame, missing: list[int], batch_size: int,
                              log: Callable[[str], None]) -> None:
    """Wait for running task-creating operations that are batches of this upload (their ids are
    :func:`operation_id` of the batches :func:`_batches` cuts): one listing of Toloka's running
    TASK.BATCH_CREATE operations, then a wait on ours."""
    from toloka.client.operations import Operation, OperationType
    from toloka.client.search_requests import OperationSearchRequest

    ours = {str(operation_id(pool_id, index, [wanted.iloc[i]["image_id"] for i in rows]))
            for index, rows in _batches(wanted, missing, batch_size)}
    running = [op for status in (Operation.Status.PENDING, Operation.Status.RUNNING)
               for op in client.get_operations(OperationSearchRequest(type=OperationType.TASK_BATCH_CREATE,
                                                                      status=status))
               if str(op.id) in ours]
    for operation in running:
        log(f"tasks: operation {operation.id} of an earlier run is still creating tasks; waiting for it")
        client.wait_operation(operation, disable_progress=True)


def _send_batch(client: Any, tasks: list[Any], op_id: uuid.UUID) -> tuple[int, dict[int, Any]]:
    """Create ``tasks`` in one async operation (``allow_defaults``: the pool's overlap; invalid items skipped):
    (tasks created, validation errors by index in ``tasks``), both from the operation's log.

    toloka-kit's ``create_tasks(async_mode=True)`` also reads every created task back, 50 per request (500
    tasks were 10 requests); the caller reads the pool's tasks once at the end instead, so this costs the
    request, the operation's state while it runs and its log. Each task carries its index in the batch
    (``__item_idx``, as toloka-kit's own create_tasks sends it) to match log lines to rows.
    """
    for position, task in enumerate(tasks):
        task._unexpected["__item_idx"] = str(position)
    operation = client.create_tasks_async(tasks, allow_defaults=True, skip_invalid_items=True, operation_id=op_id)
    operation = client.wait_operation(operation, disable_progress=True)
    created, errors = 0, {}
    for item in client.get_operation_log(operation.id):
        index = (item.input or {}).get("__item_idx")
        if index is None:
            continue  # a line that is not about one of the tasks (e.g. the pool opened)
        if item.success:
            created += 1
        else:
            errors[int(index)] = item.output or {}
    return created, errors


def pool_status(pool: Any) -> str:
    """The pool's status as a string (OPEN, CLOSED, ARCHIVED, ...)."""
    return str(getattr(pool.status, "value", pool.status) or "")


def ensure_open(client: Any, pool: Any, *, added_tasks: int, log: Callable[[str], None] = print) -> str:
    """Open the pool unless it is open, or it completed and nothing new was added. Returns what happened."""
    pool = client.get_pool(pool.id)
    status = pool_status(pool)
    reason = str(getattr(pool.last_close_reason, "value", pool.last_close_reason) or "")
    if status == "OPEN":
        return "already open"
    if status == "ARCHIVED":
        raise CrowdboxesError(f"pool {pool.id} is archived (its job is finished); run the images again as a new job "
                              f"(a new --project_key)")
    if reason == "COMPLETED" and added_tasks == 0:
        return "completed earlier (not reopened)"
    if pool.will_expire is not None:
        expires = pool.will_expire if pool.will_expire.tzinfo else pool.will_expire.replace(tzinfo=timezone.utc)
        if expires <= datetime.now(timezone.utc):
            raise CrowdboxesError(f"pool {pool.id} expired at {expires:%Y-%m-%d %H:%M} UTC; re-run Launch Pool with "
                                  f"another --expiry_days (it edits the pool's expiry)")
    client.open_pool(pool.id)
    return "opened"


def will_expire_at(expiry_days: float, now: datetime | None = None) -> datetime:
    now = now or datetime.now(timezone.utc)
    return now + timedelta(days=expiry_days)


def url_expiry_limit(images: pd.DataFrame, path: str | os.PathLike) -> datetime | None:
    """When the first presigned image URL stops working (images.csv ``url_expires_at``), else None."""
    if "url_expires_at" not in images.columns:
        return None
    values = images["url_expires_at"].dropna().astype(str).str.strip()
    values = values[(values != "") & (values.str.lower() != "nan")]
    if values.empty:
        return None
    expiries = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    if expiries.isna().any():
        row = int(expiries.isna().to_numpy().nonzero()[0][0])
        raise CrowdboxesError(f"{path}: row {values.index[row] + 2}, field 'url_expires_at' {values.iloc[row]!r} is not a date")
    return expiries.min().to_pydatetime()


def fit_expiry_to_urls(will_expire: datetime, url_limit: datetime | None, path: str | os.PathLike, *, min_hours: float = 1.0,
                       now: datetime | None = None, log=print) -> datetime:
    """The pool's expiry, moved earlier to when its image URLs die (workers would see broken images).

    Refuses when the URLs leave the pool less than ``min_hours`` to run.
    """
    if url_limit is None or url_limit >= will_expire:
        return will_expire
    now = now or datetime.now(timezone.utc)
    if url_limit - now < timedelta(hours=min_hours):
        raise CrowdboxesError(f"{path}: image URLs expire at {url_limit:%Y-%m-%d %H:%M} UTC, less than {min_hours:g} h "
                        f"from now; re-run Upload Images (fresh presigned URLs) or use --url_mode public")
    if will_expire - url_limit > timedelta(hours=1):
        log(f"warning: the pool will expire at {url_limit:%Y-%m-%d %H:%M} UTC, when the presigned image URLs "
            f"do, not after --expiry_days; use --url_mode public for longer pools")
    return url_limit


# ---------------------------------------------------------------------------------------------
# the rounds' pools (mode overlap)


def parse_rounds(value: object) -> tuple[str, ...]:
    """``--rounds``: ``none`` -> ``()``; ``box_check,missed_signs`` -> the rounds in :data:`ROUND_POOL_ROLES` order."""
    if is_none(value):
        return ()
    names = [n.strip() for n in str(value).split(",") if n.strip()]
    bad = [n for n in names if n not in ROUND_POOL_ROLES]
    if bad or not names:
        raise CrowdboxesError(f"--rounds {value!r}: use none, or a comma list of {', '.join(ROUND_POOL_ROLES)}")
    return tuple(r for r in ROUND_POOL_ROLES if r in names)


def config_suite_size(config: dict) -> int:
    """The pool config's tasks per suite (``mixer_config.real_tasks_count``, 1 when absent)."""
    return max(1, int((config.get("mixer_config") or {}).get("real_tasks_count") or 1))


def round_pool_key(detection_key: str, role: str, config: dict, reward: float, tasks_per_suite: int) -> str:
    """``<detection pool key>:<role>:<digest>``: the round's pool belongs to that detection pool and changes
    with its config, reward and suite size (a re-run with the same ones finds it again)."""
    material = json.dumps({"config": config, "reward": reward, "tasks_per_suite": tasks_per_suite}, sort_keys=True,
                          default=str)
    return f"{detection_key}:{role}:{hashlib.sha256(material.encode()).hexdigest()[:12]}"


def build_round_pool(config: dict, *, project_id: str, key: str, reward: float, tasks_per_suite: int,
                     will_expire: datetime, languages: tuple[str, ...], adult_content: bool,
                     skill_ids: dict[str, str], config_path: str) -> Any:
    """A toloka-kit Pool for a round (box_check / missed_signs) from its config.

    The config's settings stay (overlap, filters, quality control, auto-accept); the step sets the
    project, the key, the reward and suite size (:mod:`crowdboxes.toloka.pricing` or the config's own), the
    expiry of the detection pool, its languages and adult-content flag. It is created closed and empty.
    """
    data = resolve_skill_placeholders(copy.deepcopy(config), skill_ids)
    for field in _SERVER_FIELDS:
        data.pop(field, None)
    data.update(project_id=str(project_id), private_comment=key, reward_per_assignment=float(reward),
                may_contain_adult_content=adult_content,
                mixer_config={"golden_tasks_count": 0, "training_tasks_count": 0, "force_last_assignment": True,
                              **(data.get("mixer_config") or {}), "real_tasks_count": int(tasks_per_suite)})
    data.setdefault("defaults", {"default_overlap_for_new_task_suites": 1, "default_overlap_for_new_tasks": 1})
    data.setdefault("assignment_max_duration_seconds", 600)
    return structured_pool(data, languages, will_expire, config_path)


def default_overlap(config: dict) -> int:
    """The overlap a pool config gives new tasks (``defaults.default_overlap_for_new_tasks``, 1 when absent)."""
    return max(1, int((config.get("defaults") or {}).get("default_overlap_for_new_tasks") or 1))


# ---------------------------------------------------------------------------------------------
# the verification pool


def build_verification_pool(settings: QualitySettings, *, project_id: str, skill_ids: dict[str, str], key: str,
                            will_expire: datetime, config_path: str | None = None) -> Any:
    """A toloka-kit Pool from ``configs/verification_pool.json``: skills resolved, overlap = verifiers.

    Refuses (CrowdboxesError) a config whose filter would let drawers verify, after the ``$drawer_skill``
    placeholder was resolved as well as before.
    """
    from toloka.client.pool import Pool

    path = config_path or settings.verification_pool_path or VERIFICATION_POOL_CONFIG.file_name
    if settings.verification_pool_config is None:
        raise CrowdboxesError(f"--mode {settings.mode}: no verification pool config loaded")
    data = resolve_skill_placeholders(copy.deepcopy(settings.verification_pool_config), skill_ids)
    check_verification_pool_config(data, path, drawer_skill_id=skill_ids.get("drawer_skill"))
    for field in ("id", "status", "created", "owner", "last_close_reason", "last_started", "last_stopped", "type"):
        data.pop(field, None)
    data.update(project_id=str(project_id), private_comment=key,
                defaults={"default_overlap_for_new_task_suites": settings.verifiers,
                          "default_overlap_for_new_tasks": settings.verifiers})
    try:
        pool = Pool.structure(data)
    except Exception as exc:
        raise CrowdboxesError(f"{path}: not a valid toloka-kit Pool "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    pool.will_expire = will_expire.astimezone(timezone.utc).replace(tzinfo=None) if will_expire.tzinfo else will_expire
    return pool


def ensure_verification_pool(client: Any, settings: QualitySettings, *, project_id: str, skill_ids: dict[str, str],
                             key: str, will_expire: datetime) -> tuple[Any, bool]:
    """``(pool, created)``: the verification pool with ``private_comment == key``, else a new one.

    It starts closed and empty; the loop adds tasks with ``open_pool=True`` as drawings arrive.
    """
    spec = build_verification_pool(settings, project_id=project_id, skill_ids=skill_ids, key=key,
                                   will_expire=will_expire)
    return _find_or_create_pool(client, spec, project_id=project_id, key=key)
