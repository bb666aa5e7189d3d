"""Generate a folder of synthetic scenes plus their ground truth (COCO JSON and CSV).

Every scene draws from its own random generator seeded with ``(seed, index)``, so the output is
the same byte for byte whatever the number of worker processes, and scene ``i`` does not depend on
how many scenes were asked for. Which scenes have no sign is decided the same way: scene ``i`` is
empty when ``floor((i + 1) * share + u) > floor(i * share + u)`` with ``u`` fixed by the seed, which
spreads exactly ``~count * share`` empty scenes evenly.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crowdboxes.classes import CLASS_NAMES, class_by_name, coco_categories
from crowdboxes.errors import CrowdboxesError
from crowdboxes.files import atomic_path
from crowdboxes.sim.scene import OCCLUDED_BELOW, SIGNS_PER_IMAGE_WEIGHTS, SceneSpec, render_scene
from crowdboxes.evaluation.truth import sha256_bytes, write_coco

TRUTH_JSON = "truth.coco.json"
TRUTH_CSV = "truth.csv"
MIN_SIDE = 128
_SCENE_NAME = re.compile(r"^scene_\d+\.jpg$")


def parse_class_weights(text: str | None) -> dict[str, float]:
    """``"stop=2,yield=1"`` -> ``{"stop": 2.0, "yield": 1.0}``; classes not named get weight 0.

    ``None`` or ``""`` means every class with weight 1.
    """
    if not text or not text.strip():
        return {name: 1.0 for name in CLASS_NAMES}
    weights: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            class_by_name(name)
        except ValueError as exc:
            raise CrowdboxesError(f"--classes: {exc}") from None
        try:
            weight = float(value) if sep else 1.0
        except ValueError:
            raise CrowdboxesError(f"--classes: weight {value.strip()!r} of {name!r} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise CrowdboxesError(f"--classes: weight {value.strip()!r} of {name!r} must be a number >= 0")
        if name in weights:
            raise CrowdboxesError(f"--classes: {name!r} is given twice")
        weights[name] = weight
    if sum(weights.values()) <= 0:
        raise CrowdboxesError(f"--classes {text!r}: at least one class needs a weight > 0")
    return {name: weights.get(name, 0.0) for name in CLASS_NAMES}


@dataclass(frozen=True)
class SynthOptions:
    count: int
    seed: int
    width: int = 800
    height: int = 600
    weights: tuple[tuple[str, float], ...] = tuple((n, 1.0) for n in CLASS_NAMES)
    empty_share: float = 0.05

    def check(self) -> None:
        if self.count < 0:
            raise CrowdboxesError(f"--count {self.count}: must be 0 or more")
        if self.seed < 0:
            raise CrowdboxesError(f"--seed {self.seed}: must be 0 or more")
        if self.width < MIN_SIDE or self.height < MIN_SIDE:
            raise CrowdboxesError(f"--width/--height {self.width}x{self.height}: each side must be at least {MIN_SIDE} px")
        if not 0.0 <= self.empty_share <= 1.0:
            raise CrowdboxesError(f"--empty-share {self.empty_share}: must be between 0 and 1")


def scene_file_name(index: int, count: int) -> str:
    return f"scene_{index:0{max(5, len(str(max(count - 1, 0))))}d}.jpg"


def scene_spec(options: SynthOptions, index: int) -> tuple[SceneSpec, np.random.Generator]:
    """What scene ``index`` contains, and the generator that then draws it."""
    rng = np.random.default_rng([options.seed, index])
    offset = np.random.default_rng([options.seed, 2**32 - 1]).random()
    share = options.empty_share
    empty = math.floor((index + 1) * share + offset) > math.floor(index * share + offset)
    labels: list[str] = []
    if not empty:
        names = [n for n, _ in options.weights]
        p = np.array([w for _, w in options.weights], dtype=np.float64)
        n = int(rng.choice(np.arange(1, len(SIGNS_PER_IMAGE_WEIGHTS) + 1),
                           p=SIGNS_PER_IMAGE_WEIGHTS / SIGNS_PER_IMAGE_WEIGHTS.sum()))
        labels = [str(x) for x in rng.choice(names, size=n, p=p / p.sum())]
    return SceneSpec(index, options.width, options.height, labels), rng


def _render_to_file(job: tuple[SynthOptions, int, str]) -> dict:
    options, index, folder = job
    spec, rng = scene_spec(options, index)
    data, signs = render_scene(spec, rng)
    name = scene_file_name(index, options.count)
    with atomic_path(Path(folder) / name) as tmp:
        tmp.write_bytes(data)
    return {
        "image": {"id": index + 1, "file_name": name, "width": spec.width, "height": spec.height,
                  "sha256": sha256_bytes(data)},
        "signs": [{"label": s.label, "bbox": [s.x, s.y, s.w, s.h], "visible": s.visible,
                   "occluder": s.occluder} for s in signs],
    }


def generate(out: str | os.PathLike, options: SynthOptions, jobs: int | None = None) -> dict:
    """Write ``options.count`` scenes into ``out`` with ``truth.coco.json`` and ``truth.csv``.

    The truth files are written last, so their presence means the folder is complete. Scenes left
    from an earlier, larger run (``scene_*.jpg`` not produced now) are removed so the folder and its
    truth agree. Returns the COCO dict.
    """
    options.check()
    folder = _writable_folder(out)
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    work = [(options, i, str(folder)) for i in range(options.count)]
    if jobs == 1 or options.count < 4:
        results = [_render_to_file(job) for job in work]
    else:
        jobs = min(jobs, options.count)
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = pool.map(_render_to_file, work, chunksize=max(1, min(16, options.count // (jobs * 4))))

    wanted = {r["image"]["file_name"] for r in results}
    for stale in folder.iterdir():
        if _SCENE_NAME.match(stale.name) and stale.name not in wanted:
            stale.unlink()

    images: list[dict] = []
    annotations: list[dict] = []
    rows: list[tuple] = []
    for result in results:
        image = result["image"]
        images.append(image)
        for sign in result["signs"]:
            x, y, w, h = sign["bbox"]
            annotations.append({
                "id": len(annotations) + 1, "image_id": image["id"],
                "category_id": class_by_name(sign["label"]).id, "bbox": [x, y, w, h], "area": w * h,
                "iscrowd": 0, "occluded": sign["visible"] < OCCLUDED_BELOW, "visible": sign["visible"],
                "occluder": sign["occluder"],
            })
            rows.append((image["file_name"], sign["label"], x, y, w, h))
    coco = {
        "info": {"description": "crowdboxes synthetic road-sign scenes", "seed": options.seed,
                 "count": options.count, "width": options.width, "height": options.height,
                 "class_weights": dict(options.weights), "empty_share": options.empty_share},
        "images": images, "annotations": annotations, "categories": coco_categories(),
    }
    with atomic_path(folder / TRUTH_CSV) as tmp:
        pd.DataFrame(rows, columns=["file_name", "label", "x", "y", "w", "h"]).to_csv(tmp, index=False)
    write_coco(coco, folder / TRUTH_JSON)
    return coco


def _writable_folder(out) -> Path:
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CrowdboxesError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise CrowdboxesError(f"output folder {folder} is not writable")
    return folder


def summary(coco: dict, seconds: float) -> str:
    n = len(coco["images"])
    with_signs = len({a["image_id"] for a in coco["annotations"]})
    occluded = sum(1 for a in coco["annotations"] if a.get("occluded"))
    return (f"wrote {n} scenes ({len(coco['annotations'])} signs, {occluded} partly hidden; "
            f"{n - with_signs} scenes without signs) in {seconds:.1f} s")


def timed_generate(out, options: SynthOptions, jobs: int | None = None) -> tuple[dict, float]:
    start = time.perf_counter()
    coco = generate(out, options, jobs)
    return coco, time.perf_counter() - start
