"""Shared test setup. Area-specific helpers live in ``tests/helpers_<area>.py`` modules (importable
from test files because pytest puts this folder on ``sys.path``)."""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "road-sign-detection"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
