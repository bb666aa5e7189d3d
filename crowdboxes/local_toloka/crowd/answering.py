"""The online crowd: a worker's ``output_values`` for one task, from the project's task spec and the truth.

:meth:`Crowd.solve` reads the project's spec (:func:`.spec.task_model`), finds the task's image (the first
input that loads as an image, whatever its name), and answers by the kind of task:

* **drawing** (a ``field.image-annotation`` output): the drawing kernel (:func:`.boxes.draw_boxes`) on the
  image's true boxes, written in the field's shape format, with labels only when the view declares labels
  (truth class -> view label: the ``label_map`` given at start, else equal value, else value or label text
  equal ignoring case, spaces, ``_`` and ``-``; a class that maps to nothing gets a random view label and one
  log line). A ``json`` output of a task with an image and no view (classic markup, or no spec at all) is
  drawn the same way with the truth's class names as labels, as Toloka's own image-annotation output.
* **judgement** (shapes shown from an input, a choice asked): the shapes are judged against the truth
  (:func:`.judging.judge_outlines`); the option meaning "correct" comes from ``judgement_options``
  (``{"correct": value, "incorrect": value}``) or from common option values/labels (OK/BAD, yes/no,
  true/false, correct/incorrect, good/bad, 1/0). A second choice whose options name the reasons
  (:data:`.judging.VERDICT_REASONS`) gets the reason.
* **per-box check** (one shape shown, a choice whose options name yes / no sign / loose / wrong class):
  :mod:`.checking`; tried before the judgement, which it is not when the options are OK/BAD.
* **missed signs** (a drawing whose view also shows shapes from an input): only the signs the shown shapes
  do not cover are drawn (:func:`.adding.draw_additions`).
* **choice, text, link, generic**: from the truth when it covers the task (:mod:`.truth`: image-level
  ``labels``/``label``/``text``/``link``, or a ``tasks`` entry), with the worker's ``class_accuracy`` for
  choices (a wrong answer is uniform over the other options), typos in texts (careful ~1 % of characters,
  sloppy ~5 %) and a plausible wrong URL for links; else a valid but uninformed answer, and the log says once
  per project that it has no truth.

Every worker kind keeps its meaning for every field: ``spammer_empty`` answers a constant (the first option,
no optional text, an empty drawing), ``spammer_random`` answers uniformly at random, ``verifier_always_ok``
says "correct" to every judgement. Whatever the input (an image that does not load, no image, a view
component the crowd does not know, a spec it cannot read) the answer is valid for the spec, never None, and
the trouble is logged once per project.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
import string
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from crowdboxes.local_toloka.crowd import images as _images
from crowdboxes.local_toloka.crowd import values
from crowdboxes.local_toloka.crowd.adding import draw_additions
from crowdboxes.local_toloka.crowd.boxes import _as_truth, draw_boxes, normalised_rects, to_image_annotation
from crowdboxes.local_toloka.crowd.checking import answer_check, check_fields
from crowdboxes.local_toloka.crowd.choices import MISSING as _MISSING, Labels as _Labels, norm as _norm
from crowdboxes.local_toloka.crowd.choices import options_of as _options
from crowdboxes.local_toloka.crowd.classes import CLASS_NAMES
from crowdboxes.local_toloka.crowd.judging import VERDICT_REASONS, judge_outlines, parse_shapes, shape_list
from crowdboxes.local_toloka.crowd.spec import OutputField, TaskModel, image_inputs, task_model
from crowdboxes.local_toloka.crowd.truth import TruthHit, as_truth
from crowdboxes.local_toloka.crowd.viewrefs import shapes_required as _shapes_required
from crowdboxes.local_toloka.crowd.viewrefs import with_input_options as _with_input_options
from crowdboxes.local_toloka.crowd.workers import WorkerProfile


LOGGER = logging.getLogger("crowdboxes.local_toloka")
ImageHit = tuple[str, str, tuple[str, int, int]]
"""An image a task shows: ``(input name, url, (sha256, width, height))``."""

# The spec a task is answered by when the caller gives none (the scheduler before it knew projects, tests):
# a verification when an input holds shapes (``outlines`` in our flow), else a detection with a ``result`` json.
LEGACY_DETECTION_SPEC = {"input_spec": {"image": {"type": "url", "required": True}},
                         "output_spec": {"result": {"type": "json", "required": True}}}
LEGACY_VERIFICATION_SPEC = {
    "input_spec": {"image": {"type": "url", "required": True}, "outlines": {"type": "json", "required": True}},
    "output_spec": {"verdict": {"type": "string", "required": True, "allowed_values": ["OK", "BAD"]},
                    "reason": {"type": "string", "required": False, "allowed_values": list(VERDICT_REASONS)}}}

# Option pairs that say "correct" / "incorrect", compared ignoring case, spaces, "_" and "-".
VERDICT_PAIRS = (("ok", "bad"), ("yes", "no"), ("true", "false"), ("correct", "incorrect"), ("good", "bad"),
                 ("1", "0"))
TYPO_RATE = {"careful": 0.01, "slow": 0.01, "small_misser": 0.01, "sloppy": 0.05, "verifier_always_ok": 0.05}
_IMAGE_NAME_RE = re.compile(r"image|img|photo|picture|pic", re.IGNORECASE)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")


def _legacy_spec(task_input: dict) -> dict:
    shown = any(shape_list(v) is not None for k, v in task_input.items() if k != "image")
    return LEGACY_VERIFICATION_SPEC if shown or "outlines" in task_input else LEGACY_DETECTION_SPEC


def _stable_int(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


class Crowd:
    """Answers tasks for the local Toloka.

    ``truth``: a COCO truth dict (format in :mod:`.truth`), a :class:`.truth.Truth`, None (no truth: every
    image is "nothing here"), or any object with a ``coco`` dict. ``label_map``: truth class -> view label
    value. ``judgement_options``: ``{"correct": value, "incorrect": value}`` of judgement tasks. ``log``: a
    callable taking one line (default: the ``crowdboxes.local_toloka`` logger, WARNING).

    Randomness is derived from ``(seed, worker, task input, n-th time this worker sees it)``, so answers do
    not depend on the order in which the scheduler hands out tasks.
    """

    FETCH_TIMEOUT = _images.FETCH_TIMEOUT
    CACHE_SIZE = _images.CACHE_SIZE

    def __init__(self, truth: Any, seed: int = 0, *, label_map: Mapping | None = None,
                 judgement_options: Mapping | None = None, log: Callable[[str], None] | None = None) -> None:
        self.truth = as_truth(truth)
        self.seed = int(seed)
        self.label_map = {str(k): v for k, v in (label_map or {}).items()}
        if judgement_options is not None and not {"correct", "incorrect"} <= set(judgement_options):
            raise ValueError(f"judgement_options {dict(judgement_options)!r}: need keys 'correct' and 'incorrect'")
        self.judgement_options = dict(judgement_options) if judgement_options is not None else None
        self.log = log or LOGGER.warning
        self._images = _images.ImageCache(self.CACHE_SIZE)
        self._seen: dict[tuple, int] = {}
        self._noted: set = set()
        self._lock = threading.Lock()

    # -- image loading
    def _fetch_bytes(self, url: str) -> bytes | None:
        return _images.fetch_bytes(url, self.FETCH_TIMEOUT)

    def image_info(self, url: str) -> tuple[str, int, int] | None:
        """``(sha256, width, height)`` of the image at ``url``; None if it does not load or decode.

        Successful loads are cached per URL (a failure is retried next time: it may be transient).
        """
        info = self._images.get(url)
        if info is not None:
            return info
        info = _images.decode(self._fetch_bytes(url))
        if info is not None:
            self._images.put(url, info)
        return info

    def _truth_for(self, url: str, sha256: str) -> TruthHit | None:
        """``(width, height, rows)`` of the truth's image for this URL/content, or None."""
        return self.truth.lookup(sha256=sha256, file_name=url)

    def _rng(self, profile: WorkerProfile, task_input: dict) -> np.random.Generator:
        key = (profile.worker_id, json.dumps(task_input, sort_keys=True, default=str))
        with self._lock:
            nth = self._seen.get(key, 0)
            self._seen[key] = nth + 1
        return np.random.default_rng([self.seed, _stable_int(*key), nth])

    # -- logging, once per project and topic
    def _note(self, project: object, topic: object, message: str) -> None:
        with self._lock:
            if (project, topic) in self._noted:
                return
            self._noted.add((project, topic))
        try:
            self.log(message)
        except Exception:  # a broken log sink must not stop the crowd
            pass

    # -- answering
    def solve(self, profile: WorkerProfile, task_input: dict, task_spec: dict | None = None, *,
              project_id: Any = None) -> dict:
        """``output_values`` of ``profile`` for one task of a project with ``task_spec``.

        Without a spec the task is read the old way: a verification (``verdict``/``reason``) if an input
        holds shapes (``outlines``), else a detection (``result``: rectangles with labels). Never raises; never None.
        """
        task_input = task_input if isinstance(task_input, dict) else {}
        if task_spec is None:
            task_spec = _legacy_spec(task_input)
        model = _with_input_options(task_model(task_spec), task_spec, task_input)
        project = project_id if project_id is not None else _stable_int(json.dumps(task_spec, sort_keys=True,
                                                                                   default=str)) % 10 ** 6
        name = f"project {project_id}" if project_id is not None else f"a project (spec #{project})"
        rng = self._rng(profile, task_input)
        try:
            return self._answer(profile, task_input, model, rng, project, name, _shapes_required(task_spec))
        except Exception as exc:  # the crowd never raises into the scheduler
            self._note(project, "error", f"local Toloka crowd: {name}: cannot answer its tasks "
                                         f"({type(exc).__name__}: {exc}); answers are uninformed")
            try:
                return values.complete(model.outputs, {}, rng)
            except Exception:
                return {}

    def _answer(self, profile: WorkerProfile, task_input: dict[str, Any], model: TaskModel, rng: np.random.Generator,
                project: object, name: str, needs_shape: frozenset[str] = frozenset()) -> dict:
        if model.unknown_components:
            self._note(project, "unknown", f"local Toloka crowd: {name}: view components it does not know: "
                                           f"{', '.join(model.unknown_components)}; "
                                           f"their outputs get uninformed answers")
        if not model.outputs:
            self._note(project, "outputs", f"local Toloka crowd: {name}: no output fields to answer"
                                           + (f" ({'; '.join(model.problems)})" if model.problems else ""))
            return {}
        image = self._find_image(model, task_input)
        kind = model.kind
        if kind == "drawing":
            assert model.annotation is not None  # spec.task_model: a drawing task is one with an annotation field
            shown = self._shown_shapes(model, task_input) if model.shown_shapes_inputs else None
            return self._draw(profile, model, model.annotation, image, rng, project, name, labelled=None,
                              needs_shape=model.annotation.name in needs_shape, shown=shown)
        if kind == "generic" and (image is not None or image_inputs(model.input_spec, task_input)):
            field = self._json_drawing_field(model)
            if field is not None:
                return self._draw(profile, model, field, image, rng, project, name, labelled=True)
        if kind == "judgement" or (kind in ("choice", "generic") and self._shown_shapes(model, task_input)):
            answer = self._check(profile, model, task_input, image, rng, project, name)
            if answer is None:
                answer = self._judge(profile, model, task_input, image, rng, project, name, kind == "judgement")
            if answer is not None:
                return answer
        return self._from_truth(profile, model, task_input, image, rng, project, name)

    def _find_image(self, model: TaskModel, task_input: dict) -> ImageHit | None:
        """``(input name, url, (sha256, w, h))`` of the first input that loads as an image, or None."""
        names = image_inputs(model.input_spec, task_input)
        first = model.annotation.image_input if model.annotation is not None else None

        # fetch the likeliest images first (a link to a web page loads, but is no image)
        def likely(name: str) -> tuple[bool, bool, bool]:
            value = str(task_input.get(name) or "").split("?", 1)[0].split("#", 1)[0].lower()
            return (name != first, not _IMAGE_NAME_RE.search(name), not value.endswith(_IMAGE_SUFFIXES))

        names = sorted(names, key=likely)
        for name in names:
            url = task_input.get(name)
            if not isinstance(url, str) or not url.strip():
                continue
            info = self.image_info(url.strip())
            if info is not None:
                return name, url.strip(), info
        return None

    @staticmethod
    def _json_drawing_field(model: TaskModel) -> OutputField | None:
        """A ``json`` output with no view component (classic markup / no spec) to draw into, if any."""
        fields = [f for f in model.outputs if f.type == "json" and f.component is None]
        named = [f for f in fields if f.name == "result"]
        candidates = named or fields
        return candidates[0] if candidates else None

    # -- drawing
    def _draw(self, profile: WorkerProfile, model: TaskModel, field: OutputField, image: ImageHit | None,
              rng: np.random.Generator, project: object, name: str, labelled: bool | None,
              needs_shape: bool = False, shown: tuple[str, list] | None = None) -> dict:
        drawn = []
        width = height = 1.0
        rows = None
        if image is None:
            self._note(project, "noimage", f"local Toloka crowd: {name}: a task's image does not load; "
                                           f"its workers answer without seeing it")
        else:
            _, url, (sha256, img_w, img_h) = image
            width, height = float(img_w), float(img_h)
            found = self._truth_for(url, sha256)
            if found is None:
                self._no_truth(project, name)
            else:
                width, height, rows = found
                drawn = draw_boxes(profile, rows, width, height, rng) if shown is None else draw_additions(
                    profile, rows, self._outlines(model, shown[1], rows, width, height), width, height, rng)
        if not drawn and needs_shape:  # the view will not take an empty drawing: the worker draws something
            drawn = _forced_box(profile, rows, width, height, rng)
        if labelled:  # no view: rectangles with the truth's class names, as before
            answer = {field.name: to_image_annotation(drawn, width, height)}
        else:
            if field.labels:
                labels = _Labels(field.labels, self.label_map)
                truth_classes = set(self.truth.labels)
                boxes: list[tuple[Any, ...]] = []
                for box in drawn:
                    value = labels.find(box[4])
                    if value is _MISSING:
                        value = labels.values[int(rng.integers(len(labels.values)))]
                        if box[4] in truth_classes:
                            self._note(project, ("class", box[4]),
                                       f"local Toloka crowd: {name}: truth class {box[4]!r} matches no label of "
                                       f"output {field.name!r} (give --label-map); workers pick a random label")
                    boxes.append((*box[:4], value))
            else:
                boxes = [box[:4] for box in drawn]
            rects = normalised_rects(boxes, width, height)
            answer = {field.name: values.shapes_to_annotation(rects, field, rng)}
        others = [f for f in model.outputs if f.name != field.name]
        if others:
            answer.update(self._fill(profile, others, {}, rng))
        return {f.name: answer[f.name] for f in model.outputs if f.name in answer}

    # -- judging
    def _shown_shapes(self, model: TaskModel, task_input: dict) -> tuple[str, list[dict[str, Any]]] | None:
        """``(input name, shapes)`` of the shapes shown to the worker, or None."""
        names = list(model.shown_shapes_inputs) + [n for n in task_input if n not in model.shown_shapes_inputs]
        for input_name in names:
            if input_name not in task_input:
                continue
            shapes = shape_list(task_input[input_name])
            if shapes is None:
                continue
            if shapes or input_name in model.shown_shapes_inputs:
                return input_name, shapes
        return None

    def _verdict_field(self, model: TaskModel) -> tuple[OutputField, Any, Any] | None:
        """``(field, correct value, incorrect value)`` of the question "is this right?", or None."""
        choices = [f for f in model.outputs if _options(f)]
        if self.judgement_options is not None:
            correct, incorrect = self.judgement_options["correct"], self.judgement_options["incorrect"]
            for f in choices:
                opts = _options(f)
                if correct in opts and incorrect in opts:
                    return f, correct, incorrect
            for f in choices:  # given as text ("true" for a boolean, a label for a value)
                found = [self._option_like(f, v) for v in (correct, incorrect)]
                if all(v is not _MISSING for v in found):
                    return f, found[0], found[1]
        for f in choices:
            for yes, no in VERDICT_PAIRS:
                found = [self._option_like(f, v) for v in (yes, no)]
                if all(v is not _MISSING for v in found) and found[0] != found[1]:
                    return f, found[0], found[1]
        return None

    @staticmethod
    def _option_like(field: OutputField, text: Any) -> Any:
        """The option of ``field`` whose value or label is ``text`` (loosely), or ``_MISSING``."""
        wanted = _norm(text)
        if field.options:
            for c in field.options:
                if _norm(c.value) == wanted:
                    return c.value
            for c in field.options:
                if c.label and _norm(c.label) == wanted:
                    return c.value
            return _MISSING
        if field.type == "boolean":
            return {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}.get(wanted, _MISSING)
        return _MISSING

    def _outlines(self, model: TaskModel, shapes: list, rows: Any, width: float, height: float) -> list[tuple]:
        """The shown ``shapes`` as pixel ``(x, y, w, h, truth class)`` (labels read back through the view's)."""
        label_of = None
        view_labels = next((f.labels for f in model.outputs if f.labels), ()) or model.shown_labels
        if view_labels:
            mapper, classes = _Labels(view_labels, self.label_map), self.truth.labels
            label_of = lambda value: mapper.back(value, classes)  # noqa: E731
        elif self.label_map:  # labels shown but not asked: read them back through the given map
            inverse = {str(v): k for k, v in self.label_map.items()}
            label_of = lambda value: inverse.get(str(value), value)  # noqa: E731
        return parse_shapes(shapes, width, height, true_boxes=rows, label_of=label_of)

    def _shown_on(self, model: TaskModel, shapes: list, image: ImageHit, project: object,
              name: str) -> tuple[list[tuple], Any, float, float]:
        """``(shown outlines, true rows, width, height)`` of a task showing ``shapes`` on ``image``."""
        _, url, (sha256, img_w, img_h) = image
        found = self._truth_for(url, sha256)
        rows: Any
        if found is None:
            self._no_truth(project, name)
            width, height, rows = float(img_w), float(img_h), []
        else:
            width, height, rows = found
        return self._outlines(model, shapes, rows, width, height), rows, width, height

    def _check(self, profile: WorkerProfile, model: TaskModel, task_input: dict[str, Any], image: ImageHit | None,
               rng: np.random.Generator, project: object, name: str) -> dict | None:
        """A per-box check (:mod:`.checking`), or None when the task is none (or shows nothing)."""
        fields = check_fields(model, self.truth.labels, self.label_map)
        shown = self._shown_shapes(model, task_input)
        if fields is None or shown is None or image is None:
            return None
        outlines, rows, width, height = self._shown_on(model, shown[1], image, project, name)
        true_xywh, true_labels, _ = _as_truth(rows)
        right = fields[2]
        answer = answer_check(profile, fields, outlines, true_xywh, true_labels,
                              _Labels(right.options, self.label_map) if right is not None else None, rng)
        rest = [f for f in model.outputs if f.name not in answer and (f is not right or f.required)]
        answer.update(self._fill(profile, rest, {}, rng) if rest else {})
        return {f.name: answer[f.name] for f in model.outputs if f.name in answer}

    def _judge(self, profile: WorkerProfile, model: TaskModel, task_input: dict[str, Any], image: ImageHit | None,
               rng: np.random.Generator, project: object, name: str, asked: bool) -> dict | None:
        shown = self._shown_shapes(model, task_input)
        verdict_field = self._verdict_field(model)
        if shown is None or verdict_field is None:
            if verdict_field is None and asked:
                self._note(project, "verdict", f"local Toloka crowd: {name}: cannot tell which option means "
                                               f"'correct' (give --judgement-options); answers are uninformed")
            return None
        field, correct, incorrect = verdict_field
        if image is None:
            self._note(project, "noimage", f"local Toloka crowd: {name}: a task's image does not load; "
                                           f"its workers answer without seeing it")
            return None
        outlines, rows, width, height = self._shown_on(model, shown[1], image, project, name)
        verdict, reason = judge_outlines(profile, outlines, rows, width, height, rng)
        answer = {field.name: correct if verdict == "OK" else incorrect}
        reason_field = next((f for f in model.outputs if f.name != field.name
                             and set(VERDICT_REASONS) & {str(v) for v in _options(f)}), None) or next(
            (f for f in model.outputs if f.name != field.name and "reason" in f.name.casefold()
             and f.type == "string" and not f.options), None)  # a free-text reason: the reason's name
        rest = [f for f in model.outputs if f.name not in answer and f is not reason_field]
        if rest:
            answer.update(self._fill(profile, rest, {}, rng, omit_optional_share=0.5))
        if reason_field is not None:
            if reason in _options(reason_field) or reason == "" or not reason_field.options:
                answer[reason_field.name] = reason  # "" with an OK, as the verification pool always had
            elif reason_field.required:
                answer[reason_field.name] = values.uninformed(reason_field, rng)
        return {f.name: answer[f.name] for f in model.outputs if f.name in answer}

    # -- choices, texts, links and anything else
    def _no_truth(self, project: object, name: str) -> None:
        self._note(project, "truth", f"{name} has no truth for its tasks; answers are uninformed")

    def _truth_values(self, model: TaskModel, task_input: dict, image: ImageHit | None) -> dict:
        """Truth per output field name for this task (empty if the truth does not cover it).

        From the image's record: ``labels[field]``, else ``label`` for a choice (else the class of the
        image's largest box, when it is one of the options), ``link``/``links`` for a link field, ``text``
        for a free-text field of a text task (or a required one); else from a matching ``tasks`` entry.
        """
        out = {}
        if image is not None:
            _, url, (sha256, _, _) = image
            record = self.truth.image(sha256=sha256, file_name=url)
            if record is not None:
                out = self._image_truth(model, record, self.truth.lookup(sha256=sha256, file_name=url))
        return out or dict(self.truth.task(task_input) or {})

    def _image_truth(self, model: TaskModel, record: dict, found: TruthHit | None) -> dict:
        out = {}
        labels = record.get("labels")
        per_field: dict[str, Any] = labels if isinstance(labels, dict) else {}
        links = record.get("links") if isinstance(record.get("links"), list) else (
            [record["link"]] if record.get("link") is not None else [])
        main_class = None
        if found is not None and len(found[2]):
            rows = found[2]
            main_class = str(rows["label"].iloc[int((rows["w"] * rows["h"]).to_numpy().argmax())])
        classes = list(dict.fromkeys(found[2]["label"].astype(str))) if found is not None else []
        for f in model.outputs:
            if f.name in per_field:
                out[f.name] = per_field[f.name]
            elif _multi(f) and f.options and (classes or record.get("label") is not None):
                mapper = _Labels(f.options, self.label_map)
                present = [c for c in classes if mapper.find(c) is not _MISSING]
                if present or record.get("label") is not None:
                    out[f.name] = present or [record["label"]]
            elif _options(f) and record.get("label") is not None:
                out[f.name] = record["label"]
            elif f.options and main_class is not None and \
                    _Labels(f.options, self.label_map).find(main_class) is not _MISSING:
                out[f.name] = main_class
            elif links and self._is_link(f, model):
                out[f.name] = links
            elif (record.get("text") is not None and f.item_type == "string" and not f.options
                  and (model.kind == "text" or f.required)):
                out[f.name] = record["text"]
        return out

    @staticmethod
    def _is_link(field: OutputField, model: TaskModel) -> bool:
        if getattr(field, "is_link", False):
            return True
        return field.item_type == "url" or (model.kind == "link" and field.type == "string" and not field.options)

    def _from_truth(self, profile: WorkerProfile, model: TaskModel, task_input: dict[str, Any], image: ImageHit | None,
                    rng: np.random.Generator, project: object, name: str) -> dict:
        truth = self._truth_values(model, task_input, image)
        if not truth:
            self._no_truth(project, name)
        wanted = {}
        for f in model.outputs:
            if f.name in truth:
                value = self._informed(profile, f, truth[f.name], model, rng, project, name)
                if value is not _MISSING:
                    wanted[f.name] = value
        return self._fill(profile, model.outputs, wanted, rng)

    def _informed(self, profile: WorkerProfile, field: OutputField, true_value: Any, model: TaskModel,
                  rng: np.random.Generator, project: object, name: str) -> Any:
        """What ``profile`` answers for ``field`` whose right answer is ``true_value``."""
        kind = getattr(profile, "kind", "careful")
        if kind in ("spammer_empty", "spammer_random"):
            return _MISSING  # spammers do not look: _fill gives their constant / random answer
        accuracy = float(getattr(profile, "class_accuracy", 0.9))
        options = _options(field)
        if options and _multi(field):
            wanted = true_value if isinstance(true_value, (list, tuple, set)) else [true_value]
            labels = _Labels(field.options, self.label_map)
            right = {labels.find(v) for v in wanted} - {_MISSING}
            if not right and wanted:
                self._note(project, ("class", str(wanted)),
                           f"local Toloka crowd: {name}: truth values {list(wanted)!r} are no options of output "
                           f"{field.name!r} (give --label-map); answers are uninformed")
                return _MISSING
            # each option ticked correctly with the worker's accuracy
            ticked = [o for o in options if (o in right) == (rng.random() < accuracy)]
            if field.component == "field.checkbox-group" and field.type == "json":
                return {str(o): o in ticked for o in options}
            return ticked
        if options:
            right = _Labels(field.options, self.label_map).find(true_value) if field.options else \
                self._option_like(field, true_value)
            if right is _MISSING:
                self._note(project, ("class", str(true_value)),
                           f"local Toloka crowd: {name}: truth value {true_value!r} is no option of output "
                           f"{field.name!r} (give --label-map); answers are uninformed")
                return _MISSING
            if rng.random() < accuracy or len(options) < 2:
                return right
            others = [o for o in options if o != right]
            return others[int(rng.integers(len(others)))]
        if self._is_link(field, model):
            links = true_value if isinstance(true_value, list) else [true_value]
            links = [str(x) for x in links if x]
            if links and rng.random() < accuracy:
                return links[int(rng.integers(len(links)))]
            return _plausible_url(rng)
        if field.item_type == "string" and isinstance(true_value, str):
            rate = TYPO_RATE.get(kind, 0.01 if accuracy >= 0.85 else 0.05)
            return _typos(true_value, rate, rng)
        if rng.random() < accuracy:
            return true_value
        return _MISSING

    def _fill(self, profile: WorkerProfile, outputs: Sequence[OutputField], wanted: dict, rng: np.random.Generator,
              omit_optional_share: float = 0.0) -> dict:
        """A valid answer for ``outputs``: ``wanted`` values where given, the rest as this worker would."""
        kind = getattr(profile, "kind", "careful")
        wanted = dict(wanted)
        if kind == "spammer_empty":
            for f in outputs:
                if f.name not in wanted:
                    constant = _constant(f)
                    if constant is not _MISSING:
                        wanted[f.name] = constant
        elif kind == "spammer_random":
            for f in outputs:
                if f.name not in wanted:
                    wanted[f.name] = values.uninformed(f, rng)
        answer = values.complete(outputs, wanted, rng, omit_optional_share=omit_optional_share)
        for f in outputs:  # a pasted link is a URL, even where the view's pattern would allow other text
            if f.name in answer and _link_field(f) and isinstance(answer[f.name], str) and not _URL_RE.match(
                    answer[f.name]):
                answer[f.name] = _as_url(f, answer[f.name], rng)
        return answer


_URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def _link_field(field: OutputField) -> bool:
    return bool(getattr(field, "is_link", False)) or (field.item_type == "url" and not field.options)


def _as_url(field: OutputField, value: str, rng: np.random.Generator) -> str:
    """A valid value of ``field`` that is also a URL (redrawn a few times), else ``value``."""
    for _ in range(40):
        candidate = values.uninformed(field, rng)
        if isinstance(candidate, str) and _URL_RE.match(candidate) and values.is_valid(field, candidate):
            return candidate
    return value


def _forced_box(profile: WorkerProfile, rows: Any, width: float, height: float,
                rng: np.random.Generator) -> list[tuple]:
    """What a worker draws when the view requires a shape and they saw nothing to draw: the most visible
    true object (drawn with their usual noise), else a random small box (what spammers draw anyway)."""
    if rows is not None and len(rows) and isinstance(profile, WorkerProfile) and profile.kind != "spammer_empty":
        largest = rows.iloc[[int((rows["w"] * rows["h"]).to_numpy().argmax())]]
        sure = attrs.evolve(profile, p_miss=0.0, p_miss_small=0.0, fp_rate=0.0, random_boxes=0.0)
        drawn = draw_boxes(sure, largest, width, height, rng)
        if drawn:
            return drawn[:1]
    from crowdboxes.local_toloka.crowd.boxes import _random_rects

    x, y, w, h = _random_rects(np.array([float(width)]), np.array([float(height)]), 0.8, rng)[0]
    label = str(rows["label"].iloc[0]) if rows is not None and len(rows) else CLASS_NAMES[
        int(rng.integers(len(CLASS_NAMES)))]
    return [(float(x), float(y), float(w), float(h), label)]


