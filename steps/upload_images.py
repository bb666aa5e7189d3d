"""Upload Images: check the dataset's images and put them in S3 where the crowd can open them.

Scans --images_dir recursively for .jpg/.jpeg/.png/.webp files, decodes each with Pillow and checks
its size, skips files whose bytes duplicate an earlier one (sha256), and uploads the rest in
parallel to ``s3://<bucket>/<prefix><sha256>.<ext>`` with the right content type. An object that
is already there is not uploaded again, so a re-run costs only the new images. No Toloka token is
needed.

Inputs:
  --images_dir       folder of images (the cnvrg dataset, e.g. /data/road_signs)
  --s3_bucket        bucket name; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (cnvrg secrets)
  --s3_prefix        key prefix, e.g. road-signs/ (none = bucket root)
  --s3_endpoint_url  S3-compatible endpoint (MinIO, local store); none = AWS
  --url_mode         presigned (signed GET URLs that expire; at most 7 days) | public (bucket must allow
                     anonymous reads)
  --url_expiry_days  lifetime of presigned URLs (at most 7); Launch Pool ends the pool when they expire
  --max_workers      parallel uploads; --max_image_mb, --min_side, --max_side: limits per image
Outputs (in --output_dir):
  images.csv           image_id (first 16 hex of sha256), file_name (relative to --images_dir), url, width,
                       height (pixels as displayed, EXIF rotation applied), sha256, then format, bytes,
                       orientation, s3_key, url_expires_at (ISO UTC; empty for public URLs)
  rejected_images.csv  file_name, reason (not an image, corrupt, too small/large, format, duplicate of <file>)
  stdout: cnvrg_tag_images, cnvrg_tag_images_rejected, cnvrg_tag_images_uploaded, cnvrg_tag_images_already_in_s3
Sample command:
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... python steps/upload_images.py --images_dir data/road_signs \
      --s3_bucket my-bucket --s3_prefix road-signs/ --url_mode presigned --url_expiry_days 7 --output_dir out/upload
Troubleshooting:
  * "no S3 credentials": add AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY as cnvrg project secrets.
  * "image URL ... answered HTTP 403": in public mode the bucket needs a public-read policy; or use presigned.
  * "N of M uploads failed": nothing is lost; re-run the step, it uploads only what is missing.
  * Many "duplicate of" rows: the dataset holds the same photo under several names; only the first is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from crowdboxes.artifacts import IMAGES, REJECTED_IMAGES, write_csv  # noqa: E402
from crowdboxes.cnvrg.stepkit import StepError, output_dir, run_step, step_parser  # noqa: E402
from crowdboxes.cnvrg.metrics import cnvrg_tag  # noqa: E402


def build_parser():
    parser = step_parser("upload_images", "Validate images and upload them to S3 for the crowd.")
    parser.add_argument("--images_dir", default="/data/road_signs")
    parser.add_argument("--s3_bucket", default=None)
    parser.add_argument("--s3_prefix", default="road-signs/")
    parser.add_argument("--s3_endpoint_url", default="none")
    parser.add_argument("--url_mode", default="presigned")
    parser.add_argument("--url_expiry_days", default="7")
    parser.add_argument("--max_workers", default="8")
    parser.add_argument("--max_image_mb", default="20")
    parser.add_argument("--min_side", default="32")
    parser.add_argument("--max_side", default="8192")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from crowdboxes.storage import images as img
    from crowdboxes.toloka.pools import parse_number
    from crowdboxes.cnvrg.stepkit import is_none

    if is_none(args.s3_bucket):
        raise StepError("--s3_bucket is required (the bucket the crowd loads images from)")
    url_mode = str(args.url_mode).strip().lower()
    expiry_days = float(parse_number("url_expiry_days", args.url_expiry_days, minimum=0.001))
    img.check_url_mode(url_mode, expiry_days)
    max_workers = parse_number("max_workers", args.max_workers, minimum=1, maximum=64, integer=True)
    rules = img.ImageRules(
        max_image_mb=float(parse_number("max_image_mb", args.max_image_mb, minimum=0.001)),
        min_side=parse_number("min_side", args.min_side, minimum=1, integer=True),
        max_side=parse_number("max_side", args.max_side, minimum=1, integer=True))
    if rules.min_side > rules.max_side:
        raise StepError(f"--min_side {rules.min_side} is above --max_side {rules.max_side}")
    endpoint = None if is_none(args.s3_endpoint_url) else str(args.s3_endpoint_url).strip()
    prefix = img.normalize_prefix(args.s3_prefix)
    out = output_dir(args.output_dir)

    infos = img.scan_folder(args.images_dir)
    if not infos:
        raise StepError(f"--images_dir {args.images_dir}: no {'/'.join(img.EXTENSIONS)} files found")
    uploader = img.S3Uploader(str(args.s3_bucket).strip(), endpoint, max_workers=max_workers)
    uploader.check_bucket()  # fail fast, before hashing a large dataset

    img.inspect_all(infos, rules, max_workers)
    img.mark_duplicates(infos)
    good = [i for i in infos if not i.reason]
    rejected = pd.DataFrame([{"file_name": i.file_name, "reason": i.reason} for i in infos if i.reason],
                            columns=list(REJECTED_IMAGES.columns))
    write_csv(rejected, out, REJECTED_IMAGES)  # written first: the reasons are useful even if upload fails
    for row in rejected.head(10).itertuples(index=False):
        print(f"rejected {row.file_name}: {row.reason}")
    if len(rejected) > 10:
        print(f"... {len(rejected) - 10} more in rejected_images.csv")
    if not good:
        raise StepError(f"all {len(infos)} images were rejected; see {REJECTED_IMAGES.path(out)}")

    stats = uploader.upload(good, prefix)
    if stats.failed:
        name, error = stats.failed[0]
        raise StepError(f"{len(stats.failed)} of {len(good)} uploads failed (first: {name}: {error}); "
                        f"re-run to retry, uploaded images are kept and skipped")
    expires = img.url_expiry(url_mode, expiry_days)
    for info in good:
        info.url = (uploader.presigned_url(info.key, expiry_days) if url_mode == "presigned"
                    else uploader.public_url(info.key))
    img.check_url_reachable(good[0].url)

    frame = pd.DataFrame([{"image_id": i.image_id, "file_name": i.file_name, "url": i.url, "width": i.width,
                           "height": i.height, "sha256": i.sha256, "format": i.format, "bytes": i.size_bytes,
                           "orientation": i.orientation, "s3_key": i.key, "url_expires_at": expires}
                          for i in good])
    path = write_csv(frame, out, IMAGES)
    print(f"wrote {path}: {len(good)} images ({stats.uploaded} uploaded, {stats.already_there} already in S3), "
          f"{len(rejected)} rejected")
    cnvrg_tag("images", len(good))
    cnvrg_tag("images_rejected", len(rejected))
    cnvrg_tag("images_uploaded", stats.uploaded)
    cnvrg_tag("images_already_in_s3", stats.already_there)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_step(main))
