"""Get-or-create the Toloka projects and skills of one annotation job, from ``configs/``.

A job is named by a ``project_key`` (e.g. ``road-signs``). Every object this module creates carries
a stable idempotency key in its ``private_comment`` (:func:`idempotency_key`:
``crowdboxes:<project_key>:<role>``) so a re-run finds it again instead of creating a second one
(get-or-create is spelled ``ensure_*``; ``find_*`` only looks up):

* projects are looked up among ACTIVE projects by that key (an archived project is gone for us);
* skills are looked up by exact name (Toloka's skill search filters by name), the name being the
  config's ``name`` with ``{project_key}`` filled in, else by that key (a renamed skill).

A re-run after a config edit brings the object in Toloka up to date (``PUT /projects/{id}``,
``PUT /skills/{id}``); an unchanged config sends no write at all. What Toloka cannot change in place
is refused before any write, in one line naming the file and field: a data-spec change
(``task_spec.input_spec``/``output_spec``) while the project has pools that are not archived (Toloka
keeps those pools on the old spec), and skill fields other than name, comment and access.

Two runs of one job at once: when anything is to be created, the detection project is found or created
first and everything else is created under the job's lease on it (:mod:`crowdboxes.toloka.lease`); two
runs on two machines that create the detection project at the same moment keep the lowest id and the
other archives its own.

Configs are toloka-kit JSON (``Project.from_json`` / ``Skill.from_json``), so anything Toloka's
API accepts can be set there. The Template Builder ``view_spec.config`` may be given either as
Toloka stores it (a JSON string) or, easier to edit, as a JSON object.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from crowdboxes.artifacts import (BOX_CHECK_PROJECT_CONFIG, DETECTION_PROJECT_CONFIG, MISSED_SIGNS_PROJECT_CONFIG,
                                  SKILLS_CONFIG, VERIFICATION_PROJECT_CONFIG, Artifact)
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import read_json_object
from crowdboxes.toloka.quality import SKILL_ROLES
from crowdboxes.toloka.fields import (ROUND_PROJECT_FIELDS, DetectionFields, check_round_project, detection_fields,
                                      view_label_values)

# role in projects.csv -> suffix of the private_comment key
PROJECT_ROLES = {"detection_project": "detection", "verification_project": "verification",
                 "box_check": "box_check", "missed_signs": "missed_signs"}
# role -> its config in --config_dir; the detection project's is required, the others are made when present
PROJECT_CONFIGS: dict[str, Artifact] = {"detection_project": DETECTION_PROJECT_CONFIG,
                                        "verification_project": VERIFICATION_PROJECT_CONFIG,
                                        "box_check": BOX_CHECK_PROJECT_CONFIG,
                                        "missed_signs": MISSED_SIGNS_PROJECT_CONFIG}
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def idempotency_key(project_key: str, suffix: str) -> str:
    """The stable ``private_comment`` key of one object of the job ``project_key``: how a re-run finds it again."""
    if not _KEY_RE.match(project_key or ""):
        raise CrowdboxesError(f"--project_key {project_key!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return f"crowdboxes:{project_key}:{suffix}"


def _structure(cls: Any, data: dict[str, Any], path: Path, what: str) -> Any:
    """``cls.structure(data)`` with toloka-kit's exceptions turned into one line naming the file."""
    try:
        return cls.structure(data)
    except Exception as exc:  # cattrs raises several types (ClassValidationError, ValueError, KeyError)
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        notes = [n for e in getattr(exc, "exceptions", []) for n in [str(e).splitlines()[0]] if n]
        if notes:
            detail = f"{detail}: {notes[0]}"
        raise CrowdboxesError(f"{path}: not a valid toloka-kit {what} ({detail})") from None


