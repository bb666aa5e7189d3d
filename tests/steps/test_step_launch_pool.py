"""Launch Pool: settings -> pool JSON, the cost estimate, refusals before anything is created, and
re-runs that reuse the pool and never duplicate or lose tasks."""

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from crowdboxes.cnvrg.stepkit import StepError
from crowdboxes.steps.create_project import CreateProjectOptions, create_project
from crowdboxes.toloka import pools
from helpers_local_toloka import start_local_toloka

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TOKEN = "launch-pool-test-token-9a8b7c"
N_IMAGES = 7


def settings(**overrides):
    values = dict(mode="overlap", reward="0.1", overlap="3", tasks_per_suite="2", time_per_suite="300",
                  auto_accept="false", review_days="5", languages="en, de", expiry_days="3", adult_content="false")
    values.update(overrides)
    return pools.parse_pool_settings(**values)


# --- library --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, message", [
    ("reward", "abc", "--reward 'abc' is not a number"),
    ("reward", "0.001", "--reward '0.001' must be at least 0.005"),
    ("overlap", "0", "--overlap '0' must be at least 1"),
    ("overlap", "2.5", "--overlap '2.5' is not a whole number"),
    ("auto_accept", "maybe", "--auto_accept 'maybe': use true or false"),
    ("review_days", "30", "--review_days '30' must be at most 21"),
    ("languages", "english", "--languages 'english': expected ISO 639-1 codes"),
    ("time_per_suite", "nan", "--time_per_suite 'nan' is not a whole number"),
])
def test_bad_settings_name_the_param(name, value, message):
    with pytest.raises(StepError) as info:
        settings(**{name: value})
    assert message in str(info.value)


def test_pool_json_applies_the_settings_to_the_config():
    config = pools.load_pool_config(CONFIGS / "detection_pool.json")
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    pool = pools.build_detection_pool(config, settings(), project_id="12",
                                      skill_ids={"drawer_skill": "77", "verifier_skill": "78", "control_skill": "79"},
                                      key="crowdboxes:x:detection:pool:abc", will_expire=expires)
    data = json.loads(pool.to_json())
    assert data["project_id"] == "12" and data["private_comment"] == "crowdboxes:x:detection:pool:abc"
    assert data["defaults"] == {"default_overlap_for_new_task_suites": 3, "default_overlap_for_new_tasks": 3}
    assert data["reward_per_assignment"] == 0.1 and data["assignment_max_duration_seconds"] == 300
    assert data["auto_accept_solutions"] is False and data["auto_accept_period_day"] == 5
    assert data["mixer_config"]["real_tasks_count"] == 2
    assert data["will_expire"].startswith("2030-01-02T03:04:05")
    assert data["filter"] == {"and": [{"or": [
        {"category": "profile", "key": "languages", "operator": "IN", "value": "EN"},
        {"category": "profile", "key": "languages", "operator": "IN", "value": "DE"}]}]}
    set_skill = [r["action"] for c in data["quality_control"]["configs"] for r in c["rules"]
                 if r["action"]["type"] == "SET_SKILL"]
    assert set_skill[0]["parameters"]["skill_id"] == "77"  # "$drawer_skill" resolved
    verify = json.loads(pools.build_detection_pool(config, settings(mode="verify", languages="none"),
                                                   project_id="12", skill_ids={"drawer_skill": "77"}, key="k",
                                                   will_expire=expires).to_json())
    assert verify["defaults"]["default_overlap_for_new_tasks"] == 1 and "filter" not in verify
    with pytest.raises(StepError, match="projects.csv has no role 'drawer_skill'"):
        pools.build_detection_pool(config, settings(), project_id="12", skill_ids={}, key="k", will_expire=expires)


def test_languages_replace_only_language_conditions():
    other = {"category": "computed", "key": "client_type", "operator": "EQ", "value": "BROWSER"}
    merged = pools.with_languages({"and": [{"or": [other]}, {"or": [
        {"category": "profile", "key": "languages", "operator": "IN", "value": "RU"}]}]}, ("EN",))
    assert merged == {"and": [{"or": [other]}, {"or": [
        {"category": "profile", "key": "languages", "operator": "IN", "value": "EN"}]}]}
    assert pools.with_languages(other, ()) == {"and": [{"or": [other]}]}


