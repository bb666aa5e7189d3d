"""Parsing and checking cnvrg flow YAML (crowdboxes.cnvrg.flow) on small flows and throwaway steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from crowdboxes.cnvrg import cli as flow_cli
from crowdboxes.cnvrg.flow import FlowError, check_flow, load_flow, parse_flow, slugify

STEP = '''
import argparse

def build_parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--in_file")
    parser.add_argument("--word", default="x")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--mode", choices=["a", "b"], default="a")
    parser.add_argument("--images_dir")
    return parser

if __name__ == "__main__":
    build_parser().parse_args()
'''


def task(title, params=None, command="python3 steps/echo.py", **extra):
    return {"title": title, "type": "exec", "input": command, "output_dir": "output",
            "params": [{"key": k, "type": "categorical", "values": [v]} for k, v in (params or {}).items()],
            **extra}


def write_flow(folder: Path, tasks, relations, name="flow.yaml") -> Path:
    steps = folder / "steps"
    steps.mkdir(exist_ok=True)
    (steps / "echo.py").write_text(STEP)
    path = folder / name
    path.write_text(yaml.safe_dump({"flow": "Test", "recurring": None, "tasks": tasks,
                                    "relations": [{"from": a, "to": b} for a, b in relations]}, sort_keys=False))
    return path


def problems_of(path: Path, **kw) -> list[str]:
    return check_flow(load_flow(path), **kw)


def test_slug_rule_matches_cnvrg_examples():
    assert slugify("S3 Data Connector") == "s3_data_connector"
    assert slugify("Data-Preprocessing") == "data_preprocessing"
    assert slugify("Create Project") == "create_project"


def test_valid_flow_has_no_problems_and_is_ordered_topologically(tmp_path):
    # YAML order deliberately differs from the dependency order
    path = write_flow(tmp_path, [
        task("Export", {"in_file": "/input/merge/output/out.txt"}),
        task("Merge", {"in_file": "/input/left/output/out.txt"}),
        task("Left", {"word": "l"}),
        task("Right", {"word": "r"}),
    ], [("Left", "Merge"), ("Right", "Merge"), ("Merge", "Export")])
    flow = load_flow(path)
    assert check_flow(flow) == []
    assert [t.title for t in flow.order()] == ["Left", "Right", "Merge", "Export"]
    assert [p.title for p in flow.parents("Merge")] == ["Left", "Right"]
    assert flow.descendants("Left") == {"Merge", "Export"}


def test_input_alias_command_and_legacy_value_are_accepted(tmp_path):
    flow = parse_flow({"flow": "F", "tasks": [
        {"title": "A", "command": "python3 steps/echo.py", "params": [{"key": "word", "value": "hi"}]},
        {"title": "B", "input": "python3 steps/echo.py", "params": {"count": {"type": "categorical", "value": 3}}},
    ], "relations": []}, tmp_path / "f.yaml")
    assert flow.task("A").command == "python3 steps/echo.py"
    assert flow.task("A").param("word").values == ["hi"]
    assert flow.task("B").param("count").values == ["3"]
    flag = parse_flow({"flow": "F", "tasks": [{"title": "A", "input": "x", "params": [
        {"key": "on", "values": [True]}]}]})
    assert flag.task("A").param("on").value == "true"


def test_relation_to_unknown_title_is_named(tmp_path):
    path = write_flow(tmp_path, [task("Left"), task("Merge")], [("Left", "merge")])
    problems = problems_of(path)
    assert problems == ["relation 'Left' -> 'merge': no task titled 'merge' (did you mean 'Merge'?)"]


def test_duplicate_titles_are_rejected(tmp_path):
    path = write_flow(tmp_path, [task("Left"), task("Left")], [])
    assert any("'Left': title used by 2 tasks" in p for p in problems_of(path))


def test_cycle_is_reported_with_its_path(tmp_path):
    path = write_flow(tmp_path, [task("A"), task("B"), task("C"), task("D")],
                      [("D", "A"), ("A", "B"), ("B", "C"), ("C", "A")])
    problems = problems_of(path)
    assert problems == ["relations form a cycle: A -> B -> C -> A"]
    with pytest.raises(FlowError, match="cycle"):
        load_flow(path).order()


def test_unknown_param_is_named_with_task_and_script(tmp_path):
    path = write_flow(tmp_path, [task("Left", {"word": "a", "wrod": "b"})], [])
    problems = problems_of(path)
    assert len(problems) == 1
    assert problems[0].startswith("task 'Left' param 'wrod': steps/echo.py does not accept --wrod")


def test_value_the_parser_rejects_is_reported(tmp_path):
    path = write_flow(tmp_path, [task("Left", {"count": "many"}), task("Right", {"mode": "c"})], [])
    problems = problems_of(path)
    assert problems[0].startswith("task 'Left': steps/echo.py rejects its params:") and "many" in problems[0]
    assert problems[1].startswith("task 'Right': steps/echo.py rejects its params:") and "'c'" in problems[1]


def test_missing_step_script_is_named(tmp_path):
    path = write_flow(tmp_path, [task("Left", command="python3 steps/nope.py")], [])
    assert problems_of(path) == [f"task 'Left': step script steps/nope.py does not exist (looked in {tmp_path})"]


def test_step_without_build_parser_and_broken_import(tmp_path):
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "plain.py").write_text("print('hi')\n")
    (tmp_path / "steps" / "broken.py").write_text("import no_such_module_xyz\n")
    path = write_flow(tmp_path, [task("P", command="python steps/plain.py"),
                                 task("B", command="python3 steps/broken.py")], [])
    problems = problems_of(path)
    assert problems[0] == f"task 'P': {tmp_path / 'steps' / 'plain.py'}: defines no build_parser()"
    assert "importing it failed: ModuleNotFoundError" in problems[1] and problems[1].startswith("task 'B':")


def test_input_from_grandparent_or_unknown_slug_is_rejected(tmp_path):
    path = write_flow(tmp_path, [
        task("Left"), task("Merge", {"in_file": "/input/left/output/out.txt"}),
        task("Export", {"in_file": "/input/left/output/out.txt", "word": "/input/nobody/output/x"}),
    ], [("Left", "Merge"), ("Merge", "Export")])
    problems = problems_of(path)
    assert problems == [
        "task 'Export' param 'in_file': reads /input/left/ but 'Left' is not a direct parent "
        "(add the relation 'Left' -> 'Export')",
        "task 'Export' param 'word': /input/nobody/ names no task (slugs: export, left, merge)",
    ]


def test_input_outside_parent_output_dir_is_rejected(tmp_path):
    path = write_flow(tmp_path, [task("Left"), task("Merge", {"in_file": "/input/left/out.txt"})],
                      [("Left", "Merge")])
    assert problems_of(path) == ["task 'Merge' param 'in_file': /input/left/out.txt is outside 'Left''s "
                                 "output_dir 'output'; a git-linked project keeps only that folder"]


def test_data_mount_needs_a_direct_data_parent(tmp_path):
    data = {"title": "Road Signs", "type": "data", "dataset": "road_signs"}
    ok = write_flow(tmp_path, [data, task("Up", {"images_dir": "/data/road_signs"})], [("Road Signs", "Up")])
    assert problems_of(ok) == []
    bad = write_flow(tmp_path, [data, task("Up", {"images_dir": "/data/other/x"})], [("Road Signs", "Up")],
                     name="bad.yaml")
    assert problems_of(bad) == ["task 'Up' param 'images_dir': reads /data/other/ but no data task with "
                                "dataset 'other' is a direct parent"]


def test_values_that_the_shell_would_change_grids_and_empty_values(tmp_path):
    flow = parse_flow({"flow": "F", "tasks": [{"title": "A", "input": "python3 steps/echo.py", "params": [
        {"key": "word", "values": ["a b"]},
        {"key": "in_file", "values": ["$HOME/x"]},
        {"key": "mode", "values": ["a", "b"]},
        {"key": "count", "values": []},
    ]}]}, tmp_path / "f.yaml")
    problems = check_flow(flow, tmp_path, check_steps=False)
    assert problems == [
        "task 'A' param 'word': value 'a b' has whitespace, which splits it into several arguments",
        "task 'A' param 'in_file': value '$HOME/x' has '$', which cnvrg's shell line would interpret; use plain words",
        "task 'A' param 'mode': 2 values make a grid of jobs; give exactly one",
        "task 'A' param 'count': has no value (cnvrg treats an empty param as required)",
    ]


def test_params_become_argv_in_order_unquoted_and_split_like_a_shell():
    flow = parse_flow({"flow": "F", "tasks": [{"title": "A", "input": "python3  steps/echo.py", "params": [
        {"key": "word", "values": ["a b"]}, {"key": "count", "values": [3]}, {"key": "rate", "values": [0.05]}]}]})
    t = flow.task("A")
    assert t.argv_line() == "python3  steps/echo.py --word a b --count 3 --rate 0.05"
    assert t.argv() == ["python3", "steps/echo.py", "--word", "a", "b", "--count", "3", "--rate", "0.05"]
    assert t.script() == "steps/echo.py"


def test_yaml_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: x\ntasks:\n  - title: [unclosed\n")
    with pytest.raises(FlowError, match=r"bad.yaml: line \d+ not valid YAML"):
        load_flow(bad)
    with pytest.raises(FlowError, match="no such file"):
        load_flow(tmp_path / "missing.yaml")


def test_cli_validate_prints_one_line_per_problem(tmp_path, capsys):
    path = write_flow(tmp_path, [task("Left", {"wrod": "b"}), task("Merge")], [("Left", "Nope")])
    assert flow_cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert all(line.startswith(f"error: {path}: ") for line in err)
    good = write_flow(tmp_path, [task("Left"), task("Merge")], [("Left", "Merge")], name="good.yaml")
    assert flow_cli.main(["validate", str(good)]) == 0
    assert "2 tasks in order: Left -> Merge" in capsys.readouterr().out


REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "traffic_signs_annotation.yaml"
STEP_NAMES = ["create_project", "upload_images", "launch_pool", "wait_pool", "aggregate_boxes", "export"]


def test_shipped_flow_structure():
    flow = load_flow(SHIPPED)
    assert check_flow(flow, check_steps=False) == []
    order = [t.slug for t in flow.order()]
    # every step once, after the dataset; whether Create Project waits for Upload Images is the YAML's choice
    assert order[0] == "road_signs" and sorted(order[1:]) == sorted(STEP_NAMES)
    assert order.index("upload_images") < order.index("launch_pool") < order.index("wait_pool") \
        < order.index("aggregate_boxes") < order.index("export")
    for slug in STEP_NAMES:
        t = flow.by_slug()[slug]
        assert t.command == f"python3 steps/{slug}.py"
        assert t.output_dir == "output"
        assert all(p.type == "categorical" and len(p.values) == 1 for p in t.params)
    assert flow.task("Launch Pool").param("toloka_env").value == "production"
    assert {p.title for p in flow.parents("Export")} == {"Upload Images", "Wait Pool", "Aggregate Boxes"}


def test_shipped_flow_steps_accept_their_params():
    assert check_flow(load_flow(SHIPPED)) == []


# The params each task must carry (team contract), beyond --output_dir; Toloka steps also take
# --toloka_env/--token_env so the demo and the sandbox can redirect them.
CONTRACT = {
    "create_project": "toloka_env token_env config_dir project_key",
    "upload_images": "images_dir s3_bucket s3_prefix s3_endpoint_url url_mode url_expiry_days max_workers "
                     "max_image_mb min_side max_side",
    "launch_pool": "toloka_env token_env projects_csv images_csv config_dir mode reward overlap tasks_per_suite "
                   "time_per_suite auto_accept review_days languages expiry_days adult_content budget batch_size "
                   "control_csv rounds missed_budget check_budget",
    "wait_pool": "toloka_env token_env projects_csv images_csv pool_csv tasks_csv poll_seconds timeout_hours "
                 "verdict_method verifiers max_attempts budget max_overlap risk_threshold missed_threshold check_low "
                 "check_high checkers",
    "aggregate_boxes": "answers_csv images_csv method",
    "export": "toloka_env token_env boxes_csv images_csv wait_summary dataset min_score formats truth archive",
}


def test_shipped_flow_params_follow_the_contract():
    flow = load_flow(SHIPPED)
    for slug, keys in CONTRACT.items():
        t = flow.by_slug()[slug]
        assert [p.key for p in t.params] == keys.split() + ["output_dir"], slug
        assert t.param("output_dir").value == "output"
    launch = flow.task("Launch Pool")
    assert {k: launch.param(k).value for k in ("mode", "reward", "overlap", "tasks_per_suite", "budget")} == {
        "mode": "overlap", "reward": "0.05", "overlap": "3", "tasks_per_suite": "1", "budget": "10"}
    assert flow.task("Wait Pool").param("budget").value == "10"
    assert flow.task("Upload Images").param("s3_bucket").value == "my-toloka-images"
    assert flow.task("Aggregate Boxes").param("method").value == "auto"
    assert flow.by_slug()["road_signs"].type == "data" and flow.by_slug()["road_signs"].dataset == "road_signs"


def test_argv_matches_what_bash_makes_of_the_shipped_lines():
    import subprocess

    for t in load_flow(SHIPPED).tasks:
        if t.type != "exec":
            continue
        line = t.argv_line()
        done = subprocess.run(["bash", "-c", f"printf '%s\\n' {line}"], capture_output=True, text=True, check=True)
        assert done.stdout.splitlines() == t.argv(), t.title


def test_every_task_runs_in_the_projects_step_image():
    """The flow's default image is the one the Dockerfile builds (its labels' title:version), not a bare Python
    that would install requirements.txt before each task."""
    import re

    dockerfile = (REPO / "Dockerfile").read_text()
    title = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', dockerfile).group(1)
    version = re.search(r'org\.opencontainers\.image\.version="([^"]+)"', dockerfile).group(1)
    flow = yaml.safe_load((REPO / "traffic_signs_annotation.yaml").read_text())
    images = {task["title"]: task.get("image") for task in flow["tasks"] if task.get("type") != "data"}
    assert images and set(images.values()) == {f"{title}:{version}"}, images