def load_project_config(path: str | Path) -> Any:
    """A ``toloka.client.Project`` from a config file (``view_spec.config`` as string or object)."""
    from toloka.client.project import Project

    path = Path(path)
    data = read_json_object(path, "config", "with a Toloka project")
    view_spec = (data.get("task_spec") or {}).get("view_spec")
    if isinstance(view_spec, dict) and isinstance(view_spec.get("config"), dict):
        view_spec["config"] = json.dumps(view_spec["config"])  # Toloka stores it as a string
        view_spec.setdefault("lock", {"core": "1.0.0"})
    if isinstance(view_spec, dict) and isinstance(view_spec.get("config"), str):
        try:
            json.loads(view_spec["config"])
        except json.JSONDecodeError as exc:
            raise CrowdboxesError(f"{path}: task_spec.view_spec.config is not valid JSON ({exc.msg})") from None
    for field in ("id", "status", "created", "owner"):
        data.pop(field, None)  # a project exported from Toloka: drop the server's fields
    project = _structure(Project, data, path, "Project")
    if not project.public_name:
        raise CrowdboxesError(f"{path}: field 'public_name' is required")
    if project.task_spec is None:
        raise CrowdboxesError(f"{path}: field 'task_spec' needs input_spec and output_spec")
    for part in ("input_spec", "output_spec"):
        if not getattr(project.task_spec, part):
            raise CrowdboxesError(f"{path}: task_spec.{part} declares no field")
    return project


def validate_detection_project(project: Any, path: str | Path) -> DetectionFields:
    """Check the detection project's task interface; returns its :class:`~crowdboxes.toloka.fields.DetectionFields`.

    The field names are not fixed: the view's ``field.image-annotation`` names the output field
    (``data.output``) and the image input field (``image`` data.input), and its label values may be any
    strings (:mod:`crowdboxes.toloka.fields`). Refusals are one line naming the file and the field.
    """
    return detection_fields(project, Path(path))


def load_project_configs(config_dir: str | Path) -> dict[str, Any]:
    """``{role: toloka.client.Project}`` of every project config in ``config_dir``, each checked.

    The detection project's config is required (:func:`validate_detection_project`); the verification,
    box-check and missed-sign ones are loaded when present, the round projects checked for the fields the
    flow fills and reads (:func:`crowdboxes.toloka.fields.check_round_project`). The first problem is a
    CrowdboxesError naming the file and field; nothing is created by this function.
    """
    config_dir = Path(config_dir)
    path = PROJECT_CONFIGS["detection_project"].path(config_dir)
    loaded = {"detection_project": load_project_config(path)}
    validate_detection_project(loaded["detection_project"], path)
    for role, artifact in PROJECT_CONFIGS.items():
        path = artifact.path(config_dir)
        if role == "detection_project" or not path.is_file():
            continue
        loaded[role] = load_project_config(path)
        if role in ROUND_PROJECT_FIELDS:
            check_round_project(loaded[role], role, path)
    return loaded


def label_notes(fields: DetectionFields, config_dir: str | Path) -> list[str]:
    """What a user should know about the detection project's labels (``fields``: its DetectionFields): values
    that are not class names, and a verification, box-check or missed-sign project whose labels differ from
    them (the box check's ``right_label`` allowed values included)."""
    from crowdboxes.classes import CLASS_NAMES

    notes: list[str] = []
    other = [v for v in fields.label_values if v not in CLASS_NAMES]
    if other:
        notes.append(f"label value(s) {', '.join(map(repr, other[:5]))} are not class names of crowdboxes/classes.py: "
                     f"answers and the COCO export carry them as they are (to score against a truth with class "
                     f"names, give evaluate a --label-map)")
    for role in ("verification_project", "box_check", "missed_signs"):
        path = PROJECT_CONFIGS[role].path(config_dir)
        if not path.is_file():
            continue
        project = load_project_config(path)
        shown = view_label_values(project)
        if shown and fields.label_values and set(shown) != set(fields.label_values):
            notes.append(f"{path}: its image-annotation labels ({', '.join(shown[:3])}, ...) are not the "
                         f"detection project's ({', '.join(fields.label_values[:3])}, ...); give it the same label "
                         f"values so its workers see the drawings' sign types")
        right = getattr((project.task_spec.output_spec or {}).get("right_label"), "allowed_values", None)
        if role == "box_check" and right and fields.label_values and set(right) != set(fields.label_values):
            notes.append(f"{path}: task_spec.output_spec.right_label allows ({', '.join(map(str, right[:3]))}, ...), "
                         f"not the detection project's labels ({', '.join(fields.label_values[:3])}, ...)")
    return notes


