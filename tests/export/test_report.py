"""report.html: a self-contained page (no network reference, images inline, riskiest image first) that
renders in headless Chromium with every image loaded and no console error."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from crowdboxes.export.report import CHROMIUM, render_in_chromium, write_report

SECTIONS = ("cost", "quality", "calibration", "scores", "workers", "images")


def _case(folder: Path) -> dict[str, object]:
    """Three 200x100 images (one only reachable by an unreachable URL), two workers, a truth."""
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (100, 200, 3), dtype=np.uint8)).save(folder / name)
    images = pd.DataFrame({"image_id": ["ia", "ib", "ic"], "file_name": ["a.jpg", "b.jpg", "c.jpg"],
                           "url": ["", "", "http://127.0.0.1:9/c.jpg"], "width": [200, 200, 200],
                           "height": [100, 100, 100]})
    boxes = pd.DataFrame({"image_id": ["ia", "ia", "ib"], "label": ["stop", "stop", "yield"],
                          "x": [10.0, 120.0, 50.0], "y": [10.0, 20.0, 30.0], "w": [30.0, 20.0, 40.0],
                          "h": [30.0, 20.0, 40.0], "score": [0.95, 0.2, 0.7], "support": [2, 1, 2]})
    answers = pd.DataFrame({"assignment_id": ["1", "2", "3", "4"], "task_id": ["t"] * 4,
                            "image_id": ["ia", "ia", "ib", "ic"], "worker_id": ["w1", "w2", "w1", "w2"],
                            "status": ["ACCEPTED"] * 4, "submitted_at": [""] * 4,
                            "label": ["stop", "stop", "yield", None], "x": [11.0, 121.0, 50.0, None],
                            "y": [9.0, 20.0, 31.0, None], "w": [30.0, 20.0, 40.0, None],
                            "h": [31.0, 20.0, 39.0, None]})
    workers = pd.DataFrame({"worker_id": ["w1", "w2"], "answers": [2, 2], "skill": [0.9, 0.4],
                            "miss_rate": [0.1, 0.5], "fp_rate": [0.0, 0.6]})
    # ib is the riskiest: it must come first although images.csv lists ia first
    review = pd.DataFrame({"image_id": ["ia", "ib", "ic"], "file_name": ["a.jpg", "b.jpg", "c.jpg"],
                           "risk": [0.3, 0.8, 0.1], "expected_missed": [0.1, 0.5, 0.0],
                           "expected_spurious": [0.2, 0.3, 0.1], "n_boxes": [1, 1, 0],
                           "min_score": [0.95, 0.7, np.nan]})
    truth = pd.DataFrame({"file_name": ["a.jpg", "b.jpg"], "label": ["stop", "yield"], "x": [10.0, 50.0],
                          "y": [10.0, 30.0], "w": [30.0, 40.0], "h": [30.0, 40.0]})
    wait_summary = {"spent_usd": 0.3, "counts": {"accepted": 4, "rejected": 0}, "images_accepted": 3}
    return {"boxes": boxes, "images": images, "answers": answers, "workers": workers, "review": review,
            "truth": truth, "wait_summary": wait_summary, "banned": {"w2": "failed control"},
            "image_dir": folder}


def _write(tmp_path: Path) -> Path:
    def refuse(url: str) -> bytes:
        raise OSError(f"no network in this test: {url}")

    return write_report(tmp_path / "out" / "report.html", fetch=refuse, **_case(tmp_path))  # type: ignore[arg-type]


def test_report_is_self_contained_with_the_riskiest_image_first(tmp_path: Path) -> None:
    page = _write(tmp_path).read_text(encoding="utf-8")
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert not re.search(r"https?://", page), "no network reference at all"
    assert not re.search(r"<(link|script)\b", page)
    for section in SECTIONS:
        assert f'id="{section}"' in page
    order = re.findall(r'data-image-id="([^"]+)"', page)
    assert order == ["ib", "ia", "ic"]
    # the image behind an unreachable URL is a placeholder with a note, not a crash
    assert "fetching its URL failed (OSError)" in page
    # cost: $0.30 over 3 accepted images; w2's ban is shown
    assert "$0.30 in total, $0.1000 per image" in page
    assert "failed control" in page
    # the low-score candidate is dashed, the kept ones solid with their score
    assert page.count('stroke-dasharray="5 4"') == 1
    assert "stop 0.95" in page and "yield 0.70" in page


def test_report_without_truth_or_summary_says_so(tmp_path: Path) -> None:
    case = _case(tmp_path)
    path = write_report(tmp_path / "r.html", boxes=case["boxes"], images=case["images"],  # type: ignore[arg-type]
                        image_dir=tmp_path, fetch=None)
    page = path.read_text(encoding="utf-8")
    assert "No truth given" in page and "cost unknown" in page
    assert re.findall(r'data-image-id="([^"]+)"', page)[0] == "ia"  # no review: lowest kept score first


# a marker the page writes once loaded: how many images decoded (naturalWidth > 0), and any script error
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message)));
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const p = document.createElement('p');
  p.id = 'probe';
  p.textContent = `images ${ok}/${imgs.length} errors ${window.__errors.length}`;
  document.body.appendChild(p);
});
</script>"""


@pytest.mark.skipif(shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists(),
                    reason=f"{CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    report = _write(tmp_path)
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    shot = tmp_path / "shot.png"
    dom, log = render_in_chromium(probed, screenshot=shot, window=(1200, 1600))
    for section in SECTIONS:
        assert f'id="{section}"' in dom
    assert re.search(r'id="probe">images 3/3 errors 0<', dom), dom[-2000:]
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1600, 1200) and pixels.var() > 0
