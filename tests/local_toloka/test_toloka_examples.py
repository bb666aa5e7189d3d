"""Toloka's public example notebooks, replayed against the local Toloka at its default settings.

Each scenario below follows the call sequence of one notebook of toloka-kit's ``examples/`` folder
(``0.getting_started/0.learn_the_basics``, ``1.computer_vision/image_classification``,
``1.computer_vision/object_detection``, ``1.computer_vision/text_recognition``,
``6.streaming_pipelines``) the way a user runs it: same project specs (Template Builder views built with
toloka-kit's ``template_builder`` classes), pools with their filters, quality control and trainings, task
uploads, waiting loops, streaming pipelines with default observers and cursor lag, results read back with
``get_assignments_df``/``get_assignments`` and aggregated with crowd-kit. Only the ``TolokaClient`` URL
differs, and the datasets: external URLs are unreachable in tests, so each notebook's images are pictures
drawn with PIL, served from a loopback HTTP server, with a truth file describing what they show.

Deliberate differences, each also noted where it happens:

* the waiting loops poll every 2 s instead of 60 s, and the streaming ``Pipeline`` runs every 5 s instead
  of 60 s (its observers keep toloka-kit's default 60 s cursor lag);
* datasets are smaller than the notebooks' (tens of images, not hundreds; the streaming notebook's 12
  links per photo are 4 here); the notebooks download theirs
  (TSV files and images on tlk.s3.yandex.net, unreachable here), and show pictures with ipyplot (left out);
  the token comes from the test, not from ``input()``;
* the streaming notebook loads its projects and pools from JSON files in the toloka-kit repository; the same
  settings are written here as dicts;
* crowd-kit 1.x names the worker column ``worker`` (the notebooks, written for crowd-kit 0.0.x, say
  ``performer``);
* object_detection's server has 20 extra workers who only check (``SCENARIO_CROWDS``);
* every scenario gets its own server: the notebooks' ``ALL_PROJECTS`` restrictions would otherwise ban one
  scenario's workers from the others' pools (the simulated crowd has 40 workers, not Toloka's thousands).

The five scenarios run concurrently (a streaming reader with a 60 s lag keeps each pool it reads open for
about a minute after its last event); each test then checks its scenario's outcome: that the results have
the types the project asks for (labels from the options, texts, links, verdicts, rectangles) and that the
notebook's crowd-kit aggregation runs.
"""

from __future__ import annotations

import collections
import datetime
import itertools
import json
import logging
import re
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from helpers_examples import (Deadline, ImageServer, ScenarioTimeout, animal_picture, assignment_ids,
                              meter_picture, pool_state, road_picture, run_pipeline, start_in_background,
                              wait_pool_closed, write_truth)
from helpers_local_toloka import start_local_toloka

toloka = pytest.importorskip("toloka.client")
tb = pytest.importorskip("toloka.client.project.template_builder")
crowdkit = pytest.importorskip("crowdkit.aggregation")

pytestmark = [pytest.mark.server, pytest.mark.slow]

# object_detection keeps anyone with an accepted outline out of its checking pool, and every rejected outline
# is drawn again by someone new: in one run of ten, 39 of the 40 workers ended up holding an accepted outline and
# the checking pool stalled with 3 tasks one verdict short (Toloka would stall the same way with 40 workers). On
# Toloka short checking tasks draw their own crowd; the local Toloka's --verification-workers gives it one.
SCENARIO_CROWDS = {"object_detection": {"verification_workers": 20}}
SCENARIO_SECONDS = 8 * 60  # generous: a scenario that is not done by then is stuck, not slow
# The streaming notebook chains pools through 60 s-lag readers: at least four hops (links -> checks,
# verdicts -> accept/reject, accepted links -> comparisons, comparisons -> ranking) plus two per round of
# rejected links (a rejected finder's task goes back to the crowd), so it needs several minutes by design:
# about 65 s a hop, 4.5 min with no rejection, 7.5 min measured with one round. How many rounds a run needs
# depends on the live crowd, so the deadline allows five.
STREAMING_SECONDS = 16 * 60
WAIT_SLEEP = 2.0
PIPELINE_PERIOD = datetime.timedelta(seconds=5)
TOKEN = "examples-token"


def _expires():
    return datetime.datetime.utcnow() + datetime.timedelta(days=365)


def _value(status) -> str:
    return getattr(status, "value", status)


@dataclass
class Outcome:
    name: str
    error: str | None = None
    seconds: float = 0.0
    data: dict = field(default_factory=dict)
    server_log: str = ""

    def require(self):
        """The scenario's data, or a test failure with what went wrong and the end of the server's log."""
        if self.error:
            tail = "\n".join(self.server_log.splitlines()[-25:])
            pytest.fail(f"scenario {self.name} failed after {self.seconds:.0f} s:\n{self.error}\n"
                        f"--- local Toloka log (tail) ---\n{tail}", pytrace=False)
        return self.data


# ============================================================ 0.getting_started/0.learn_the_basics

# 60 photos, half cats. Enough that the default crowd's spammers (10 %) cannot sink the check: a suite is 10
# photos seen by the same 3 workers, so two spammers in one suite spoil 10 photos at once. Monte Carlo of that
# crowd with majority vote: accuracy 0.92, below 0.7 in 5e-5 of runs at 60 photos (below 0.75 in 1.6 % at 20)
ANIMALS = ["cat", "dog"] * 30


def learn_the_basics(client, images, deadline):
    """Cat or dog: one radio group, overlap 3, ten tasks a page, captcha, majority vote."""
    client.get_requester()

    project = toloka.Project(public_name="Cat or dog?", public_description="Tell which animal is in the photo.")
    photo = tb.ImageViewV1(tb.InputData("image"), ratio=[1, 1])
    answer = tb.RadioGroupFieldV1(tb.OutputData("result"),
                                  [tb.GroupFieldOption("cat", "Cat"), tb.GroupFieldOption("dog", "Dog")],
                                  validation=tb.RequiredConditionV1())
    project.task_spec = toloka.project.task_spec.TaskSpec(
        input_spec={"image": toloka.project.UrlSpec()},
        output_spec={"result": toloka.project.StringSpec()},  # no allowed_values: the options say it
        view_spec=toloka.project.TemplateBuilderViewSpec(config=tb.TemplateBuilder(
            view=tb.ListViewV1([photo, answer]), plugins=[tb.TolokaPluginV1("scroll", task_width=400)])),
    )
    project.public_instructions = "Look at the photo and choose <b>Cat</b> or <b>Dog</b>."
    project = client.create_project(project)

    pool = toloka.Pool(project_id=project.id, private_name="Cats and dogs", may_contain_adult_content=False,
                       reward_per_assignment=0.01, assignment_max_duration_seconds=5 * 60, will_expire=_expires())
    # as the notebook: overlap per task, 0 for task suites (production accepts 0 here)
    pool.defaults = toloka.Pool.Defaults(default_overlap_for_new_tasks=3, default_overlap_for_new_task_suites=0)
    pool.set_mixer_config(real_tasks_count=10)
    pool.filter = toloka.filter.Languages.in_("EN")
    pool.set_captcha_frequency("MEDIUM")
    pool.quality_control.add_action(
        collector=toloka.collectors.Captcha(history_size=5),
        conditions=[toloka.conditions.FailRate > 20],
        action=toloka.actions.RestrictionV2(scope="PROJECT", duration=1, duration_unit="DAYS",
                                            private_comment="captcha"),
    )
    pool = client.create_pool(pool)

    # the notebook's toy cats-vs-dogs TSV lives on tlk.s3.yandex.net: local pictures stand in for it
    client.create_tasks([toloka.Task(input_values={"image": url}, pool_id=pool.id) for url in images],
                        allow_defaults=True)
    pool = client.open_pool(pool.id)
    wait_pool_closed(client, pool.id, deadline, sleep=WAIT_SLEEP, with_progress=True)

    answers = client.get_assignments_df(pool.id)
    answers = answers.rename(columns={"INPUT:image": "task", "OUTPUT:result": "label",
                                      "ASSIGNMENT:worker_id": "worker"})
    aggregated = crowdkit.MajorityVote().fit_predict(answers[["task", "worker", "label"]])
    return {"answers": answers, "aggregated": aggregated}


