"""Get-or-create the Toloka projects and skills of one annotation job, from ``configs/``.

A job is named by a ``project_key`` (e.g. ``road-signs``). Every object this module creates carries
a stable key in its ``private_comment`` (``crowdboxes:<project_key>:<role>``) so a re-run finds it
again instead of creating a second one:

* projects are looked up among ACTIVE projects by that key (an archived project is gone for us);
* skills are looked up by exact name (Toloka's skill search filters by name), the name being the
  config's ``name`` with ``{project_key}`` filled in.

Configs are toloka-kit JSON (``Project.from_json`` / ``Skill.from_json``), so anything Toloka's
API accepts can be set there. The Template Builder ``view_spec.config`` may be given either as
Toloka stores it (a JSON string) or, easier to edit, as a JSON object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from crowdboxes.classes import CLASS_NAMES
from crowdboxes.stepkit import StepError

DETECTION_PROJECT_FILE = "detection_project.json"
VERIFICATION_PROJECT_FILE = "verification_project.json"
SKILLS_FILE = "skills.json"
SKILL_ROLES = ("drawer_skill", "verifier_skill", "control_skill")
# role in projects.csv -> suffix of the private_comment key
PROJECT_ROLES = {"detection_project": "detection", "verification_project": "verification"}
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def object_key(project_key: str, suffix: str) -> str:
    """The stable ``private_comment`` key of one object of the job ``project_key``."""
    if not _KEY_RE.match(project_key or ""):
        raise StepError(f"--project_key {project_key!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return f"crowdboxes:{project_key}:{suffix}"


def read_json(path: str | Path) -> object:
    """Parse a config file; StepError naming the file, line and column of a syntax error."""
    path = Path(path)
    if not path.is_file():
        raise StepError(f"config file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise StepError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise StepError(f"{path}: not UTF-8 text") from None


def _structure(cls, data: dict, path: Path, what: str):
    """``cls.structure(data)`` with toloka-kit's exceptions turned into one line naming the file."""
    try:
        return cls.structure(data)
    except Exception as exc:  # cattrs raises several types (ClassValidationError, ValueError, KeyError)
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        notes = [n for e in getattr(exc, "exceptions", []) for n in [str(e).splitlines()[0]] if n]
        if notes:
            detail = f"{detail}: {notes[0]}"
        raise StepError(f"{path}: not a valid toloka-kit {what} ({detail})") from None


def _view_config(project_data: dict) -> dict | None:
    view_spec = (project_data.get("task_spec") or {}).get("view_spec") or {}
    config = view_spec.get("config")
    if isinstance(config, str):
        return json.loads(config)
    return config if isinstance(config, dict) else None


def load_project_config(path: str | Path):
    """A ``toloka.client.Project`` from a config file (``view_spec.config`` as string or object)."""
    from toloka.client.project import Project

    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise StepError(f"{path}: expected a JSON object with a Toloka project")
    view_spec = (data.get("task_spec") or {}).get("view_spec")
    if isinstance(view_spec, dict) and isinstance(view_spec.get("config"), dict):
        view_spec["config"] = json.dumps(view_spec["config"])  # Toloka stores it as a string
        view_spec.setdefault("lock", {"core": "1.0.0"})
    if isinstance(view_spec, dict) and isinstance(view_spec.get("config"), str):
        try:
            json.loads(view_spec["config"])
        except json.JSONDecodeError as exc:
            raise StepError(f"{path}: task_spec.view_spec.config is not valid JSON ({exc.msg})") from None
    for field in ("id", "status", "created", "owner"):
        data.pop(field, None)  # a project exported from Toloka: drop the server's fields
    project = _structure(Project, data, path, "Project")
    if not project.public_name:
        raise StepError(f"{path}: field 'public_name' is required")
    if project.task_spec is None or not project.task_spec.input_spec or not project.task_spec.output_spec:
        raise StepError(f"{path}: field 'task_spec' needs input_spec and output_spec")
    return project