def _multi(field: OutputField) -> bool:
    """A field where the worker ticks any number of options (checkbox group, array of options)."""
    return field.component == "field.checkbox-group" or (field.type.startswith("array_") and bool(field.options))


def _constant(field: OutputField) -> Any:
    """What a worker who does not look answers: the first option, nothing optional, an empty drawing."""
    options = _options(field)
    if options:
        return options[0]
    if not field.required:
        return _MISSING
    if field.component == "field.image-annotation" or field.type == "json":
        return []
    if field.item_type in ("integer", "float"):
        return field.min_value if field.min_value is not None else 0
    if field.item_type == "string":
        return "-"
    return _MISSING


def _typos(text: str, rate: float, rng: np.random.Generator) -> str:
    """``text`` with about ``rate`` of its characters mistyped (replaced, dropped or doubled)."""
    if not text or rate <= 0:
        return text
    out = []
    letters = string.ascii_lowercase
    for ch, u, pick in zip(text, rng.random(len(text)), rng.integers(0, 3, len(text))):
        if u >= rate:
            out.append(ch)
        elif pick == 0:
            new = letters[int(rng.integers(len(letters)))]
            out.append(new.upper() if ch.isupper() else new)
        elif pick == 1:
            out.append(ch + ch)
        # pick == 2: dropped
    return "".join(out) or text


