"""Create Project: get-or-create the Toloka projects and skills of one annotation job, kept in step with configs/.

Reads ``detection_project.json``, ``skills.json`` and (if present) ``verification_project.json``,
``box_check_project.json`` and ``missed_signs_project.json`` from --config_dir, checks them all (a config
missing a field the flow needs is refused in one line, before anything is created), then finds each
object again by its stable key (``crowdboxes:<project_key>:<role>`` in the project's private comment;
skills by exact name, then by that key) or creates it. Re-running the step never creates anything twice. After an edit of a
config, the re-run updates that project or skill in Toloka (names, descriptions, instructions, the
task interface apply to running pools at once); with unchanged configs it writes nothing to Toloka.
In the flow it runs after Upload Images, so an empty or unusable dataset stops the job before any project
or skill exists.

Inputs:
  --config_dir   folder with detection_project.json, skills.json [, verification_project.json,
                 box_check_project.json, missed_signs_project.json (the rounds of Launch Pool's --rounds)]
  --project_key  names the job (letters, digits, . _ -); a new key makes new projects and skills
  --toloka_env   production | sandbox | URL of a Toloka API (e.g. the local Toloka)
  --token_env    name of the environment variable holding the Toloka token (default toloka_token)
Outputs (in --output_dir):
  projects.csv   role, toloka_id, key, name, created, updated, changed, config_sha256
                 roles: detection_project, [verification_project], [box_check], [missed_signs], drawer_skill,
                 verifier_skill, control_skill;
                 updated = changed in Toloka by this run, changed = those fields (';'-separated),
                 config_sha256 = digest of the config now in force
  stdout: cnvrg_tag_detection_project_id, cnvrg_tag_verification_project_id, cnvrg_tag_box_check_id,
          cnvrg_tag_missed_signs_id, cnvrg_tag_<skill role>_id,
          cnvrg_tag_objects_created, cnvrg_tag_objects_updated
Sample command:
  toloka_token=... python steps/create_project.py --config_dir configs --project_key road-signs \
      --toloka_env sandbox --output_dir out/create_project
Troubleshooting:
  * "environment variable 'toloka_token' ... is not set": add the cnvrg project secret (or export it).
  * "configs/detection_project.json: not valid JSON (... line L column C ...)": fix that spot in the file.
  * "--project_key 'x y': use 1-64 letters, digits, '.', '_' or '-'": the key is part of every object's
    idempotency key (``crowdboxes:<project_key>:<role>``), so it must stay simple.
  * "task_spec.output_spec needs field 'boxes' of type json": the view's field.image-annotation saves to
    data.output 'boxes', so the output spec must declare it (the same for its image data.input and the
    input spec). The flow reads the field names from the view; they need not be 'image' and 'result'.
  * "detection_project.json: task_spec.output_spec changed, but project N has pool(s) ... that Toloka
    keeps on the old spec": a change of the input/output fields does not reach existing pools (Toloka
    pins them to the old version) and the next steps would mix both specs. Archive those pools in
    Toloka, or use a new --project_key for fresh projects. Nothing was changed; projects.csv is as before.
  * "box_check_project.json: task_spec.output_spec needs field 'verdict' of type string" (or input 'box',
    missed_signs_project.json's output 'result', ...): the rounds' projects have fixed field names, which
    Wait Pool fills and reads (crowdboxes.toloka.fields.ROUND_PROJECT_FIELDS); put the field back. Nothing
    was created. Remove the file to run without that round's project.
  * "skills.json: drawer_skill.skill_ttl_hours cannot change on the existing skill N": Toloka edits
    only a skill's name, comment and access; put the old value back or use a new --project_key.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crowdboxes.cnvrg.stepkit import StepArgumentParser, run_step, step_parser  # noqa: E402
from crowdboxes.steps.create_project import CreateProjectOptions, create_project  # noqa: E402


def build_parser() -> StepArgumentParser:
    """Create Project's params (the flow YAML passes each as ``--key value``)."""
    parser = step_parser("create_project", "Get-or-create the Toloka projects and skills from configs.")
    parser.add_argument("--config_dir", default="configs", help="folder with the project/skill configs")
    parser.add_argument("--project_key", default="road-signs", help="stable name of this annotation job")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the params and run the step (:func:`crowdboxes.steps.create_project.create_project`)."""
    return create_project(CreateProjectOptions(**vars(build_parser().parse_args(argv))))


if __name__ == "__main__":
    raise SystemExit(run_step(main))
