"""Fixtures of the Scipion tests."""

import subprocess

import pytest


@pytest.fixture(scope="session")
def engine_environment(tmp_path_factory):
    """The engine environment built by the commands defineBinaries gives Scipion's installer."""
    from tomocpt_scipion import _supportedPython, engineEnvCommands

    folder = tmp_path_factory.mktemp("tomocpt-engine")
    python = _supportedPython()
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info >= (3, 10))"], capture_output=True, text=True
    )
    assert version.stdout.strip() == "True", f"{python} is older than the engine supports"
    for command, target in engineEnvCommands(python):
        build = subprocess.run(["bash", "-c", command], cwd=folder, capture_output=True, text=True)
        assert build.returncode == 0, build.stderr[-3000:]
        assert (folder / target).exists()
    return folder / "env"
