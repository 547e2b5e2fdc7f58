"""Layer rules: the engine never imports Scipion; viewers import no GUI toolkit at import time;
the engine runs where Scipion is not installed."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tomocpt_scipion"
SCIPION_MODULES = ("pyworkflow", "pwem", "tomo")
GUI_MODULES = ("tkinter", "pyworkflow.gui", "pwem.viewers.views", "matplotlib.pyplot")


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "engine").rglob("*.py")), ids=lambda p: p.name)
def test_engine_module_imports_nothing_from_scipion(path):
    bad = {name for name in _imports(path, top_level_only=False) if name.split(".")[0] in SCIPION_MODULES}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "viewers").rglob("*.py")), ids=lambda p: p.name)
def test_viewer_module_imports_no_gui_toolkit_at_import_time(path):
    bad = {name for name in _imports(path, top_level_only=True) if name.startswith(GUI_MODULES)}
    assert not bad, f"{path.name} imports {sorted(bad)} at module level"


def test_engine_command_runs_without_scipion_installed(tmp_path):
    script = (
        "import sys\n"
        "for name in ('pwem', 'pyworkflow', 'tomo'): sys.modules[name] = None\n"
        "import tomocpt_scipion\n"
        "assert not hasattr(tomocpt_scipion, 'Plugin')\n"
        "from tomocpt_scipion.engine.cli import main\n"
        f"sys.exit(main(['simulate', '--out', {str(tmp_path)!r}, '--n-tomograms', '1', '--shape', '16', '32', '32', "
        "'--pixel-size', '30', '--n-target', '2', '--n-distractors', '1']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tomograms" / "tomo_000.mrc").exists()