# ============================================================ 1.computer_vision/image_classification

CLASSES = ["cat", "dog", "other"]
N_GOLDEN = 15
# 81 tasks in suites of 9 seen by the same 3 workers: as for ANIMALS (majority vote standing in for Dawid-Skene),
# below 0.7 in none of 20,000 simulated runs (27 tasks fell below 0.75 in 2.9 % of them, and once in a flake
# check)
N_TASKS = 81


def image_classification(client, images, deadline):
    """Cat/dog/other with button radio group and hotkeys, control tasks 1 per page, Dawid-Skene."""
    client.get_requester()
    golden_images, task_images = images[:N_GOLDEN], images[N_GOLDEN:]

    view = tb.TemplateBuilder(
        view=tb.ListViewV1([
            tb.ImageViewV1(tb.InputData("image"), ratio=[1, 1], rotatable=True),
            tb.ButtonRadioGroupFieldV1(tb.OutputData("result"),
                                       [tb.GroupFieldOption(c, c.title()) for c in CLASSES],
                                       validation=tb.RequiredConditionV1(hint="choose one of the options")),
        ]),
        plugins=[tb.TolokaPluginV1(kind="scroll", task_width=500),
                 tb.HotkeysPluginV1(**{f"key_{i + 1}": tb.SetActionV1(tb.OutputData("result"), c)
                                       for i, c in enumerate(CLASSES)})],
    )
    project = toloka.Project(
        public_name="Cat, dog or something else?",
        public_description="Decide whether the picture shows a cat, a dog or neither.",
        public_instructions="<p>Choose <b>Cat</b>, <b>Dog</b>, or <b>Other</b> when it is both, neither, "
                            "or you cannot tell.</p>",
        task_spec=toloka.project.task_spec.TaskSpec(
            input_spec={"image": toloka.project.UrlSpec()},
            output_spec={"result": toloka.project.StringSpec()},
            view_spec=toloka.project.TemplateBuilderViewSpec(config=view),
        ),
    )
    project = client.create_project(project)

    pool = toloka.Pool(project_id=project.id, private_name="Animals", may_contain_adult_content=False,
                       reward_per_assignment=0.01, will_expire=_expires(),
                       defaults=toloka.Pool.Defaults(default_overlap_for_new_task_suites=3),
                       assignment_max_duration_seconds=600)
    pool.filter = toloka.filter.Languages.in_("EN")
    ban = dict(scope="PROJECT", duration_unit="DAYS")
    pool.quality_control.add_action(
        collector=toloka.collectors.Income(),
        conditions=[toloka.conditions.IncomeSumForLast24Hours >= 20],
        action=toloka.actions.RestrictionV2(duration=1, private_comment="earned enough today", **ban))
    pool.quality_control.add_action(
        collector=toloka.collectors.SkippedInRowAssignments(),
        conditions=[toloka.conditions.SkippedInRowCount >= 10],
        action=toloka.actions.RestrictionV2(duration=1, private_comment="skips pages", **ban))
    pool.quality_control.add_action(
        collector=toloka.collectors.MajorityVote(answer_threshold=2, history_size=10),
        conditions=[toloka.conditions.TotalAnswersCount >= 4, toloka.conditions.CorrectAnswersRate < 75],
        action=toloka.actions.RestrictionV2(duration=10, private_comment="disagrees with the majority", **ban))
    pool.quality_control.add_action(
        collector=toloka.collectors.GoldenSet(),
        conditions=[toloka.conditions.GoldenSetCorrectAnswersRate < 60.0,
                    toloka.conditions.GoldenSetAnswersCount >= 3],
        action=toloka.actions.RestrictionV2(duration=10, private_comment="control tasks", **ban))
    pool.set_mixer_config(real_tasks_count=9, golden_tasks_count=1)
    pool = client.create_pool(pool)

    controls = [toloka.Task(pool_id=pool.id, input_values={"image": url},
                            known_solutions=[toloka.task.BaseTask.KnownSolution(output_values={"result": label})],
                            infinite_overlap=True)
                for url, label in golden_images]
    tasks = [toloka.Task(pool_id=pool.id, input_values={"image": url}) for url, _ in task_images]
    created = client.create_tasks(controls + tasks, allow_defaults=True)
    assert len(created.items) == len(images), created.validation_errors

    pool = client.open_pool(pool.id)
    wait_pool_closed(client, pool.id, deadline, sleep=WAIT_SLEEP, with_progress=True)

    answers = client.get_assignments_df(pool.id)
    answers = answers.rename(columns={"INPUT:image": "task", "OUTPUT:result": "label",
                                      "ASSIGNMENT:worker_id": "worker"})
    aggregated = crowdkit.DawidSkene(n_iter=20).fit_predict(answers[["task", "worker", "label"]])
    return {"answers": answers, "aggregated": aggregated}


# ============================================================== 1.computer_vision/object_detection

