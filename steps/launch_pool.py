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
  --rounds         none, or a comma list of missed_signs, box_check (mode overlap only): also create the empty
                   pools of those rounds (configs missed_signs_pool.json / box_check_pool.json, projects of
                   Create Project); Wait Pool adds their tasks after the drawings and opens them
  --missed_budget  USD per image the missed-sign round may spend at most (default 0.03: about half a drawing's
                   money, a missed-sign task ($0.029 + fee at --reward 0.05) for four images in five)
  --check_budget   USD per image the per-box check round may spend at most (default 0.03: about three checks
                   per image, $0.009 each with fee in suites of 10 at --reward 0.05)
                   A round's reward is its pool config's reward_per_assignment, or, when the config sets none,
                   derived from --reward and the tasks' timings (crowdboxes.toloka.pricing: a check is paid
                   6 s of a 43.5 s drawing, a missed-sign task 24.5 s of it, in suites where Toloka's fee is 30 %)
  --toloka_env, --token_env  as in every Toloka step
Outputs (in --output_dir):
  pool.csv   pool_id, role (detection_pool), project_id, tasks, overlap, reward_per_assignment,
             estimated_cost (USD incl. fee, this pool), then mode, key, status, tasks_per_suite, will_expire,
             estimated_total_cost (incl. verification, expected redraws and the rounds' budgets), budget;
             with --rounds also a row per round (role missed_signs / box_check, tasks 0, overlap of its config,
             estimated_cost = the round's budget: --missed_budget / --check_budget x images, budget_per_image)
  tasks.csv  task_id, pool_id, image_id, url, control (true for control images)
  control.csv  a copy of --control_csv (when given), so Wait Pool can score control drawings
  stdout: cnvrg_tag_detection_pool_id, cnvrg_tag_tasks, cnvrg_tag_tasks_created, cnvrg_tag_estimated_cost
          (incl. the rounds' budgets), cnvrg_tag_missed_signs_pool_id, cnvrg_tag_box_check_pool_id (with --rounds)
Sample command:
  toloka_token=... python steps/launch_pool.py --projects_csv out/create_project/projects.csv \
      --images_csv out/upload_images/images.csv --config_dir configs --mode overlap --reward 0.02 --overlap 3 \
      --tasks_per_suite 1 --time_per_suite 600 --auto_accept true --review_days 7 --languages EN \
      --expiry_days 7 --adult_content false --budget 10 --batch_size 1000 --control_csv none --output_dir out/launch
Troubleshooting:
  * "--mode 'x' is not a mode": use overlap, verify or overlap+verify.
  * "--budget ... is below the price of one assignment": raise the budget or lower --reward.
  * "--budget X is below the estimate $Y (pools $A + missed-sign round $B + check round $C)": with --rounds
    the budget must pay for the whole estimate; raise it or lower the round budgets or --overlap.
  * "--rounds box_check: the rounds run in --mode overlap only": verify modes review drawings instead.
  * "the pool will expire at ..., when the presigned image URLs do": the pool never outlives its images;
    for pools longer than 7 days use --url_mode public in Upload Images.
  * "image URLs expire ... less than 1 h from now": re-run Upload Images to sign fresh URLs.
  * "images.csv has N image rows but Upload Images wrote M": the file was cut or edited after Upload Images
    (its upload_summary.json disagrees); re-run Upload Images. Nothing was created.
  * "skill N (projects.csv role drawer_skill / detection_pool.json filter) does not exist on Toloka": re-run
    Create Project, or fix the skill id in the config. Checked before anything is created.
  * "N images were rejected by Toloka": the created tasks are kept; fix the URLs and re-run, only the
    missing tasks are sent.
  * Changing any setting creates a NEW pool on the next run (the old one stays; close it in Toloka).
The logic is :mod:`crowdboxes.steps.launch_pool`.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crowdboxes.cnvrg.stepkit import StepArgumentParser, run_step, step_parser  # noqa: E402
from crowdboxes.steps.launch_pool import LaunchPoolOptions, launch_pool  # noqa: E402


def build_parser() -> StepArgumentParser:
    """Launch Pool's params (the flow YAML passes each as ``--key value``)."""
    parser = step_parser("launch_pool", "Create and open the detection pool with one task per image "
                                        "(and the empty pools of the rounds).")
    add = parser.add_argument
    add("--projects_csv", default="/input/create_project/output/projects.csv", help="projects.csv of Create Project")
    add("--images_csv", default="/input/upload_images/output/images.csv", help="images.csv of Upload Images")
    add("--config_dir", default="configs", help="folder with detection_pool.json [, verification_pool.json]")
    add("--mode", default="overlap", help="overlap | verify | overlap+verify")
    add("--reward", default="0.05", help="USD per assignment (one task suite), at least 0.005; plus Toloka's fee")
    add("--overlap", default="3", help="drawers per image (the detection pool uses 1 in verify mode)")
    add("--tasks_per_suite", default="1", help="images per assignment")
    add("--time_per_suite", default="600", help="seconds a worker has for one assignment")
    add("--auto_accept", default="true", help="true | false (false: you review; verify modes always use false)")
    add("--review_days", default="7", help="unreviewed work is accepted after this many days (1-21)")
    add("--languages", default="EN", help="comma list of worker languages (EN,DE) or none")
    add("--expiry_days", default="7", help="the pool closes after this many days")
    add("--adult_content", default="false", help="true | false")
    add("--budget", default="none", help="USD cap for the whole job, or none")
    add("--batch_size", default="5000", help="tasks per create request (one async operation each)")
    add("--control_csv", default="none", help="none, or control images with known boxes (url, width, height, "
                                              "label, x, y, w, h[, image_id])")
    add("--rounds", default="none", help="none, or a comma list of missed_signs, box_check (mode overlap)")
    add("--missed_budget", default="0.03", help="USD per image the missed-sign round may spend at most")
    add("--check_budget", default="0.03", help="USD per image the per-box check round may spend at most")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the params and run the step (:func:`crowdboxes.steps.launch_pool.launch_pool`)."""
    return launch_pool(LaunchPoolOptions(**vars(build_parser().parse_args(argv))))


if __name__ == "__main__":
    raise SystemExit(run_step(main))