def _plausible_url(rng: np.random.Generator) -> str:
    word = "".join(string.ascii_lowercase[i] for i in rng.integers(0, 26, int(rng.integers(4, 10))))
    site = ("shop.example.com", "www.example.org", "market.example.net")[int(rng.integers(3))]
    return f"https://{site}/item/{word}-{int(rng.integers(1000, 99999))}"


def task_kind(task_spec: dict | None, task_input: dict) -> str:
    """The kind of work :meth:`Crowd.solve` does for this task: drawing, judgement, choice, text, link or
    generic (what the scheduler times it as, and whether verification-only workers take its pool)."""
    task_input = task_input if isinstance(task_input, dict) else {}
    if task_spec is None:
        task_spec = _legacy_spec(task_input)
    model = _with_input_options(task_model(task_spec), task_spec, task_input)
    kind = model.kind
    if kind == "generic" and image_inputs(model.input_spec, task_input) and Crowd._json_drawing_field(model):
        return "drawing"
    if kind in ("choice", "generic") and any(f for f in model.outputs if _options(f)):
        for name, value in task_input.items():
            if shape_list(value):
                return "judgement"
    return kind


def solve_accepts_spec(crowd: Any) -> tuple[bool, bool]:
    """Whether ``crowd.solve`` takes ``task_spec`` (and ``project_id``): injected test crowds may not."""
    try:
        params = inspect.signature(crowd.solve).parameters
    except (TypeError, ValueError):
        return False, False
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return ("task_spec" in params or var_kw), ("project_id" in params or var_kw)
