"""Launch Pool's logic: check everything locally, then make the pools and their tasks, open the detection pool.

``steps/launch_pool.py`` parses the params into :class:`LaunchPoolOptions` and calls :func:`launch_pool`.
First :func:`plan_launch` checks every param, projects.csv, images.csv, the control images, the pool
configs and the budget and builds the detection pool, with nothing created on Toloka; an images.csv
that is not the one Upload Images wrote (cut or edited: :func:`crowdboxes.steps.upload_images.check_images_csv`)
is refused there. Before the first write :func:`launch_pool` checks that every skill the pools filter on
or set exists on Toloka (:mod:`crowdboxes.toloka.preflight`). Then it finds or creates the detection pool (:func:`crowdboxes.toloka.pools.ensure_detection_pool`),
uploads the missing tasks, prepares quality control (the verification pool, control.csv, the budget
cut of overlaps the cap cannot pay for) and opens the pool. With ``--rounds`` (mode overlap) it also finds or
creates the empty, closed pools of the missed-sign and per-box check rounds, which Wait Pool fills; their
budgets (USD per image x images) are part of the estimate and of ``--budget``. The Toloka side of pools
(keys, task identity, expiry) is :mod:`crowdboxes.toloka.pools`.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from crowdboxes.artifacts import (BOX_CHECK_POOL_CONFIG, CONTROL, DETECTION_POOL_CONFIG, MISSED_SIGNS_POOL_CONFIG, POOL,
                                  PROJECTS, TASKS, VERIFICATION_POOL_CONFIG, Artifact, read_csv, read_images,
                                  write_csv)
from crowdboxes.cnvrg.metrics import cnvrg_tag, one_line
from crowdboxes.params import is_none, parse_number
from crowdboxes.cnvrg.stepkit import output_dir
from crowdboxes.credentials import read_token
from crowdboxes.errors import CrowdboxesError
from crowdboxes.steps.upload_images import check_images_csv
from crowdboxes.toloka import pools, preflight, projects
from crowdboxes.toloka.known_boxes import load_control_csv
from crowdboxes.toloka.pricing import MIN_REWARD, RoundPrice, assignment_price, check_price, missed_sign_price
from crowdboxes.toloka.quality import QualitySettings, parse_settings
from crowdboxes.toloka.spending import CostEstimate, estimate_cost, reserve_pool


@dataclass(frozen=True)
class LaunchPoolOptions:
    """Launch Pool's params as ``steps/launch_pool.py`` parses them (meanings and defaults are there)."""

    toloka_env: str
    token_env: str
    output_dir: str | None
    projects_csv: str
    images_csv: str
    config_dir: str
    mode: str
    reward: str
    overlap: str
    tasks_per_suite: str
    time_per_suite: str
    auto_accept: str
    review_days: str
    languages: str
    expiry_days: str
    adult_content: str
    budget: str
    batch_size: str
    control_csv: str
    rounds: str = "none"
    missed_budget: str = "0.03"
    check_budget: str = "0.03"


ROUND_POOL_CONFIGS: dict[str, Artifact] = {pools.MISSED_SIGNS_POOL_ROLE: MISSED_SIGNS_POOL_CONFIG,
                                           pools.BOX_CHECK_POOL_ROLE: BOX_CHECK_POOL_CONFIG}
ROUND_NAMES = {pools.MISSED_SIGNS_POOL_ROLE: "missed-sign round", pools.BOX_CHECK_POOL_ROLE: "check round"}


@dataclass(frozen=True)
class RoundPlan:
    """One round's pool (role ``missed_signs`` or ``box_check``), checked and built, not yet on Toloka."""

    role: str
    project_id: str
    key: str
    pool_spec: Any
    price: RoundPrice
    overlap: int  # the config's default; Wait Pool sets each task's (--checkers for checks)
    budget_per_image: float
    budget: float  # USD the round may spend on this job: budget_per_image x images
    priced_from: str  # "config" (its reward_per_assignment) or "timings" (crowdboxes.toloka.pricing)


