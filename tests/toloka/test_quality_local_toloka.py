"""Quality control end to end on the local Toloka with C's simulated crowd (10 % spammers, 10 % careless).

One server and one set of synthetic photos for the module; each test makes its own projects and pools.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import helpers_quality as hq
from crowdboxes.artifacts import VERIFICATIONS, read_csv
from crowdboxes.toloka.spending import reserve_pool
from crowdboxes.geometry import match_boxes
from crowdboxes.toloka.known_boxes import outlines_to_pixels
from crowdboxes.toloka.pricing import assignment_price
from crowdboxes.toloka.quality import filter_excludes_drawers
from helpers_local_toloka import start_local_toloka

TOKEN = "quality-test-token-7f3a"
WORKERS = 60
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quality")
    coco = hq.synth(tmp / "synth", 30, 5)
    control_coco = hq.synth(tmp / "control", 12, 99)
    base, http_server = hq.serve_folder(tmp)
    hq.merge_truth(coco, control_coco, tmp / "truth.json")
    server = start_local_toloka(tmp, TOKEN, ground_truth=tmp / "truth.json", workers=WORKERS, seed=3, speed=120,
                                crowd_module="helpers_quality")
    try:
        yield type("Env", (), {"tmp": tmp, "coco": coco, "images": hq.images_frame(coco, base + "/synth"),
                               "control": hq.control_images(control_coco, base + "/control", 2), "server": server,
                               "client": server.client()})
    finally:
        server.stop()
        http_server.shutdown()


def _kinds(server) -> dict:
    return {w["worker_id"]: w["kind"] for w in server.admin("GET", "/_local/crowd")["workers"]}


def _big_signs(coco, image_id, min_side=20.0):
    boxes = np.array([a["bbox"] for a in coco["annotations"] if str(a["image_id"]) == str(image_id)],
                     float).reshape(-1, 4)
    return boxes[np.minimum(boxes[:, 2], boxes[:, 3]) >= min_side]


def test_verify_mode_accepts_complete_drawings_and_bans_spammers_early(env):
    # synthetic photos are busy (2-3 signs, many small): a careful drawer often needs a second try
    world = hq.create_world(env.client, env.images, control_urls=list(env.control.images), control_overlap=WORKERS,
                            max_attempts=5)
    out_dir = env.tmp / "verify_out"
    # the crowd moves only between the loop's polls: ban timing in assignments, not in CPU time
    with hq.LockstepCrowd(env.server) as lockstep:
        env.client.open_pool(world["detection_pool"])
        outcome = hq.run_loop(env.client, world, env.images, env.tmp / "verify_state", out_dir, control=env.control,
                              progress=lockstep, period=0.2, deadline_s=240.0)
    assert outcome.done and outcome.state == "completed", outcome
    assert lockstep.iterations >= outcome.polls

    ledger = json.loads((env.tmp / "verify_state" / "verification_ledger.json").read_text())
    images = {str(im["id"]): im for im in env.coco["images"]}
    with_accepted, incomplete = set(), set()
    drawings = misses = 0  # every judged drawing, accepted or not: what the crowd hands in
    for item in ledger["items"].values():
        if item["kind"] != "verify":
            continue
        image = images[item["image_id"]]
        drawn, _ = outlines_to_pixels(item["outlines"], image["width"], image["height"])
        big = _big_signs(env.coco, item["image_id"])
        missed = len(match_boxes(drawn, big, 0.5).pred) < len(big)
        drawings, misses = drawings + 1, misses + missed
        if ledger["assignments"][item["assignment_id"]]["outcome"] != "accepted":
            continue
        with_accepted.add(item["image_id"])
        if missed:
            incomplete.add(item["image_id"])
    # Verification filters: an accepted drawing misses a sign of >= 20 px (IoU >= 0.5) on far fewer images
    # than the crowd's drawings do. Measured in 15 runs: 10-35 of 55-81 drawings miss one (18-46 %: a good
    # first round means few redraws, and redraws go to the hard images); 0 or 1 of 30 images end with an
    # accepted drawing that does (2 in about 1 run of 7 earlier). An image has at most one accepted drawing, so
    # `incomplete` counts the missing drawings the loop let through; a loop that accepted drawings unjudged
    # would let every one through and fail the last bound. The bound of 4 keeps the test from failing on
    # noise (a 2 % rate gives 5 or more of 30 in under 1 run in 1,000). A bound on the crowd's miss rate
    # (20 %) was a coin: one flake-check run drew 10 of 55.
    assert misses >= 3, (misses, drawings)  # the crowd misses signs: the loop has something to catch
    assert len(incomplete) <= 4, (incomplete, outcome)
    assert len(incomplete) <= misses / 2, (incomplete, misses, drawings)
    # ... and that is not because nothing was accepted: most images end with an accepted drawing (at least 24
    # of 30 in the passing runs, 23 in one flake-check run under load, whose other images used up their 5
    # attempts); none would if the loop rejected everything
    assert len(with_accepted) >= 0.5 * len(images), outcome

    # verifications.csv: the contract, one row per drawing, accepted rows match Toloka
    frame = read_csv(out_dir / VERIFICATIONS.file_name, VERIFICATIONS, dtype={"assignment_id": str})
    server_status = {r["id"]: r["status"] for r in hq.db_rows(
        env.server.state_dir, "SELECT id, status FROM assignments WHERE pool_id = ?", (int(world["detection_pool"]),))}
    real = frame[frame["kind"] == "verify"]
    assert set(real.loc[real["outcome"] == "accepted", "assignment_id"]) == {
        a for a, s in server_status.items() if s == "ACCEPTED" and a in set(real["assignment_id"])}
    assert set(real["outcome"]) <= {"accepted", "redraw", "rejected_final"}
    judged = real[real["reason"].fillna("") != "banned"]  # a banned spammer's drawings need no verdicts
    assert (judged["ok_votes"] + judged["bad_votes"] >= 3).all()
    assert (real.loc[real["reason"] == "banned", "outcome"] != "accepted").all()

    # nobody judged their own drawing
    owner = {k: it["worker_id"] for k, it in ledger["items"].items()}
    assert not [v for votes in ledger["votes"].values() for v in votes if owner.get(v[0]) == v[1]]

    # every spammer who met a control image is banned (restricted on Toloka) before 20 assignments
    kinds = _kinds(env.server)
    done = pd.DataFrame(hq.db_rows(env.server.state_dir, "SELECT user_id, status FROM assignments WHERE pool_id = ? "
                                                         "AND status != 'SKIPPED'", (int(world["detection_pool"]),)))
    per_worker = done.groupby("user_id").size()
    spammers = [w for w, k in kinds.items() if k.startswith("spammer") and w in per_worker.index]
    assert spammers, "the crowd mix should put spammers to work"
    restricted = {r["user_id"] for r in hq.db_rows(env.server.state_dir, "SELECT user_id FROM restrictions")}
    controlled = {row[0] for row in ledger["control"]}
    for worker in spammers:
        assert per_worker[worker] < 20, (worker, per_worker[worker])
        if worker in controlled:
            assert worker in ledger["banned"] and worker in restricted, worker
    # careful workers are rarely banned (control F1 is noisy on two images)
    careful = [w for w, k in kinds.items() if k == "careful"]
    assert sum(w in ledger["banned"] for w in careful) <= 0.1 * len(careful)


def test_crash_and_rerun_accept_or_reject_each_assignment_once(env):
    images = env.images.iloc[:16].reset_index(drop=True)
    world = hq.create_world(env.client, images)
    env.server.admin("POST", "/_local/crowd", {"speed": 30})  # slower, so that decisions trickle in
    env.client.open_pool(world["detection_pool"])
    env.server.admin("POST", "/_local/stats/reset")
    state_dir, out_dir = env.tmp / "crash_state", env.tmp / "crash_out"
    args = {"url": env.server.url, "token_env": "QUALITY_TEST_TOKEN", "reward": 0.02, "verifiers": 3,
            "state_dir": str(state_dir), "out_dir": str(out_dir), "images": images.to_dict("records"),
            "world": {**{k: v for k, v in world.items() if k not in ("settings", "tasks")},
                      "tasks": world["tasks"].to_dict("records")}}
    (env.tmp / "crash_args.json").write_text(json.dumps(args, default=str))
    proc = subprocess.Popen([sys.executable, str(Path(hq.__file__)), str(env.tmp / "crash_args.json")],
                            env={**os.environ, "QUALITY_TEST_TOKEN": TOKEN},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger_path = state_dir / "verification_ledger.json"
    deadline = time.monotonic() + 60
    decided = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if ledger_path.is_file():
            try:
                ledger = json.loads(ledger_path.read_text())
                decided = sum(e["outcome"] is not None for e in ledger["assignments"].values())
            except json.JSONDecodeError:
                pass
        if decided >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the loop finished before it could be crashed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    env.server.admin("POST", "/_local/crowd", {"speed": 120})

    outcome = hq.run_loop(env.client, world, images, state_dir, out_dir)
    assert outcome.done and outcome.state == "completed"
    assert 3 <= decided < outcome.accepted + outcome.rejected  # the crash really was mid-way

    rows = hq.db_rows(env.server.state_dir, "SELECT id, status FROM assignments WHERE pool_id = ?",
                      (int(world["detection_pool"]),))
    decided_on_server = {r["id"]: r["status"] for r in rows if r["status"] in ("ACCEPTED", "REJECTED")}
    stats = env.server.admin("GET", "/_local/stats")
    # every PATCH of an assignment was a successful first transition: as many as decided assignments
    assert stats["requests"].get("PATCH patch_assignment", 0) == len(decided_on_server)
    assert stats["statuses"].get("409", 0) == 0
    ledger = json.loads(ledger_path.read_text())
    outcomes = {a: e["outcome"] for a, e in ledger["assignments"].items()}
    assert {a for a, o in outcomes.items() if o == "accepted"} == {
        a for a, s in decided_on_server.items() if s == "ACCEPTED"}
    assert {a for a, o in outcomes.items() if o == "rejected"} == {
        a for a, s in decided_on_server.items() if s == "REJECTED"}
    # one verification task per drawing, none duplicated by the replay
    vtasks = hq.db_rows(env.server.state_dir, "SELECT doc FROM tasks WHERE pool_id = ?",
                        (int(world["verification_pool"]),))
    judged = [json.loads(t["doc"])["input_values"]["assignment_id"] for t in vtasks]
    assert len(judged) == len(set(judged)) == len(outcomes)
    # the persisted state (ledger, cursor positions) never holds the token
    assert all(TOKEN not in p.read_text(errors="replace") for p in state_dir.rglob("*") if p.is_file())


def test_budget_cap_stops_within_one_suite(env):
    images = env.images.iloc[:20].reset_index(drop=True)
    world = hq.create_world(env.client, images)
    unit = assignment_price(0.02) + 3 * assignment_price(0.005)  # a drawing and its three verdicts
    cap = 10.5 * unit
    # what Launch Pool does before it opens the pool: cut the overlaps the cap cannot pay for
    guard = reserve_pool(env.client, world["detection_pool"], cap, 0.02, verifiers=3, verification_reward=0.005)
    assert len(guard.trimmed_) == 10 and guard.reserved_ == pytest.approx(10 * unit)
    env.client.open_pool(world["detection_pool"])
    outcome = hq.run_loop(env.client, world, images, env.tmp / "budget_state", env.tmp / "budget_out", budget=cap)
    assert outcome.done
    spent = 0.0
    for pool_id, reward in ((world["detection_pool"], 0.02), (world["verification_pool"], 0.005)):
        rows = hq.db_rows(env.server.state_dir, "SELECT COUNT(*) AS n FROM assignments WHERE pool_id = ? AND "
                                                "status IN ('SUBMITTED', 'ACCEPTED', 'ACTIVE')", (int(pool_id),))
        spent += rows[0]["n"] * assignment_price(reward)
    assert spent <= cap + assignment_price(0.02) + 1e-9, (spent, cap)
    assert spent >= 10 * assignment_price(0.02), (spent, cap)  # the cap was used, not refused
    frame = pd.read_csv(env.tmp / "budget_out" / VERIFICATIONS.file_name)
    assert frame["image_id"].nunique() == 10  # the other images were cut by the cap
    assert (frame["redraw"].fillna("") != "").sum() == (frame["outcome"] != "accepted").sum()


@pytest.mark.parametrize("case", ["no_drawer_filter", "budget_below_one_assignment", "unknown_mode"])
def test_bad_configs_are_refused_before_anything_is_created(env, case, tmp_path, run_step):
    config_dir = tmp_path / "configs"
    shutil.copytree(hq.CONFIGS, config_dir)
    projects = pd.DataFrame([{"role": "detection_project", "toloka_id": "1", "key": "k:d", "name": "d"},
                             {"role": "verification_project", "toloka_id": "2", "key": "k:v", "name": "v"},
                             {"role": "drawer_skill", "toloka_id": "1", "key": "k:1", "name": "s1"},
                             {"role": "verifier_skill", "toloka_id": "2", "key": "k:2", "name": "s2"},
                             {"role": "control_skill", "toloka_id": "3", "key": "k:3", "name": "s3"}])
    projects.to_csv(tmp_path / "projects.csv", index=False)
    env.images.iloc[:3].to_csv(tmp_path / "images.csv", index=False)
    params = {"mode": "verify", "budget": "5", "reward": "0.02"}
    if case == "no_drawer_filter":
        pool = json.loads((config_dir / "verification_pool.json").read_text())
        pool["filter"] = {"and": [{"or": [{"category": "profile", "key": "languages", "operator": "IN",
                                           "value": "EN"}]}]}
        (config_dir / "verification_pool.json").write_text(json.dumps(pool))
        expected = "verification_pool.json"
    elif case == "budget_below_one_assignment":
        params["budget"], expected = "0.02", "below the price of one assignment"
    else:
        params["mode"], expected = "review", "overlap, verify, overlap+verify"

    def objects():
        counts = {}
        for table in ("projects", "pools", "tasks", "skills", "user_skills", "operations"):
            counts[table] = hq.db_rows(env.server.state_dir, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]
        return counts

    before = objects()
    argv = ["--toloka_env", env.server.url, "--token_env", "QUALITY_TEST_TOKEN", "--output_dir", str(tmp_path / "out"),
            "--projects_csv", str(tmp_path / "projects.csv"), "--images_csv", str(tmp_path / "images.csv"),
            "--config_dir", str(config_dir), "--overlap", "1", "--tasks_per_suite", "1", "--time_per_suite", "600",
            "--auto_accept", "false", "--review_days", "7", "--languages", "EN", "--expiry_days", "1",
            "--adult_content", "false", "--batch_size", "100", "--control_csv", "none"]
    for key, value in params.items():
        argv += [f"--{key}", value]
    result = run_step("launch_pool.py", argv, {**os.environ, "QUALITY_TEST_TOKEN": TOKEN}, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.stderr
    assert TOKEN not in result.stderr + result.stdout
    assert objects() == before


def test_steps_in_verify_mode_create_the_verification_pool_and_run_the_loop(env, tmp_path, run_step):
    """Create Project -> Launch Pool (verify, control images, budget) -> Wait Pool, as the flow runs them."""

    def _step(name, args: dict, tmp_path, url):
        argv = ["--toloka_env", url, "--token_env", "QUALITY_TEST_TOKEN", "--output_dir", str(tmp_path / name)]
        for key, value in args.items():
            argv += [f"--{key}", str(value)]
        return run_step(f"{name}.py", argv, {**os.environ, "QUALITY_TEST_TOKEN": TOKEN}, timeout=120)

    images = env.images.iloc[:5].reset_index(drop=True)
    images.to_csv(tmp_path / "images.csv", index=False)
    rows = []
    for url, (width, height, boxes, labels) in env.control.images.items():
        for box, label in zip(boxes, labels):
            rows.append({"image_id": env.control.image_ids[url], "url": url, "width": width, "height": height,
                         "label": label, "x": box[0], "y": box[1], "w": box[2], "h": box[3]})
    pd.DataFrame(rows).to_csv(tmp_path / "control.csv", index=False)

    made = _step("create_project", {"config_dir": hq.CONFIGS, "project_key": "quality-steps"}, tmp_path,
                 env.server.url)
    assert made.returncode == 0, made.stderr
    launch = _step("launch_pool", {
        "projects_csv": tmp_path / "create_project" / "projects.csv", "images_csv": tmp_path / "images.csv",
        "config_dir": hq.CONFIGS, "mode": "verify", "reward": "0.02", "overlap": "3", "tasks_per_suite": "1",
        "time_per_suite": "600", "auto_accept": "true", "review_days": "7", "languages": "EN", "expiry_days": "1",
        "adult_content": "false", "budget": "3", "batch_size": "100", "control_csv": tmp_path / "control.csv"},
        tmp_path, env.server.url)
    assert launch.returncode == 0, launch.stderr
    pools = pd.read_csv(tmp_path / "launch_pool" / "pool.csv", dtype=str)
    assert set(pools["role"]) == {"detection_pool", "verification_pool"}
    ver = env.client.get_pool(pools.loc[pools["role"] == "verification_pool", "pool_id"].iloc[0])
    drawer_skill = pd.read_csv(tmp_path / "create_project" / "projects.csv", dtype=str).set_index("role").loc[
        "drawer_skill", "toloka_id"]
    assert filter_excludes_drawers(ver.unstructure()["filter"], {drawer_skill})
    assert ver.unstructure()["defaults"]["default_overlap_for_new_tasks"] == 3
    assert not env.client.get_pool(pools.loc[pools["role"] == "detection_pool", "pool_id"].iloc[0]).auto_accept_solutions
    assert (tmp_path / "launch_pool" / "control.csv").is_file()

    wait = _step("wait_pool", {
        "projects_csv": tmp_path / "create_project" / "projects.csv", "images_csv": tmp_path / "images.csv",
        "pool_csv": tmp_path / "launch_pool" / "pool.csv", "tasks_csv": tmp_path / "launch_pool" / "tasks.csv",
        "poll_seconds": "0.5", "cursor_lag_seconds": "0", "timeout_hours": "0.02", "verdict_method": "dawid_skene",
        "verifiers": "3", "max_attempts": "2", "budget": "3"}, tmp_path, env.server.url)
    assert wait.returncode == 0, wait.stderr
    assert "workers banned" in wait.stderr
    # progress counts images (not task answers) against the number of images
    totals = {int(m) for m in re.findall(r"\d+/(\d+) images done \(", wait.stderr)}
    assert totals and min(totals) >= len(images), wait.stderr[-500:]
    frame = read_csv(tmp_path / "wait_pool" / VERIFICATIONS.file_name, VERIFICATIONS, dtype={"image_id": str})
    assert set(frame.loc[frame["kind"] == "verify", "image_id"]) == set(images["image_id"])
    assert set(frame.loc[frame["kind"] == "control", "method"]) <= {"control_iou"}
    assert (frame.loc[frame["kind"] == "verify", "method"] == "dawid_skene").all()
    summary = json.loads((tmp_path / "wait_pool" / "wait_summary.json").read_text())
    assert summary["mode"] == "verify" and not summary["timed_out"]
    assert TOKEN not in launch.stdout + launch.stderr + wait.stdout + wait.stderr


@pytest.mark.parametrize("verification_workers", [0, 3])
def test_a_crowd_where_everyone_drew_stalls_loudly_unless_some_workers_only_verify(env, tmp_path, capsys,
                                                                                   verification_workers):
    """4 workers take the 4 images at once, so the drawer-skill filter leaves nobody to verify: the loop
    says so in one line (and times out) instead of waiting silently. Workers who only verify (as short
    checking tasks on Toloka draw their own crowd) resolve it; nobody ever judges their own drawing."""
    images = env.images.iloc[:4].reset_index(drop=True)
    server = start_local_toloka(tmp_path, TOKEN, ground_truth=env.tmp / "truth.json", workers=4, seed=3, speed=120,
                                crowd_module="helpers_quality", verification_workers=verification_workers)
    try:
        client = server.client()
        world = hq.create_world(client, images)
        client.open_pool(world["detection_pool"])
        outcome = hq.run_loop(client, world, images, tmp_path / "state", tmp_path / "out", period=0.5,
                              stall_seconds=1.5,
                              deadline_s=8.0 if verification_workers == 0 else 60.0)
        workers = {w["worker_id"] for w in server.admin("GET", "/_local/crowd")["workers"]}
    finally:
        server.stop()
    err = [line for line in capsys.readouterr().err.splitlines() if "no verifier has taken a task" in line]
    ledger = json.loads((tmp_path / "state" / "verification_ledger.json").read_text())
    assert sorted(ledger["drawers"]) == ["w0001", "w0002", "w0003", "w0004"]
    owner = {k: it["worker_id"] for k, it in ledger["items"].items()}
    votes = [v for votes in ledger["votes"].values() for v in votes]
    assert votes or verification_workers == 0
    assert not [v for v in votes if owner[v[0]] == v[1]]  # a drawer may judge others before it is marked
    if verification_workers == 0:
        assert outcome.state == "timed_out" and outcome.verifier_stalls == 1, outcome
        assert len(err) == 1 and err[0].startswith("warning: verification pool "), err
        assert "drawings wait for verdicts" in err[0] and "excludes the 4 workers who drew" in err[0]
    else:
        # three verifiers cannot add the two more verdicts a split asks for: after a stall warning those
        # drawings are decided on the three verdicts they have, so the run still completes
        assert outcome.state == "completed", (outcome, err)
        split = [it for it in ledger["items"].values() if it.get("extra_unserved")]
        assert len(err) == outcome.verifier_stalls and (not err or split), (err, split)
        assert workers == {"w0001", "w0002", "w0003", "w0004", "v0001", "v0002", "v0003"}
        assert {v[1] for v in votes} & {"v0001", "v0002", "v0003"}