def test_pool_key_is_the_job_and_mode_and_the_settings_ride_in_the_pool_metadata():
    """Settings and images are not in the key (a re-run edits the pool and adds tasks); the settings record is
    what tells a re-run which ones the user changed."""
    config = pools.load_pool_config(CONFIGS / "detection_pool.json")
    assert pools.pool_key("crowdboxes:x:detection", "overlap") == "crowdboxes:x:detection:pool:overlap"
    record = json.loads(pools.settings_record(config, settings()))
    assert record["reward"] == 0.1 and record["detection_overlap"] == 3 and len(record["config"]) == 16
    assert pools.settings_record(config, settings()) == pools.settings_record(config, settings())
    assert pools.settings_record(config, settings(reward="0.2")) != pools.settings_record(config, settings())
    skill_ids = {"drawer_skill": "1", "control_skill": "2", "verifier_skill": "3"}
    spec = pools.build_detection_pool(config, settings(), project_id="1", skill_ids=skill_ids, key="k",
                                      will_expire=datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert spec.metadata[pools.SETTINGS_METADATA] == [pools.settings_record(config, settings())]
    assert pools.url_identity("https://B.s3.amazonaws.com/p/x.png?X-Amz-Signature=1") == \
        pools.url_identity("https://b.s3.amazonaws.com/p/x.png?X-Amz-Signature=2")


def test_pool_expiry_is_fitted_to_presigned_urls():
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    wanted = now + timedelta(days=7)
    images = pd.DataFrame({"url_expires_at": ["2030-01-04T00:00:00Z", "2030-01-03T12:00:00Z"]})
    limit = pools.url_expiry_limit(images, "images.csv")
    assert limit == datetime(2030, 1, 3, 12, tzinfo=timezone.utc)
    warnings = []
    assert pools.fit_expiry_to_urls(wanted, limit, "images.csv", now=now, log=warnings.append) == limit
    assert "presigned image URLs" in warnings[0]
    assert pools.fit_expiry_to_urls(wanted, None, "images.csv", now=now) == wanted
    with pytest.raises(StepError, match="less than 1 h from now"):
        pools.fit_expiry_to_urls(wanted, now + timedelta(minutes=20), "images.csv", now=now)
    with pytest.raises(StepError, match="row 3, field 'url_expires_at'"):
        pools.url_expiry_limit(pd.DataFrame({"url_expires_at": ["2030-01-04T00:00:00Z", "soon"]}), "images.csv")


def test_read_images_names_the_row_and_field(tmp_path):
    from crowdboxes.artifacts import read_images

    path = tmp_path / "images.csv"
    frame = write_images(path, "s", n=3)
    assert list(read_images(path)["image_id"]) == list(frame["image_id"])
    frame.loc[1, "url"] = "ftp://host/x.png"
    frame.to_csv(path, index=False)
    with pytest.raises(StepError, match="row 3, field 'url': 'ftp://host/x.png' is not an http"):
        read_images(path)
    frame.loc[1, "url"], frame.loc[2, "sha256"] = "http://h/x.png", ""
    frame.to_csv(path, index=False)
    with pytest.raises(StepError, match="row 4, field 'sha256' is empty"):
        read_images(path)


# --- the step against the local Toloka -----------------------------------------------------------

STEP = "launch_pool.py"


@pytest.fixture(scope="module")
def toloka(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toloka")
    with start_local_toloka(folder, TOKEN, workers=2, seed=2, crowd_module="helpers_local_toloka") as handle, \
            pytest.MonkeyPatch.context() as patch:
        out = folder / "create_project"
        patch.setenv("toloka_token", TOKEN)
        create_project(CreateProjectOptions(toloka_env=handle.url, token_env="toloka_token", output_dir=str(out),
                                            config_dir=str(CONFIGS), project_key="launch-test"))
        handle.projects_csv = out / "projects.csv"
        handle.folder = folder
        yield handle


@pytest.fixture(autouse=True)
def _job_per_test(request, monkeypatch):
    """Each test its own job (project key): a job has one detection pool per mode, which takes every image it
    is given, so tests sharing a job would share a pool."""
    if "toloka" not in request.fixturenames:
        return
    toloka = request.getfixturevalue("toloka")
    key = "lp-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:61]
    out = toloka.folder / key
    monkeypatch.setenv("toloka_token", TOKEN)
    create_project(CreateProjectOptions(toloka_env=toloka.url, token_env="toloka_token", output_dir=str(out),
                                        config_dir=str(CONFIGS), project_key=key))
    toloka.projects_csv = out / "projects.csv"


def write_images(path: Path, signature: str, n: int = N_IMAGES, expires_in_days: float = 5) -> pd.DataFrame:
    """An images.csv as Upload Images writes it (the pool never fetches the URLs itself)."""
    expires = (datetime.now(timezone.utc) + timedelta(days=expires_in_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = []
    for i in range(n):
        sha = f"{i:02d}" + "ab" * 31
        rows.append({"image_id": sha[:16], "file_name": f"img{i}.png",
                     "url": f"http://127.0.0.1:9/bucket/signs/{sha}.png?X-Amz-Signature={signature}",
                     "width": 640, "height": 480, "sha256": sha, "url_expires_at": expires})
    frame = pd.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


def launch_args(toloka, images_csv, out, **overrides):
    params = {"toloka_env": toloka.url, "projects_csv": str(toloka.projects_csv), "images_csv": str(images_csv),
              "config_dir": str(CONFIGS), "mode": "overlap", "reward": "0.1", "overlap": "3",
              "tasks_per_suite": "1", "time_per_suite": "600", "auto_accept": "true", "review_days": "1",
              "languages": "EN", "expiry_days": "7", "adult_content": "false", "budget": "10", "batch_size": "3",
              "control_csv": "none", "output_dir": str(out)}
    params.update(overrides)
    return [part for key, value in params.items() for part in (f"--{key}", value)]


def pools_of_project(toloka) -> list:
    projects = pd.read_csv(toloka.projects_csv, dtype=str).set_index("role")
    return list(toloka.client().get_pools(project_id=projects.loc["detection_project", "toloka_id"]))


def test_rerun_reuses_pool_and_tasks(toloka, tmp_path, run_step):
    images_csv = tmp_path / "upload" / "images.csv"
    images = write_images(images_csv, signature="first")
    out = tmp_path / "launch"
    env = {**os.environ, "toloka_token": TOKEN}
    first = run_step(STEP, launch_args(toloka, images_csv, out), env)
    assert first.returncode == 0, first.stderr
    # 7 tasks x overlap 3 = 21 assignments at $0.10 + 30 % fee = $2.73
    assert "cnvrg_tag_estimated_cost: 2.73" in first.stdout and "cnvrg_tag_tasks_created: 7" in first.stdout
    pool_row = pd.read_csv(out / "pool.csv", dtype=str).iloc[0]
    assert (pool_row.role, pool_row.tasks, pool_row.overlap, pool_row["mode"]) == ("detection_pool", "7", "3", "overlap")
    assert abs(float(pool_row.estimated_cost) - 2.73) < 1e-9 and pool_row.status == "OPEN"
    tasks = pd.read_csv(out / "tasks.csv", dtype=str)
    assert list(tasks.columns[:4]) == ["task_id", "pool_id", "image_id", "url"]
    assert sorted(tasks["image_id"]) == sorted(images["image_id"]) and tasks["task_id"].is_unique

    client = toloka.client()
    pool = client.get_pool(pool_row.pool_id)
    assert pool.defaults.default_overlap_for_new_tasks == 3 and pool.reward_per_assignment == 0.1
    assert pool.private_comment == pool_row.key
    # the pool ends when the presigned URLs do (5 days), not after --expiry_days 7
    url_limit = datetime.now(timezone.utc) + timedelta(days=5)
    will_expire = pool.will_expire if pool.will_expire.tzinfo else pool.will_expire.replace(tzinfo=timezone.utc)
    assert abs((will_expire - url_limit).total_seconds()) < 120
    in_pool = list(client.get_tasks(pool_id=pool_row.pool_id))
    assert len(in_pool) == N_IMAGES and all(t.overlap == 3 for t in in_pool)

    # Upload Images re-ran: same images, freshly signed URLs -> same pool, no new tasks
    write_images(images_csv, signature="second")
    second = run_step(STEP, launch_args(toloka, images_csv, out), env)
    assert second.returncode == 0, second.stderr
    assert "cnvrg_tag_tasks_created: 0" in second.stdout and "found pool" in second.stdout
    again = pd.read_csv(out / "pool.csv", dtype=str).iloc[0]
    assert again.pool_id == pool_row.pool_id and again.tasks == "7"
    assert sorted(pd.read_csv(out / "tasks.csv", dtype=str)["task_id"]) == sorted(tasks["task_id"])
    assert len(list(client.get_tasks(pool_id=pool_row.pool_id))) == N_IMAGES
    for result in (first, second):
        assert TOKEN not in result.stdout + result.stderr
    assert all(TOKEN not in p.read_text() for p in out.iterdir())


def test_partial_upload_is_completed_without_duplicates(toloka, tmp_path):
    """A crash after some batches: the next upload sends only the missing images."""
    client = toloka.client()
    projects = pd.read_csv(toloka.projects_csv, dtype=str).set_index("role")["toloka_id"].to_dict()
    config = pools.load_pool_config(CONFIGS / "detection_pool.json")
    spec = pools.build_detection_pool(config, settings(overlap="2"), project_id=projects["detection_project"],
                                      skill_ids=projects, key="crowdboxes:launch-test:detection:pool:partial",
                                      will_expire=datetime.now(timezone.utc) + timedelta(days=1))
    pool = client.create_pool(spec)
    images = write_images(tmp_path / "images.csv", "x")
    wanted = images[["image_id", "url"]].assign(control=False)
    first = pools.upload_tasks(client, pool.id, wanted.iloc[:3], batch_size=2, use_image_id=False, log=lambda m: None)
    assert (first.created, first.already_there, len(first.tasks)) == (3, 0, 3)
    resumed = pools.upload_tasks(client, pool.id, wanted, batch_size=2, use_image_id=False, log=lambda m: None)
    assert (resumed.created, resumed.already_there, len(resumed.tasks)) == (4, 3, N_IMAGES)
    assert set(first.tasks["task_id"]) <= set(resumed.tasks["task_id"])
    assert len(list(client.get_tasks(pool_id=pool.id))) == N_IMAGES
    assert pools.find_pool(client, projects["detection_project"], "crowdboxes:launch-test:detection:pool:partial").id == pool.id


def test_invalid_task_inputs_are_reported_per_image(toloka):
    client = toloka.client()
    projects = pd.read_csv(toloka.projects_csv, dtype=str).set_index("role")["toloka_id"].to_dict()
    config = pools.load_pool_config(CONFIGS / "detection_pool.json")
    pool = client.create_pool(pools.build_detection_pool(
        config, settings(), project_id=projects["detection_project"], skill_ids=projects,
        key="crowdboxes:launch-test:detection:pool:invalid", will_expire=datetime.now(timezone.utc) + timedelta(days=1)))
    wanted = pd.DataFrame({"image_id": ["a", "b", "c"], "control": False,
                           "url": ["ftp://bad", "http://127.0.0.1:9/x.png", "not a url"]})
    # batch 1 is half valid; batch 2 has no valid item (toloka-kit raises for that one)
    result = pools.upload_tasks(client, pool.id, wanted, batch_size=2, use_image_id=False, log=lambda m: None)
    assert result.created == 1 and list(result.tasks["image_id"]) == ["b"]
    assert [image_id for image_id, _ in result.failed] == ["a", "c"]
    assert "Invalid URL 'ftp://bad'" in result.failed[0][1]


def test_verify_mode_makes_an_overlap_one_pool(toloka, tmp_path, run_step_in_process):
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "v", n=3)
    result = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "out", mode="verify", overlap="5"),
                                 {"toloka_token": TOKEN})
    assert result.returncode == 0, result.stderr
    row = pd.read_csv(tmp_path / "out" / "pool.csv", dtype=str).iloc[0]
    assert (row["mode"], row.overlap) == ("verify", "1")
    pool = toloka.client().get_pool(row.pool_id)
    assert pool.defaults.default_overlap_for_new_tasks == 1
    assert pool.auto_accept_solutions is False and "--auto_accept true ignored" in result.stderr


def test_control_images_become_tasks_once(toloka, tmp_path, run_step_in_process):
    images_csv = tmp_path / "images.csv"
    images = write_images(images_csv, "c", n=3)
    control_csv = tmp_path / "control.csv"
    pd.DataFrame([
        {"url": "http://127.0.0.1:9/control/one.png", "width": 100, "height": 80, "label": "stop",
         "x": 10, "y": 10, "w": 20, "h": 20, "image_id": "ctl-one"},
        {"url": "http://127.0.0.1:9/control/one.png", "width": 100, "height": 80, "label": "yield",
         "x": 50, "y": 40, "w": 20, "h": 20, "image_id": "ctl-one"},
        {"url": "http://127.0.0.1:9/control/empty.png", "width": 100, "height": 80, "label": None,
         "x": None, "y": None, "w": None, "h": None, "image_id": "ctl-empty"},
        {"url": images["url"][0], "width": 640, "height": 480, "label": "stop",  # also a normal image
         "x": 1, "y": 1, "w": 5, "h": 5, "image_id": "ctl-dup"},
    ]).to_csv(control_csv, index=False)
    args = launch_args(toloka, images_csv, tmp_path / "out", control_csv=str(control_csv), reward="0.06")
    for created in (5, 0):
        result = run_step_in_process(STEP, args, {"toloka_token": TOKEN})
        assert result.returncode == 0, result.stderr
        assert f"cnvrg_tag_tasks_created: {created}" in result.stdout
    tasks = pd.read_csv(tmp_path / "out" / "tasks.csv", dtype=str)
    assert len(tasks) == 5 and tasks["task_id"].is_unique
    control = tasks[tasks["control"] == "True"]
    assert len(control) == 2 and "ctl-one" in set(control["image_id"])
    assert set(control["url"]) == {"http://127.0.0.1:9/control/one.png", "http://127.0.0.1:9/control/empty.png"}


@pytest.mark.parametrize("overrides, message", [
    ({"mode": "fast"}, "--mode 'fast' is not a mode; choose one of overlap, verify, overlap+verify"),
    ({"budget": "0.05"}, "--budget '0.05' is below the price of one assignment"),
    ({"reward": "abc"}, "--reward 'abc' is not a USD amount"),
    ({"overlap": "0"}, "--overlap '0' must be at least 1"),
    ({"batch_size": "-1"}, "--batch_size '-1' must be at least 1"),
    ({"projects_csv": "/nonexistent/projects.csv"}, "/nonexistent/projects.csv does not exist"),
])
def test_refusals_create_nothing(toloka, tmp_path, run_step_in_process, overrides, message):
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "r", n=2)
    before = len(pools_of_project(toloka))
    result = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "out", **overrides),
                                 {"toloka_token": TOKEN})
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
    assert len(pools_of_project(toloka)) == before
    assert not (tmp_path / "out" / "pool.csv").exists()


