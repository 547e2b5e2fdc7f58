"""Test-wide set-up: a headless, offline Scipion in temporary folders.

pyworkflow reads its configuration from the environment when it is first imported, so the
variables are set here, at conftest import, before any test module imports Scipion. In an
engine-only environment (no Scipion: ``make test-engine``) there is nothing to configure.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCIPION_ROOT = Path(tempfile.mkdtemp(prefix="tomocpt-scipion-tests-"))
SCIPION_ENVIRONMENT = {
    "SCIPION_HOME": str(SCIPION_ROOT / "home"),
    "SCIPION_USER_DATA": str(SCIPION_ROOT / "userdata"),
    "SCIPION_TESTS": str(SCIPION_ROOT / "tests-data"),
    "SCIPION_DOMAIN": "pwem",
    "SCIPION_NOTIFY": "False",
    "SCIPION_TEST_NOSYNC": "1",
    # protocols run in a subprocess: the interpreter that has Scipion, not whatever is on PATH
    "SCIPION_PYTHON": sys.executable,
}


def _write_scipion_config() -> None:
    os.environ.update(SCIPION_ENVIRONMENT)
    for key in ("SCIPION_HOME", "SCIPION_USER_DATA", "SCIPION_TESTS"):
        Path(SCIPION_ENVIRONMENT[key]).mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "scipion", "config", "--unattended"],
        cwd=SCIPION_ENVIRONMENT["SCIPION_HOME"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"headless Scipion config failed:\n{result.stdout}\n{result.stderr}")


if importlib.util.find_spec("pyworkflow") is not None:
    _write_scipion_config()


@pytest.fixture(scope="session")
def scipion_environment() -> dict:
    """The variables of the headless Scipion the tests run under."""
    return dict(SCIPION_ENVIRONMENT)