@dataclass(frozen=True)
class LaunchPlan:
    """Everything checked before Toloka is touched, and the detection pool it leads to."""

    quality: QualitySettings
    settings: pools.PoolSettings
    batch_size: int
    project_ids: dict[str, str]  # projects.csv role -> Toloka id
    wanted: pd.DataFrame  # image_id, url, control: one task per row
    control_urls: list[str]
    will_expire: datetime
    key: str  # the detection pool's idempotency key (pools.pool_key: the job and its mode)
    pool_spec: Any  # the toloka-kit Pool to create
    estimate: CostEstimate
    skill_ids: dict[str, str] = field(default_factory=dict)
    rounds: tuple[RoundPlan, ...] = ()
    verification_spec: Any = None  # the verification pool to create (modes with verify), built and checked
    detection_key: str = ""  # the detection project's key: the job

    def skill_references(self) -> dict[str, str]:
        """Every Toloka skill id the job uses, with where it is named: projects.csv's skill rows, and each
        pool's filters and quality-control actions."""
        found = {skill_id: f"projects.csv role {role}" for role, skill_id in sorted(self.skill_ids.items())}
        specs = [(self.pool_spec, DETECTION_POOL_CONFIG.file_name)]
        if self.verification_spec is not None:
            specs.append((self.verification_spec, VERIFICATION_POOL_CONFIG.file_name))
        specs += [(r.pool_spec, ROUND_POOL_CONFIGS[r.role].file_name) for r in self.rounds]
        for spec, where in specs:
            for skill_id, place in preflight.skill_references(spec, where).items():
                found.setdefault(skill_id, place)
        return found

    @property
    def rounds_budget(self) -> float:
        """USD the rounds may spend (their budgets), part of the job's estimate."""
        return sum(r.budget for r in self.rounds)

    @property
    def total(self) -> float:
        """The job's estimate: the pools' (drawings, verification, redraws) plus the rounds' budgets."""
        return self.estimate.total + self.rounds_budget


def parse_rounds(options: LaunchPoolOptions, mode: str) -> dict[str, float]:
    """``{round: USD per image}`` of ``--rounds`` (empty for none), its budgets and mode checked."""
    rounds = pools.parse_rounds(options.rounds)
    budgets = {pools.MISSED_SIGNS_POOL_ROLE: float(parse_number("missed_budget", options.missed_budget, minimum=0)),
               pools.BOX_CHECK_POOL_ROLE: float(parse_number("check_budget", options.check_budget, minimum=0))}
    if rounds and mode != "overlap":
        raise CrowdboxesError(f"--rounds {options.rounds}: the rounds run in --mode overlap only (mode {mode} "
                              f"reviews drawings by verification); use --rounds none")
    return {role: budgets[role] for role in rounds}


def plan_rounds(options: LaunchPoolOptions, *, budgets: dict[str, float], settings: pools.PoolSettings,
                ids: dict[str, str], detection_key: str, n_images: int,
                will_expire: datetime) -> tuple[RoundPlan, ...]:
    """The rounds of :func:`parse_rounds` (``budgets``), each checked (projects.csv row, pool config) and its
    pool built.

    A round's reward is the pool config's ``reward_per_assignment`` when it sets one, else derived from
    the drawing's reward and the tasks' timings (:func:`crowdboxes.toloka.pricing.check_price`,
    :func:`~crowdboxes.toloka.pricing.missed_sign_price`), with suites of at least the config's
    ``real_tasks_count`` tasks.
    """
    planned = []
    for role in budgets:
        if role not in ids:
            raise CrowdboxesError(f"{options.projects_csv}: --rounds {role} needs a row with role {role!r} (add "
                                  f"{role}_project.json to --config_dir and re-run Create Project)")
        path = ROUND_POOL_CONFIGS[role].path(options.config_dir)
        config = pools.load_pool_config(path)
        if config.get("reward_per_assignment") is not None:
            reward = float(config["reward_per_assignment"])  # a number: load_pool_config structured it as a Pool
            if reward < MIN_REWARD:
                raise CrowdboxesError(f"{path}: reward_per_assignment {reward:g} is below Toloka's minimum "
                                      f"{MIN_REWARD:g}")
            price = RoundPrice(reward, pools.config_suite_size(config), reward / pools.config_suite_size(config))
            priced_from = "config"
        else:
            derive = check_price if role == pools.BOX_CHECK_POOL_ROLE else missed_sign_price
            price = derive(settings.reward, settings.tasks_per_suite,
                           min_tasks_per_suite=pools.config_suite_size(config))
            priced_from = "timings"
        key = pools.round_pool_key(detection_key, role, config, price.reward, price.tasks_per_suite)
        spec = pools.build_round_pool(config, project_id=ids[role], key=key, reward=price.reward,
                                      tasks_per_suite=price.tasks_per_suite, will_expire=will_expire,
                                      languages=settings.languages, adult_content=settings.adult_content,
                                      skill_ids={r: i for r, i in ids.items() if r.endswith("_skill")},
                                      config_path=str(path))
        planned.append(RoundPlan(role, ids[role], key, spec, price, pools.default_overlap(config), budgets[role],
                                 round(budgets[role] * n_images, 4), priced_from))
    return tuple(planned)