def test_bad_images_csv_and_missing_token(toloka, tmp_path, run_step_in_process):
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "m", n=2).drop(columns=["sha256"]).to_csv(images_csv, index=False)
    result = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "out"), {"toloka_token": TOKEN})
    assert result.returncode == 2 and "images.csv: missing column(s) sha256" in result.stderr
    write_images(images_csv, "m", n=2)
    missing = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "out"))  # no token
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "environment variable 'toloka_token'" in missing.stderr


# --- the rounds of mode overlap (missed signs, per-box checks) ------------------------------------------

def all_pools(toloka) -> list:
    return list(toloka.client().get_pools())


def test_rounds_pools_are_created_empty_once_and_the_estimate_includes_their_budgets(toloka, tmp_path, run_step):
    from crowdboxes.toloka.pricing import check_price, missed_sign_price

    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "rounds")
    out = tmp_path / "out"
    env = {**os.environ, "toloka_token": TOKEN}
    args = launch_args(toloka, images_csv, out, rounds="box_check, missed_signs", missed_budget="0.004",
                       check_budget="0.006")
    first = run_step(STEP, args, env)
    assert first.returncode == 0, first.stderr
    # 7 images x overlap 3 at $0.10 + fee = $2.73, plus 7 x ($0.004 + $0.006) = $0.07 of round budgets
    assert "cnvrg_tag_estimated_cost: 2.80" in first.stdout and "= $2.80 in total" in first.stdout
    rows = pd.read_csv(out / "pool.csv", dtype=str).set_index("role")
    assert list(rows.index) == ["detection_pool", "missed_signs", "box_check"]
    assert float(rows.loc["detection_pool", "estimated_total_cost"]) == pytest.approx(2.80)
    projects = pd.read_csv(toloka.projects_csv, dtype=str).set_index("role")["toloka_id"]
    client = toloka.client()
    check, missed = check_price(0.1, min_tasks_per_suite=10), missed_sign_price(0.1)
    assert (check.reward, check.tasks_per_suite, missed.reward) == (0.138, 10, 0.057)  # hand-computed: 0.1 x 6/43.5
    for role, price, budget in (("box_check", check, 0.042), ("missed_signs", missed, 0.028)):
        row = rows.loc[role]
        assert (row.tasks, row.overlap, row.project_id) == ("0", "1", projects[role])
        assert float(row.reward_per_assignment) == price.reward and float(row.estimated_cost) == pytest.approx(budget)
        pool = client.get_pool(row.pool_id)
        assert pool.project_id == projects[role] and pool.private_comment == row.key
        assert pool.reward_per_assignment == price.reward
        assert pool.mixer_config.real_tasks_count == price.tasks_per_suite
        assert pools.pool_status(pool) == "CLOSED" and not list(client.get_tasks(pool_id=row.pool_id))
        assert f"created {'check' if role == 'box_check' else 'missed-sign'} round pool {row.pool_id}" in first.stdout

    second = run_step(STEP, args, env)  # a re-run finds the same pools
    assert second.returncode == 0, second.stderr
    again = pd.read_csv(out / "pool.csv", dtype=str).set_index("role")
    assert list(again["pool_id"]) == list(rows["pool_id"])
    assert "found check round pool" in second.stdout and "found missed-sign round pool" in second.stdout
    for role in ("box_check", "missed_signs"):
        keyed = [p for p in client.get_pools(project_id=projects[role]) if p.private_comment == rows.loc[role, "key"]]
        assert len(keyed) == 1


