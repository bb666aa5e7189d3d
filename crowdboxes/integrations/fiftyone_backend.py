"""A FiftyOne annotation backend that buys the boxes from the crowd: ``backend="crowdboxes"``.

::

    import fiftyone as fo
    from crowdboxes.integrations.fiftyone_backend import register

    register()  # fo.annotation_config.backends["crowdboxes"] = {"config_cls": ...}
    dataset.annotate("signs", backend="crowdboxes", label_field="crowd", label_type="detections",
                     classes=["stop", "yield"])
    dataset.load_annotations("signs")

``annotate`` copies the samples' images into a job folder (:mod:`crowdboxes.integrations.flow_job`: unique
names, so samples whose files share a name in different folders stay apart; one copy per distinct content)
and runs the flow on them: on a local Toloka with a simulated crowd by default, on Toloka with
``toloka_env="sandbox"`` / ``"production"`` plus ``s3_bucket`` (the token comes from the environment
variable ``token_env``, never from a parameter, and is never stored). ``wait=False`` starts the flow in the
background and returns at once (real Toloka: the crowd takes hours); ``results.status()`` tells how far it is.

``load_annotations`` then sets, per sample:

* ``<label_field>``: ``fo.Detections`` of the aggregated boxes with ``score >= min_score`` (default 0.5, as
  Export; 0 keeps every ranked candidate, for AP or review), ``confidence`` = the box's score (``lean_em``:
  the probability that it is a real object of that class within IoU 0.5), and ``support`` (how many
  workers drew it);
* ``<label_field>_workers`` (``workers_field``): every worker's raw boxes, with ``worker_id``, ``round``
  (drawing or missed_signs) and the assignment's ``status``;
* ``risk``, ``expected_missed`` and ``expected_spurious`` (``review_prefix`` + name): images_review.csv's
  expected number of wrong, missing or mislabelled boxes, and its parts; sort by ``risk`` to review first.

Boxes are relative to the image, ``[x/W, y/H, w/W, h/H]`` with the size Upload Images measured. A sample whose
image Upload Images refused gets none of these fields (a warning names how many and why).

With ``truth_field`` (a Detections field of true boxes) the local Toloka's simulated crowd draws from it: a
rehearsal whose result :meth:`evaluate_detections` can score. Re-running a job (``results.run_flow()``)
finds its Toloka projects and pools again by ``project_key`` and uploads nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import webbrowser
from pathlib import Path
from typing import Any

import fiftyone as fo
import fiftyone.core.labels as fol
import fiftyone.core.media as fom
import fiftyone.utils.annotations as foua
from bson import ObjectId

from crowdboxes.artifacts import REPORT
from crowdboxes.errors import CrowdboxesError
from crowdboxes.integrations import flow_job

logger = logging.getLogger(__name__)

BACKEND = "crowdboxes"
CONFIG_CLS = f"{__name__}.CrowdboxesBackendConfig"
REVIEW_FIELDS = ("risk", "expected_missed", "expected_spurious")


def register(name: str = BACKEND, **defaults: Any) -> None:
    """Make ``backend=name`` available in this process, with ``defaults`` for the config (e.g.
    ``work_dir``). Without code: ``FIFTYONE_ANNOTATION_BACKENDS=*,crowdboxes`` and
    ``FIFTYONE_CROWDBOXES_CONFIG_CLS=crowdboxes.integrations.fiftyone_backend.CrowdboxesBackendConfig``."""
    fo.annotation_config.backends[name] = {"config_cls": CONFIG_CLS, **defaults}


class CrowdboxesBackendConfig(foua.AnnotationBackendConfig):
    """The backend's parameters (``annotate(..., **kwargs)``); every one is stored with the run, so none
    holds a secret: the Toloka token and cloud keys stay in the environment.

    Args:
        work_dir: where job folders go (default ``<fo.config.default_dataset_dir>/crowdboxes``)
        toloka_env: ``local`` (a local Toloka and simulated crowd), ``sandbox``, ``production`` or an API URL
        token_env: the environment variable holding the Toloka token (real Toloka)
        s3_bucket, s3_prefix, s3_endpoint_url, url_mode: where Upload Images puts the images (real Toloka)
        mode, overlap, poll_seconds, budget, config_dir, project_key: the flow's params of those names (budget:
            the flow's cap on Toloka unless given; none on the local Toloka, whose money is play money)
        aggregation_method: the flow's ``method`` (FiftyOne keeps ``method`` for the backend's name)
        flow_params: further flow params, ``{key: value}``
        min_score: the lowest score kept in the label field
        workers_field: the field of the workers' raw boxes (default ``<label_field>_workers``)
        review_prefix: prefix of the risk fields (default none: ``risk``, ``expected_missed``, ...)
        truth_field: a Detections field the local crowd draws from (a rehearsal)
        workers, verification_workers, speed, seed: the local crowd
        wait: run the flow before ``annotate`` returns (else in the background)
    """

    def __init__(self, name: str, label_schema: dict[str, Any] | None, media_field: str = "filepath",
                 work_dir: str | None = None, toloka_env: str = flow_job.LOCAL, token_env: str = "toloka_token",
                 s3_bucket: str | None = None, s3_prefix: str = "fiftyone/", s3_endpoint_url: str | None = None,
                 url_mode: str | None = None, mode: str = "overlap", overlap: int = 3,
                 aggregation_method: str = "lean_em",
                 poll_seconds: float | None = None, budget: str | None = None, config_dir: str | None = None,
                 project_key: str | None = None, flow_params: dict[str, str] | None = None,
                 min_score: float = 0.5, workers_field: str | None = None, review_prefix: str = "",
                 truth_field: str | None = None, workers: int = 40, verification_workers: int | None = None,
                 speed: float = 200.0, seed: int = 7, wait: bool = True, **kwargs: Any) -> None:
        super().__init__(name, label_schema, media_field=media_field, **kwargs)
        self.work_dir = work_dir
        self.toloka_env = toloka_env
        self.token_env = token_env
        self.s3_bucket = s3_bucket
        self.s3_prefix = s3_prefix
        self.s3_endpoint_url = s3_endpoint_url
        self.url_mode = url_mode
        self.mode = mode
        self.overlap = overlap
        self.aggregation_method = aggregation_method
        self.poll_seconds = poll_seconds
        self.budget = budget
        self.config_dir = config_dir
        self.project_key = project_key
        self.flow_params = dict(flow_params or {})
        self.min_score = min_score
        self.workers_field = workers_field
        self.review_prefix = review_prefix
        self.truth_field = truth_field
        self.workers = workers
        self.verification_workers = verification_workers
        self.speed = speed
        self.seed = seed
        self.wait = wait


def _label_id(*parts: str) -> str:
    """A stable ObjectId for a downloaded label: a second load merges into the same labels, not new ones."""
    return str(ObjectId(hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]))


def _relative(box: dict[str, Any], width: float, height: float) -> list[float]:
    return [box["x"] / width, box["y"] / height, box["w"] / width, box["h"] / height]


class CrowdboxesBackend(foua.AnnotationBackend):
    """Runs the crowdboxes flow on the samples (see the module docstring)."""

    @property
    def supported_media_types(self) -> list[str]:
        return [fom.IMAGE]

    @property
    def supported_label_types(self) -> list[str]:
        return ["detections"]

    @property
    def supported_scalar_types(self) -> list[Any]:
        return []

    @property
    def supported_attr_types(self) -> list[str]:
        return ["text"]

    @property
    def supports_keyframes(self) -> bool:
        return False

    @property
    def supports_video_sample_fields(self) -> bool:
        return False

    @property
    def requires_label_schema(self) -> bool:
        return True

    def recommend_attr_tool(self, name: str, value: Any) -> dict[str, str]:
        return {"type": "text"}

    def requires_attr_values(self, attr_type: str) -> bool:
        return False

    def _label_field(self) -> tuple[str, dict[str, Any]]:
        detections = [(f, i) for f, i in self.config.label_schema.items() if i.get("type") == "detections"]
        if len(detections) != 1:
            raise ValueError(f"the {self.config.name} backend annotates one Detections field at a time, "
                             f"not {sorted(self.config.label_schema)}")
        return detections[0]

    def job_dir(self, samples: Any, anno_key: str) -> Path:
        """The run's job folder: ``<work_dir>/<dataset id>-<anno_key>``."""
        work_dir = self.config.work_dir or os.path.join(fo.config.default_dataset_dir, "crowdboxes")
        return Path(work_dir).expanduser().resolve() / f"{samples._root_dataset._doc.id}-{anno_key}"

    def upload_annotations(self, samples: Any, anno_key: str, launch_editor: bool = False) -> Any:
        """Stage the images, save the run's results (so a failed flow can be run again), extend the label
        schema by the workers' and the risk fields, and run the flow (see the module docstring)."""
        config = self.config
        label_field, label_info = self._label_field()
        classes = list(label_info.get("classes") or [])
        if not classes or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"the {config.name} backend needs `classes`, a list of class names (got {classes!r})")
        if config.toloka_env != flow_job.LOCAL and not config.s3_bucket:
            raise ValueError(f"toloka_env {config.toloka_env!r}: give s3_bucket, the bucket Toloka's workers load "
                             "the images from")
        workers_field = config.workers_field or f"{label_field}_workers"
        for field in (label_field, workers_field):
            if samples.has_field(field) and samples.count(f"{field}.detections"):
                raise ValueError(f"field {field!r} already has labels; the crowd draws from scratch: annotate "
                                 "into a new field")
        job_dir = self.job_dir(samples, anno_key)
        if job_dir.exists():
            raise ValueError(f"{job_dir} exists: an earlier run of {anno_key!r}; load it, or delete it first")
        ids, paths = samples.values(["id", config.media_field])
        truth = None
        if config.truth_field:
            truth = {sid: [(d.label, *d.bounding_box) for d in (labels.detections if labels else [])]
                     for sid, labels in zip(ids, samples.values(config.truth_field))}
        settings = flow_job.JobSettings(
            project_key=config.project_key or f"fo-{samples._root_dataset._doc.id}-{anno_key}",
            toloka_env=config.toloka_env, token_env=config.token_env, s3_bucket=config.s3_bucket,
            s3_prefix=config.s3_prefix, s3_endpoint_url=config.s3_endpoint_url, url_mode=config.url_mode,
            mode=config.mode, overlap=int(config.overlap), method=config.aggregation_method,
            poll_seconds=config.poll_seconds, budget=None if config.budget is None else str(config.budget),
            config_dir=config.config_dir, flow_params=dict(config.flow_params),
            workers=int(config.workers), verification_workers=config.verification_workers,
            speed=float(config.speed), seed=int(config.seed))
        try:
            staged = flow_job.prepare_job(job_dir, settings, classes, list(zip(ids, paths)), truth)
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)  # nothing half-staged blocks the next try
            raise
        results = CrowdboxesAnnotationResults(samples, config, anno_key, {}, str(job_dir), staged, label_field,
                                              workers_field, backend=self)
        # The workers' boxes and the risk are loaded like the label field, by FiftyOne's own merge; the
        # attributes named here are the ones a second load_annotations updates on labels it loaded before.
        label_info.setdefault("attributes", {}).update({name: {"type": "text"} for name in ("confidence", "support")})
        config.label_schema[workers_field] = {
            "type": "detections", "classes": classes, "existing_field": samples.has_field(workers_field),
            "attributes": {name: {"type": "text"} for name in ("worker_id", "round", "status")}}
        for name in REVIEW_FIELDS:
            config.label_schema[config.review_prefix + name] = {"type": "scalar", "classes": [], "attributes": {},
                                                               "existing_field": False}
        self.update_run_config(samples, anno_key, config)
        self.save_run_results(samples, anno_key, results)
        results.run_flow(wait=bool(config.wait))
        if launch_editor:
            results.launch_editor()
        return results

    def cleanup(self, samples: Any, key: str) -> None:
        """``dataset.delete_annotation_run(key)``: delete the run's job folder (the Toloka projects and pools
        stay on Toloka)."""
        shutil.rmtree(self.job_dir(samples, key), ignore_errors=True)

    def download_annotations(self, results: Any) -> dict[str, Any]:
        """The job's outputs as FiftyOne's results dict: ``{field: {"detections": {sample id: {label id:
        Detection}}}}`` for the label and workers' fields, ``{field: {"scalar": {sample id: value}}}`` for the
        risk fields. CrowdboxesError while the flow runs or after it failed."""
        job_dir = Path(results.job_dir)
        status = flow_job.job_status(job_dir)
        if status["status"] != "succeeded":
            raise CrowdboxesError(f"annotation run {results.key!r}: the flow has status {status['status']}"
                                  f"{': ' + status['error'] if status.get('error') else ''}; see "
                                  f"{job_dir / flow_job.FLOW_LOG}")
        outputs, rejected = flow_job.read_outputs(job_dir)
        label_field, workers_field = results.label_field, results.workers_field
        boxes: dict[str, dict[str, Any]] = {}
        workers: dict[str, dict[str, Any]] = {}
        review: dict[str, dict[str, float]] = {self.config.review_prefix + n: {} for n in REVIEW_FIELDS}
        for file_name, sample_ids in results.staged.items():
            image = outputs.get(file_name)
            if image is None:
                continue
            for sid in sample_ids:
                boxes[sid] = {}
                for k, b in enumerate(box for box in image.boxes if box["score"] >= float(self.config.min_score)):
                    label = fol.Detection(label=b["label"], bounding_box=_relative(b, image.width, image.height),
                                          confidence=b["score"], support=b["support"])
                    label.id = _label_id(results.key, label_field, sid, str(k))
                    boxes[sid][label.id] = label
                workers[sid] = {}
                for k, w in enumerate(image.workers):
                    label = fol.Detection(label=w["label"], bounding_box=_relative(w, image.width, image.height),
                                          worker_id=w["worker_id"], round=w["round"], status=w["status"])
                    label.id = _label_id(results.key, workers_field, sid, str(k))
                    workers[sid][label.id] = label
                for name, value in image.review.items():
                    review[self.config.review_prefix + name][sid] = value
        if rejected:
            refused = sum(len(results.staged.get(name, [])) for name in rejected)
            first = next(iter(rejected.items()))
            logger.warning("%d sample(s) got no boxes: Upload Images refused their images (%s: %s)",
                           refused, first[0], first[1])
        annotations: dict[str, Any] = {label_field: {"detections": boxes}, workers_field: {"detections": workers}}
        annotations.update({name: {"scalar": values} for name, values in review.items()})
        return annotations


