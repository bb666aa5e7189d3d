"""Shared test setup. Area-specific helpers live in ``tests/helpers_<area>.py`` modules (importable
from test files because pytest puts this folder on ``sys.path``)."""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "road-sign-detection"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture()
def backend(tmp_path):
    """A local Toloka Backend in-process, fast (speed 1e6) and in the explicit fast mode (no wait for a
    first streaming reader); closed after the test. Test modules may define their own ``backend``."""
    from crowdboxes.local_toloka.models import Backend
    b = Backend(tmp_path / "state", speed=1e6, first_reader_seconds=0)
    yield b
    b.close()
