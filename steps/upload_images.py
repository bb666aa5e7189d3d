"""Upload Images: check the dataset's images and put them in S3 where the crowd can open them.

Scans --images_dir recursively for .jpg/.jpeg/.png/.webp files, decodes each with Pillow and checks
its size, skips files whose bytes duplicate an earlier one (sha256), and uploads the rest in
parallel to ``s3://<bucket>/<prefix><sha256>.<ext>`` with the right content type. An object that
is already there is not uploaded again, so a re-run costs only the new images. No Toloka token is
needed. Nothing outside --images_dir is read: links out of it, linked folders, FIFOs and file names
with control characters are rejected unread; a file above --max_image_mb is rejected by its size on disk
before a byte is read. A photo with an EXIF orientation is uploaded upright (``<sha256>-upright.<ext>``).

Inputs:
  --images_dir       folder of images (the cnvrg dataset, e.g. /data/road_signs)
  --s3_bucket        bucket name; credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (cnvrg secrets)
  --s3_prefix        key prefix, e.g. road-signs/ (none = bucket root); refused before any upload: .., ., a
                     leading /, //, backslashes, control characters
  --s3_endpoint_url  S3-compatible endpoint (MinIO, local store); none = AWS
  --url_mode         presigned (signed GET URLs that expire; at most 7 days) | public (bucket must allow
                     anonymous reads)
  --url_expiry_days  lifetime of presigned URLs (at most 7); Launch Pool ends the pool when they expire
  --max_workers      parallel uploads; --max_image_mb, --min_side, --max_side: limits per image
Outputs (in --output_dir):
  images.csv           image_id (first 16 hex of sha256), file_name (relative to --images_dir), url, width,
                       height (pixels as displayed and as uploaded), sha256 (of the source file), then format,
                       bytes, orientation (the source's EXIF tag, 1-8), s3_key, url_expires_at (ISO UTC; empty for
                       public URLs), orientation_applied (true: the object is an upright copy, tag removed)
  upload_summary.json  images (images.csv's rows), images_csv_sha256, rejected, uploaded, already_in_s3,
                       orientation_applied: Launch Pool refuses an images.csv that no longer matches it
  rejected_images.csv  file_name, reason (not an image, corrupt, too small/large, format, duplicate of <file>)
  stdout: cnvrg_tag_images, cnvrg_tag_images_rejected, cnvrg_tag_images_uploaded, cnvrg_tag_images_already_in_s3,
          cnvrg_tag_images_orientation_applied
Sample command:
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... python steps/upload_images.py --images_dir data/road_signs \
      --s3_bucket my-bucket --s3_prefix road-signs/ --url_mode presigned --url_expiry_days 7 --output_dir out/upload
Troubleshooting:
  * "no S3 credentials": add AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY as cnvrg project secrets.
  * "image URL ... answered HTTP 403": in public mode the bucket needs a public-read policy; or use presigned.
  * "N of M uploads failed": nothing is lost; re-run the step, it uploads only what is missing.
  * Many "duplicate of" rows: the dataset holds the same photo under several names; only the first is used.
  * "symbolic link to a file outside --images_dir: not read": copy the file into the dataset instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crowdboxes.cnvrg.stepkit import StepArgumentParser, run_step, step_parser  # noqa: E402
from crowdboxes.steps.upload_images import UploadImagesOptions, upload_images  # noqa: E402


def build_parser() -> StepArgumentParser:
    """Upload Images' params (the flow YAML passes each as ``--key value``; no Toloka token is used)."""
    parser = step_parser("upload_images", "Validate images and upload them to S3 for the crowd.")
    parser.add_argument("--images_dir", default="/data/road_signs",
                        help="folder of images, searched recursively (the cnvrg dataset)")
    parser.add_argument("--s3_bucket", default=None, help="bucket the crowd loads the images from; must be given")
    parser.add_argument("--s3_prefix", default="road-signs/", help="key prefix in the bucket (none: bucket root)")
    parser.add_argument("--s3_endpoint_url", default="none",
                        help="S3-compatible endpoint, e.g. MinIO or the local store (none: AWS)")
    parser.add_argument("--url_mode", default="presigned",
                        help="presigned (signed GET URLs that expire) or public (the bucket allows anonymous reads)")
    parser.add_argument("--url_expiry_days", default="7", help="lifetime of presigned URLs in days (at most 7)")
    parser.add_argument("--max_workers", default="8", help="parallel uploads (1-64)")
    parser.add_argument("--max_image_mb", default="20", help="largest image file accepted, in MB")
    parser.add_argument("--min_side", default="32", help="smallest width or height accepted, in pixels")
    parser.add_argument("--max_side", default="8192", help="largest width or height accepted, in pixels")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the params and run the step (:func:`crowdboxes.steps.upload_images.upload_images`)."""
    return upload_images(UploadImagesOptions(**vars(build_parser().parse_args(argv))))


if __name__ == "__main__":
    raise SystemExit(run_step(main))
