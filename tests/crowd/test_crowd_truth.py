"""The crowd's own truth reader (crowd/truth.py): checks, lookups by content or URL, image-level truth and
truth for image-less tasks; and that it reads the product's truth files the same way the product does."""

from __future__ import annotations

import json

import pytest

from crowdboxes.local_toloka.crowd.truth import Truth, TruthError, as_truth, check_truth, load_truth

SHA = "ab" * 32
COCO = {"images": [{"id": 1, "file_name": "dir/road1.png", "width": 640, "height": 480, "sha256": SHA,
                    "label": "stop", "text": "STOP"},
                   {"id": 2, "file_name": "road2.png", "width": 320, "height": 240,
                    "labels": {"kind": "yield"}, "links": ["https://a.example/x"]}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40], "occluded": True},
                        {"id": 2, "image_id": 1, "category_id": 42, "bbox": [5, 5, 10, 10], "visible": 0.25},
                        {"id": 3, "image_id": 2, "category_id": 2, "bbox": [0, 0, 8, 8]}],
        "tasks": [{"input_values": {"q": "2+2"}, "output_values": {"a": "4"}}]}


def test_lookup_by_sha_name_url_and_upload_name():
    truth = Truth(COCO)
    assert truth.image_id(sha256=SHA.upper()) == 1
    assert truth.image_id(file_name="dir/road1.png") == 1
    assert truth.image_id(file_name="https://s3.local/bucket/road1.png?X-Amz-Signature=1#frag") == 1
    assert truth.image_id(file_name=f"https://s3.local/uploads/{SHA}.png") == 1
    assert truth.image_id(sha256="00" * 32, file_name="road2.png") == 2
    assert truth.image_id(file_name="nothing.png") is None and truth.lookup(file_name="x.png") is None
    width, height, rows = truth.lookup(file_name="road1.png")
    assert (width, height) == (640.0, 480.0)
    # category names: the default road-sign names unless the file says otherwise; unknown ids as text
    assert rows["label"].tolist() == ["stop", "42"]
    assert rows["visible"].tolist() == [pytest.approx(0.8), pytest.approx(0.25)]  # occluded alone = 20 % hidden
    assert truth.lookup(file_name="road2.png")[2]["label"].tolist() == ["yield"]


def test_image_level_and_task_truth():
    truth = Truth(COCO)
    assert truth.image(file_name="road1.png")["text"] == "STOP"
    assert truth.image(sha256=SHA)["label"] == "stop"
    assert truth.task({"q": "2+2", "extra": 1}) == {"a": "4"}
    assert truth.task({"q": "2+3"}) is None and truth.task("nonsense") is None
    assert set(truth.labels) == {"stop", "42", "yield"}


def test_checks_name_the_bad_entry(tmp_path):
    for broken, words in [([], "JSON object"), ({"images": {}}, "'images'"),
                          ({"images": [{"id": 1}], "annotations": []}, "images[0] lacks field 'file_name'"),
                          ({"images": [{"id": 1, "file_name": "a", "width": 0, "height": 5}], "annotations": []},
                           "width/height"),
                          ({"images": [], "annotations": [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]}]},
                           "image_id 9"),
                          ({"images": [{"id": 1, "file_name": "a", "width": 5, "height": 5}],
                            "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1]}]}, "negative"),
                          ({"images": [], "annotations": [], "tasks": [{"input_values": {}}]}, "tasks[0]")]:
        with pytest.raises(TruthError, match=words.replace("[", r"\[").replace("]", r"\]")):
            check_truth(broken)
    with pytest.raises(TruthError, match="not found"):
        load_truth(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(TruthError, match="bad.json"):
        load_truth(tmp_path / "bad.json")
    (tmp_path / "ok.json").write_text(json.dumps(COCO))
    assert len(Truth(load_truth(tmp_path / "ok.json"))) == 2


def test_as_truth_accepts_none_dicts_and_objects_with_coco():
    assert len(as_truth(None)) == 0
    assert as_truth(COCO).image_id(sha256=SHA) == 1

    class Index:
        coco = COCO

    assert as_truth(Index()).image_id(file_name="road2.png") == 2
    with pytest.raises(TruthError):
        as_truth(42)


def test_reads_the_products_truth_like_the_product():
    """Same rows, sizes and lookups as crowdboxes.evaluation.truth.TruthIndex on a truth file of the product's format."""
    from crowdboxes.evaluation.truth import TruthIndex

    coco = {**COCO, "categories": [{"id": 1, "name": "stop"}, {"id": 2, "name": "yield"}, {"id": 42, "name": "odd"}]}
    ours, theirs = Truth(coco), TruthIndex(coco)
    for query in ({"sha256": SHA}, {"file_name": "road2.png"}, {"file_name": f"http://x/{SHA}.jpg"},
                  {"file_name": "https://h/dir/road1.png?sig=1"}, {"file_name": "none.png"}):
        a, b = ours.lookup(**query), theirs.lookup(**query)
        assert (a is None) == (b is None)
        if a is not None:
            assert a[:2] == tuple(map(float, b[:2]))
            assert a[2][["label", "x", "y", "w", "h"]].values.tolist() == b[2][["label", "x", "y", "w", "h"]].values.tolist()