@pytest.mark.parametrize("overrides, message", [
    ({"rounds": "box_check", "budget": "2.75", "check_budget": "0.006"},
     "--budget 2.75 is below the estimate $2.77 (pools $2.73 + check round $0.04)"),
    ({"rounds": "missed_signs,box_check", "mode": "verify"}, "the rounds run in --mode overlap only"),
    ({"rounds": "checks"}, "--rounds 'checks': use none, or a comma list of missed_signs, box_check"),
    ({"rounds": "box_check", "check_budget": "-1"}, "--check_budget '-1' must be at least 0"),
])
def test_rounds_refusals_create_nothing(toloka, tmp_path, run_step_in_process, overrides, message):
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "rr", expires_in_days=10)  # no expiry warning: the refusal is the one line
    before = len(all_pools(toloka))
    result = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "out", **overrides),
                                 {"toloka_token": TOKEN})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert len(all_pools(toloka)) == before and not (tmp_path / "out" / "pool.csv").exists()


def test_rounds_need_their_projects(toloka, tmp_path, run_step_in_process):
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "np", expires_in_days=10)
    old = tmp_path / "projects.csv"  # projects.csv of a Create Project run before the rounds' configs existed
    rows = pd.read_csv(toloka.projects_csv, dtype=str)
    rows[~rows["role"].isin(["box_check", "missed_signs"])].to_csv(old, index=False)
    before = len(all_pools(toloka))
    result = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "out", projects_csv=str(old),
                                                   rounds="missed_signs"), {"toloka_token": TOKEN})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"{old}: --rounds missed_signs needs a row with role 'missed_signs'" in result.stderr
    assert len(all_pools(toloka)) == before