class CrowdboxesAnnotationResults(foua.AnnotationResults):
    """A crowdboxes run: its job folder and which staged file holds which samples' image."""

    def __init__(self, samples: Any, config: CrowdboxesBackendConfig, anno_key: str, id_map: dict[str, Any],
                 job_dir: str, staged: dict[str, list[str]], label_field: str, workers_field: str,
                 backend: CrowdboxesBackend | None = None) -> None:
        super().__init__(samples, config, anno_key, id_map, backend=backend)
        self.job_dir = job_dir
        self.staged = staged
        self.label_field = label_field
        self.workers_field = workers_field

    def status(self) -> dict[str, Any]:
        """The flow's status, :func:`flow_job.job_status`: ``{"status": "not started"}`` before the first run,
        else ``status`` (starting | running | succeeded | failed, or stopped when its process died without a
        word), ``error`` (the failure's one line), ``pid``, ``time`` and, while starting, ``parent_pid``."""
        return flow_job.job_status(Path(self.job_dir))

    def run_flow(self, wait: bool = True) -> int | None:
        """Run (again) the job's flow; with ``wait=False`` in the background, returning its pid. A re-run
        finds the same Toloka projects and pools by ``project_key`` and uploads nothing twice; while a run is
        starting or running, another is refused in one line."""
        return flow_job.start_job(Path(self.job_dir), wait=wait)

    def launch_editor(self) -> None:
        """Open the run's report.html (Export's page of the riskiest images, the workers and the cost)."""
        try:
            report = REPORT.path(flow_job.task_output(Path(self.job_dir), "export"))
        except CrowdboxesError:
            report = None
        if report is None or not report.is_file():
            logger.warning("annotation run %r has no report.html yet", self.key)
            return
        webbrowser.open(report.as_uri())

    def cleanup(self) -> None:
        """Delete the job folder (staged images, runs). The Toloka projects and pools stay on Toloka."""
        shutil.rmtree(self.job_dir, ignore_errors=True)

    @classmethod
    def _from_dict(cls, d: dict[str, Any], samples: Any, config: CrowdboxesBackendConfig,
                   anno_key: str) -> CrowdboxesAnnotationResults:
        return cls(samples, config, anno_key, d["id_map"], d["job_dir"], d["staged"], d["label_field"],
                   d["workers_field"])