def load_skill_configs(path: str | Path, project_key: str) -> dict[str, Any]:
    """``{role: toloka.client.Skill}`` from skills.json, ``{project_key}`` filled into names."""
    from toloka.client.skill import Skill

    path = Path(path)
    data = read_json_object(path, "config", f"{{role: skill}} with roles {', '.join(SKILL_ROLES)}")
    skills: dict[str, Any] = {}
    for role, body in data.items():
        if not isinstance(body, dict) or not str(body.get("name") or "").strip():
            raise CrowdboxesError(f"{path}: skill {role!r} needs a non-empty 'name'")
        body = {k: v for k, v in body.items() if k not in ("id", "created", "owner")}
        body["name"] = body["name"].replace("{project_key}", project_key)
        skills[role] = _structure(Skill, body, path, f"Skill ({role})")
    missing = [r for r in SKILL_ROLES if r not in skills]
    if missing:
        raise CrowdboxesError(f"{path}: missing skill role(s) {', '.join(missing)}")
    return skills


def projects_with_key(client: Any, key: str) -> list[Any]:
    """The ACTIVE projects whose ``private_comment`` is ``key``, lowest id first."""
    found = [p for p in client.get_projects(status="ACTIVE") if (p.private_comment or "") == key]
    return sorted(found, key=_by_id)


def find_project(client: Any, key: str) -> Any:
    """The ACTIVE project whose ``private_comment`` is ``key`` (lowest id if several), else None."""
    found = projects_with_key(client, key)
    return found[0] if found else None


# --- what a re-run changes -------------------------------------------------------------------------
# Toloka's rule (guide, "Input and output data"): after an edit of the data specification, existing
# pools keep the project version they were created with, while other edits (names, instructions,
# interface) reach every pool. A spec change is therefore only applied while no pool could keep the
# old one, i.e. when every pool of the project is archived.
PROJECT_SERVER_FIELDS = ("id", "status", "created", "owner")
PROJECT_CORE_FIELDS = ("public_name", "public_description", "public_instructions", "task_spec.input_spec",
                       "task_spec.output_spec", "task_spec.view_spec")
PROJECT_BREAKING_FIELDS = ("task_spec.input_spec", "task_spec.output_spec", "assignments_issuing_type")
# PUT /skills/{id} "changes the name, comment, and access to the skill" (OpenAPI); nothing else.
SKILL_EDITABLE_FIELDS = ("name", "private_comment", "hidden", "public_name", "public_requester_description")
SKILL_SERVER_FIELDS = ("id", "created", "owner", "deprecated", "global")


def _flat_project(project: Any) -> dict[str, Any]:
    """A project as ``{field: value}`` with the task spec split in its three parts and the
    Template Builder config parsed, so a re-serialised but equal config compares equal."""
    data = json.loads(project.to_json()) if not isinstance(project, dict) else dict(project)
    for field in PROJECT_SERVER_FIELDS + ("private_comment",):
        data.pop(field, None)
    spec = data.pop("task_spec", None) or {}
    for part in ("input_spec", "output_spec", "view_spec"):
        value = spec.get(part)
        if part == "view_spec" and isinstance(value, dict) and isinstance(value.get("config"), str):
            value = {**value, "config": json.loads(value["config"])}
        data[f"task_spec.{part}"] = value
    return {k: v for k, v in data.items() if v not in (None, "", {}, [])}