def object_detection(client, images, deadline):
    """Outline road signs (rectangles, no labels), verify the outlines in a second project (OK/BAD),
    accept or reject the drawings by the verifiers' majority, loop until nothing is left to verify."""
    client.get_requester()

    detection_project = client.create_project(toloka.Project(
        public_name="Outline all traffic signs with rectangles",
        public_description="Find every traffic sign in the photo and outline it.",
        public_instructions="<b>Outline each traffic sign with its own rectangle.</b>",
        task_spec=toloka.project.task_spec.TaskSpec(
            input_spec={"image": toloka.project.UrlSpec()},
            output_spec={"result": toloka.project.JsonSpec()},
            view_spec=toloka.project.TemplateBuilderViewSpec(config=tb.TemplateBuilder(
                view=tb.ImageAnnotationFieldV1(tb.OutputData("result"), tb.InputData("image"),
                                               shapes={"rectangle": True},
                                               validation=tb.RequiredConditionV1(hint="Outline the signs")))),
        ),
    ))

    def skill(name, description):  # reuse the skill if it exists, as the notebook does
        found = next(iter(client.get_skills(name=name)), None)
        return found or client.create_skill(name=name, hidden=True, public_requester_description={"EN": description})

    detection_skill = skill("Road sign outlining", "Has outlined road signs")
    verification_skill = skill("Outline checking", "How well the worker checks outlines")

    detection_pool = toloka.Pool(
        project_id=detection_project.id, private_name="Outlines", may_contain_adult_content=False,
        will_expire=_expires(), reward_per_assignment=0.01,
        auto_accept_solutions=False,  # accepted or rejected by the verification project
        auto_accept_period_day=7, assignment_max_duration_seconds=20 * 60,
        defaults=toloka.Pool.Defaults(default_overlap_for_new_task_suites=1, default_overlap_for_new_tasks=1),
    )
    detection_pool.set_mixer_config(real_tasks_count=1)
    detection_pool.filter = toloka.filter.Languages.in_("EN")
    detection_pool.quality_control.add_action(
        collector=toloka.collectors.AcceptanceRate(),
        conditions=[toloka.conditions.TotalAssignmentsCount > 2, toloka.conditions.RejectedAssignmentsRate > 35],
        action=toloka.actions.RestrictionV2(scope="ALL_PROJECTS", duration=15, duration_unit="DAYS",
                                            private_comment="too many rejected outlines"))
    detection_pool.quality_control.add_action(
        collector=toloka.collectors.AssignmentSubmitTime(history_size=5, fast_submit_threshold_seconds=20),
        conditions=[toloka.conditions.FastSubmittedCount > 1],
        action=toloka.actions.RestrictionV2(scope="ALL_PROJECTS", duration=10, duration_unit="DAYS",
                                            private_comment="too fast"))
    detection_pool.quality_control.add_action(
        collector=toloka.collectors.AnswerCount(),
        conditions=[toloka.conditions.AssignmentsAcceptedCount > 0],
        action=toloka.actions.SetSkill(skill_id=detection_skill.id, skill_value=1))
    detection_pool.quality_control.add_action(
        collector=toloka.collectors.AssignmentsAssessment(),
        conditions=[toloka.conditions.AssessmentEvent == "REJECT"],
        action=toloka.actions.ChangeOverlap(delta=1, open_pool=True))
    detection_pool = client.create_pool(detection_pool)

    checking = tb.TemplateBuilder(
        view=tb.ListViewV1([
            tb.ImageAnnotationFieldV1(tb.InternalData("selection", default=tb.InputData("selection")),
                                      tb.InputData("image"), disabled=True),
            tb.RadioGroupFieldV1(tb.OutputData("result"),
                                 [tb.GroupFieldOption("OK", "Yes"), tb.GroupFieldOption("BAD", "No")],
                                 label="Are all traffic signs outlined correctly?",
                                 validation=tb.RequiredConditionV1()),
        ]),
        plugins=[tb.HotkeysPluginV1(key_1=tb.SetActionV1(tb.OutputData("result"), "OK"),
                                    key_2=tb.SetActionV1(tb.OutputData("result"), "BAD"))],
    )
    verification_project = client.create_project(toloka.Project(
        public_name="Are the traffic signs outlined correctly?",
        public_description="Look at the outlines and say whether every traffic sign is outlined well.",
        public_instructions="Are all traffic signs outlined correctly? Answer Yes or No.",
        task_spec=toloka.project.task_spec.TaskSpec(
            input_spec={"image": toloka.project.UrlSpec(), "selection": toloka.project.JsonSpec(),
                        "assignment_id": toloka.project.StringSpec()},
            output_spec={"result": toloka.project.StringSpec(allowed_values=["OK", "BAD"])},
            view_spec=toloka.project.TemplateBuilderViewSpec(config=checking),
        ),
    ))

    verification_pool = toloka.Pool(
        project_id=verification_project.id, private_name="Outline checks", may_contain_adult_content=False,
        will_expire=_expires(), reward_per_assignment=0.01, assignment_max_duration_seconds=10 * 60,
        defaults=toloka.Pool.Defaults(default_overlap_for_new_task_suites=2),
    )
    # nobody checks their own outlines: workers with the outlining skill are kept out
    verification_pool.filter = (toloka.filter.Languages.in_("EN")
                                & (toloka.filter.Skill(detection_skill.id) == None))  # noqa: E711 - toloka's filter DSL
    verification_pool.quality_control.add_action(
        collector=toloka.collectors.MajorityVote(answer_threshold=2),
        conditions=[toloka.conditions.TotalAnswersCount > 9, toloka.conditions.CorrectAnswersRate < 50],
        action=toloka.actions.RestrictionV2(scope="ALL_PROJECTS", duration=10, duration_unit="DAYS",
                                            private_comment="disagrees with the majority"))
    verification_pool.quality_control.add_action(
        collector=toloka.collectors.MajorityVote(answer_threshold=2, history_size=10),
        conditions=[toloka.conditions.TotalAnswersCount > 2],
        action=toloka.actions.SetSkillFromOutputField(skill_id=verification_skill.id,
                                                      from_field="correct_answers_rate"))
    verification_pool.set_mixer_config(real_tasks_count=10, mix_tasks_in_creation_order=True,
                                       force_last_assignment=True)
    verification_pool.set_dynamic_overlap_config(type="BASIC", max_overlap=5, min_confidence=0.8,
                                                 answer_weight_skill_id=verification_skill.id,
                                                 fields=[toloka.pool.DynamicOverlapConfig.Field("result")])
    verification_pool = client.create_pool(verification_pool)

    client.create_tasks([toloka.Task(input_values={"image": url}, pool_id=detection_pool.id) for url in images],
                        allow_defaults=True)
    detection_pool = client.open_pool(detection_pool.id)

    verdicts: list[dict] = []  # every verification answer, for the test's checks

    def verification_tasks():
        return [toloka.Task(pool_id=verification_pool.id,
                            input_values={"image": a.tasks[0].input_values["image"],
                                          "selection": a.solutions[0].output_values["result"],
                                          "assignment_id": a.id})
                for a in client.get_assignments(status="SUBMITTED", pool_id=detection_pool.id)]

    def verify(tasks):
        client.create_tasks(tasks, allow_defaults=True)
        client.open_pool(verification_pool.id)

    def verification_results(submitted_gte=None):
        skills, rows = {}, []
        for a in client.get_assignments(status="ACCEPTED", pool_id=verification_pool.id,
                                        submitted_gte=submitted_gte):
            user_skill = next(iter(client.get_user_skills(user_id=a.user_id, skill_id=verification_skill.id)), None)
            skills[a.user_id] = user_skill.value if user_skill else None
            rows += [(task.input_values["assignment_id"], solution.output_values["result"], a.user_id)
                     for task, solution in zip(a.tasks, a.solutions)]
        answers = pd.DataFrame(rows, columns=["task", "label", "worker"])
        verdicts.extend(answers.to_dict("records"))
        # crowd-kit 1.x refuses missing skills; a worker without one yet counts as an average checker
        skill_series = pd.Series(skills, dtype=float)
        default = float(skill_series.mean()) if skill_series.notna().any() else 50.0
        return crowdkit.MajorityVote(on_missing_skill="value", default_skill=default).fit_predict(
            answers, skill_series.dropna())

    def apply(results):
        for assignment_id, verdict in results.items():
            if verdict == "OK":
                client.accept_assignment(assignment_id, "Well done!")
            else:
                client.reject_assignment(assignment_id, "A sign is not outlined, or outlined badly.")

    rounds = 0
    wait_pool_closed(client, detection_pool.id, deadline, sleep=WAIT_SLEEP)
    verify(verification_tasks())
    wait_pool_closed(client, verification_pool.id, deadline, sleep=WAIT_SLEEP)
    apply(verification_results())
    while True:  # the notebook's loop: redraw what was rejected, verify it, until nothing is left
        rounds += 1
        deadline.check(f"verification round {rounds}: {pool_state(client, detection_pool.id)}")
        wait_pool_closed(client, detection_pool.id, deadline, sleep=WAIT_SLEEP)
        tasks = verification_tasks()
        if not tasks:
            break
        since = datetime.datetime.utcnow()
        verify(tasks)
        wait_pool_closed(client, verification_pool.id, deadline, sleep=WAIT_SLEEP)
        apply(verification_results(since))

    # the notebook ends by downloading each photo and painting its accepted rectangles for display: left out
    accepted = {}
    for a in client.get_assignments(status="ACCEPTED", pool_id=detection_pool.id):
        accepted.setdefault(a.tasks[0].input_values["image"], []).append(a.solutions[0].output_values["result"])
    drawings = [a.solutions[0].output_values["result"]
                for a in client.get_assignments(pool_id=detection_pool.id)
                if _value(a.status) in ("SUBMITTED", "ACCEPTED", "REJECTED")]
    return {"accepted": accepted, "drawings": drawings, "verdicts": verdicts, "rounds": rounds}


