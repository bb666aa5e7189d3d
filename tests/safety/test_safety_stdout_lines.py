"""User text never becomes a cnvrg tag or chart line of its own.

cnvrg (and the local runner, crowdboxes.cnvrg.runner) reads every output line that begins with
``cnvrg_tag_`` or ``cnvrg_linechart_``; a file name holding a line break must not start such a line.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from crowdboxes.cnvrg.metrics import linechart_line, one_line, tag_line
from crowdboxes.cnvrg.runner import TAG_RE, parse_linechart
from helpers_s3 import FAKE_AWS_ENV, start_local_s3
from helpers_safety import runner

BUCKET = "newline-names"
TAG_INJECTION = "a\ncnvrg_tag_images_uploaded: 31337\n"
CHART_INJECTION = "b\rcnvrg_linechart_Progress key: 1 value: 99\u2028"


def _parsed(text: str) -> tuple[dict[str, str], list[tuple[str, dict]]]:
    """What the runner reads from ``text``: tags and chart points."""
    tags, points = {}, []
    for line in text.splitlines():  # str.splitlines: every break a reader might honour (CR, U+2028 ...)
        if m := TAG_RE.match(line):
            tags[m.group(1)] = m.group(2)
        elif point := parse_linechart(line):
            points.append(point)
    return tags, points


def test_tag_and_chart_lines_hold_user_text_on_one_line():
    line = tag_line("file", TAG_INJECTION + CHART_INJECTION)
    assert _parsed(line) == ({"file": one_line(TAG_INJECTION + CHART_INJECTION)}, [])
    assert one_line(TAG_INJECTION) == "a\\ncnvrg_tag_images_uploaded: 31337\\n"
    chart = linechart_line("Progress", 5, key=2, group="w' value: 99 " + TAG_INJECTION)
    assert _parsed(chart) == ({}, [("Progress", {"key": 2.0, "group": one_line("w\\x27 value: 99 " + TAG_INJECTION),
                                                 "value": 5.0})])
    with pytest.raises(ValueError):
        tag_line("images\ncnvrg_tag_x", 1)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with start_local_s3(tmp_path_factory.mktemp("s3"), buckets=[BUCKET]) as store:
        yield store


def test_a_flow_run_over_file_names_with_line_breaks_reads_no_injected_tag_or_point(tmp_path, s3, monkeypatch):
    dataset = tmp_path / "road_signs"
    dataset.mkdir()
    for seed, name in enumerate(["good.jpg", f"{TAG_INJECTION}.jpg", f"{CHART_INJECTION}.jpg"]):
        pixels = np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(dataset / name, format="JPEG")
    (dataset / f"c{TAG_INJECTION}.jpg").write_text("not an image either")
    for key, value in {**FAKE_AWS_ENV, "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    run, out, err = runner(tmp_path, ["Road Signs", "Upload Images"], data={"road_signs": dataset},
                           overrides=[f"s3_bucket={BUCKET}", f"s3_endpoint_url={s3.url}", "s3_prefix=p/"])
    report = run.run()
    assert report.ok, report.failure_line()
    upload = next(r for r in report.results if r.slug == "upload_images")
    tags = json.loads(open(os.path.join(upload.workdir, "tags.json")).read())
    assert tags["images_uploaded"] == tags["images"] and "31337" not in json.dumps(tags)
    assert json.loads(open(os.path.join(upload.workdir, "metrics.json")).read()) == {}
    log = open(os.path.join(upload.workdir, "log.txt"), encoding="utf-8").read()
    assert _parsed(log)[1] == [] and "31337" not in _parsed(log)[0].values()
    assert not [line for line in (out.getvalue() + err.getvalue()).splitlines()
                if line.split("] ", 1)[-1].startswith(("cnvrg_tag_images_uploaded: 31337", "cnvrg_linechart_"))]
