"""Where things are: the repository, and the real road-sign photos (tests using them skip when absent).

Test modules import these from here, never from ``conftest`` (with several conftest.py files in the tree,
``import conftest`` finds whichever was imported last)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "road-sign-detection"