def _same(field: str, old: Any, new: Any) -> bool:
    """Whether Toloka's ``old`` value of ``field`` already is what the config sets (``new``).

    Attributes Toloka adds on its side (a field spec's defaults, view settings) are not differences:
    in the data spec the field names must match and each field must have the config's attributes;
    in the view spec the config's keys must match (its Template Builder config exactly).
    """
    if field in ("task_spec.input_spec", "task_spec.output_spec") and isinstance(old, dict) \
            and isinstance(new, dict):
        return set(old) == set(new) and all(
            isinstance(old[name], dict) and isinstance(spec, dict)
            and all(old[name].get(k) == v for k, v in spec.items()) for name, spec in new.items())
    if field == "task_spec.view_spec" and isinstance(old, dict) and isinstance(new, dict):
        return all(old.get(k) == v for k, v in new.items())
    return old == new


def project_changes(existing: Any, wanted: Any) -> list[str]:
    """Fields where the config ``wanted`` differs from the project in Toloka, in a stable order.

    Compared: the core fields (absent in the config = empty) and every other field the config sets;
    fields only Toloka sets (defaults it fills in, settings made in its UI) are left alone.
    """
    old, new = _flat_project(existing), _flat_project(wanted)
    fields = list(PROJECT_CORE_FIELDS) + sorted(k for k in new if k not in PROJECT_CORE_FIELDS)
    return [f for f in fields if not _same(f, old.get(f), new.get(f))]


def config_digest(obj: Any) -> str:
    """sha256 of what a config sets (server fields dropped, keys sorted): recorded in projects.csv."""
    data = _flat_project(obj) if hasattr(obj, "task_spec") else {
        k: v for k, v in json.loads(obj.to_json()).items() if k not in SKILL_SERVER_FIELDS + ("private_comment",)}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def updated_project_body(existing: Any, wanted: Any, key: str) -> Any:
    """The full project for ``PUT /projects/{id}`` (Toloka replaces everything): what Toloka has,
    overwritten by the config's fields, the core ones always."""
    from toloka.client.project import Project

    body = {k: v for k, v in json.loads(existing.to_json()).items() if k not in PROJECT_SERVER_FIELDS}
    new = json.loads(wanted.to_json())
    for field in ("public_name", "public_description", "public_instructions", "task_spec"):
        body.pop(field, None)
    body.update({k: v for k, v in new.items() if k not in PROJECT_SERVER_FIELDS})
    body["private_comment"] = key
    return Project.structure(body)


def live_pools(client: Any, project_id: str | int) -> list[Any]:
    """The project's pools that are not archived (they would keep an old task spec)."""
    return [p for p in client.get_pools(project_id=str(project_id))
            if str(getattr(p.status, "value", p.status)) != "ARCHIVED"]


def skills_named(client: Any, name: str, key: str) -> list[Any]:
    """The skills named exactly ``name``, else the ones whose private comment is ``key`` (a skill renamed
    in skills.json is found again by its key), lowest id first."""
    found = [s for s in client.get_skills(name=name) if s.name == name]  # the API filter is exact; keep it so
    if not found:
        found = [s for s in client.get_skills() if (s.private_comment or "") == key]
    return sorted(found, key=_by_id)


def find_skill(client: Any, name: str, key: str) -> Any:
    """The skill :func:`skills_named` finds first (lowest id), else None."""
    found = skills_named(client, name, key)
    return found[0] if found else None


def _by_id(obj: Any) -> int:
    return int(obj.id) if str(obj.id).isdigit() else 0


def skill_changes(existing: Any, wanted: Any) -> list[str]:
    """Skill fields where skills.json differs from Toloka (only the fields the config sets)."""
    old = json.loads(existing.to_json())
    new = {k: v for k, v in json.loads(wanted.to_json()).items() if k not in SKILL_SERVER_FIELDS}
    new.pop("private_comment", None)
    return [f for f in sorted(new) if old.get(f) != new[f]]


