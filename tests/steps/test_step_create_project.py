"""Create Project: the shipped configs are toloka-kit JSON, and re-running creates nothing twice."""

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from crowdboxes.toloka import projects

from crowdboxes.classes import SIGN_CLASSES
from crowdboxes.cnvrg.stepkit import StepError
from helpers_local_toloka import start_local_toloka

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TOKEN = "create-project-test-token-5f1e2d"


# --- configs ----------------------------------------------------------------------------------

def test_shipped_configs_structure_with_toloka_kit():
    from toloka.client import Pool, Project, Skill

    project = Project.from_json((CONFIGS / "detection_project.json").read_text())
    assert project.task_spec.input_spec["image"].type.value == "url"
    assert project.task_spec.output_spec["result"].type.value == "json"
    view = json.loads(json.loads(project.to_json())["task_spec"]["view_spec"]["config"])
    annotation = next(item for item in view["view"]["items"] if item["type"] == "field.image-annotation")
    assert [(label["value"], label["label"]) for label in annotation["labels"]] == \
        [(c.name, c.title) for c in SIGN_CLASSES]
    assert annotation["shapes"] == {"rectangle": True} and annotation["data"]["path"] == "result"
    # an empty answer is allowed only with the "no signs" box ticked
    assert annotation["validation"]["type"] == "condition.any"

    pool = Pool.from_json((CONFIGS / "detection_pool.json").read_text())
    collectors = {type(c.collector_config).__name__ for c in pool.quality_control.configs}
    assert {"AssignmentSubmitTime", "AcceptanceRate", "AnswerCount"} <= collectors
    assert pool.mixer_config.real_tasks_count == 1 and pool.filter is not None

    skills = json.loads((CONFIGS / "skills.json").read_text())
    assert set(skills) == set(projects.SKILL_ROLES)
    for body in skills.values():
        assert "{project_key}" in Skill.from_json(json.dumps(body)).name


def test_project_validation_names_the_problem(tmp_path):
    data = json.loads((CONFIGS / "detection_project.json").read_text())
    config = json.loads(data["task_spec"]["view_spec"]["config"])
    annotation = next(i for i in config["view"]["items"] if i["type"] == "field.image-annotation")
    annotation["labels"][0]["value"] = "moose_crossing"  # label values need not be classes.py names
    annotation["labels"][1]["value"] = "moose_crossing"
    data["task_spec"]["view_spec"]["config"] = config  # the editable object form is accepted too
    path = tmp_path / "detection_project.json"
    path.write_text(json.dumps(data))
    project = projects.load_project_config(path)
    with pytest.raises(StepError, match="label value 'moose_crossing' appears twice"):
        projects.validate_detection_project(project, path)
    annotation["labels"][1]["value"] = "yield"
    path.write_text(json.dumps(data))
    fields = projects.validate_detection_project(projects.load_project_config(path), path)
    assert fields.label_values[:2] == ("moose_crossing", "yield")

    data["task_spec"]["output_spec"] = {"boxes": {"type": "json", "required": True}}
    path.write_text(json.dumps(data))
    with pytest.raises(StepError, match="output_spec needs field 'result' of type json"):
        projects.validate_detection_project(projects.load_project_config(path), path)

    path.write_text('{\n  "public_name": "x",\n  "task_spec": {,}\n}')
    with pytest.raises(StepError, match=r"detection_project.json: not valid JSON .*line 3 column 17"):
        projects.load_project_config(path)
    with pytest.raises(StepError, match="--project_key 'bad key!'"):
        projects.idempotency_key("bad key!", "detection")


# --- against the local Toloka -------------------------------------------------------------------

@pytest.fixture(scope="module")
def toloka(tmp_path_factory):
    with start_local_toloka(tmp_path_factory.mktemp("toloka"), TOKEN, workers=2, seed=2,
                            crowd_module="helpers_local_toloka") as handle:
        yield handle


def _env(**extra):
    return {**os.environ, "toloka_token": TOKEN, **extra}