# --- inputs checked on Toloka and against their parents before anything is created ----------------------

def _writes(toloka) -> dict:
    """Write requests the server saw since the last reset (``{"POST create_pool": n, ...}``)."""
    stats = toloka.admin("GET", "/_local/stats")["requests"]
    return {k: v for k, v in stats.items() if k.split()[0] in {"POST", "PUT", "PATCH", "DELETE"}
            and not k.split()[1].startswith("local_")}


def _refused_with_no_write(toloka, run_step_in_process, args) -> str:
    """Run the step; it must fail with one ``error:`` line, its last (notes may come before), and send Toloka
    no write request. Returns the line."""
    toloka.admin("POST", "/_local/stats/reset")
    result = run_step_in_process(STEP, args + ["--expiry_days", "3"], {"toloka_token": TOKEN})  # within the URLs' life
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and [line for line in lines if line.startswith("error:")] == lines[-1:], lines
    assert _writes(toloka) == {}
    return lines[-1]


def test_a_cut_images_csv_is_refused_naming_both_counts(toloka, tmp_path, run_step_in_process):
    from crowdboxes.steps.upload_images import write_upload_summary

    images_csv = tmp_path / "upload" / "images.csv"
    write_images(images_csv, "cut")
    write_upload_summary(images_csv, N_IMAGES, {})  # as Upload Images leaves it
    lines = images_csv.read_text().splitlines(keepends=True)
    images_csv.write_text("".join(lines[:-2]))  # two rows lost, the rest a valid CSV
    line = _refused_with_no_write(toloka, run_step_in_process, launch_args(toloka, images_csv, tmp_path / "out"))
    assert f"has {N_IMAGES - 2} image rows but Upload Images wrote {N_IMAGES}" in line
    assert not (tmp_path / "out" / "pool.csv").exists()
    images_csv.write_text("".join(lines).replace(",640,", ",0,", 1))  # edited in place: same count
    line = _refused_with_no_write(toloka, run_step_in_process, launch_args(toloka, images_csv, tmp_path / "out"))
    assert f"has the {N_IMAGES} image rows Upload Images wrote, but other bytes" in line
    images_csv.write_text("".join(lines))  # the file as written launches
    toloka.admin("POST", "/_local/stats/reset")
    result = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "out"), {"toloka_token": TOKEN})
    assert result.returncode == 0, result.stderr