def plan_launch(options: LaunchPoolOptions) -> LaunchPlan:
    """Check every input and build the detection pool; nothing is created on Toloka (CrowdboxesError on a bad value)."""
    quality = parse_settings(mode=options.mode, budget=options.budget, reward=options.reward,
                             config_dir=options.config_dir)
    round_budgets = parse_rounds(options, quality.mode)
    settings = pools.parse_pool_settings(
        mode=quality.mode, reward=options.reward, overlap=options.overlap, tasks_per_suite=options.tasks_per_suite,
        time_per_suite=options.time_per_suite, auto_accept=options.auto_accept, review_days=options.review_days,
        languages=options.languages, expiry_days=options.expiry_days, adult_content=options.adult_content)
    if settings.auto_accept and not settings.detection_auto_accept:
        print(f"note: --mode {quality.mode} reviews every drawing, so the detection pool does not auto-accept "
              f"(--auto_accept true ignored; unreviewed work is accepted after --review_days {settings.review_days})",
              file=sys.stderr)
    batch_size = int(parse_number("batch_size", options.batch_size, minimum=1, maximum=10000, integer=True))
    project_rows = read_csv(options.projects_csv, PROJECTS, dtype=str)
    ids = projects.role_ids(project_rows, options.projects_csv)
    if "detection_project" not in ids:
        raise CrowdboxesError(f"{options.projects_csv}: no row with role 'detection_project'")
    detection_key = str(project_rows.loc[project_rows["role"] == "detection_project", "key"].iloc[0])
    skill_ids = {role: toloka_id for role, toloka_id in ids.items() if role.endswith("_skill")}
    check_images_csv(options.images_csv)  # a cut images.csv must not launch a smaller pool
    images = read_images(options.images_csv)
    wanted = images[["image_id", "url"]].assign(control=False)
    control_urls: list[str] = []
    if not is_none(options.control_csv):
        control = load_control_csv(options.control_csv)
        control_urls = list(control.images)
        control_rows = pd.DataFrame({"image_id": [control.image_ids[u] for u in control_urls],
                                     "url": control_urls, "control": True})
        wanted = pd.concat([wanted, control_rows], ignore_index=True)
    read_token(options.token_env)  # fail fast, before toloka-kit's slow import
    config_path = DETECTION_POOL_CONFIG.path(options.config_dir)
    config = pools.load_pool_config(config_path)
    will_expire = pools.fit_expiry_to_urls(pools.will_expire_at(settings.expiry_days),
                                           pools.url_expiry_limit(images, options.images_csv), options.images_csv,
                                           log=lambda m: print(one_line(m), file=sys.stderr))
    key = pools.pool_key(detection_key, settings.mode)
    pool_spec = pools.build_detection_pool(config, settings, project_id=ids["detection_project"], skill_ids=skill_ids,
                                           key=key, will_expire=will_expire, config_path=str(config_path))
    estimate = estimate_cost(int(wanted["image_id"].nunique()), settings.detection_overlap, settings.reward,
                             settings.tasks_per_suite, mode=quality.mode,
                             verification_reward=quality.verification_reward)
    rounds = plan_rounds(options, budgets=round_budgets, settings=settings, ids=ids, detection_key=key,
                         n_images=int(images["image_id"].nunique()), will_expire=will_expire)
    verification_spec = None
    if quality.verifies:  # checked here, not after the detection pool was made
        if "verification_project" not in ids:
            raise CrowdboxesError(f"{options.projects_csv}: --mode {quality.mode} needs a row with role "
                                  f"'verification_project' (add verification_project.json to --config_dir and re-run "
                                  f"Create Project)")
        verification_spec = pools.build_verification_pool(quality, project_id=ids["verification_project"],
                                                          skill_ids=skill_ids, key=f"{key}:verification",
                                                          will_expire=will_expire)
    plan = LaunchPlan(detection_key=detection_key, quality=quality, settings=settings, batch_size=batch_size,
                      project_ids=ids, wanted=wanted,
                      control_urls=control_urls, will_expire=will_expire, key=key, pool_spec=pool_spec,
                      estimate=estimate, skill_ids=skill_ids, rounds=rounds, verification_spec=verification_spec)
    if rounds and quality.budget is not None and plan.total > quality.budget:
        parts = " + ".join(f"{ROUND_NAMES[r.role]} ${r.budget:.2f}" for r in rounds)
        raise CrowdboxesError(f"--budget {quality.budget:g} is below the estimate ${plan.total:.2f} (pools "
                              f"${estimate.total:.2f} + {parts}); raise --budget, or lower --missed_budget / "
                              f"--check_budget / --overlap (nothing was created)")
    return plan