TOKEN_ENV = {"toloka_token": TOKEN}


def _outputs(result, out: Path) -> str:
    return result.stdout + result.stderr + "".join(p.read_text() for p in out.glob("*") if p.is_file())


def test_rerun_finds_everything_and_creates_nothing(toloka, tmp_path, run_step, run_step_in_process):
    out = tmp_path / "out"
    args = ["--toloka_env", toloka.url, "--config_dir", str(CONFIGS), "--project_key", "rerun-test",
            "--output_dir", str(out)]
    first = run_step("create_project.py", args, _env())
    assert first.returncode == 0, first.stderr
    rows1 = pd.read_csv(out / "projects.csv", dtype=str)
    assert list(rows1.columns[:4]) == ["role", "toloka_id", "key", "name"]
    assert list(rows1["role"]) == ["detection_project", "verification_project", "box_check", "missed_signs",
                                   "drawer_skill", "verifier_skill", "control_skill"]
    assert list(rows1["created"]) == ["True"] * 7
    assert rows1.set_index("role").loc["detection_project", "key"] == "crowdboxes:rerun-test:detection"
    assert rows1.set_index("role").loc["box_check", "key"] == "crowdboxes:rerun-test:box_check"
    assert "cnvrg_tag_objects_created: 7" in first.stdout
    assert "cnvrg_tag_box_check_id" in first.stdout and "cnvrg_tag_missed_signs_id" in first.stdout

    second = run_step("create_project.py", args, _env())
    assert second.returncode == 0, second.stderr
    rows2 = pd.read_csv(out / "projects.csv", dtype=str)
    assert list(rows2["toloka_id"]) == list(rows1["toloka_id"]) and list(rows2["created"]) == ["False"] * 7
    assert "cnvrg_tag_objects_created: 0" in second.stdout

    client = toloka.client()
    keyed = [p for p in client.get_projects(status="ACTIVE") if p.private_comment == "crowdboxes:rerun-test:detection"]
    assert [p.id for p in keyed] == [rows1.set_index("role").loc["detection_project", "toloka_id"]]
    for role in ("box_check", "missed_signs"):  # the rounds' projects exist once, by their key, with their fields
        key = f"crowdboxes:rerun-test:{role}"
        keyed = [p for p in client.get_projects(status="ACTIVE") if p.private_comment == key]
        assert [p.id for p in keyed] == [rows1.set_index("role").loc[role, "toloka_id"]]
    check = client.get_project(rows1.set_index("role").loc["box_check", "toloka_id"])
    assert set(check.task_spec.output_spec) == {"verdict", "right_label"}
    assert set(check.task_spec.output_spec["verdict"].allowed_values) == {"yes", "no_sign", "loose", "wrong_class"}
    drawer_name = rows1.set_index("role").loc["drawer_skill", "name"]
    assert drawer_name == "crowdboxes rerun-test: drew road-sign outlines"
    assert len(list(client.get_skills(name=drawer_name))) == 1
    assert TOKEN not in _outputs(first, out) + _outputs(second, out)

    # another job key gets its own projects and skills
    other = run_step_in_process("create_project.py", [
        "--toloka_env", toloka.url, "--config_dir", str(CONFIGS), "--project_key", "other-job",
        "--output_dir", str(tmp_path / "other")], TOKEN_ENV)
    assert other.returncode == 0, other.stderr
    rows3 = pd.read_csv(tmp_path / "other" / "projects.csv", dtype=str)
    assert set(rows3["toloka_id"][:2]).isdisjoint(rows1["toloka_id"][:2])


def _writes(toloka) -> dict:
    """Write requests the server saw since the last reset (``{"PUT update_project": n, ...}``)."""
    stats = toloka.admin("GET", "/_local/stats")["requests"]
    return {k: v for k, v in stats.items() if k.split()[0] in {"POST", "PUT", "PATCH", "DELETE"}
            and not k.split()[1].startswith("local_")}


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def _view(data) -> dict:
    config = data["task_spec"]["view_spec"]["config"]
    return json.loads(config) if isinstance(config, str) else config