# ============================================================== 1.computer_vision/text_recognition

METER_PATTERN = r"^\d+\.?\d{0,3}$"
N_TRAINING, N_CONTROL = 10, 10


def text_recognition(client, images, deadline):
    """Read a water meter: one text field with a pattern, a training with hints, control tasks, ROVER."""
    client.get_requester()
    training_rows, control_rows, main_rows = (images[:N_TRAINING], images[N_TRAINING:N_TRAINING + N_CONTROL],
                                              images[N_TRAINING + N_CONTROL:])

    view = tb.TemplateBuilder(
        view=tb.ListViewV1([
            tb.MarkdownViewV1("1. Find the meter\n2. Type the black digits, a dot, then the red digits"),
            tb.ImageViewV1(tb.InputData("image_url"), rotatable=True),
            tb.TextFieldV1(tb.OutputData("value"), label="The reading, e.g. 365.235", placeholder="Enter value",
                           validation=tb.SchemaConditionV1(schema={"type": "string", "pattern": METER_PATTERN,
                                                                   "minLength": 1, "maxLength": 9})),
        ]),
        plugins=[tb.TolokaPluginV1("scroll", task_width=600)],
    )
    project = toloka.Project(public_name="Write down the digits in an image",
                             public_description="Type the reading of the water meter in the photo.")
    project.task_spec = toloka.project.task_spec.TaskSpec(
        input_spec={"image_url": toloka.project.UrlSpec()},
        output_spec={"value": toloka.project.StringSpec()},
        view_spec=toloka.project.TemplateBuilderViewSpec(config=view),
    )
    project.public_instructions = "Type the black digits, a dot, and the red digits of the meter."
    project = client.create_project(project)

    training = client.create_training(toloka.Training(
        project_id=project.id, private_name="Meter reading training", may_contain_adult_content=False,
        assignment_max_duration_seconds=60 * 10, mix_tasks_in_creation_order=False,
        shuffle_tasks_in_task_suite=False, training_tasks_in_task_suite_count=2, task_suites_required_to_pass=5,
        retry_training_after_days=5, inherited_instructions=True,
    ))

    def hint(value):
        black, _, red = value.partition(".")
        return f"The black digits are {black}, the red ones {red or 'absent'}."

    created = client.create_tasks([
        toloka.Task(pool_id=training.id, input_values={"image_url": url},
                    known_solutions=[toloka.task.BaseTask.KnownSolution(output_values={"value": value})],
                    message_on_unknown_solution=hint(value))
        for url, value in training_rows], allow_defaults=True)
    assert len(created.items) == len(training_rows), created.validation_errors

    pool = toloka.Pool(project_id=project.id, private_name="Meter readings", may_contain_adult_content=False,
                       reward_per_assignment=0.02, will_expire=_expires(),
                       defaults=toloka.Pool.Defaults(default_overlap_for_new_task_suites=3),
                       assignment_max_duration_seconds=600)
    pool.set_training_requirement(training_pool_id=training.id, training_passing_skill_value=75)
    pool.filter = toloka.filter.Languages.in_("EN")
    pool.quality_control.add_action(
        collector=toloka.collectors.GoldenSet(),
        conditions=[toloka.conditions.GoldenSetCorrectAnswersRate < 80.0,
                    toloka.conditions.GoldenSetAnswersCount >= 3],
        action=toloka.actions.RestrictionV2(scope="PROJECT", duration=2, duration_unit="DAYS",
                                            private_comment="control tasks"))
    pool.quality_control.add_action(
        collector=toloka.collectors.AssignmentSubmitTime(history_size=5, fast_submit_threshold_seconds=7),
        conditions=[toloka.conditions.FastSubmittedCount >= 1],
        action=toloka.actions.RestrictionV2(scope="PROJECT", duration=2, duration_unit="DAYS",
                                            private_comment="too fast"))
    pool.set_mixer_config(real_tasks_count=3, golden_tasks_count=1)
    pool = client.create_pool(pool)

    controls = [toloka.Task(pool_id=pool.id, input_values={"image_url": url},
                            known_solutions=[toloka.task.BaseTask.KnownSolution(output_values={"value": value})],
                            infinite_overlap=True)
                for url, value in control_rows]
    tasks = [toloka.Task(pool_id=pool.id, input_values={"image_url": url}) for url, _ in main_rows]
    created = client.create_tasks(controls + tasks, allow_defaults=True)
    assert len(created.items) == len(controls) + len(tasks), created.validation_errors

    training = client.open_training(training.id)
    pool = client.open_pool(pool.id)
    wait_pool_closed(client, pool.id, deadline, sleep=WAIT_SLEEP, with_progress=True)

    rows = []
    for a in client.get_assignments(pool_id=pool.id, status="ACCEPTED"):
        rows += [(task.input_values["image_url"], solution.output_values["value"], a.user_id)
                 for task, solution in zip(a.tasks, a.solutions) if not task.known_solutions]
    answers = pd.DataFrame(rows, columns=["task", "text", "worker"])
    aggregated = crowdkit.ROVER(tokenizer=lambda s: list(s), detokenizer=lambda chars: "".join(chars)
                                ).fit_predict(answers)
    trainees = {a.user_id for a in client.get_assignments(pool_id=training.id)}
    return {"answers": answers, "aggregated": aggregated, "trainees": trainees,
            "training_status": _value(client.get_training(training.id).status)}