def print_estimate(plan: LaunchPlan) -> None:
    """The cost estimate on stdout; a warning on stderr when it exceeds the budget."""
    settings, estimate, quality = plan.settings, plan.estimate, plan.quality
    print(f"cost estimate: {plan.wanted['image_id'].nunique()} tasks x overlap {settings.detection_overlap} in "
          f"suites of {settings.tasks_per_suite} = {estimate.detection_assignments:g} assignments x "
          f"${assignment_price(settings.reward):.4f} (reward ${settings.reward:g} + fee) = "
          f"${estimate.detection_cost:.2f}")
    if quality.verifies:
        print(f"  + verification ~${estimate.verification_cost:.2f} + expected redraws ~${estimate.redraw_cost:.2f}"
              f" = ${estimate.total:.2f} in total")
    for r in plan.rounds:
        print(f"  + {ROUND_NAMES[r.role]}: budget ${r.budget_per_image:g} per image x "
              f"{plan.wanted.loc[~plan.wanted['control'].astype(bool), 'image_id'].nunique()} images = ${r.budget:.2f} "
              f"(${r.price.reward:g} per suite of {r.price.tasks_per_suite}, ${r.price.price_per_task:.4f} per task "
              f"with fee, reward from {r.priced_from})")
    if plan.rounds:
        print(f"  = ${plan.total:.2f} in total with the rounds' budgets")
    if quality.budget is not None and plan.total > quality.budget:
        print(f"warning: the estimate ${plan.total:.2f} exceeds --budget ${quality.budget:g}; "
              f"Wait Pool stops the pools at the budget, so some images may get fewer answers", file=sys.stderr)


def detection_pool_row(plan: LaunchPlan, pool: Any, tasks: int, status: str) -> dict[str, Any]:
    """pool.csv's row of the detection pool."""
    settings = plan.settings
    return {"pool_id": str(pool.id), "role": pools.DETECTION_POOL_ROLE, "project_id": plan.project_ids["detection_project"],
            "tasks": tasks, "overlap": settings.detection_overlap, "reward_per_assignment": settings.reward,
            "estimated_cost": round(plan.estimate.detection_cost, 4), "mode": plan.quality.mode, "key": plan.key,
            "status": status, "tasks_per_suite": settings.tasks_per_suite,
            "will_expire": f"{(pool.will_expire or plan.will_expire):%Y-%m-%dT%H:%M:%S}",
            "estimated_total_cost": round(plan.total, 4),
            "budget": "" if plan.quality.budget is None else plan.quality.budget}