def _editable_run(toloka, tmp_path, project_key):
    """A copy of configs/ to edit, the output folder and the step's args for ``project_key``."""
    configs = tmp_path / "configs"
    shutil.copytree(CONFIGS, configs)
    out = tmp_path / "out"
    args = ["--toloka_env", toloka.url, "--config_dir", str(configs), "--project_key", project_key,
            "--output_dir", str(out)]
    return configs, out, args


def test_edited_config_updates_toloka_on_rerun_and_unchanged_writes_nothing(toloka, tmp_path, run_step_in_process):
    configs, out, args = _editable_run(toloka, tmp_path, "edit-test")
    assert run_step_in_process("create_project.py", args, TOKEN_ENV).returncode == 0
    first = pd.read_csv(out / "projects.csv", dtype=str).set_index("role")
    assert list(first["updated"]) == ["False"] * 7 and first["changed"].isna().all()

    # unchanged configs: not one write request, same digests
    toloka.admin("POST", "/_local/stats/reset")
    again = run_step_in_process("create_project.py", args, TOKEN_ENV)
    assert again.returncode == 0, again.stderr
    assert _writes(toloka) == {}
    assert "cnvrg_tag_objects_updated: 0" in again.stdout
    rows = pd.read_csv(out / "projects.csv", dtype=str).set_index("role")
    assert list(rows["created"]) == ["False"] * 7 and list(rows["updated"]) == ["False"] * 7
    assert list(rows["config_sha256"]) == list(first["config_sha256"])

    # edit instructions and the interface text of the detection project, a skill's description and name
    def detection_edit(data):
        data["public_instructions"] += "<p>New rule: include signs seen from behind.</p>"
        view = _view(data)
        view["view"]["items"][0]["content"] = "Box EVERY road sign, including small ones."
        data["task_spec"]["view_spec"]["config"] = view  # the editable object form

    _edit(configs / "detection_project.json", detection_edit)
    _edit(configs / "skills.json", lambda d: d["drawer_skill"].update(
        name="crowdboxes {project_key}: drew road-sign boxes", public_requester_description={"EN": "Drew boxes."}))
    toloka.admin("POST", "/_local/stats/reset")
    edited = run_step_in_process("create_project.py", args, TOKEN_ENV)
    assert edited.returncode == 0, edited.stderr
    assert _writes(toloka) == {"PUT update_project": 1, "PUT update_skill": 1}
    assert "detection_project: updated (public_instructions, task_spec.view_spec) project" in edited.stdout
    assert "cnvrg_tag_objects_updated: 2" in edited.stdout and "cnvrg_tag_objects_created: 0" in edited.stdout
    rows = pd.read_csv(out / "projects.csv", dtype=str).set_index("role")
    assert list(rows["toloka_id"]) == list(first["toloka_id"])  # the same objects, updated in place
    assert rows.loc["detection_project", "updated"] == "True"
    assert rows.loc["detection_project", "changed"] == "public_instructions;task_spec.view_spec"
    assert rows.loc["drawer_skill", "changed"] == "name;public_requester_description"
    assert rows.loc["verification_project", "updated"] == "False"
    assert rows.loc["detection_project", "config_sha256"] != first.loc["detection_project", "config_sha256"]
    assert rows.loc["verification_project", "config_sha256"] == first.loc["verification_project", "config_sha256"]

    # read back through toloka-kit
    client = toloka.client()
    project = client.get_project(first.loc["detection_project", "toloka_id"])
    assert project.public_instructions.endswith("<p>New rule: include signs seen from behind.</p>")
    assert _view(json.loads(project.to_json()))["view"]["items"][0]["content"] == \
        "Box EVERY road sign, including small ones."
    assert project.private_comment == "crowdboxes:edit-test:detection"  # still found by its key
    assert project.task_spec.output_spec["result"].type.value == "json"
    skill = client.get_skill(first.loc["drawer_skill", "toloka_id"])
    assert skill.name == "crowdboxes edit-test: drew road-sign boxes"
    assert skill.public_requester_description == {"EN": "Drew boxes."}
    assert rows.loc["drawer_skill", "name"] == skill.name

    # and the edited configs are now in force: a further re-run writes nothing
    toloka.admin("POST", "/_local/stats/reset")
    assert run_step_in_process("create_project.py", args, TOKEN_ENV).returncode == 0
    assert _writes(toloka) == {}
    assert pd.read_csv(out / "projects.csv", dtype=str)["updated"].tolist() == ["False"] * 7

    # without a verification (or a round's) config there is no such project
    for name in ("verification_project.json", "box_check_project.json", "missed_signs_project.json"):
        (configs / name).unlink()
    result = run_step_in_process("create_project.py", [
        "--toloka_env", toloka.url, "--config_dir", str(configs), "--project_key", "no-verify",
        "--output_dir", str(tmp_path / "nv")], TOKEN_ENV)
    assert result.returncode == 0, result.stderr
    assert list(pd.read_csv(tmp_path / "nv" / "projects.csv")["role"]) == [
        "detection_project", "drawer_skill", "verifier_skill", "control_skill"]


