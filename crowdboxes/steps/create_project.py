"""Create Project's logic: check every config, then get-or-create the projects and skills, write projects.csv.

``steps/create_project.py`` parses the params into :class:`CreateProjectOptions` and calls
:func:`create_project`. The Toloka side (idempotency keys, what a re-run updates or refuses) is
:mod:`crowdboxes.toloka.projects`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from crowdboxes.artifacts import DETECTION_PROJECT_CONFIG, PROJECTS, SKILLS_CONFIG, write_csv
from crowdboxes.cnvrg.metrics import cnvrg_tag
from crowdboxes.cnvrg.stepkit import output_dir
from crowdboxes.credentials import read_token
from crowdboxes.errors import CrowdboxesError
from crowdboxes.toloka import projects
from crowdboxes.toloka.client import connect
from crowdboxes.toloka.fields import DetectionFields


@dataclass(frozen=True)
class CreateProjectOptions:
    """Create Project's params as ``steps/create_project.py`` parses them (meanings and defaults are there)."""

    toloka_env: str
    token_env: str
    output_dir: str | None
    config_dir: str
    project_key: str


def check_configs(config_dir: Path, project_key: str) -> DetectionFields:
    """Read and check every config before Toloka is touched (the detection project, and the verification,
    box-check and missed-sign projects when their files are there); the detection project's fields.

    The fields found go to stdout; notes about its labels (values that are not class names, a
    verification project showing other labels) go to stderr: worth knowing, not reasons to stop.
    """
    projects.idempotency_key(project_key, "detection")  # a bad --project_key fails before anything else
    path = DETECTION_PROJECT_CONFIG.path(config_dir)
    loaded = projects.load_project_configs(config_dir)  # every project config, the round projects' fields too
    fields = projects.validate_detection_project(loaded["detection_project"], path)
    print(f"detection project fields: image input {fields.image_input!r}, output {fields.output!r}, "
          f"labels {', '.join(fields.label_values) or '(none)'}")
    rounds = [role for role in ("box_check", "missed_signs") if role in loaded]
    if rounds:
        print(f"round projects: {', '.join(rounds)} (mode overlap's --rounds)")
    for note in projects.label_notes(fields, config_dir):
        print(f"note: {note}", file=sys.stderr)
    projects.load_skill_configs(SKILLS_CONFIG.path(config_dir), project_key)
    return fields


def create_project(options: CreateProjectOptions) -> int:
    """Run the step: projects.csv in the output folder, object ids and counts as cnvrg tags; exit code 0."""
    out = output_dir(options.output_dir)
    config_dir = Path(options.config_dir)
    # cheap checks first: a missing token or folder fails in a moment, before toloka-kit is imported
    if not config_dir.is_dir():
        raise CrowdboxesError(f"--config_dir {config_dir} is not a folder")
    read_token(options.token_env)
    check_configs(config_dir, options.project_key)
    client = connect(options.toloka_env, options.token_env)
    rows = projects.ensure_projects(client, config_dir, options.project_key)
    path = write_csv(rows, out, PROJECTS)
    print(f"wrote {path} ({len(rows)} rows)")
    for row in rows.itertuples(index=False):
        cnvrg_tag(f"{row.role}_id", row.toloka_id)
    cnvrg_tag("objects_created", int(rows["created"].sum()))
    cnvrg_tag("objects_updated", int(rows["updated"].sum()))
    return 0