# ================================================================== 6.streaming_pipelines

SHOP = "https://www.marksandspencer.com"
# The notebook asks 12 links per photo; 4 keep every hop of the chain (links -> checks -> accept/reject ->
# pairs -> ranking) and cut the side-by-side pool from 66 pairs per photo to 6 (990 assignments to 90).
OVERLAP_FIND_ITEMS, OVERLAP_VERIFICATION, OVERLAP_SBS = 4, 3, 3
N_SHOE_PHOTOS = 5


def _tb(view: dict, plugins=()) -> dict:
    """A Template Builder view spec as Toloka stores it: the config as JSON text plus the lock of every
    component it uses (the notebook's JSON files carry the same)."""
    config = {"view": view, "plugins": list(plugins)}
    types: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("type"), str) and "." in node["type"]:
                types.add(node["type"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return {"type": "tb", "config": json.dumps(config, indent=1),
            "lock": {"core": "1.0.0", **{t: "1.0.0" for t in sorted(types)}}}


def _inp(path):
    return {"type": "data.input", "path": path}


def _out(path):
    return {"type": "data.output", "path": path}


# The notebook loads its three projects and pools from JSON files; these are the same settings.
FIND_ITEMS_PROJECT = {
    "public_name": "Find the same shoes in an online store",
    "public_description": "Find shoes like the ones in the photo on the Marks and Spencer website",
    "public_instructions": "Look at the shoes in the photo and find the same or similar pair in the store.",
    "assignments_issuing_type": "AUTOMATED",
    "task_spec": {
        "input_spec": {"image": {"type": "url", "required": True}},
        "output_spec": {"found_link": {"type": "string", "required": True}},
        "view_spec": _tb({
            "type": "layout.sidebar", "controlsWidth": 320,
            "content": {"type": "view.image", "url": _inp("image"), "fullHeight": True},
            "controls": {"type": "view.list", "items": [
                {"type": "view.markdown", "content": "Find the same **shoes** on Marks and Spencer"},
                {"type": "view.action-button", "label": "Marks and Spencer",
                 "action": {"type": "action.open-link", "payload": SHOP},
                 "validation": {"type": "condition.link-opened", "url": SHOP}},
                {"type": "field.text", "data": _out("found_link"), "label": "Paste the link here",
                 "validation": {"type": "condition.all", "conditions": [
                     {"type": "condition.required"},
                     {"type": "condition.schema", "data": _out("found_link"),
                      "schema": {"type": "string", "pattern": "marksandspencer.com/?"},
                      "hint": "the link must be from the Marks and Spencer website"}]}},
            ]},
        }, [{"type": "plugin.toloka", "layout": {"kind": "scroll", "taskWidth": 800}}]),
    },
}
VERIFICATION_PROJECT = {
    "public_name": "Do the shoes look alike?",
    "public_description": "Compare the shoes in the photo with the ones at the link",
    "public_instructions": "Say Yes if the shoes have the same colour and style, otherwise No.",
    "assignments_issuing_type": "AUTOMATED",
    "task_spec": {
        "input_spec": {"image": {"type": "url", "required": True}, "found_link": {"type": "url", "required": True},
                       "assignment_id": {"type": "string", "required": True}},
        "output_spec": {"result": {"type": "string", "required": True, "allowed_values": ["Yes", "No"]}},
        "view_spec": _tb({
            "type": "layout.side-by-side",
            "items": [{"type": "view.image", "url": _inp("image"), "fullHeight": True},
                      {"type": "view.iframe", "url": _inp("found_link"), "fullHeight": True}],
            "controls": {"type": "view.list", "items": [
                {"type": "view.action-button", "label": "Check the item",
                 "action": {"type": "action.open-link", "payload": _inp("found_link")}},
                {"type": "view.markdown", "content": "Are these **shoes** alike?"},
                {"type": "field.radio-group", "data": _out("result"),
                 "options": [{"value": "Yes", "label": "Yes"}, {"value": "No", "label": "No"}],
                 "validation": {"type": "condition.required"}},
            ]},
        }),
    },
}


def _side(path):
    return {"type": "view.list", "items": [
        {"type": "view.text", "content": _inp(path)},
        {"type": "view.action-button", "label": "Go to site", "action": {"type": "action.open-link",
                                                                         "payload": _inp(path)}},
        {"type": "view.iframe", "url": _inp(path), "fullHeight": True}]}


SBS_PROJECT = {
    "public_name": "Which item is more alike?",
    "public_description": "Choose the pair of shoes closer to the ones in the photo",
    "public_instructions": "Choose the link whose shoes look more like the ones in the photo.",
    "assignments_issuing_type": "AUTOMATED",
    "task_spec": {
        "input_spec": {"image": {"type": "url", "required": True}, "left_link": {"type": "url", "required": True},
                       "right_link": {"type": "url", "required": True}},
        "output_spec": {"result": {"type": "url", "required": True}},
        "view_spec": _tb({
            "type": "view.list", "items": [
                {"type": "view.image", "url": _inp("image"), "fullHeight": True},
                {"type": "layout.side-by-side", "items": [_side("left_link"), _side("right_link")]},
                {"type": "view.text", "content": "Which one is more like the original?"},
                {"type": "field.radio-group", "data": _out("result"),
                 "options": [{"value": _inp("left_link"), "label": "The left one"},
                             {"value": _inp("right_link"), "label": "The right one"}],
                 "validation": {"type": "condition.required"}},
            ]}, [{"type": "plugin.hotkeys",
                  "1": {"type": "action.set", "data": _out("result"), "payload": _inp("left_link")},
                  "2": {"type": "action.set", "data": _out("result"), "payload": _inp("right_link")}}]),
    },
}


def _ban(scope, comment, duration=3):
    return {"type": "RESTRICTION_V2", "parameters": {"scope": scope, "duration": duration,
                                                     "duration_unit": "DAYS", "private_comment": comment}}


def _pool_json(name, overlap, max_seconds, auto_accept, configs, captcha=None):
    pool = {"private_name": name, "may_contain_adult_content": True, "assignment_max_duration_seconds": max_seconds,
            "defaults": {"default_overlap_for_new_task_suites": overlap},
            "auto_close_after_complete_delay_seconds": 0, "auto_accept_solutions": auto_accept,
            "auto_accept_period_day": 14, "assignments_issuing_config": {"issue_task_suites_in_creation_order": False},
            "priority": 0,
            "filter": {"and": [{"or": [{"category": "profile", "key": "languages", "operator": "IN", "value": "EN"}]}]},
            "quality_control": {"configs": configs},
            "mixer_config": {"real_tasks_count": 1, "golden_tasks_count": 0, "training_tasks_count": 0},
            "type": "REGULAR"}
    if captcha:
        pool["quality_control"]["captcha_frequency"] = captcha
    return pool


FIND_ITEMS_POOL = _pool_json("Find similar shoes", 1, 300, False, [
    {"collector_config": {"type": "ASSIGNMENT_SUBMIT_TIME", "parameters": {"fast_submit_threshold_seconds": 30}},
     "rules": [{"conditions": [{"key": "fast_submitted_count", "operator": "GTE", "value": 1}],
                "action": _ban("PROJECT", "fast responses")}]},
    {"collector_config": {"type": "ACCEPTANCE_RATE"},
     "rules": [{"conditions": [{"key": "rejected_assignments_rate", "operator": "GTE", "value": 1.0}],
                "action": _ban("ALL_PROJECTS", "rejected assignments")}]},
])
VERIFICATION_POOL = _pool_json("Are the shoes alike?", 1, 60, True, [
    {"collector_config": {"type": "MAJORITY_VOTE", "parameters": {"answer_threshold": 3}},
     "rules": [{"conditions": [{"key": "total_answers_count", "operator": "GTE", "value": 4},
                               {"key": "correct_answers_rate", "operator": "LT", "value": 75.0}],
                "action": _ban("ALL_PROJECTS", "disagrees with the majority")}]},
    {"collector_config": {"type": "ASSIGNMENTS_ASSESSMENT"},
     "rules": [{"conditions": [{"key": "assessment_event", "operator": "EQ", "value": "REJECT"}],
                "action": {"type": "CHANGE_OVERLAP", "parameters": {"delta": 1, "open_pool": True}}}]},
])
SBS_POOL = _pool_json("Which is more alike?", 3, 60, True, [
    {"collector_config": {"type": "CAPTCHA", "parameters": {"history_size": 5}},
     "rules": [{"conditions": [{"key": "fail_rate", "operator": "GTE", "value": 20.0}],
                "action": _ban("ALL_PROJECTS", "captcha")}]},
], captcha="HIGH")


def streaming_pipelines(client, images, deadline):
    """Find the shoes of a photo in a shop (links), verify each link (Yes/No) and accept or reject the
    finder, compare the accepted links side by side and rank them with Bradley-Terry, all wired by a
    streaming Pipeline of three AssignmentsObservers (default cursor lag)."""
    from toloka.client import structure
    from toloka.streaming import AssignmentsObserver, Pipeline

    def create_pool(config, project_id, reward):
        pool = structure(config, toloka.Pool)
        pool.project_id = project_id
        pool.reward_per_assignment = reward
        pool.will_expire = datetime.datetime.now() + datetime.timedelta(days=3)
        return client.create_pool(pool)

    find_items_project = client.create_project(structure(FIND_ITEMS_PROJECT, toloka.Project))
    find_items_pool = create_pool(FIND_ITEMS_POOL, find_items_project.id, 0.08)
    verification_project = client.create_project(structure(VERIFICATION_PROJECT, toloka.Project))
    verification_pool = create_pool(VERIFICATION_POOL, verification_project.id, 0.02)
    sbs_project = client.create_project(structure(SBS_PROJECT, toloka.Project))
    sbs_pool = create_pool(SBS_POOL, sbs_project.id, 0.04)

    # a rejected finder's task goes back to the crowd: one more overlap
    find_items_pool.quality_control.add_action(
        collector=toloka.collectors.AssignmentsAssessment(),
        conditions=[toloka.conditions.AssessmentEvent == toloka.conditions.AssessmentEvent.REJECT],
        action=toloka.actions.ChangeOverlap(delta=1, open_pool=True))
    client.update_pool(find_items_pool.id, find_items_pool)

    seen = collections.defaultdict(set)  # (pool, event type) -> assignment ids the observers delivered
    links, verdicts, comparisons = [], [], []

    def found_items_to_verification(events):
        tasks = [toloka.Task(pool_id=verification_pool.id, unavailable_for=[event.assignment.user_id],
                             overlap=OVERLAP_VERIFICATION,
                             input_values={"image": task.input_values["image"],
                                           "found_link": solution.output_values["found_link"],
                                           "assignment_id": event.assignment.id})
                 for event in events for task, solution in zip(event.assignment.tasks, event.assignment.solutions)]
        links.extend(t.input_values["found_link"] for t in tasks)
        client.create_tasks(tasks, open_pool=True)

    class VerdictsToFinders:
        """Majority of three verdicts per link accepts or rejects the finder's assignment."""

        def __init__(self):
            self.waiting = collections.defaultdict(list)

        def __call__(self, events):
            for event in events:
                for task, solution in zip(event.assignment.tasks, event.assignment.solutions):
                    self.waiting[task.input_values["assignment_id"]].append(
                        (solution.output_values["result"], event.assignment.user_id))
                    verdicts.append(solution.output_values["result"])
            ready = [(assignment_id, label, worker) for assignment_id, answers in self.waiting.items()
                     if len(answers) >= OVERLAP_VERIFICATION for label, worker in answers]
            if not ready:
                return
            majority = crowdkit.MajorityVote().fit_predict(pd.DataFrame(ready, columns=["task", "label", "worker"]))
            for assignment_id, verdict in majority.items():
                try:
                    if verdict == "Yes":
                        client.accept_assignment(assignment_id, "Well done!")
                    else:
                        client.reject_assignment(assignment_id, "Not the same item.")
                except toloka.exceptions.IncorrectActionsApiError:  # already decided (e.g. in the web UI)
                    logging.exception("cannot set %s on %s", verdict, assignment_id)
                del self.waiting[assignment_id]

    class AcceptedLinksToComparison:
        """Once a photo has all its accepted links, every pair of them becomes a side-by-side task."""

        def __init__(self):
            self.waiting = collections.defaultdict(list)

        def __call__(self, events):
            for event in events:
                for task, solution in zip(event.assignment.tasks, event.assignment.solutions):
                    self.waiting[task.input_values["image"]].append(solution.output_values["found_link"])
            ready = [(image, found) for image, found in self.waiting.items() if len(found) >= OVERLAP_FIND_ITEMS]
            tasks = [toloka.Task(pool_id=sbs_pool.id, overlap=OVERLAP_SBS,
                                 input_values={"image": image, "left_link": left, "right_link": right})
                     for image, found in ready for left, right in itertools.combinations(found, 2)]
            if tasks:
                client.create_tasks(tasks, open_pool=True)
            for image, _ in ready:
                del self.waiting[image]

    class RankLinks:
        """Bradley-Terry scores of each photo's links from the side-by-side answers."""

        def __init__(self):
            self.waiting = collections.defaultdict(list)
            self.scores_by_image = {}

        def __call__(self, events):
            for event in events:
                for task, solution in zip(event.assignment.tasks, event.assignment.solutions):
                    answer = {"worker": event.assignment.user_id, "left": task.input_values["left_link"],
                              "right": task.input_values["right_link"], "label": solution.output_values["result"]}
                    comparisons.append(answer)
                    self.waiting[task.input_values["image"]].append(answer)
            for image, answers in list(self.waiting.items()):
                if len(answers) >= OVERLAP_SBS:
                    scores = crowdkit.BradleyTerry(n_iter=100).fit_predict(pd.DataFrame(answers))
                    self.scores_by_image[image] = scores.sort_values(ascending=False)
                    del self.waiting[image]

    def record(pool_name, kind):
        def callback(events):
            seen[(pool_name, kind)].update(event.assignment.id for event in events)
        return callback

    pipeline = Pipeline(period=PIPELINE_PERIOD)  # the notebook's default period is 60 s; the lag stays 60 s
    found_items_observer = pipeline.register(AssignmentsObserver(client, find_items_pool.id))
    verification_observer = pipeline.register(AssignmentsObserver(client, verification_pool.id))
    sbs_observer = pipeline.register(AssignmentsObserver(client, sbs_pool.id))
    ranking = RankLinks()
    found_items_observer.on_submitted(found_items_to_verification)
    found_items_observer.on_accepted(AcceptedLinksToComparison())
    verification_observer.on_accepted(VerdictsToFinders())
    sbs_observer.on_accepted(ranking)
    # the test's own instruments: which assignments each observer delivered
    found_items_observer.on_submitted(record("find", "SUBMITTED"))
    found_items_observer.on_accepted(record("find", "ACCEPTED"))
    verification_observer.on_accepted(record("verification", "ACCEPTED"))
    sbs_observer.on_accepted(record("sbs", "ACCEPTED"))

    client.create_tasks([toloka.Task(pool_id=find_items_pool.id, overlap=OVERLAP_FIND_ITEMS,
                                     input_values={"image": image}) for image in images], open_pool=True)
    finished = run_pipeline(pipeline, max(deadline.left(), 1.0))
    if not finished:
        raise ScenarioTimeout("the pipeline did not finish: " + "; ".join(
            pool_state(client, p.id) for p in (find_items_pool, verification_pool, sbs_pool)))

    pools = {"find": find_items_pool.id, "verification": verification_pool.id, "sbs": sbs_pool.id}
    return {
        "links": links, "verdicts": verdicts, "comparisons": comparisons, "scores": ranking.scores_by_image,
        "seen": dict(seen), "pools": pools,
        "submitted": {name: assignment_ids(client, pool_id) for name, pool_id in pools.items()},
        "accepted": {name: assignment_ids(client, pool_id, ("ACCEPTED",)) for name, pool_id in pools.items()},
        "left_submitted": {name: assignment_ids(client, pool_id, ("SUBMITTED",)) for name, pool_id in pools.items()},
    }


# ============================================================================ the shared run

def _world(name: str, server: ImageServer, folder: Path):
    """The dataset a scenario works on (URLs) and the truth file describing it."""
    if name == "learn_the_basics":
        specs = [{"name": f"pet{i:02d}.png", "size": (320, 240), "label": animal}
                 for i, animal in enumerate(ANIMALS)]
        data = [server.add(s["name"], animal_picture(i, s["label"])) for i, s in enumerate(specs)]
    elif name == "image_classification":
        labels = (CLASSES * 32)[:N_GOLDEN + N_TASKS]
        specs = [{"name": f"animal{i:02d}.png", "size": (320, 240), "label": label} for i, label in enumerate(labels)]
        data = [(server.add(s["name"], animal_picture(100 + i, s["label"])), s["label"]) for i, s in enumerate(specs)]
    elif name == "object_detection":
        specs = []
        for i in range(20):
            boxes = [(1, 40 + 7 * i, 50, 90, 90)] + ([(9, 250, 120 - 3 * i, 100, 80)] if i % 2 else [])
            specs.append({"name": f"road{i:02d}.png", "size": (400, 300), "boxes": boxes})
        data = [server.add(s["name"], road_picture(200 + i, [b[1:] for b in s["boxes"]])) for i, s in enumerate(specs)]
    elif name == "text_recognition":
        readings = [f"{(i * 37) % 900 + 10}.{(i * 53) % 1000:03d}" for i in range(N_TRAINING + N_CONTROL + 30)]
        specs = [{"name": f"meter{i:02d}.png", "size": (320, 240), "text": text} for i, text in enumerate(readings)]
        data = [(server.add(s["name"], meter_picture(300 + i, s["text"])), s["text"]) for i, s in enumerate(specs)]
    elif name == "streaming_pipelines":
        # Truth as "tasks" entries (inputs -> answers), first match wins: the right link of each photo is
        # "Yes" when shown for verification; a photo's right link is what a finder should find. (Per-image
        # records would answer the finders too, but the crowd then reads only the record, and the record has
        # no verdict for a link.)
        data = [server.add(f"shoes{i}.png", animal_picture(400 + i, "other")) for i in range(N_SHOE_PHOTOS)]
        right = {url: f"{SHOP}/shoes/item-{i}" for i, url in enumerate(data)}
        tasks = ([{"input_values": {"image": url, "found_link": link}, "output_values": {"result": "Yes"}}
                  for url, link in right.items()]
                 + [{"input_values": {"image": url}, "output_values": {"found_link": link}}
                    for url, link in right.items()])
        return data, write_truth(folder / "truth.coco.json", server, [], tasks)
    else:
        raise ValueError(name)
    return data, write_truth(folder / "truth.coco.json", server, specs)


SCENARIOS = {"learn_the_basics": learn_the_basics, "image_classification": image_classification,
             "object_detection": object_detection, "text_recognition": text_recognition,
             "streaming_pipelines": streaming_pipelines}


def _run(name: str, folder: Path) -> Outcome:
    outcome, started = Outcome(name), time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    server, toloka_server = ImageServer(), None
    try:
        data, truth = _world(name, server, folder)
        # default settings: only the ground truth (the dataset's answers) is given, and the checking crowd below
        toloka_server = start_local_toloka(folder, TOKEN, defaults=True, ground_truth=truth,
                                           **SCENARIO_CROWDS.get(name, {}))
        seconds = STREAMING_SECONDS if name == "streaming_pipelines" else SCENARIO_SECONDS
        outcome.data = SCENARIOS[name](toloka_server.client(), data, Deadline(seconds)) or {}
        outcome.data["world"] = data
    except BaseException:  # noqa: BLE001 - reported by the scenario's test
        outcome.error = traceback.format_exc()
    finally:
        outcome.seconds = time.monotonic() - started
        if toloka_server is not None:
            toloka_server.stop()
            outcome.server_log = toloka_server.log()
        server.close()
    return outcome


def _run_all(base: Path, names: list[str]) -> dict:
    """The selected scenarios at once, each on its own server."""
    started = time.monotonic()
    with ThreadPoolExecutor(max(len(names), 1), thread_name_prefix="notebook") as pool:
        futures = {name: pool.submit(_run, name, base / name) for name in names}
        results = {name: future.result() for name, future in futures.items()}
    print(f"\nnotebook scenarios: {time.monotonic() - started:.0f} s in all; "
          + ", ".join(f"{r.name} {r.seconds:.0f} s{' (failed)' if r.error else ''}" for r in results.values()))
    return results


def start_early(folder, selected=None):
    """Start the scenarios of the selected tests (``test_<scenario>``; all when ``selected`` is None). conftest
    calls this once collection shows which tests are selected."""
    names = [name for name in SCENARIOS if selected is None or f"test_{name}" in selected]
    return start_in_background("toloka_examples", folder, lambda where: _run_all(where, names))


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    selected = {item.name for item in request.session.items if getattr(item, "module", None) is request.module}
    return start_early(lambda: tmp_path_factory.mktemp("toloka_examples"), selected).result()


# ================================================================================== the checks

def test_learn_the_basics(outcomes):
    data = outcomes["learn_the_basics"].require()
    answers, aggregated = data["answers"], data["aggregated"]
    images = data["world"]
    assert len(answers) >= 3 * len(images), "every photo is answered by three workers"
    assert set(answers["label"]) <= {"cat", "dog"}, "labels come from the radio group's options"
    assert set(aggregated.index) == set(images), "majority vote gives every photo a label"
    truth = dict(zip(images, ANIMALS))
    right = sum(aggregated[url] == truth[url] for url in images)
    assert right >= 0.7 * len(images), f"answers follow the truth ({right} of {len(images)} right)"


def test_image_classification(outcomes):
    data = outcomes["image_classification"].require()
    answers, aggregated = data["answers"], data["aggregated"]
    world = data["world"]
    assert set(answers["label"]) <= set(CLASSES), "labels come from the button group's options"
    tasks = dict(world[N_GOLDEN:])
    assert set(tasks) <= set(aggregated.index), "Dawid-Skene labels every task"
    right = sum(aggregated[url] == label for url, label in tasks.items())
    assert right >= 0.7 * len(tasks), f"answers follow the truth ({right} of {len(tasks)} right)"


def _is_rectangle(shape) -> bool:
    """Toloka's image-annotation rectangle: shape, left, top, width, height as fractions of the image
    (toloka-kit reads JSON numbers as Decimal)."""
    if not (isinstance(shape, dict) and shape.get("shape") == "rectangle"):
        return False
    try:
        left, top, width, height = (float(shape[k]) for k in ("left", "top", "width", "height"))
    except (KeyError, TypeError, ValueError):
        return False
    return -0.01 <= left <= 1.01 and -0.01 <= top <= 1.01 and 0 < width <= 1.01 and 0 < height <= 1.01


def test_object_detection(outcomes):
    data = outcomes["object_detection"].require()
    images = data["world"]
    assert data["verdicts"], "the verification pool returned verdicts"
    assert {v["label"] for v in data["verdicts"]} <= {"OK", "BAD"}, "verdicts come from allowed_values"
    drawings = data["drawings"]
    assert all(isinstance(drawing, list) for drawing in drawings), "outlines are lists of shapes"
    empty = sum(1 for drawing in drawings if not drawing)
    assert not empty, (f"{empty} of {len(drawings)} submitted drawings are empty, though the view's "
                       "condition.required asks for at least one shape")
    for drawing in drawings:
        assert all(_is_rectangle(shape) for shape in drawing), f"only rectangles are enabled: {drawing}"
        assert not any("label" in shape for shape in drawing), f"the view declares no labels: {drawing}"
    assert set(data["accepted"]) == set(images), "every photo ends with accepted outlines"


def test_text_recognition(outcomes):
    data = outcomes["text_recognition"].require()
    answers, aggregated = data["answers"], data["aggregated"]
    main = dict(data["world"][N_TRAINING + N_CONTROL:])
    assert len(answers) >= 3 * len(main), "three readings of every meter"
    bad = [text for text in answers["text"] if not (isinstance(text, str) and re.search(METER_PATTERN, text))]
    assert not bad, f"readings match the view's pattern: {bad[:5]}"
    assert set(main) <= set(aggregated.index), "ROVER reads every meter"
    right = sum(aggregated[url] == text for url, text in main.items())
    assert right >= 0.5 * len(main), f"readings follow the truth ({right} of {len(main)} right)"
    workers = set(answers["worker"])
    assert workers <= data["trainees"], f"only trained workers reach the pool: {sorted(workers - data['trainees'])}"


@pytest.mark.lag  # about 7.5 min: four pools chained through toloka-kit's 60 s cursor lag; `--lag` runs it
def test_streaming_pipelines(outcomes):
    data = outcomes["streaming_pipelines"].require()
    links, verdicts, comparisons = data["links"], data["verdicts"], data["comparisons"]
    assert links and all(isinstance(x, str) and re.search("marksandspencer.com/?", x)
                         and x.startswith(("http://", "https://")) for x in links), \
        f"found links are URLs of the shop the view asks for: {links[:5]}"
    assert verdicts and set(verdicts) <= {"Yes", "No"}, "verdicts come from allowed_values"
    assert comparisons and all(c["label"] in (c["left"], c["right"]) for c in comparisons), \
        "side-by-side answers are one of the two links shown"
    # the pipeline saw every assignment of every pool (default 60 s cursor lag)
    seen = data["seen"]
    expected = {("find", "SUBMITTED"): data["submitted"]["find"], ("find", "ACCEPTED"): data["accepted"]["find"],
                ("verification", "ACCEPTED"): data["accepted"]["verification"],
                ("sbs", "ACCEPTED"): data["accepted"]["sbs"]}
    missed = {f"{pool} {kind.lower()}": f"{len(ids - seen.get((pool, kind), set()))} of {len(ids)}"
              for (pool, kind), ids in expected.items() if ids - seen.get((pool, kind), set())}
    assert not missed, f"the pipeline's observers missed assignments: {missed}"
    assert not data["left_submitted"]["find"], "every found link was verified and decided"
    ranked = set(data["scores"])
    assert ranked == set(data["world"]), (
        f"Bradley-Terry ranked the links of {len(ranked)} of {len(data['world'])} photos")