def test_refused_changes_are_one_line_and_change_nothing(toloka, tmp_path, run_step, run_step_in_process):
    from toloka.client import Pool

    configs, out, args = _editable_run(toloka, tmp_path, "refuse-test")
    assert run_step_in_process("create_project.py", args, TOKEN_ENV).returncode == 0
    before_csv = (out / "projects.csv").read_bytes()
    ids = pd.read_csv(out / "projects.csv", dtype=str).set_index("role")["toloka_id"]
    client = toloka.client()
    pool = client.create_pool(Pool.from_json(json.dumps({
        "project_id": ids["detection_project"], "private_name": "running", "reward_per_assignment": 0.02,
        "assignment_max_duration_seconds": 600, "will_expire": "2099-01-01T00:00:00",
        "defaults": {"default_overlap_for_new_task_suites": 1},
        "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0}})))
    original = client.get_project(ids["detection_project"])

    # an output field added (a data-spec change) together with an instructions edit
    def spec_edit(data):
        data["task_spec"]["output_spec"]["comment"] = {"type": "string", "required": False}
        data["public_instructions"] += "<p>Say what was hard.</p>"

    _edit(configs / "detection_project.json", spec_edit)
    toloka.admin("POST", "/_local/stats/reset")
    refused = run_step("create_project.py", args, _env())  # as cnvrg runs it: exit 2, one line
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("error: ")
    assert f"detection_project.json: task_spec.output_spec changed, but project {ids['detection_project']} " \
           f"has pool(s) {pool.id} (CLOSED)" in refused.stderr
    assert "archive them" in refused.stderr and TOKEN not in refused.stderr + refused.stdout
    assert _writes(toloka) == {}  # nothing half-applied: not even the instructions
    now = client.get_project(ids["detection_project"])
    assert now.public_instructions == original.public_instructions and "comment" not in now.task_spec.output_spec
    assert (out / "projects.csv").read_bytes() == before_csv  # the last good projects.csv is kept

    # once the pool is archived nothing can stay on the old spec: the same re-run applies it in place
    client.archive_pool(pool.id)
    applied = run_step_in_process("create_project.py", args, TOKEN_ENV)
    assert applied.returncode == 0, applied.stderr
    now = client.get_project(ids["detection_project"])
    assert now.task_spec.output_spec["comment"].type.value == "string"
    assert now.public_instructions.endswith("<p>Say what was hard.</p>") and now.id == ids["detection_project"]
    row = pd.read_csv(out / "projects.csv", dtype=str).set_index("role").loc["detection_project"]
    assert row["changed"] == "public_instructions;task_spec.output_spec"

    # a skill field Toloka does not edit in place
    _edit(configs / "skills.json", lambda d: d["control_skill"].update(skill_ttl_hours=24))
    before_csv = (out / "projects.csv").read_bytes()
    toloka.admin("POST", "/_local/stats/reset")
    refused = run_step_in_process("create_project.py", args, TOKEN_ENV)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert f"skills.json: control_skill.skill_ttl_hours cannot change on the existing skill " \
           f"{ids['control_skill']}" in refused.stderr
    assert _writes(toloka) == {} and (out / "projects.csv").read_bytes() == before_csv


def _drop(part: str, name: str):
    return lambda data: data["task_spec"][part].pop(name)


@pytest.mark.parametrize("config, edit, message", [
    ("box_check_project.json", _drop("output_spec", "verdict"),
     "box_check_project.json: task_spec.output_spec needs field 'verdict' of type string"),
    ("box_check_project.json", _drop("input_spec", "box"),
     "box_check_project.json: task_spec.input_spec needs field 'box' of type json"),
    ("missed_signs_project.json",  # its only output renamed
     lambda data: data["task_spec"]["output_spec"].update(boxes=data["task_spec"]["output_spec"].pop("result")),
     "missed_signs_project.json: task_spec.output_spec needs field 'result' of type json"),
    ("detection_project.json",  # its image input renamed: the view's image-annotation shows 'image'
     lambda data: data["task_spec"]["input_spec"].update(photo=data["task_spec"]["input_spec"].pop("image")),
     "detection_project.json: task_spec.input_spec needs field 'image' of type url"),
])
def test_a_config_without_a_needed_field_is_refused_before_anything_is_created(toloka, tmp_path, run_step, config,
                                                                              edit, message):
    configs, out, args = _editable_run(toloka, tmp_path, "bad-config")
    _edit(configs / config, edit)
    client = toloka.client()
    before = [p.id for p in client.get_projects()]
    toloka.admin("POST", "/_local/stats/reset")
    refused = run_step("create_project.py", args, _env())  # as cnvrg runs it: exit 2, one line
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert message in refused.stderr
    assert _writes(toloka) == {}  # not one project or skill of the job
    assert [p.id for p in client.get_projects()] == before
    assert not [p for p in client.get_projects() if (p.private_comment or "").startswith("crowdboxes:bad-config:")]
    assert not (out / "projects.csv").exists()


def test_token_problems_are_one_line_naming_the_variable(toloka, tmp_path, run_step, run_step_in_process):
    env = {k: v for k, v in _env().items() if k != "toloka_token"}
    args = ["--toloka_env", toloka.url, "--config_dir", str(CONFIGS), "--output_dir", str(tmp_path / "out")]
    missing = run_step("create_project.py", args, env)  # as a process: exit code 2 and exactly one line
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "environment variable 'toloka_token'" in missing.stderr
    wrong = run_step_in_process("create_project.py", args + ["--token_env", "MY_TOLOKA"],
                                {"MY_TOLOKA": "wrong-token-value-123"})
    assert wrong.returncode == 2 and "'MY_TOLOKA'" in wrong.stderr and "wrong-token-value-123" not in wrong.stderr
    empty_dir = tmp_path / "empty_configs"
    empty_dir.mkdir()
    bad_config = run_step_in_process("create_project.py", [
        "--toloka_env", toloka.url, "--config_dir", str(empty_dir),
        "--output_dir", str(tmp_path / "out")], TOKEN_ENV)
    assert bad_config.returncode == 2 and "detection_project.json does not exist" in bad_config.stderr
    assert not (tmp_path / "out" / "projects.csv").exists()


def test_find_looks_up_by_idempotency_key_and_never_creates(toloka):
    client = toloka.client()
    assert projects.idempotency_key("find-test", "detection") == "crowdboxes:find-test:detection"
    skills = projects.load_skill_configs(CONFIGS / "skills.json", "find-test")
    project_keys = [projects.idempotency_key("find-test", suffix) for suffix in projects.PROJECT_ROLES.values()]
    for _ in range(2):  # looking twice creates nothing either
        assert all(projects.find_project(client, key) is None for key in project_keys)
        assert all(projects.find_skill(client, skill.name, projects.idempotency_key("find-test", role)) is None
                   for role, skill in skills.items())
    rows = projects.ensure_projects(client, CONFIGS, "find-test", log=lambda line: None)
    for row in rows.itertuples(index=False):
        found = projects.find_project(client, row.key) if row.role in projects.PROJECT_ROLES else \
            projects.find_skill(client, row.name, row.key)
        assert str(found.id) == row.toloka_id, row


def test_what_toloka_adds_on_its_side_is_not_a_change():
    """A project as Toloka may return it (field-spec defaults, view settings, server fields) compares
    equal to its config; a renamed or retyped field, another label set or new instructions do not."""
    config = projects.load_project_config(CONFIGS / "detection_project.json")
    served = json.loads(config.to_json())
    served.update(id="7", status="ACTIVE", created="2026-01-01T00:00:00", private_comment="crowdboxes:x:detection",
                  owner={"id": "o", "myself": True})
    served["task_spec"]["input_spec"]["image"]["min_length"] = None
    served["task_spec"]["output_spec"]["result"]["hidden"] = False
    served["task_spec"]["view_spec"]["settings"] = {"showSkip": True}
    assert projects.project_changes(served, config) == []

    def changed(edit) -> list:
        data = json.loads(json.dumps(served))
        edit(data)
        return projects.project_changes(data, config)

    assert changed(lambda d: d["task_spec"]["output_spec"].update(boxes=d["task_spec"]["output_spec"].pop("result"))) \
        == ["task_spec.output_spec"]
    assert changed(lambda d: d["task_spec"]["input_spec"]["image"].update(type="string")) == ["task_spec.input_spec"]
    assert changed(lambda d: d.update(public_instructions="old")) == ["public_instructions"]
    assert changed(lambda d: d["task_spec"]["view_spec"].update(config="{}")) == ["task_spec.view_spec"]


# --- the flow: a bad dataset stops before Create Project ---------------------------------------------------

def test_an_empty_dataset_creates_nothing_on_toloka_in_the_flow(toloka, tmp_path):
    """The shipped flow runs Upload Images before Create Project (the relation Upload Images -> Create Project):
    an empty dataset fails in one line and not one project or skill is made (they were 2 and 3 before)."""
    import io

    from crowdboxes.cnvrg.flow import load_flow
    from crowdboxes.cnvrg.runner import FlowRunner

    images = tmp_path / "road_signs"
    images.mkdir()
    (images / "notes.txt").write_text("no image in here")
    (tmp_path / "empty.env").write_text("")
    runner = FlowRunner(load_flow(REPO / "traffic_signs_annotation.yaml"), runs_dir=tmp_path / "runs",
                        data={"road_signs": images}, env_file=tmp_path / "empty.env", out=io.StringIO(),
                        err=io.StringIO(),
                        overrides=[f"toloka_env={toloka.url}", "s3_endpoint_url=http://127.0.0.1:9",
                                   "project_key=empty-dataset"])
    toloka.admin("POST", "/_local/stats/reset")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("toloka_token", TOKEN)
        for name, value in {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key", "AWS_MAX_ATTEMPTS": "1",
                            "AWS_EC2_METADATA_DISABLED": "true"}.items():
            patch.setenv(name, value)
        report = runner.run()
    status = {r.title: r for r in report.results}
    assert status["Upload Images"].status == "failed" and status["Upload Images"].returncode == 2
    assert "no .jpg/.jpeg/.png/.webp files found" in status["Upload Images"].error
    assert status["Create Project"].status == "skipped"
    assert _writes(toloka) == {}
    assert not [p for p in toloka.client().get_projects() if p.private_comment
                and p.private_comment.startswith("crowdboxes:empty-dataset:")]