def _where(config_path: Path, role: str, field: str) -> str:
    return f"{config_path}: {field}" if config_path.name != SKILLS_CONFIG.file_name else f"{config_path}: {role}.{field}"


def ensure_projects(client: Any, config_dir: str | Path, project_key: str,
                    log: Callable[[str], Any] = print) -> pd.DataFrame:
    """Get-or-create everything configured in ``config_dir`` and bring it up to date; rows for projects.csv.

    Columns: ``role, toloka_id, key, name``, then ``created`` (made by this call), ``updated`` (changed
    in Toloka by this call), ``changed`` (the fields updated, ``;``-separated) and ``config_sha256``
    (digest of the config now in force). All configs are read, and every change is checked against
    what Toloka can do in place, before anything is created or updated: a refused change is one
    CrowdboxesError naming the file and field, and nothing is touched.
    """
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        raise CrowdboxesError(f"--config_dir {config_dir} is not a folder")
    keys = {role: idempotency_key(project_key, suffix) for role, suffix in PROJECT_ROLES.items()}
    paths = {role: artifact.path(config_dir) for role, artifact in PROJECT_CONFIGS.items()}
    wanted = load_project_configs(config_dir)
    skills = load_skill_configs(SKILLS_CONFIG.path(config_dir), project_key)

    plans = _plan(client, config_dir, project_key, keys, paths, wanted, skills)  # refusals before any write
    made_now: set[str] = set()
    if any(existing is None for _, _, _, _, existing, _ in plans):
        # something will be created: one run of this job at a time (crowdboxes.toloka.lease), and a run that
        # waited finds what the other made (updates need none: two runs write the same config)
        from crowdboxes.toloka.lease import (DEFAULT_WAIT_SECONDS, WAIT_ENV, Lease, MetadataTarget, endpoint_tag,
                                             env_seconds, local_lock)

        wait = env_seconds(WAIT_ENV, DEFAULT_WAIT_SECONDS)
        with local_lock(f"{endpoint_tag(client)}-create_project-{project_key}", wait):
            detection = find_project(client, keys["detection_project"])
            if detection is None:
                detection = _create_first(client, wanted["detection_project"], keys["detection_project"], log)
                made_now.add(str(detection.id))
            with Lease(MetadataTarget(client, "project", detection.id), "create_project",
                       wait_seconds=wait) as lease:
                plans = _plan(client, config_dir, project_key, keys, paths, wanted, skills)
                lease.confirm()
                return _apply(client, plans, made_now, log)
    return _apply(client, plans, made_now, log)


def _create_first(client: Any, config: Any, key: str, log: Callable[[str], Any]) -> Any:
    """Create the detection project (the object the job's lease lives on), then look again: when runs on
    two machines raced, or a lost reply's retry made two, every run keeps the lowest id and the extra one
    is archived at once (it has no pool yet). Returns the project to use."""
    from crowdboxes.toloka.client import keep_found
    from crowdboxes.toloka.lease import DEFAULT_SETTLE_SECONDS, SETTLE_ENV, env_seconds

    config.private_comment = key
    mine = client.create_project(config)
    time.sleep(env_seconds(SETTLE_ENV, DEFAULT_SETTLE_SECONDS))  # a rival's create is listed by now
    return keep_found(mine, projects_with_key(client, key), archive=client.archive_project,
                      what="detection_project", log=log)