def round_pool_rows(client: Any, plan: LaunchPlan) -> list[dict[str, Any]]:
    """Find or create the rounds' pools (closed, no tasks: Wait Pool fills and opens them); their pool.csv rows.

    ``estimated_cost`` is the round's budget, the most Wait Pool may spend on it.
    """
    rows = []
    planned = pools.pool_key(plan.detection_key, plan.quality.mode)
    for r in plan.rounds:
        if plan.key != planned:  # the detection pool is an earlier version's: the rounds' keys hang off its key
            r = dataclasses.replace(r, key=plan.key + r.key[len(planned):], pool_spec=copy.deepcopy(r.pool_spec))
            r.pool_spec.private_comment = r.key
        pool, created = pools.ensure_detection_pool(client, r.pool_spec, project_id=r.project_id, key=r.key)
        print(f"{'created' if created else 'found'} {ROUND_NAMES[r.role]} pool {pool.id} "
              f"(${r.price.reward:g} per suite of {r.price.tasks_per_suite}, budget ${r.budget:.2f})")
        cnvrg_tag(f"{r.role}_pool_id", pool.id)
        rows.append({"pool_id": str(pool.id), "role": r.role, "project_id": r.project_id, "tasks": 0,
                     "overlap": r.overlap, "reward_per_assignment": r.price.reward, "estimated_cost": r.budget,
                     "mode": plan.quality.mode, "key": r.key, "status": pools.pool_status(pool),
                     "tasks_per_suite": r.price.tasks_per_suite,
                     "will_expire": f"{(pool.will_expire or plan.will_expire):%Y-%m-%dT%H:%M:%S}",
                     "budget_per_image": r.budget_per_image})
    return rows


def verification_pool_row(client: Any, plan: LaunchPlan, projects_csv: str) -> dict[str, Any] | None:
    """Find or create the verification pool (modes with verify); its pool.csv row, else None."""
    quality = plan.quality
    if not quality.verifies:
        return None
    if "verification_project" not in plan.project_ids:
        raise CrowdboxesError(f"{projects_csv}: --mode {quality.mode} needs a row with role 'verification_project' "
                              f"(add verification_project.json to --config_dir and re-run Create Project)")
    key = f"{plan.key}:verification"
    pool, created = pools.ensure_verification_pool(client, quality, project_id=plan.project_ids["verification_project"],
                                                   skill_ids=plan.skill_ids, key=key, will_expire=plan.will_expire)
    print(f"{'created' if created else 'found'} verification pool {pool.id} "
          f"({quality.verifiers} verifiers per drawing, ${quality.verification_reward:g} per suite)")
    cnvrg_tag("verification_pool_id", pool.id)
    return {"pool_id": str(pool.id), "role": pools.VERIFICATION_POOL_ROLE,
            "project_id": plan.project_ids["verification_project"], "tasks": 0, "overlap": quality.verifiers,
            "reward_per_assignment": quality.verification_reward,
            "estimated_cost": round(plan.estimate.verification_cost, 4), "mode": quality.mode, "key": key,
            "status": pools.pool_status(pool)}


def reserve_budget(client: Any, plan: LaunchPlan, pool_id: str, image_field: str) -> None:
    """Cut the detection pool's overlaps to what ``--budget`` pays for (drawings and their verification)."""
    quality = plan.quality
    if quality.budget is None:
        return
    # the rounds' budgets are set aside: the drawings may use the rest
    guard = reserve_pool(client, pool_id, quality.budget - plan.rounds_budget, plan.settings.reward,
                         verifiers=quality.verifiers if quality.verifies else 0,
                         verification_reward=quality.verification_reward, control_urls=plan.control_urls,
                         image_field=image_field)
    print(f"budget: ${guard.reserved_:.2f} of ${quality.budget:g} reserved"
          + (f" (${plan.rounds_budget:.2f} set aside for the rounds)" if plan.rounds else "")
          + (f"; {len(guard.trimmed_)} tasks cut to fit the budget" if guard.trimmed_ else ""))