def _walk(node) -> Iterable[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def validate_detection_project(project, path: str | Path) -> None:
    """The detection project must match the fixed task interface and the classes in classes.py.

    Input ``image`` (url), output ``result`` (json), and a ``field.image-annotation`` writing to
    ``result`` whose label values are class names (the answers are parsed by those names).
    """
    path = Path(path)
    spec = project.task_spec
    image = spec.input_spec.get("image")
    if image is None or str(getattr(image.type, "value", image.type)).lower() != "url":
        raise StepError(f"{path}: task_spec.input_spec needs field 'image' of type url")
    result = spec.output_spec.get("result")
    if result is None or str(getattr(result.type, "value", result.type)).lower() != "json":
        raise StepError(f"{path}: task_spec.output_spec needs field 'result' of type json")
    config = _view_config(json.loads(project.to_json()))
    if config is None:
        raise StepError(f"{path}: task_spec.view_spec must be a Template Builder view (type tb)")
    fields = [c for c in _walk(config) if c.get("type") == "field.image-annotation"
              and (c.get("data") or {}).get("path") == "result"]
    if not fields:
        raise StepError(f"{path}: the view needs a field.image-annotation with data.output path 'result'")
    labels = fields[0].get("labels")
    if labels:
        values = [label.get("value") for label in labels if isinstance(label, dict)]
        unknown = [v for v in values if v not in CLASS_NAMES]
        if unknown:
            raise StepError(f"{path}: image-annotation label value {unknown[0]!r} is not a class in "
                            f"crowdboxes/classes.py (known: {', '.join(CLASS_NAMES)})")
    shapes = fields[0].get("shapes")
    if isinstance(shapes, dict) and not shapes.get("rectangle"):
        raise StepError(f"{path}: the image-annotation field must allow shapes.rectangle")


def load_skill_configs(path: str | Path, project_key: str) -> dict:
    """``{role: toloka.client.Skill}`` from skills.json, ``{project_key}`` filled into names."""
    from toloka.client.skill import Skill

    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise StepError(f"{path}: expected a JSON object {{role: skill}} with roles {', '.join(SKILL_ROLES)}")
    skills = {}
    for role, body in data.items():
        if not isinstance(body, dict) or not str(body.get("name") or "").strip():
            raise StepError(f"{path}: skill {role!r} needs a non-empty 'name'")
        body = {k: v for k, v in body.items() if k not in ("id", "created", "owner")}
        body["name"] = body["name"].replace("{project_key}", project_key)
        skills[role] = _structure(Skill, body, path, f"Skill ({role})")
    missing = [r for r in SKILL_ROLES if r not in skills]
    if missing:
        raise StepError(f"{path}: missing skill role(s) {', '.join(missing)}")
    return skills


def find_project(client, key: str):
    """The ACTIVE project whose ``private_comment`` is ``key`` (lowest id if several), else None."""
    found = [p for p in client.get_projects(status="ACTIVE") if (p.private_comment or "") == key]
    return min(found, key=lambda p: int(p.id) if str(p.id).isdigit() else 0) if found else None


def get_or_create_project(client, project, key: str):
    """``(project, created)``: the existing project with ``key`` or a new one from ``project``."""
    existing = find_project(client, key)
    if existing is not None:
        return existing, False
    project.private_comment = key
    return client.create_project(project), True


def project_drift(existing, wanted) -> list[str]:
    """Fields of the config that differ from the project already in Toloka (not updated automatically)."""
    changed = []
    for field in ("public_name", "public_description", "public_instructions"):
        if (getattr(existing, field) or "") != (getattr(wanted, field) or ""):
            changed.append(field)
    old, new = (json.loads(p.to_json()).get("task_spec") for p in (existing, wanted))
    if old is not None and new is not None:
        for part in ("input_spec", "output_spec"):
            if old.get(part) != new.get(part):
                changed.append(f"task_spec.{part}")
        if _view_config({"task_spec": old}) != _view_config({"task_spec": new}):
            changed.append("task_spec.view_spec")
    return changed


def get_or_create_skill(client, skill, key: str):
    """``(skill, created)``: the skill named exactly ``skill.name`` or a new one."""
    found = list(client.get_skills(name=skill.name))
    found = [s for s in found if s.name == skill.name]  # the API filter is exact; keep it so
    if found:
        return min(found, key=lambda s: int(s.id) if str(s.id).isdigit() else 0), False
    skill.private_comment = key
    return client.create_skill(skill), True


def ensure_projects(client, config_dir: str | Path, project_key: str, log=print) -> pd.DataFrame:
    """Get-or-create everything configured in ``config_dir``; rows for projects.csv.

    Columns: ``role, toloka_id, key, name`` plus ``created`` (True when made by this call).
    All configs are read and checked before anything is created.
    """
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        raise StepError(f"--config_dir {config_dir} is not a folder")
    keys = {role: object_key(project_key, suffix) for role, suffix in PROJECT_ROLES.items()}
    wanted = {"detection_project": load_project_config(config_dir / DETECTION_PROJECT_FILE)}
    validate_detection_project(wanted["detection_project"], config_dir / DETECTION_PROJECT_FILE)
    verification_path = config_dir / VERIFICATION_PROJECT_FILE
    if verification_path.is_file():
        wanted["verification_project"] = load_project_config(verification_path)
    skills = load_skill_configs(config_dir / SKILLS_FILE, project_key)

    rows = []
    for role, project in wanted.items():
        result, created = get_or_create_project(client, project, keys[role])
        if not created:
            drift = project_drift(result, project)
            if drift:
                log(f"warning: {role} {result.id} already exists and differs from the config in "
                    f"{', '.join(drift)}; it was not changed (edit it in Toloka or use a new --project_key)")
        log(f"{role}: {'created' if created else 'found'} project {result.id} ({result.public_name})")
        rows.append({"role": role, "toloka_id": str(result.id), "key": keys[role],
                     "name": result.public_name, "created": created})
    for role in SKILL_ROLES:
        key = object_key(project_key, role)
        result, created = get_or_create_skill(client, skills[role], key)
        log(f"{role}: {'created' if created else 'found'} skill {result.id} ({result.name})")
        rows.append({"role": role, "toloka_id": str(result.id), "key": key, "name": result.name,
                     "created": created})
    return pd.DataFrame(rows, columns=["role", "toloka_id", "key", "name", "created"])


def role_ids(projects: pd.DataFrame, path: str | Path) -> dict[str, str]:
    """``{role: toloka_id}`` from a projects.csv frame; StepError when a role appears twice."""
    ids: dict[str, str] = {}
    for row_number, row in enumerate(projects.itertuples(index=False), start=2):
        role, toloka_id = str(row.role), str(row.toloka_id)
        if not toloka_id or toloka_id == "nan":
            raise StepError(f"{path}: row {row_number}, field 'toloka_id' is empty")
        if role in ids:
            raise StepError(f"{path}: row {row_number}: role {role!r} appears twice")
        ids[role] = toloka_id
    return ids
