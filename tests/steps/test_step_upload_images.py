"""Upload Images: validation reasons, duplicates, S3 keys/URLs, and re-runs that upload nothing twice; paths that
cannot leave their folder, size checks before reading, EXIF-rotated photos uploaded upright."""

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from PIL import Image

from crowdboxes.storage import images as img
from crowdboxes.cnvrg.stepkit import StepError
from crowdboxes.artifacts import UPLOAD_SUMMARY
from crowdboxes.steps.upload_images import UploadImagesOptions, images_frame, plan_upload
from helpers_s3 import FAKE_AWS_ENV, start_local_s3

REPO = Path(__file__).resolve().parents[2]

BUCKET = "test-images"
PUBLIC_BUCKET = "test-public-images"


def _png(path: Path, width: int, height: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _jpeg(path: Path, width: int, height: int, seed: int = 0, orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, format="JPEG", quality=85, exif=exif)
    return path


@pytest.fixture
def dataset(tmp_path):
    """Four good images (one in a subfolder, one JPEG) and five that must be rejected."""
    root = tmp_path / "road_signs"
    _png(root / "a.png", 80, 60, seed=1)
    _png(root / "b.png", 90, 70, seed=2)
    _jpeg(root / "sub" / "c.jpg", 100, 50, seed=3)
    _png(root / "sub" / "deeper" / "d.webp.png", 64, 64, seed=4)
    (root / "sub" / "copy_of_a.PNG").write_bytes((root / "a.png").read_bytes())  # duplicate by bytes
    _png(root / "tiny.png", 20, 40, seed=5)  # shorter side 20 < 32
    (root / "notes.jpg").write_text("this is not an image")
    truncated = (root / "b.png").read_bytes()
    (root / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    (root / "empty.jpeg").write_bytes(b"")
    (root / "labels.txt").write_text("ignored: not an image extension")
    (root / ".hidden.png").write_bytes((root / "b.png").read_bytes())
    return root


# --- library --------------------------------------------------------------------------------

def test_inspect_gives_a_reason_per_bad_file(dataset):
    infos = img.scan_folder(dataset)
    names = [i.file_name for i in infos]
    assert names == sorted(names)
    assert "labels.txt" not in names and ".hidden.png" not in names
    img.inspect_all(infos, img.ImageRules(min_side=32), max_workers=2)
    img.mark_duplicates(infos)
    reasons = {i.file_name: i.reason for i in infos}
    assert reasons["a.png"] == "" and reasons["sub/c.jpg"] == ""
    assert reasons["sub/copy_of_a.PNG"] == "duplicate of a.png"
    assert reasons["tiny.png"] == "image is 20x40 px, shorter side below --min_side 32"
    assert reasons["notes.jpg"].startswith("not an image")
    assert reasons["truncated.png"].startswith("corrupt image")
    assert reasons["empty.jpeg"] == "empty file"
    good = {i.file_name: i for i in infos if not i.reason}
    a = good["a.png"]
    assert a.sha256 == hashlib.sha256((dataset / "a.png").read_bytes()).hexdigest()
    assert (a.width, a.height, a.format) == (80, 60, "PNG") and a.image_id == a.sha256[:16]


def test_size_and_format_limits(tmp_path):
    big = img.inspect_image(img.ImageInfo(_png(tmp_path / "big.png", 300, 40), "big.png"),
                            img.ImageRules(min_side=10, max_side=200))
    assert big.reason == "image is 300x40 px, longer side above --max_side 200"
    heavy = img.inspect_image(img.ImageInfo(_png(tmp_path / "heavy.png", 200, 200), "heavy.png"),
                              img.ImageRules(max_image_mb=0.01))
    assert heavy.reason.startswith("file is 0.1 MB, above --max_image_mb 0.01")
    gif_path = tmp_path / "anim.png"
    Image.new("RGB", (50, 50)).save(gif_path, format="GIF")  # GIF bytes behind a .png name
    gif = img.inspect_image(img.ImageInfo(gif_path, "anim.png"), img.ImageRules())
    assert gif.reason == "format GIF is not allowed (allowed: JPEG, PNG, WEBP)"


def test_exif_rotation_gives_displayed_size(tmp_path):
    info = img.inspect_image(img.ImageInfo(_jpeg(tmp_path / "r.jpg", 120, 60, orientation=6), "r.jpg"),
                             img.ImageRules())
    assert info.reason == "" and (info.width, info.height, info.orientation) == (60, 120, 6)


def test_prefix_and_url_mode_rules():
    assert img.normalize_prefix("road-signs") == "road-signs/"
    assert img.normalize_prefix("a/b.c/") == "a/b.c/"
    assert img.normalize_prefix("none") == "" and img.normalize_prefix(None) == ""
    for prefix, problem in [("../evil/", "has a '.' or '..' folder"), ("a/../../b", "has a '.' or '..' folder"),
                            ("./a", "has a '.' or '..' folder"), ("/a/b/", "is absolute (starts with /)"),
                            ("a//b", "has an empty folder name (//)"), ("a\\b", "has a backslash"),
                            ("a\nb", "has a control character"), ("a\x1b[31m", "has a control character"),
                            ("x" * 901, "is longer than 900 bytes")]:
        with pytest.raises(StepError) as info:
            img.normalize_prefix(prefix)
        assert problem in str(info.value) and "\n" not in str(info.value), prefix
    assert img.normalize_prefix("fotos/straße\u00a01") == "fotos/straße\u00a01/"  # accents, no-break space: fine
    for name in ("a\u2028b", "a\u202eb", "a\x85b", "a\tb"):
        assert img.has_control_character(name), repr(name)
    with pytest.raises(StepError, match="at most 7 days"):
        img.check_url_mode("presigned", 8)
    with pytest.raises(StepError, match="--url_mode 'signed'"):
        img.check_url_mode("signed", 1)
    img.check_url_mode("public", 365)


def _options(**changes: str) -> UploadImagesOptions:
    params = dict(toloka_env="production", token_env="toloka_token", output_dir=None, images_dir="x",
                  s3_bucket=" my-bucket ", s3_prefix="road-signs", s3_endpoint_url="none", url_mode="Presigned",
                  url_expiry_days="7", max_workers="8", max_image_mb="20", min_side="32", max_side="8192")
    return UploadImagesOptions(**{**params, **changes})


def test_params_become_an_upload_plan():
    plan = plan_upload(_options())
    assert (plan.bucket, plan.endpoint, plan.prefix, plan.url_mode) == ("my-bucket", None, "road-signs/", "presigned")
    assert (plan.expiry_days, plan.max_workers, plan.rules.min_side, plan.rules.max_side) == (7.0, 8, 32, 8192)
    assert plan_upload(_options(s3_endpoint_url="http://127.0.0.1:9000")).endpoint == "http://127.0.0.1:9000"
    with pytest.raises(StepError, match="--min_side 100 is above --max_side 50"):
        plan_upload(_options(min_side="100", max_side="50"))
    with pytest.raises(StepError, match="--s3_bucket is required"):
        plan_upload(_options(s3_bucket="null"))


def test_images_frame_has_the_contract_columns_even_when_empty(tmp_path):
    info = img.inspect_image(img.ImageInfo(_png(tmp_path / "a.png", 40, 40), "a.png"), img.ImageRules())
    info.url, info.key = "http://s3/a.png", "p/a.png"
    frame = images_frame([info], "2026-12-01T00:00:00Z")
    assert frame.iloc[0][["image_id", "width", "s3_key", "url_expires_at"]].tolist() == [
        info.image_id, 40, "p/a.png", "2026-12-01T00:00:00Z"]
    assert list(images_frame([], "").columns) == list(frame.columns)


# --- the step against a local S3 (moto) --------------------------------------------------------

@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with start_local_s3(tmp_path_factory.mktemp("s3"), buckets=[BUCKET]) as store:
        yield store


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **FAKE_AWS_ENV, "AWS_EC2_METADATA_DISABLED": "true", **extra}


def test_upload_then_rerun_uploads_nothing(dataset, s3, tmp_path, run_step):
    out = tmp_path / "out"
    args = ["--images_dir", str(dataset), "--s3_bucket", BUCKET, "--s3_prefix", "rerun", "--s3_endpoint_url",
            s3.url, "--url_mode", "presigned", "--url_expiry_days", "2", "--max_workers", "3",
            "--output_dir", str(out)]
    first = run_step("upload_images.py", args, _env())
    assert first.returncode == 0, first.stderr
    assert "cnvrg_tag_images: 4" in first.stdout and "cnvrg_tag_images_uploaded: 4" in first.stdout
    images = pd.read_csv(out / "images.csv", dtype=str)
    assert list(images.columns[:6]) == ["image_id", "file_name", "url", "width", "height", "sha256"]
    assert sorted(images["file_name"]) == ["a.png", "b.png", "sub/c.jpg", "sub/deeper/d.webp.png"]
    for row in images.itertuples():
        data = (dataset / row.file_name).read_bytes()
        assert row.sha256 == hashlib.sha256(data).hexdigest() and row.image_id == row.sha256[:16]
        ext = "jpg" if row.file_name.endswith(".jpg") else "png"
        assert row.s3_key == f"rerun/{row.sha256}.{ext}"
        assert "X-Amz-Expires=172800" in row.url  # presigned for 2 days
    fetched = requests.get(images.loc[images.file_name == "sub/c.jpg", "url"].iloc[0], timeout=10)
    assert fetched.status_code == 200 and fetched.content == (dataset / "sub/c.jpg").read_bytes()
    assert fetched.headers["Content-Type"] == "image/jpeg"
    rejected = pd.read_csv(out / "rejected_images.csv")
    assert dict(zip(rejected.file_name, rejected.reason))["sub/copy_of_a.PNG"] == "duplicate of a.png"
    assert set(rejected.file_name) == {"sub/copy_of_a.PNG", "tiny.png", "notes.jpg", "truncated.png", "empty.jpeg"}

    before = {k: v["LastModified"] for k, v in s3.objects(BUCKET).items() if k.startswith("rerun/")}
    assert len(before) == 4
    time.sleep(1.1)  # S3 LastModified has one-second resolution
    _png(dataset / "new.png", 70, 70, seed=9)
    second = run_step("upload_images.py", args, _env())
    assert second.returncode == 0, second.stderr
    assert "cnvrg_tag_images_uploaded: 1" in second.stdout and "cnvrg_tag_images_already_in_s3: 4" in second.stdout
    after = {k: v["LastModified"] for k, v in s3.objects(BUCKET).items() if k.startswith("rerun/")}
    assert len(after) == 5 and all(after[k] == before[k] for k in before)  # none re-uploaded
    assert FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in first.stdout + first.stderr + second.stdout + second.stderr
    for name in ("images.csv", "rejected_images.csv"):
        assert FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"] not in (out / name).read_text()


def test_public_urls_need_a_public_bucket(dataset, s3, tmp_path, run_step):
    out = tmp_path / "out"
    args = ["--images_dir", str(dataset), "--s3_bucket", PUBLIC_BUCKET, "--s3_prefix", "none",
            "--s3_endpoint_url", s3.url, "--url_mode", "public", "--output_dir", str(out)]
    client = s3.client()
    client.create_bucket(Bucket=PUBLIC_BUCKET)
    private = run_step("upload_images.py", args, _env())  # anonymous reads refused until the bucket policy allows them
    assert private.returncode == 2 and "answered HTTP 403" in private.stderr and "public-read" in private.stderr
    assert not (out / "images.csv").exists()
    client.put_bucket_policy(Bucket=PUBLIC_BUCKET, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                                "Resource": f"arn:aws:s3:::{PUBLIC_BUCKET}/*"}]}))
    result = run_step("upload_images.py", args, _env())
    assert result.returncode == 0, result.stderr
    assert "cnvrg_tag_images_uploaded: 0" in result.stdout  # the failed run's uploads were kept
    images = pd.read_csv(out / "images.csv", dtype=str, keep_default_na=False)
    row = images[images.file_name == "a.png"].iloc[0]
    assert row.url == f"{s3.url}/{PUBLIC_BUCKET}/{row.sha256}.png" and row.url_expires_at == ""
    assert requests.get(row.url, timeout=10).content == (dataset / "a.png").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--s3_bucket", "no-such-bucket"], "--s3_bucket 'no-such-bucket' does not exist"),
    (["--s3_bucket", BUCKET, "--max_workers", "abc"], "--max_workers 'abc' is not a whole number"),
    (["--s3_bucket", BUCKET, "--url_expiry_days", "30"], "presigned S3 URLs live more than 0 and at most 7 days"),
    (["--s3_bucket", "none"], "--s3_bucket is required"),
])
def test_bad_inputs_fail_with_one_line(dataset, s3, tmp_path, args, message, run_step_in_process):
    result = run_step_in_process("upload_images.py", ["--images_dir", str(dataset), "--s3_endpoint_url", s3.url,
                                                      "--output_dir", str(tmp_path / "out"), *args],
                                 {**FAKE_AWS_ENV, "AWS_EC2_METADATA_DISABLED": "true"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_missing_folder_and_missing_credentials(dataset, s3, tmp_path, run_step):
    result = run_step("upload_images.py", ["--images_dir", str(tmp_path / "nope"), "--s3_bucket", BUCKET,
                                           "--s3_endpoint_url", s3.url, "--output_dir", str(tmp_path / "out")], _env())
    assert result.returncode == 2 and "is not a folder" in result.stderr
    env = {k: v for k, v in _env().items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"))
    result = run_step("upload_images.py", ["--images_dir", str(dataset), "--s3_bucket", BUCKET,
                                           "--s3_endpoint_url", s3.url, "--output_dir", str(tmp_path / "out")], env)
    assert result.returncode == 2 and result.stderr.startswith("error: no S3 credentials")
    assert not (tmp_path / "out" / "images.csv").exists()


def test_failed_uploads_are_reported_and_retried_alone(dataset, s3, monkeypatch):
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    infos = img.inspect_all(img.scan_folder(dataset), img.ImageRules(), max_workers=2)
    img.mark_duplicates(infos)
    good = [i for i in infos if not i.reason]
    uploader = img.S3Uploader(BUCKET, s3.url, max_workers=2)
    uploader.check_bucket()
    real_put = uploader.client.put_object
    calls = []

    def flaky_put(**kwargs):
        calls.append(kwargs["Key"])
        if kwargs["Key"].endswith(".jpg"):
            raise OSError("connection reset")
        return real_put(**kwargs)

    monkeypatch.setattr(uploader.client, "put_object", flaky_put)
    stats = uploader.upload(good, "retry/")
    assert (stats.uploaded, stats.already_there) == (3, 0)
    assert stats.failed == [("sub/c.jpg", "connection reset")]
    calls.clear()
    again = uploader.upload(good, "retry/")  # still failing: only the missing image is attempted
    assert (again.uploaded, again.already_there, len(again.failed)) == (0, 3, 1)
    assert len(calls) == 1 and calls[0].endswith(".jpg")
    monkeypatch.setattr(uploader.client, "put_object", real_put)
    final = uploader.upload(good, "retry/")
    assert (final.uploaded, final.already_there, final.failed) == (1, 3, [])
    assert len([k for k in s3.objects(BUCKET) if k.startswith("retry/")]) == 4


# --- paths cannot leave their folder; sizes are checked before reading; EXIF orientation -----------------

def _step_args(dataset: Path, s3, bucket: str, out: Path, *extra: str) -> list[str]:
    return ["--images_dir", str(dataset), "--s3_bucket", bucket, "--s3_endpoint_url", s3.url,
            "--output_dir", str(out), *extra]


@pytest.mark.parametrize("prefix, problem", [
    ("../evil/", "has a '.' or '..' folder"), ("/abs/", "is absolute"), ("a//b/", "has an empty folder name"),
    ("a\\b/", "has a backslash"), ("a\ncnvrg_tag_images: 31337\n", "has a control character"),
])
def test_a_prefix_out_of_its_folder_is_refused_before_any_upload(dataset, s3, tmp_path, prefix, problem,
                                                                   run_step_in_process):
    bucket = "test-prefix-" + hashlib.sha256(prefix.encode()).hexdigest()[:12]
    s3.client().create_bucket(Bucket=bucket)
    out = tmp_path / "out"
    result = run_step_in_process("upload_images.py", _step_args(dataset, s3, bucket, out, "--s3_prefix", prefix),
                                 {**FAKE_AWS_ENV, "AWS_EC2_METADATA_DISABLED": "true"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --s3_prefix ") and problem in result.stderr
    assert not [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("cnvrg_tag")]
    assert s3.objects(bucket) == {}
    assert not out.exists() or not any(out.iterdir())


def _outside_links(tmp_path: Path, root: Path, fifo: bool = True) -> Path:
    """``root`` gets: a link to an image outside it, a link to a folder outside it, a link to an image inside
    it, a FIFO named .jpg (``fifo``), and an image whose name would inject a cnvrg tag line; returns the
    outside image."""
    outside = _png(tmp_path / "private" / "secret.png", 50, 50, seed=21)
    _png(tmp_path / "private" / "more" / "other.png", 50, 50, seed=22)
    (root / "leak.png").symlink_to(outside)
    (root / "linked_folder").symlink_to(tmp_path / "private" / "more", target_is_directory=True)
    (root / "alias_of_b.png").symlink_to(root / "b.png")
    if fifo:
        os.mkfifo(root / "pipe.jpg")
    _png(root / "x\ncnvrg_tag_images_uploaded: 31337.png", 40, 40, seed=23)
    return outside


def test_links_out_of_the_folder_are_rejected_and_never_opened(dataset, tmp_path, monkeypatch):
    outside = _outside_links(tmp_path, dataset, fifo=False)  # a FIFO read in-process would block: the step test has it
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(os.fspath(path)) or real_open(path, *a, **k))
    infos = img.inspect_all(img.scan_folder(dataset), img.ImageRules(min_side=32), max_workers=2)
    img.mark_duplicates(infos)
    reasons = {i.file_name: i.reason for i in infos}
    assert reasons["leak.png"] == "symbolic link to a file outside --images_dir: not read"
    assert reasons["linked_folder/"] == "symbolic link to a folder: not followed"
    # a link inside the folder is read (through its real path): the same bytes as b.png, found first
    assert reasons["alias_of_b.png"] == "" and reasons["b.png"] == "duplicate of alias_of_b.png"
    assert reasons["x\ncnvrg_tag_images_uploaded: 31337.png"].startswith("file name has a control character")
    private = str(outside.parent)
    assert opened and not [p for p in opened if p.startswith(private)]


def test_the_step_reports_links_and_hostile_names_on_safe_lines(dataset, s3, tmp_path, run_step):
    _outside_links(tmp_path, dataset)
    out = tmp_path / "out"
    result = run_step("upload_images.py", _step_args(dataset, s3, BUCKET, out, "--s3_prefix", "links"), _env(),
                      timeout=300)  # a FIFO read as a file would block: the timeout turns that into a failure
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "cnvrg_tag_images_uploaded: 4" in lines and not any(line.startswith("cnvrg_tag_images_uploaded: 3133")
                                                               for line in lines)
    assert "rejected x\\ncnvrg_tag_images_uploaded: 31337.png: file name has a control character" in result.stdout
    rejected = dict(pd.read_csv(out / "rejected_images.csv").itertuples(index=False))
    assert rejected["pipe.jpg"] == "not a regular file"
    assert rejected["leak.png"] == "symbolic link to a file outside --images_dir: not read"
    assert rejected["linked_folder/"] == "symbolic link to a folder: not followed"
    images = pd.read_csv(out / "images.csv", dtype=str)
    assert "leak.png" not in set(images.file_name) and not images.file_name.str.startswith("linked_folder").any()
    secret = hashlib.sha256((tmp_path / "private" / "secret.png").read_bytes()).hexdigest()
    assert not [k for k in s3.objects(BUCKET) if secret in k]


# The step in a child process of a fresh interpreter, which reports its child's peak resident memory (kB).
PEAK_RSS = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)")


def test_a_huge_file_is_refused_by_its_size_without_reading_it(dataset, s3, tmp_path):
    """A 1.5 GB file named .jpg (sparse: no disk used) is rejected from its size on disk. Reading it whole made
    the step's peak memory 1.6 GB; now about 150 MB. The bound is wide so a slow or busy machine cannot fail it."""
    with open(dataset / "huge.jpg", "wb") as handle:
        handle.truncate(1500 * 1024 * 1024)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, sys.executable, "steps/upload_images.py",
                           *_step_args(dataset, s3, BUCKET, out, "--s3_prefix", "huge")],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.splitlines()[-1]) / 1024
    assert peak_mb < 700, f"peak RSS {peak_mb:.0f} MB: the file was read"
    rejected = dict(pd.read_csv(out / "rejected_images.csv").itertuples(index=False))
    assert rejected["huge.jpg"] == "file is 1500.0 MB, above --max_image_mb 20"


def test_exif_rotated_photo_is_uploaded_upright(s3, tmp_path, run_step):
    """Stored 120 x 60 with orientation 6 (turn 90 degrees clockwise to view): the object in S3 is 60 x 120
    pixels with no orientation tag, as images.csv says; sha256 stays the source file's."""
    root = tmp_path / "photos"
    source = _jpeg(root / "turned.jpg", 120, 60, seed=31, orientation=6)
    _jpeg(root / "plain.jpg", 80, 40, seed=32)
    out = tmp_path / "out"
    args = _step_args(root, s3, BUCKET, out, "--s3_prefix", "upright")
    result = run_step("upload_images.py", args, _env())
    assert result.returncode == 0, result.stderr
    images = pd.read_csv(out / "images.csv", dtype=str).set_index("file_name")
    turned, plain = images.loc["turned.jpg"], images.loc["plain.jpg"]
    assert (turned.width, turned.height, turned.orientation, turned.orientation_applied) == ("60", "120", "6", "True")
    assert turned.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert turned.s3_key == f"upright/{turned.sha256}-upright.jpg"
    body = requests.get(turned.url, timeout=10).content
    with Image.open(io.BytesIO(body)) as shown:
        assert shown.size == (60, 120) and shown.getexif().get(0x0112) is None
        with Image.open(source) as original:
            from PIL import ImageOps
            expected = np.asarray(ImageOps.exif_transpose(original), dtype=float)
        assert np.abs(np.asarray(shown, dtype=float) - expected).mean() < 8  # the same picture, re-encoded
    assert (plain.orientation_applied, plain.s3_key) == ("False", f"upright/{plain.sha256}.jpg")
    assert requests.get(plain.url, timeout=10).content == (root / "plain.jpg").read_bytes()
    summary = json.loads(UPLOAD_SUMMARY.path(out).read_text())
    assert (summary["images"], summary["orientation_applied"]) == (2, 1)
    assert "cnvrg_tag_images_orientation_applied: 1" in result.stdout
    again = run_step("upload_images.py", args, _env())
    assert again.returncode == 0 and "cnvrg_tag_images_uploaded: 0" in again.stdout


def test_threads_decode_at_most_the_pixel_budget_at_once():
    import threading

    budget = img.PixelBudget(10)
    entered = threading.Event()

    def second():
        with budget.hold(6):
            entered.set()

    with budget.hold(6):
        waiting = threading.Thread(target=second)
        waiting.start()
        waiting.join(0.2)
        assert waiting.is_alive() and not entered.is_set() and budget.used == 6  # 6 + 6 > 10: it waits
    waiting.join(10)
    assert entered.is_set() and budget.used == 0
    with budget.hold(25):  # larger than the budget: runs alone rather than never
        assert budget.used == 25
    assert img.DECODE_BUDGET.limit == 2 * 8192 * 8192