def launch_pool(options: LaunchPoolOptions) -> int:
    """Run the step: pool.csv, tasks.csv (and control.csv) in the output folder, cnvrg tags; exit code 0."""
    from crowdboxes.toloka.client import connect
    from crowdboxes.toloka.fields import detection_fields

    plan = plan_launch(options)  # everything local first: a bad value fails here with nothing created
    print_estimate(plan)
    out = output_dir(options.output_dir)
    client = connect(options.toloka_env, options.token_env)
    project_id = plan.project_ids["detection_project"]
    try:
        project = client.get_project(project_id)
    except Exception as exc:
        raise CrowdboxesError(f"{options.projects_csv}: detection project {project_id} cannot be read "
                              f"from Toloka ({type(exc).__name__}); re-run Create Project") from None
    # the field names the pool runs on are the project's as Toloka has it, not a copy of configs/
    fields = detection_fields(project, f"detection project {project_id} on Toloka", strict=False)
    use_image_id = "image_id" in (project.task_spec.input_spec or {}) and fields.image_input != "image_id"
    preflight.check_skills_exist(client, plan.skill_references())  # GETs only: before the first write
    balance = getattr(client.get_requester(), "balance", None)
    if balance is not None and float(balance) < plan.total:
        print(f"warning: the account balance ${float(balance):.2f} is below the estimate ${plan.total:.2f}",
              file=sys.stderr)
    pools.refuse_other_modes(client, project_id, plan.detection_key, plan.quality.mode)
    pool, created = pools.ensure_detection_pool(
        client, plan.pool_spec, project_id=project_id, key=plan.key,
        earlier=lambda: pools.legacy_job_pool(client, project_id, plan.detection_key, plan.quality.mode))
    print(f"created pool {pool.id} ({pool.private_name})" if created else
          f"found pool {pool.id} from an earlier run (status {pools.pool_status(pool)})")
    if str(pool.private_comment) != plan.key:  # an earlier version's pool: its key names the other pools
        plan = dataclasses.replace(plan, key=str(pool.private_comment))
    task_overlap = None if plan.quality.verifies else plan.settings.detection_overlap
    edit = pools.PoolEdit((), False) if created else pools.edit_pool(client, pool, plan.pool_spec,
                                                                     task_overlap=task_overlap)
    if edit.changes:
        print(edit.line(str(pool.id)))
        if edit.tasks_raised is not None:
            print(f"pool {pool.id}: overlap {task_overlap} set on the existing tasks ({edit.tasks_raised} raised)")
        pool = client.get_pool(pool.id)
    archived = pools.pool_status(pool) == "ARCHIVED"  # a finished, archived job: find everything, buy nothing
    upload = pools.upload_tasks(client, str(pool.id), plan.wanted, batch_size=plan.batch_size,
                                use_image_id=use_image_id, image_field=fields.image_input, archived=archived)
    print(f"tasks: {upload.created} created, {upload.already_there} already in the pool, {len(upload.failed)} rejected")
    if upload.failed:
        status = pools.pool_status(client.get_pool(pool.id))
        write_csv(pd.DataFrame([detection_pool_row(plan, pool, len(upload.tasks), status)]), out, POOL)
        write_csv(upload.tasks, out, TASKS)
        image_id, reason = upload.failed[0]
        raise CrowdboxesError(f"{len(upload.failed)} images were rejected by Toloka (first: image_id {image_id}: "
                              f"{reason}); pool {pool.id} was not opened; fix them and re-run (created tasks are kept)")
    # quality control before the detection pool opens
    verification_row = verification_pool_row(client, plan, options.projects_csv)
    round_rows = round_pool_rows(client, plan)
    if not is_none(options.control_csv):  # Wait Pool scores control drawings against it
        shutil.copyfile(options.control_csv, CONTROL.path(out))
    if archived:
        print(f"pool {pool.id}: archived earlier (its job is finished; nothing reserved or opened)")
    else:
        reserve_budget(client, plan, str(pool.id), fields.image_input)
        print(f"pool {pool.id}: {pools.ensure_open(client, pool, added_tasks=upload.created + (edit.tasks_raised or 0))}")
    rows = [detection_pool_row(plan, pool, len(upload.tasks), pools.pool_status(client.get_pool(pool.id)))]
    write_csv(pd.DataFrame(rows + ([verification_row] if verification_row is not None else []) + round_rows), out, POOL)
    write_csv(upload.tasks, out, TASKS)
    cnvrg_tag("detection_pool_id", pool.id)
    cnvrg_tag("tasks", len(upload.tasks))
    cnvrg_tag("tasks_created", upload.created)
    cnvrg_tag("estimated_cost", f"{plan.total:.2f}")
    return 0