def test_skills_that_do_not_exist_are_refused_before_anything_is_created(toloka, tmp_path, run_step_in_process):
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "skills", n=2)
    projects = pd.read_csv(toloka.projects_csv, dtype=str)
    projects.loc[projects["role"] == "control_skill", "toloka_id"] = "990001"
    stale = tmp_path / "stale" / "projects.csv"
    stale.parent.mkdir()
    projects.to_csv(stale, index=False)
    line = _refused_with_no_write(toloka, run_step_in_process,
                                  launch_args(toloka, images_csv, tmp_path / "out", projects_csv=str(stale)))
    assert "skill 990001 (projects.csv role control_skill) does not exist on Toloka" in line

    configs = tmp_path / "configs"
    configs.mkdir()
    for path in CONFIGS.glob("*.json"):
        (configs / path.name).write_text(path.read_text())
    config = json.loads((configs / "detection_pool.json").read_text())
    config["filter"]["and"].append({"or": [{"category": "skill", "key": "990002", "operator": "GTE", "value": 70}]})
    (configs / "detection_pool.json").write_text(json.dumps(config))
    line = _refused_with_no_write(toloka, run_step_in_process,
                                  launch_args(toloka, images_csv, tmp_path / "out", config_dir=str(configs)))
    assert "skill 990002 (detection_pool.json filter) does not exist on Toloka" in line
    assert not (tmp_path / "out" / "pool.csv").exists()


def test_a_mode_read_from_a_file_names_the_file():
    from crowdboxes.toloka.quality import parse_mode

    with pytest.raises(StepError) as info:
        parse_mode("bogus", source="out/pool.csv: row 2, field 'mode'")
    assert str(info.value) == ("out/pool.csv: row 2, field 'mode': mode 'bogus' is not a mode; choose one of "
                               "overlap, verify, overlap+verify")
    assert parse_mode(" Overlap+Verify ", source="x") == "overlap+verify"


def test_verify_mode_without_its_project_is_refused_before_the_detection_pool(toloka, tmp_path, run_step_in_process):
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "noverify", n=2)
    projects = pd.read_csv(toloka.projects_csv, dtype=str)
    partial = tmp_path / "partial" / "projects.csv"
    partial.parent.mkdir()
    projects[projects["role"] != "verification_project"].to_csv(partial, index=False)
    line = _refused_with_no_write(toloka, run_step_in_process, launch_args(
        toloka, images_csv, tmp_path / "out", mode="verify", projects_csv=str(partial)))
    assert "--mode verify needs a row with role 'verification_project'" in line


