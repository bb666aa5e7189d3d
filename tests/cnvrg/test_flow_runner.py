"""The local flow runner (crowdboxes.cnvrg.runner) on tiny throwaway step scripts in tmp_path."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crowdboxes.cnvrg import cli as flow_cli
from crowdboxes.cnvrg.runner import FlowRunner, parse_linechart, read_env_file
from crowdboxes.cnvrg.flow import FlowError, load_flow
from crowdboxes.cnvrg.stepkit import StepError

# A step that concatenates its inputs, adds its word, logs tags and a chart, and records what it saw.
ECHO = r'''
import argparse, hashlib, json, os, sys
from pathlib import Path

def build_parser():
    p = argparse.ArgumentParser()
    p.add_argument("--in_file")
    p.add_argument("--in_file2")
    p.add_argument("--word", default="x")
    p.add_argument("--fail", default="false")
    p.add_argument("--leak", default="false")
    p.add_argument("--images_dir")
    p.add_argument("--extra", nargs="*", default=[])
    return p

def main():
    a = build_parser().parse_args()
    out = Path(os.environ["CNVRG_OUTPUT_DIR"])
    if a.fail == "true":
        print("working on it")
        print(f"error: boom in {a.word}", file=sys.stderr)
        raise SystemExit(2)
    text = "".join(Path(f).read_text() for f in (a.in_file, a.in_file2) if f) + a.word
    if a.images_dir:
        text += "|" + ",".join(sorted(p.name for p in Path(a.images_dir).iterdir()))
    (out / "out.txt").write_text(text)
    token = os.environ.get("toloka_token", "")
    seen = {"argv": sys.argv[1:], "cwd": os.getcwd(), "python": sys.executable,
            "env": {k: v for k, v in os.environ.items() if k.startswith("CNVRG_")},
            "token_sha": hashlib.sha256(token.encode()).hexdigest() if token else None}
    (out / "seen.json").write_text(json.dumps(seen))
    if a.leak == "true":
        print(f"debug: token is {token}")
        print(f"oops {token}", file=sys.stderr)
    print(f"cnvrg_tag_word: {a.word}")
    print(f"cnvrg_tag_length: {len(text)}")
    print("cnvrg_linechart_Progress key: 1 value: 0.5")
    print("cnvrg_linechart_Progress key: 2 value: 1.0")

if __name__ == "__main__":
    main()
'''


def task(title, params=None):
    return {"title": title, "type": "exec", "input": "python3 steps/echo.py", "output_dir": "output",
            "computes": ["small"], "image": "python:3.11",
            "params": [{"key": k, "type": "categorical", "values": [v]} for k, v in (params or {}).items()]}


def make_project(root: Path, tasks, relations) -> Path:
    (root / "steps").mkdir(parents=True, exist_ok=True)
    (root / "steps" / "echo.py").write_text(ECHO)
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / "c.json").write_text("{}")
    path = root / "flow.yaml"
    path.write_text(yaml.safe_dump({"flow": "Tiny", "recurring": None, "tasks": tasks,
                                    "relations": [{"from": a, "to": b} for a, b in relations]}, sort_keys=False))
    return path


DIAMOND = ([task("Left", {"word": "l"}), task("Right", {"word": "r"}),
            task("Merge", {"in_file": "/input/left/output/out.txt", "in_file2": "/input/right/output/out.txt",
                           "word": "m"}),
            task("Export", {"in_file": "/input/merge/output/out.txt", "word": "e"})],
           [("Left", "Merge"), ("Right", "Merge"), ("Merge", "Export")])


def runner_for(path: Path, tmp_path: Path, **kw) -> FlowRunner:
    kw.setdefault("out", io.StringIO())
    kw.setdefault("err", io.StringIO())
    return FlowRunner(load_flow(path), runs_dir=tmp_path / "runs", **kw)


def seen(workdir) -> dict:
    return json.loads((Path(workdir) / "output" / "seen.json").read_text())


def test_full_run_remaps_inputs_sets_env_and_collects_tags(tmp_path):
    path = make_project(tmp_path / "proj", *DIAMOND)
    runner = runner_for(path, tmp_path)
    report = runner.run()
    assert report.ok
    assert [r.title for r in report.results] == ["Left", "Right", "Merge", "Export"]
    by = {r.slug: Path(r.workdir) for r in report.results}
    # each parent's output reached the child through /input/<slug>/ -> the parent's work folder
    assert (by["merge"] / "output" / "out.txt").read_text() == "lrm"
    assert (by["export"] / "output" / "out.txt").read_text() == "lrme"
    merge = seen(by["merge"])
    assert merge["argv"] == ["--in_file", str(by["left"] / "output" / "out.txt"),
                             "--in_file2", str(by["right"] / "output" / "out.txt"), "--word", "m"]
    assert merge["python"] == sys.executable  # `python3` became the venv's interpreter
    assert merge["cwd"] == str(by["merge"])
    env = merge["env"]
    assert env["CNVRG_WORKDIR"] == str(by["merge"])
    assert env["CNVRG_OUTPUT_DIR"] == str(by["merge"] / "output")
    assert env["CNVRG_JOB_NAME"] == "Merge" and env["CNVRG_JOB_TYPE"] == "Experiment"
    # parents' params and tags, as CNVRG_<SLUG>_<KEY>; a grandparent's are not exported
    assert env["CNVRG_LEFT_WORD"] == "l" and env["CNVRG_RIGHT_LENGTH"] == "1"
    assert seen(by["export"])["env"]["CNVRG_MERGE_LENGTH"] == "3"
    assert "CNVRG_LEFT_WORD" not in seen(by["export"])["env"]
    # the work folder looks like /cnvrg: code symlinked in, output/ a real folder, flow files beside
    workdir = by["merge"]
    assert (workdir / "steps").is_symlink() and (workdir / "configs" / "c.json").is_file()
    assert (workdir / "output").is_dir() and not (workdir / "output").is_symlink()
    assert not (workdir / "runs").exists()
    assert json.loads((workdir / "tags.json").read_text()) == {"word": "m", "length": "3"}
    assert json.loads((workdir / "metrics.json").read_text()) == {
        "Progress": [{"key": 1.0, "value": 0.5}, {"key": 2.0, "value": 1.0}]}
    result = json.loads((workdir / "result.json").read_text())
    assert result["status"] == "succeeded" and result["returncode"] == 0
    log = (workdir / "log.txt").read_text()
    assert "cnvrg_tag_word: m" in log and log.rstrip().endswith("# exit code 0")
    assert "[merge] cnvrg_tag_word: m" in runner.out.getvalue()
    latest = json.loads((tmp_path / "runs" / "latest.json").read_text())
    assert latest == {slug: str(folder) for slug, folder in by.items()}
    run = json.loads((report.run_dir / "run.json").read_text())
    assert run["ok"] is True and [t["status"] for t in run["tasks"]] == ["succeeded"] * 4


def test_failure_skips_descendants_but_runs_independent_tasks(tmp_path, capsys):
    tasks, relations = DIAMOND
    tasks = [task("Left", {"word": "l", "fail": "true"})] + tasks[1:] + [task("Alone", {"word": "a"})]
    path = make_project(tmp_path / "proj", tasks, relations)
    report = runner_for(path, tmp_path).run()
    status = {r.title: r.status for r in report.results}
    assert status == {"Left": "failed", "Right": "succeeded", "Merge": "skipped", "Export": "skipped",
                      "Alone": "succeeded"}
    left = next(r for r in report.results if r.title == "Left")
    assert left.returncode == 2 and left.error == "exit code 2: error: boom in l"
    assert "left" not in json.loads((tmp_path / "runs" / "latest.json").read_text())
    assert not report.ok
    # the CLI: non-zero, one line naming the failed task, its last error line and the skipped ones
    with pytest.raises(StepError) as info:
        flow_cli.main(["run", str(path), "--runs-dir", str(tmp_path / "runs2")])
    message = str(info.value)
    assert message.startswith("task 'Left' failed: exit code 2: error: boom in l; skipped: Merge, Export; log: ")


def test_cli_exit_code_through_the_package_entry_point(tmp_path):
    tasks, relations = DIAMOND
    path = make_project(tmp_path / "proj", [task("Left", {"word": "l", "fail": "true"})] + tasks[1:], relations)
    done = subprocess.run([sys.executable, "-m", "crowdboxes", "flow", "run", str(path), "--runs-dir",
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: task 'Left' failed: exit code 2: error: boom in l")
    assert "[left] error: boom in l" in done.stderr and "[right] cnvrg_tag_word: r" in done.stdout


def test_only_reruns_one_task_from_parents_latest_artifacts(tmp_path):
    path = make_project(tmp_path / "proj", *DIAMOND)
    with pytest.raises(FlowError, match=r"--only 'Merge': parent 'Left' has no successful run in .*latest.json"):
        runner_for(path, tmp_path).run(only="Merge")
    first = runner_for(path, tmp_path).run()
    by = {r.slug: Path(r.workdir) for r in first.results}
    # a newer artifact in Left's latest folder is what the re-run must read
    (by["left"] / "output" / "out.txt").write_text("L2")
    again = runner_for(path, tmp_path, overrides=["Merge.word=z"]).run(only="Merge")
    assert again.ok and [r.title for r in again.results] == ["Merge"]
    new_merge = Path(again.results[0].workdir)
    assert new_merge.parent == again.run_dir and new_merge != by["merge"]
    assert sorted(p.name for p in again.run_dir.iterdir() if p.is_dir()) == ["merge"]
    assert (new_merge / "output" / "out.txt").read_text() == "L2rz"
    assert seen(new_merge)["env"]["CNVRG_RIGHT_WORD"] == "r"  # parents' tags come from their tags.json
    latest = json.loads((tmp_path / "runs" / "latest.json").read_text())
    assert latest["merge"] == str(new_merge) and latest["left"] == str(by["left"])
    # Export then re-runs on the new Merge output
    export = runner_for(path, tmp_path).run(only="Export")
    assert (Path(export.results[0].workdir) / "output" / "out.txt").read_text() == "L2rze"


def test_overrides_for_all_tasks_and_for_one_title(tmp_path):
    path = make_project(tmp_path / "proj", *DIAMOND)
    runner = runner_for(path, tmp_path, overrides=["word=w", "Export.word=final"])
    words = {t.title: t.param("word").value for t in runner.flow.tasks}
    assert words == {"Left": "w", "Right": "w", "Merge": "w", "Export": "final"}
    with pytest.raises(FlowError, match=r"--set colour: no task in the flow has a param 'colour'"):
        runner_for(path, tmp_path, overrides=["colour=red"])
    with pytest.raises(FlowError, match=r"--set Left.in_file: task 'Left' has no param 'in_file'"):
        runner_for(path, tmp_path, overrides=["Left.in_file=x"])
    with pytest.raises(FlowError, match=r"no task titled 'Nope'"):
        runner_for(path, tmp_path, overrides=["Nope.word=x"])
    # an override the shell would split is refused before anything runs
    with pytest.raises(FlowError, match=r"task 'Left' param 'word': value 'a b' has whitespace"):
        runner_for(path, tmp_path, overrides=["Left.word=a b"]).run()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_command_is_split_like_the_shell_and_remapped_per_word(tmp_path):
    path = make_project(tmp_path / "proj", [task("Left", {"extra": "/input/up/output/a.csv"})], [])
    runner = runner_for(path, tmp_path)
    t = runner.flow.task("Left")
    t.param("extra").values = ["p q"]  # as cnvrg would: two words
    parent = tmp_path / "with space" / "up"
    argv = runner.build_command(t, {"up": parent}, {}, {})
    assert argv == [sys.executable, "steps/echo.py", "--extra", "p", "q"]
    t.param("extra").values = ["/input/up/output/a.csv"]
    argv = runner.build_command(t, {"up": parent}, {}, {})
    assert argv[-1] == str(parent / "output" / "a.csv")  # a local path with a space stays one word
    t.param("extra").values = ["{{ up.count }}"]
    assert runner.build_command(t, {"up": parent}, {}, {"up": {"count": "7"}})[-1] == "7"
    with pytest.raises(FlowError, match="not a direct parent"):
        t.param("extra").values = ["/input/other/output/a.csv"]
        runner.build_command(t, {"up": parent}, {}, {})


def test_data_task_maps_to_local_folder_or_fails_with_the_flag_to_use(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "a.png").write_bytes(b"x")
    (images / "b.png").write_bytes(b"y")
    tasks = [{"title": "Road Signs", "type": "data", "dataset": "road_signs"},
             task("Upload", {"images_dir": "/data/road_signs", "word": "u"}), task("Alone")]
    path = make_project(tmp_path / "proj", tasks, [("Road Signs", "Upload")])
    report = runner_for(path, tmp_path, data={"road_signs": images}).run()
    assert report.ok
    upload = next(r for r in report.results if r.title == "Upload")
    assert (Path(upload.workdir) / "output" / "out.txt").read_text() == "u|a.png,b.png"
    # --only remembers the dataset folder of the last run
    assert runner_for(path, tmp_path).run(only="Upload").ok
    missing = runner_for(path, tmp_path / "other").run()
    assert {r.title: r.status for r in missing.results} == {"Road Signs": "failed", "Upload": "skipped",
                                                            "Alone": "succeeded"}
    assert "pass --data road_signs=PATH" in missing.failure_line()
    with pytest.raises(FlowError, match=r"--data road_sign=\.\.\.: no data task has dataset 'road_sign' "
                                        r"\(datasets: road_signs\)"):
        runner_for(path, tmp_path, data={"road_sign": images})


def test_env_file_secrets_reach_the_step_and_never_the_logs(tmp_path, capsys, monkeypatch):
    secret = "tok-" + "9f8e7d6c5b4a" * 3
    path = make_project(tmp_path / "proj", [task("Left", {"word": "l", "leak": "true"}),
                                            task("Merge", {"in_file": "/input/left/output/out.txt"})],
                        [("Left", "Merge")])
    (tmp_path / "proj" / ".env").write_text(f"# secrets\nexport toloka_token='{secret}'\nOTHER=plain-value\n")
    monkeypatch.delenv("toloka_token", raising=False)
    out, err = io.StringIO(), io.StringIO()
    report = runner_for(path, tmp_path, out=out, err=err).run()
    assert report.ok
    left = Path(report.results[0].workdir)
    assert seen(left)["token_sha"] == hashlib.sha256(secret.encode()).hexdigest()
    assert not (left / ".env").exists()  # the secrets file is not part of /cnvrg
    assert "debug: token is ***" in out.getvalue() and "[left] oops ***" in err.getvalue()
    texts = [out.getvalue(), err.getvalue(), capsys.readouterr().out]
    texts += [p.read_text() for p in (tmp_path / "runs").rglob("*") if p.is_file() and p.suffix in (".txt", ".json")]
    assert all(secret not in t for t in texts)
    assert "debug: token is ***" in (left / "log.txt").read_text()
    # a secret pasted into a param is refused before anything runs, without showing it
    with pytest.raises(FlowError) as info:
        runner_for(path, tmp_path / "again", overrides=[f"Left.word=x{secret}"]).run()
    assert str(info.value).startswith("task 'Left' param 'word': its value contains a secret (x***)")
    assert not (tmp_path / "again").exists()


def test_env_file_parsing_and_git_ignore_guard(tmp_path):
    env = tmp_path / "s.env"
    env.write_text("A=1\n\n# c\nexport B = \"two words\"\nC='x'\n")
    assert read_env_file(env) == {"A": "1", "B": "two words", "C": "x"}
    env.write_text("A=1\nnot a pair with a secret-ish value\n")
    with pytest.raises(FlowError, match=r"s.env line 2: expected KEY=VALUE") as info:
        read_env_file(env)
    assert "secret-ish" not in str(info.value)
    path = make_project(tmp_path / "proj", [task("Left")], [])
    (tmp_path / "proj" / ".env").write_text("toloka_token=abcdefgh\n")
    subprocess.run(["git", "init", "-q", str(tmp_path / "proj")], check=True)
    with pytest.raises(FlowError, match=r"\.env: the secrets file is not git-ignored"):
        runner_for(path, tmp_path)
    (tmp_path / "proj" / ".gitignore").write_text(".env\n")
    assert runner_for(path, tmp_path).secrets == {"toloka_token": "abcdefgh"}
    with pytest.raises(FlowError, match="no such secrets file"):
        runner_for(path, tmp_path, env_file=tmp_path / "nope.env")


def test_linechart_forms():
    assert parse_linechart("cnvrg_linechart_Loss value: 0.42") == ("Loss", {"value": 0.42})
    assert parse_linechart("cnvrg_linechart_Acc x: 'Epoch' y: 'Accuracy' group: 'val' value: 0.7") == (
        "Acc", {"x": "Epoch", "y": "Accuracy", "group": "val", "value": 0.7})
    assert parse_linechart("cnvrg_linechart_Loss key: epoch") is None
    assert parse_linechart("progress 50%") is None


def test_shipped_flow_commands_resolve_every_mount(tmp_path):
    flow = load_flow(Path(__file__).resolve().parents[2] / "traffic_signs_annotation.yaml")
    (tmp_path / "empty.env").write_text("")
    runner = FlowRunner(flow, runs_dir=tmp_path / "runs", out=io.StringIO(), env_file=tmp_path / "empty.env",
                        overrides=["s3_bucket=local-bucket"])
    folders = {t.slug: tmp_path / "w" / t.slug for t in flow.tasks}
    data = {"road_signs": tmp_path / "images"}
    for t in flow.order():
        if t.type != "exec":
            continue
        parents = {p.slug: folders[p.slug] for p in flow.parents(t.title) if p.type == "exec"}
        argv = runner.build_command(t, parents, data, {})
        assert argv[:2] == [sys.executable, f"steps/{t.slug}.py"]
        assert not any(w.startswith(("/input/", "/data/")) for w in argv), argv
    launch = runner.build_command(flow.task("Launch Pool"), {s: folders[s] for s in ("create_project", "upload_images")},
                                  data, {})
    assert launch[launch.index("--projects_csv") + 1] == str(folders["create_project"] / "output" / "projects.csv")
    upload = runner.build_command(flow.task("Upload Images"), {}, data, {})
    assert upload[upload.index("--images_dir") + 1] == str(tmp_path / "images")
    assert upload[upload.index("--s3_bucket") + 1] == "local-bucket"


RENDEZVOUS = r'''
import argparse, os, sys, time
from pathlib import Path

def build_parser():
    p = argparse.ArgumentParser()
    p.add_argument("--me")
    p.add_argument("--other")
    return p

if __name__ == "__main__":
    a = build_parser().parse_args()
    meeting = Path(os.environ["MEETING_DIR"])
    (meeting / a.me).write_text("here")
    deadline = time.monotonic() + float(os.environ.get("MEETING_WAIT", "20"))
    while not (meeting / a.other).exists():  # only a parallel run lets both arrive
        if time.monotonic() > deadline:
            print(f"error: {a.other} never came", file=sys.stderr)
            raise SystemExit(3)
        time.sleep(0.02)
    print(f"cnvrg_tag_met: {a.other}")
'''


@pytest.mark.parametrize("jobs", [1, 2])
def test_jobs_run_independent_branches_at_once(tmp_path, monkeypatch, jobs):
    root = tmp_path / "proj"
    path = make_project(root, [
        {**task("A"), "input": "python3 steps/meet.py", "params": [{"key": "me", "values": ["a"]},
                                                                  {"key": "other", "values": ["b"]}]},
        {**task("B"), "input": "python3 steps/meet.py", "params": [{"key": "me", "values": ["b"]},
                                                                  {"key": "other", "values": ["a"]}]},
        task("After", {"word": "z"})], [("A", "After"), ("B", "After")])
    (root / "steps" / "meet.py").write_text(RENDEZVOUS)
    (tmp_path / "meet").mkdir()
    monkeypatch.setenv("MEETING_DIR", str(tmp_path / "meet"))
    monkeypatch.setenv("MEETING_WAIT", "60" if jobs == 2 else "0.5")  # parallel: they meet at once (60 s only bounds a failure)
    report = runner_for(path, tmp_path, jobs=jobs).run()
    status = {r.title: r.status for r in report.results}
    if jobs == 2:
        assert status == {"A": "succeeded", "B": "succeeded", "After": "succeeded"}
        assert [r.tags for r in report.results[:2]] == [{"met": "b"}, {"met": "a"}]
    else:  # serially A waits for B in vain; B then finds A's marker; After is skipped
        assert status == {"A": "failed", "B": "succeeded", "After": "skipped"}
        assert report.results[0].error == "exit code 3: error: b never came"
