"""A real install, as a Scipion user gets it: the plugin in an environment without torch, and
the engine environment that `scipion3 installb tomocpt-engine` builds (defineBinaries), with a
pick protocol run through it. Both build fresh virtual environments (about 2 and 3 minutes)."""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).parents[2]


def _python(env: Path) -> str:
    return str(env / "bin" / "python")


def test_plugin_installs_without_torch_imports_and_lists_its_protocols(tmp_path):
    from tomocpt_scipion import protocols

    env = tmp_path / "scipion-only"
    venv.create(env, with_pip=True)
    # a copy of the sources: pip builds a local project in place and would leave build/ in the repository
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "benchmarks", "tests"))
    install = subprocess.run(
        [_python(env), "-m", "pip", "install", "--quiet", str(source)], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listing = subprocess.run(
        [
            _python(env),
            "-c",
            "import importlib.util as u; assert u.find_spec('torch') is None, 'torch was installed';"
            "import tomocpt_scipion.viewers, tomocpt_scipion.wizards; from pwem import Domain;"
            "print(*sorted(n for n in Domain.getProtocols() if n.startswith('ProtTomoCPT')))",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
        cwd=tmp_path,
    )
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert listing.stdout.split() == sorted(protocols.__all__)


def test_the_engine_environment_has_the_engine_and_no_scipion(engine_environment):
    probe = subprocess.run(
        [
            _python(engine_environment),
            "-c",
            "import importlib.util as u, torch, tomocpt_scipion.engine.cli, tomocpt_scipion;"
            "assert u.find_spec('pwem') is None and u.find_spec('pyworkflow') is None;"
            "import os; print(torch.__version__, os.path.realpath(tomocpt_scipion.__file__))",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
        cwd=engine_environment,  # not the repository: the package must come through the .pth file
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split()[1] == str(REPO / "tomocpt_scipion" / "__init__.py")
    assert sys.prefix not in probe.stdout