# --- a hand on the wheel: a re-run edits the job's pool and adds new images to it (issue 15) --------------

def _detection_pools(toloka) -> list:
    return [p for p in pools_of_project(toloka) if p.status.value != "ARCHIVED"]


def test_a_rerun_with_a_changed_price_edits_the_open_pool_and_says_what_changed(toloka, tmp_path,
                                                                                run_step_in_process):
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "s")
    env = {"toloka_token": TOKEN}
    first = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "one"), env)
    assert first.returncode == 0, first.stderr
    pool_id = pd.read_csv(tmp_path / "one" / "pool.csv", dtype=str).iloc[0].pool_id
    client = toloka.client()
    expiry = client.get_pool(pool_id).will_expire

    changed = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "two", reward="0.12", overlap="4",
                                                    time_per_suite="900"), env)
    assert changed.returncode == 0, changed.stderr
    assert (f"pool {pool_id}: changed reward 0.1 -> 0.12, overlap 3 -> 4, time per suite 600 -> 900 (closed to "
            f"edit, as Toloka requires)") in changed.stdout
    assert f"pool {pool_id}: overlap 4 set on the existing tasks" in changed.stdout
    pool = client.get_pool(pool_id)
    assert [p.id for p in _detection_pools(toloka)] == [pool_id]  # no second pool
    assert (pool.reward_per_assignment, pool.defaults.default_overlap_for_new_tasks,
            pool.assignment_max_duration_seconds, pool.status.value) == (0.12, 4, 900, "OPEN")
    assert pool.will_expire == expiry  # --expiry_days did not change: the pool's end stays
    assert all(t.overlap == 4 for t in client.get_tasks(pool_id=pool_id))
    row = pd.read_csv(tmp_path / "two" / "pool.csv", dtype=str).iloc[0]
    assert (row.pool_id, row.reward_per_assignment, row.overlap, row.tasks) == (pool_id, "0.12", "4", str(N_IMAGES))

    same = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "three", reward="0.12", overlap="4",
                                                 time_per_suite="900"), env)
    assert same.returncode == 0, same.stderr
    assert "changed" not in same.stdout and f"found pool {pool_id}" in same.stdout


def test_new_images_become_new_tasks_in_the_same_open_pool(toloka, tmp_path, run_step_in_process):
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "s", n=4)
    env = {"toloka_token": TOKEN}
    assert run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "one"), env).returncode == 0
    pool_id = pd.read_csv(tmp_path / "one" / "pool.csv", dtype=str).iloc[0].pool_id
    first_tasks = set(pd.read_csv(tmp_path / "one" / "tasks.csv", dtype=str)["task_id"])

    write_images(images_csv, "resigned", n=N_IMAGES)  # 3 more images, the first 4 with fresh URLs
    more = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "two"), env)
    assert more.returncode == 0, more.stderr
    assert f"tasks: {N_IMAGES - 4} created, 4 already in the pool, 0 rejected" in more.stdout
    assert "changed" not in more.stdout
    tasks = pd.read_csv(tmp_path / "two" / "tasks.csv", dtype=str)
    assert set(tasks["pool_id"]) == {pool_id} and len(tasks) == N_IMAGES and first_tasks < set(tasks["task_id"])
    assert len(list(toloka.client().get_tasks(pool_id=pool_id))) == N_IMAGES
    assert [p.id for p in _detection_pools(toloka)] == [pool_id]
    assert toloka.client().get_pool(pool_id).status.value == "OPEN"


@pytest.fixture()
def crowd_paused(toloka):
    """No worker takes a task (an archive needs a pool without active assignments)."""
    toloka.admin("POST", "/_local/crowd", {"paused": True})
    yield
    toloka.admin("POST", "/_local/crowd", {"paused": False})


def test_a_new_mode_or_an_edit_of_an_archived_pool_is_refused_in_one_line(toloka, tmp_path, run_step_in_process,
                                                                          crowd_paused):
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "s")
    env = {"toloka_token": TOKEN}
    assert run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "one"), env).returncode == 0
    pool_id = pd.read_csv(tmp_path / "one" / "pool.csv", dtype=str).iloc[0].pool_id

    other_mode = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "two", mode="verify"), env)
    assert other_mode.returncode == 2
    line = other_mode.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: pool {pool_id} runs this job in mode overlap; --mode verify would buy the images "
                           f"again")

    client = toloka.client()
    client.close_pool(pool_id)
    client.archive_pool(pool_id)
    archived = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "three", reward="0.2"), env)
    assert archived.returncode == 2
    assert archived.stderr.strip().splitlines()[-1] == (
        f"error: pool {pool_id} is archived (its job is finished): reward 0.1 -> 0.2 cannot be changed; run the job "
        f"again as a new job (a new --project_key)")
    assert len(pools_of_project(toloka)) == 1  # nothing created