def _plan(client: Any, config_dir: Path, project_key: str, keys: dict[str, str], paths: dict[str, Path],
          wanted: dict[str, Any], skills: dict[str, Any]) -> list[tuple[str, str, str, Any, Any, list[str]]]:
    """Look everything up and decide, without writing: (kind, role, key, config, existing or None, changed
    fields); a change Toloka cannot make in place is refused in one line naming the file and field."""
    plans = []  # (kind, role, key, wanted, existing or None, changed fields)
    for role, project in wanted.items():
        existing = find_project(client, keys[role])
        changed = project_changes(existing, project) if existing is not None else []
        breaking = [f for f in changed if f in PROJECT_BREAKING_FIELDS]
        if breaking:
            pools = live_pools(client, existing.id)
            if pools:
                listed = ", ".join(f"{p.id} ({getattr(p.status, 'value', p.status)})" for p in pools[:5])
                more = f" and {len(pools) - 5} more" if len(pools) > 5 else ""
                raise CrowdboxesError(
                    f"{_where(paths[role], role, breaking[0])} changed, but project {existing.id} has pool(s) "
                    f"{listed}{more} that Toloka keeps on the old spec; archive them in Toloka or use a new "
                    f"--project_key (nothing was changed)")
        plans.append(("project", role, keys[role], project, existing, changed))
    for role in SKILL_ROLES:
        key = idempotency_key(project_key, role)
        existing = find_skill(client, skills[role].name, key)
        changed = skill_changes(existing, skills[role]) if existing is not None else []
        fixed = [f for f in changed if f not in SKILL_EDITABLE_FIELDS]
        if fixed:
            raise CrowdboxesError(f"{_where(SKILLS_CONFIG.path(config_dir), role, fixed[0])} cannot change on the existing "
                            f"skill {existing.id} (Toloka edits only {', '.join(SKILL_EDITABLE_FIELDS)}); "
                            f"put the old value back or use a new --project_key (nothing was changed)")
        plans.append(("skill", role, key, skills[role], existing, changed))
    return plans


def _apply(client: Any, plans: list[tuple[str, str, str, Any, Any, list[str]]], made_now: set[str],
           log: Callable[[str], Any]) -> pd.DataFrame:
    """Create or update what ``plans`` says; projects.csv's rows (``made_now``: ids created before the plan)."""
    from crowdboxes.toloka.client import keep_found

    rows = []
    for kind, role, key, config, existing, changed in plans:
        created = existing is None or str(existing.id) in made_now
        if kind == "project":
            if existing is None:
                config.private_comment = key
                result = keep_found(client.create_project(config), projects_with_key(client, key),
                                    archive=client.archive_project, what=role, log=log)
            elif changed:
                result = client.update_project(existing.id, updated_project_body(existing, config, key))
            else:
                result = existing
            name = result.public_name
        else:
            if existing is None:
                config.private_comment = key
                result = keep_found(client.create_skill(config), skills_named(client, config.name, key),
                                    archive=None, what=role, log=log)
            elif changed:
                body = {k: v for k, v in json.loads(existing.to_json()).items() if k not in SKILL_SERVER_FIELDS}
                body.update({k: v for k, v in json.loads(config.to_json()).items() if k in SKILL_EDITABLE_FIELDS})
                body["private_comment"] = key
                result = client.update_skill(existing.id, type(config).structure(body))
            else:
                result = existing
            name = result.name
        what = "created" if created else (f"updated ({', '.join(changed)})" if changed else "found")
        log(f"{role}: {what} {kind} {result.id} ({name})")
        rows.append({"role": role, "toloka_id": str(result.id), "key": key, "name": name, "created": created,
                     "updated": bool(changed) and not created, "changed": ";".join(changed),
                     "config_sha256": config_digest(config)})
    return pd.DataFrame(rows, columns=["role", "toloka_id", "key", "name", "created", "updated", "changed",
                                       "config_sha256"])


def role_ids(projects: pd.DataFrame, path: str | Path) -> dict[str, str]:
    """``{role: toloka_id}`` from a projects.csv frame; CrowdboxesError when a role appears twice."""
    ids: dict[str, str] = {}
    for row_number, row in enumerate(projects.itertuples(index=False), start=2):
        role, toloka_id = str(row.role), str(row.toloka_id)
        if not toloka_id or toloka_id == "nan":
            raise CrowdboxesError(f"{path}: row {row_number}, field 'toloka_id' is empty")
        if role in ids:
            raise CrowdboxesError(f"{path}: row {row_number}: role {role!r} appears twice")
        ids[role] = toloka_id
    return ids
