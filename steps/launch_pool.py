"""Launch Pool: create the detection pool, upload one task per image, open it, print the cost.

Everything is checked before anything is created on Toloka: the mode, every param, projects.csv and
images.csv columns, the pool config, whether the image URLs outlive the pool, and whether the
budget can pay for one assignment. The pool is found again on a re-run (same project, same images,
same config and settings -> same pool), tasks already in it are not sent again, and each batch of
tasks carries a deterministic operation id, so re-running the step never duplicates or loses tasks.

Inputs:
  --projects_csv   projects.csv of Create Project (detection_project and *_skill rows)
  --images_csv     images.csv of Upload Images (image_id, url, sha256, [url_expires_at])
  --config_dir     folder with detection_pool.json (and verification_pool.json for verify modes)
  --mode           overlap (N drawers per image, aggregated) | verify (1 drawer + verification) | overlap+verify
  --reward         USD per assignment (one task suite), at least 0.005; Toloka adds 30 % (min $0.005)
  --overlap        drawers per image (the detection pool uses 1 in verify mode)
  --tasks_per_suite  images per assignment; --time_per_suite  seconds a worker has for one assignment
  --auto_accept    true | false (false: you review, unreviewed work is accepted after --review_days, 1-21);
                   modes with verify always use false: the verification accepts or rejects each drawing
  --languages      comma list of worker languages (EN,DE) or none; --expiry_days  pool closes after it
  --adult_content  true | false; --budget  USD cap for the whole job or none; --batch_size  tasks per request
  --control_csv    none, or control images with known boxes (crowdboxes.toloka.known_boxes format: url, width,
                   height, label, x, y, w, h[, image_id]); each image becomes one more task (control=true)
  --toloka_env, --token_env  as in every Toloka step
Outputs (in --output_dir):
  pool.csv   pool_id, role (detection_pool), project_id, tasks, overlap, reward_per_assignment,
             estimated_cost (USD incl. fee, this pool), then mode, key, status, tasks_per_suite, will_expire,
             estimated_total_cost (incl. verification and expected redraws), budget
  tasks.csv  task_id, pool_id, image_id, url, control (true for control images)
  stdout: cnvrg_tag_detection_pool_id, cnvrg_tag_tasks, cnvrg_tag_tasks_created, cnvrg_tag_estimated_cost
Sample command:
  toloka_token=... python steps/launch_pool.py --projects_csv out/create_project/projects.csv \
      --images_csv out/upload_images/images.csv --config_dir configs --mode overlap --reward 0.02 --overlap 3 \
      --tasks_per_suite 1 --time_per_suite 600 --auto_accept true --review_days 7 --languages EN \
      --expiry_days 7 --adult_content false --budget 10 --batch_size 1000 --control_csv none --output_dir out/launch
Troubleshooting:
  * "--mode 'x' is not a mode": use overlap, verify or overlap+verify.
  * "--budget ... is below the price of one assignment": raise the budget or lower --reward.
  * "the pool will expire at ..., when the presigned image URLs do": the pool never outlives its images;
    for pools longer than 7 days use --url_mode public in Upload Images.
  * "image URLs expire ... less than 1 h from now": re-run Upload Images to sign fresh URLs.
  * "N images were rejected by Toloka": the created tasks are kept; fix the URLs and re-run, only the
    missing tasks are sent.
  * Changing any setting creates a NEW pool on the next run (the old one stays; close it in Toloka).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from crowdboxes.artifacts import IMAGES, POOL, PROJECTS, TASKS, read_csv, write_csv  # noqa: E402
from crowdboxes.cnvrg.stepkit import StepError, is_none, output_dir, read_token, run_step, step_parser  # noqa: E402
from crowdboxes.cnvrg.metrics import cnvrg_tag

def build_parser():
    parser = step_parser("launch_pool", "Create and open the detection pool with one task per image.")
    parser.add_argument("--projects_csv", default="/input/create_project/output/projects.csv")
    parser.add_argument("--images_csv", default="/input/upload_images/output/images.csv")
    parser.add_argument("--config_dir", default="configs")
    parser.add_argument("--mode", default="overlap")
    parser.add_argument("--reward", default="0.05")
    parser.add_argument("--overlap", default="3")
    parser.add_argument("--tasks_per_suite", default="1")
    parser.add_argument("--time_per_suite", default="600")
    parser.add_argument("--auto_accept", default="true")
    parser.add_argument("--review_days", default="7")
    parser.add_argument("--languages", default="EN")
    parser.add_argument("--expiry_days", default="7")
    parser.add_argument("--adult_content", default="false")
    parser.add_argument("--budget", default="none")
    parser.add_argument("--batch_size", default="500")
    parser.add_argument("--control_csv", default="none")
    return parser


def read_images(path) -> pd.DataFrame:
    images = read_csv(path, IMAGES, dtype={"image_id": str, "url": str, "sha256": str, "file_name": str})
    if images.empty:
        raise StepError(f"{path}: no images (every image was rejected by Upload Images?)")
    for column in ("image_id", "url", "sha256"):
        blank = images[column].isna() | (images[column].astype(str).str.strip() == "")
        if blank.any():
            raise StepError(f"{path}: row {int(blank.to_numpy().nonzero()[0][0]) + 2}, field {column!r} is empty")
    bad = ~images["url"].str.match(r"^https?://")
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise StepError(f"{path}: row {row + 2}, field 'url': {images['url'].iloc[row]!r} is not an http(s) URL")
    return images


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from crowdboxes.toloka import pools
    from crowdboxes.toloka import projects
    from crowdboxes.toloka.spending import estimate_cost
    from crowdboxes.toloka.pricing import assignment_price
    from crowdboxes.toloka.quality import parse_settings
    from crowdboxes.toloka.client import connect

    # 1. everything local first: a bad value fails here with nothing created
    quality = parse_settings(mode=args.mode, budget=args.budget, reward=args.reward, config_dir=args.config_dir)
    settings = pools.parse_pool_settings(
        mode=quality.mode, reward=args.reward, overlap=args.overlap, tasks_per_suite=args.tasks_per_suite,
        time_per_suite=args.time_per_suite, auto_accept=args.auto_accept, review_days=args.review_days,
        languages=args.languages, expiry_days=args.expiry_days, adult_content=args.adult_content)
    if settings.auto_accept and not settings.detection_auto_accept:
        print(f"note: --mode {quality.mode} reviews every drawing, so the detection pool does not auto-accept "
              f"(--auto_accept true ignored; unreviewed work is accepted after --review_days {settings.review_days})",
              file=sys.stderr)
    batch_size = pools.parse_number("batch_size", args.batch_size, minimum=1, maximum=10000, integer=True)
    project_rows = read_csv(args.projects_csv, PROJECTS, dtype=str)
    ids = projects.role_ids(project_rows, args.projects_csv)
    if "detection_project" not in ids:
        raise StepError(f"{args.projects_csv}: no row with role 'detection_project'")
    detection_key = str(project_rows.loc[project_rows["role"] == "detection_project", "key"].iloc[0])
    skill_ids = {role: toloka_id for role, toloka_id in ids.items() if role.endswith("_skill")}
    images = read_images(args.images_csv)
    wanted = images[["image_id", "url"]].assign(control=False)
    control_ids: list[str] = []
    if not is_none(args.control_csv):
        from crowdboxes.toloka.known_boxes import load_control_csv

        control = load_control_csv(args.control_csv)
        control_rows = pd.DataFrame({"image_id": [control.image_ids[u] for u in control.images],
                                     "url": list(control.images), "control": True})
        control_ids = [pools.url_identity(u) for u in control.images]
        wanted = pd.concat([wanted, control_rows], ignore_index=True)
    read_token(args.token_env)  # fail fast, before toloka-kit's slow import
    config_path = Path(args.config_dir) / pools.DETECTION_POOL_FILE
    config = pools.load_pool_config(config_path)
    will_expire = pools.fit_expiry_to_urls(pools.will_expire_at(settings.expiry_days),
                                           pools.url_expiry_limit(images, args.images_csv), args.images_csv,
                                           log=lambda m: print(m, file=sys.stderr))
    image_digest = pools.images_digest(list(images["sha256"]) + [f"control:{u}" for u in control_ids])
    key = pools.pool_key(detection_key, ids["detection_project"], image_digest, config, settings)
    pool_spec = pools.build_detection_pool(config, settings, project_id=ids["detection_project"],
                                           skill_ids=skill_ids, key=key, will_expire=will_expire,
                                           config_path=config_path)

    n_tasks = int(wanted["image_id"].nunique())
    estimate = estimate_cost(n_tasks, settings.detection_overlap, settings.reward, settings.tasks_per_suite,
                             mode=quality.mode, verification_reward=quality.verification_reward)
    price = assignment_price(settings.reward)
    print(f"cost estimate: {n_tasks} tasks x overlap {settings.detection_overlap} in suites of "
          f"{settings.tasks_per_suite} = {estimate.detection_assignments:g} assignments x ${price:.4f} "
          f"(reward ${settings.reward:g} + fee) = ${estimate.detection_cost:.2f}")
    if quality.verifies:
        print(f"  + verification ~${estimate.verification_cost:.2f} + expected redraws ~${estimate.redraw_cost:.2f}"
              f" = ${estimate.total:.2f} in total")
    if quality.budget is not None and estimate.total > quality.budget:
        print(f"warning: the estimate ${estimate.total:.2f} exceeds --budget ${quality.budget:g}; "
              f"Wait Pool stops the pools at the budget, so some images may get fewer answers", file=sys.stderr)
    out = output_dir(args.output_dir)

    # 2. Toloka
    client = connect(args.toloka_env, args.token_env)
    try:
        project = client.get_project(ids["detection_project"])
    except Exception as exc:
        raise StepError(f"{args.projects_csv}: detection project {ids['detection_project']} cannot be read "
                        f"from Toloka ({type(exc).__name__}); re-run Create Project") from None
    from crowdboxes.toloka.fields import detection_fields

    # the field names the pool runs on are the project's as Toloka has it, not a copy of configs/
    fields = detection_fields(project, f"detection project {ids['detection_project']} on Toloka", strict=False)
    use_image_id = "image_id" in (project.task_spec.input_spec or {}) and fields.image_input != "image_id"
    balance = getattr(client.get_requester(), "balance", None)
    if balance is not None and float(balance) < estimate.total:
        print(f"warning: the account balance ${float(balance):.2f} is below the estimate ${estimate.total:.2f}",
              file=sys.stderr)

    pool = pools.find_pool(client, ids["detection_project"], key)
    if pool is None:
        pool = client.create_pool(pool_spec)
        print(f"created pool {pool.id} ({pool.private_name})")
    else:
        print(f"found pool {pool.id} from an earlier run (status {pools.pool_status(pool)})")
    upload = pools.upload_tasks(client, str(pool.id), wanted, batch_size=batch_size, use_image_id=use_image_id,
                                image_field=fields.image_input)
    print(f"tasks: {upload.created} created, {upload.already_there} already in the pool, {len(upload.failed)} rejected")

    # more pools (the verification pool) append their row here; tasks.csv lists the upfront tasks
    pool_rows: list[dict] = []

    def detection_row(status: str) -> dict:
        return {"pool_id": str(pool.id), "role": pools.DETECTION_POOL_ROLE, "project_id": ids["detection_project"],
                "tasks": len(upload.tasks), "overlap": settings.detection_overlap,
                "reward_per_assignment": settings.reward, "estimated_cost": round(estimate.detection_cost, 4),
                "mode": quality.mode, "key": key, "status": status, "tasks_per_suite": settings.tasks_per_suite,
                "will_expire": f"{(pool.will_expire or will_expire):%Y-%m-%dT%H:%M:%S}",
                "estimated_total_cost": round(estimate.total, 4),
                "budget": "" if quality.budget is None else quality.budget}

    def write_outputs() -> None:
        write_csv(pd.DataFrame(pool_rows), out, POOL)
        write_csv(upload.tasks, out, TASKS)

    if upload.failed:
        pool_rows.append(detection_row(pools.pool_status(client.get_pool(pool.id))))
        write_outputs()
        image_id, reason = upload.failed[0]
        raise StepError(f"{len(upload.failed)} images were rejected by Toloka (first: image_id {image_id}: {reason}); "
                        f"pool {pool.id} was not opened; fix them and re-run (created tasks are kept)")
    verification_row = _quality_before_open(client, args, quality, settings, ids, skill_ids, key, will_expire,
                                            str(pool.id), estimate, out, fields.image_input)
    what = pools.ensure_open(client, pool, added_tasks=upload.created)
    print(f"pool {pool.id}: {what}")
    pool_rows.append(detection_row(pools.pool_status(client.get_pool(pool.id))))
    if verification_row is not None:
        pool_rows.append(verification_row)
    write_outputs()
    cnvrg_tag("detection_pool_id", pool.id)
    cnvrg_tag("tasks", len(upload.tasks))
    cnvrg_tag("tasks_created", upload.created)
    cnvrg_tag("estimated_cost", f"{estimate.total:.2f}")
    return 0


def _quality_before_open(client, args, quality, settings, ids, skill_ids, key, will_expire, pool_id, estimate, out,
                         image_field="image"):
    """Quality control before the detection pool opens (crowdboxes.toloka.verification / budget):
    the verification pool (verify modes), the budget cut of overlaps the cap cannot pay for, and
    control.csv beside tasks.csv so Wait Pool can score control drawings. Returns the verification
    pool's pool.csv row, or None."""
    import shutil

    from crowdboxes.toloka import pools
    from crowdboxes.toloka.spending import reserve_pool

    row = None
    if quality.verifies:
        from crowdboxes.toloka.pools import VERIFICATION_POOL_ROLE, ensure_verification_pool

        if "verification_project" not in ids:
            raise StepError(f"{args.projects_csv}: --mode {quality.mode} needs a row with role 'verification_project' "
                            f"(add verification_project.json to --config_dir and re-run Create Project)")
        ver_pool, created = ensure_verification_pool(client, quality, project_id=ids["verification_project"],
                                                     skill_ids=skill_ids, key=f"{key}:verification",
                                                     will_expire=will_expire)
        print(f"{'created' if created else 'found'} verification pool {ver_pool.id} "
              f"({quality.verifiers} verifiers per drawing, ${quality.verification_reward:g} per suite)")
        row = {"pool_id": str(ver_pool.id), "role": VERIFICATION_POOL_ROLE, "project_id": ids["verification_project"],
               "tasks": 0, "overlap": quality.verifiers, "reward_per_assignment": quality.verification_reward,
               "estimated_cost": round(estimate.verification_cost, 4), "mode": quality.mode,
               "key": f"{key}:verification", "status": pools.pool_status(ver_pool)}
        cnvrg_tag("verification_pool_id", ver_pool.id)
    control_urls = []
    if not is_none(args.control_csv):
        shutil.copyfile(args.control_csv, out / "control.csv")
        control_urls = list(pd.read_csv(args.control_csv)["url"].dropna().astype(str).unique())
    if quality.budget is not None:
        guard = reserve_pool(client, pool_id, quality.budget, settings.reward,
                             verifiers=quality.verifiers if quality.verifies else 0,
                             verification_reward=quality.verification_reward, control_urls=control_urls,
                             image_field=image_field)
        print(f"budget: ${guard.reserved_:.2f} of ${quality.budget:g} reserved"
              + (f"; {len(guard.trimmed_)} tasks cut to fit the budget" if guard.trimmed_ else ""))
    return row


if __name__ == "__main__":
    raise SystemExit(run_step(main))