def test_a_pool_an_earlier_version_made_is_found_by_its_old_key(toloka, tmp_path, run_step_in_process):
    """Before the key named the mode it ended in a digest of images and settings: a re-run after the upgrade
    goes on with that pool (and its settings are compared on Toloka's own fields)."""
    projects = pd.read_csv(toloka.projects_csv, dtype=str).set_index("role")
    detection_key = projects.loc["detection_project", "key"]
    config = pools.load_pool_config(CONFIGS / "detection_pool.json")
    ids = projects["toloka_id"].to_dict()
    spec = pools.build_detection_pool(config, pools.parse_pool_settings(
        mode="overlap", reward="0.1", overlap="3", tasks_per_suite="1", time_per_suite="600", auto_accept="true",
        review_days="1", languages="EN", expiry_days="7", adult_content="false"), project_id=ids["detection_project"],
        skill_ids=ids, key=f"{detection_key}:pool:0123456789abcdef",
        will_expire=datetime.now(timezone.utc) + timedelta(days=3))
    spec.metadata = {}  # an earlier version kept no settings record
    old = toloka.client().create_pool(spec)
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "s")
    rerun = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "one"), {"toloka_token": TOKEN})
    assert rerun.returncode == 0, rerun.stderr
    assert f"found pool {old.id} from an earlier run" in rerun.stdout and "changed" not in rerun.stdout
    row = pd.read_csv(tmp_path / "one" / "pool.csv", dtype=str).iloc[0]
    assert (row.pool_id, row.key) == (old.id, f"{detection_key}:pool:0123456789abcdef")
    assert [p.id for p in pools_of_project(toloka)] == [old.id]


def test_pool_stop_and_start_by_hand(toloka, tmp_path, run_step_in_process):
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "s")
    env = {"toloka_token": TOKEN}
    assert run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "one"), env).returncode == 0
    pool_id = pd.read_csv(tmp_path / "one" / "pool.csv", dtype=str).iloc[0].pool_id
    command = [sys.executable, "-m", "crowdboxes", "pool"]
    run_env = {**os.environ, "toloka_token": TOKEN}

    def pool(*args):
        return subprocess.run([*command, *args, pool_id, "--toloka_env", toloka.url], env=run_env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    stopped = pool("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"pool {pool_id}: stopped (was open, now closed)"
    assert pool("stop").stdout.strip() == f"pool {pool_id}: already closed"
    started = pool("start")
    assert started.stdout.strip() == f"pool {pool_id}: started (was closed, now open)"
    assert toloka.client().get_pool(pool_id).status.value == "OPEN"
    missing = subprocess.run([*command, "start", "999999", "--toloka_env", toloka.url], env=run_env, cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: pool 999999: cannot be read (")
    assert TOKEN not in stopped.stdout + stopped.stderr + missing.stderr


@pytest.mark.parametrize("killed_at", ["before the PUT", "after the PUT"])
def test_an_edit_killed_half_way_is_finished_by_the_next_run(toloka, tmp_path, run_step_in_process, killed_at):
    """Killed after the pool was closed and its tasks got the new overlap, before or after the new settings
    were written: the next run finishes the change (or finds it made) and reopens the pool."""
    images_csv = tmp_path / "images.csv"
    write_images(images_csv, "s")
    env = {"toloka_token": TOKEN}
    assert run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "one"), env).returncode == 0
    pool_id = pd.read_csv(tmp_path / "one" / "pool.csv", dtype=str).iloc[0].pool_id
    client = toloka.client()
    pool = client.get_pool(pool_id)
    config = pools.load_pool_config(CONFIGS / "detection_pool.json")
    ids = pd.read_csv(toloka.projects_csv, dtype=str).set_index("role")["toloka_id"].to_dict()
    spec = pools.build_detection_pool(config, pools.parse_pool_settings(
        mode="overlap", reward="0.1", overlap="5", tasks_per_suite="1", time_per_suite="600", auto_accept="true",
        review_days="1", languages="EN", expiry_days="7", adult_content="false"), project_id=ids["detection_project"],
        skill_ids=ids, key=pool.private_comment, will_expire=pool.will_expire)

    class Killed(BaseException):  # not an error edit_pool handles: the process is gone
        pass

    put = client.update_pool

    def killed(*args, **kwargs):
        if killed_at == "after the PUT":
            put(*args, **kwargs)
        raise Killed()

    client.update_pool = killed
    with pytest.raises(Killed):
        pools.edit_pool(client, pool, spec, task_overlap=5)
    assert client.get_pool(pool_id).status.value == "CLOSED"

    rerun = run_step_in_process(STEP, launch_args(toloka, images_csv, tmp_path / "two", overlap="5"), env)
    assert rerun.returncode == 0, rerun.stderr
    assert (f"pool {pool_id}: changed overlap 3 -> 5" in rerun.stdout) == (killed_at == "before the PUT")
    done = toloka.client().get_pool(pool_id)
    assert (done.defaults.default_overlap_for_new_tasks, done.status.value) == (5, "OPEN")
    assert all(t.overlap == 5 for t in toloka.client().get_tasks(pool_id=pool_id))
