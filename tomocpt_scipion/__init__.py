"""tomocpt_scipion: a Scipion plugin that picks particles in cryo-ET tomograms with deep learning.

The numerical engine (``tomocpt_scipion.engine``) needs no Scipion; in an engine-only
environment (no ``pwem``) the Scipion side is simply absent. Scipion requires the Plugin
class to live in the package itself, hence its definition here.
"""

import os
import shlex
import sys

__version__ = "0.1.0"
_logo = "icon.png"
_references = ["Shah2025tomocpt", "Liu2024deepetpicker", "Uddin2024tomopicker"]

try:
    import pwem
except ModuleNotFoundError as error:
    if error.name not in ("pwem", "pyworkflow"):
        raise
    pwem = None

if pwem is not None:
    from pyworkflow.utils import Environ

    from .constants import (
        ENGINE_MIN_PYTHON,
        ENGINE_MODULE,
        ENGINE_TORCH_VERSION,
        TOMOCPT_ENV_ACTIVATION,
        TOMOCPT_ENV_PACKAGE,
        TOMOCPT_PYTHON,
        TOMOCPT_TORCH_INDEX,
    )

    _PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
    _ENGINE_REQUIREMENTS = os.path.join(_PACKAGE_DIR, "engine", "requirements.txt")
    #: installed marker, inside the package folder installb makes
    _ENV_INSTALLED = "env_installed"

    def engineEnvCommands(python: str, torchIndex: str = "") -> list:
        """Shell commands (with their targets) that build the engine environment ``env`` in the
        current folder: a venv of ``python``, torch (from ``torchIndex`` when given: the CUDA
        build), the engine's requirements, and this package made importable through a ``.pth``
        file that points at a folder holding only it (so nothing of Scipion's site-packages
        leaks in, and engine jobs need no PYTHONPATH)."""
        index = f" --index-url {shlex.quote(torchIndex)}" if torchIndex else ""
        link = (
            "import os, site, sys; d = os.path.abspath('env/plugin'); os.makedirs(d, exist_ok=True); "
            "l = os.path.join(d, 'tomocpt_scipion'); os.path.lexists(l) and os.remove(l); "
            "os.symlink(sys.argv[1], l); "
            "open(os.path.join(site.getsitepackages()[0], 'tomocpt_scipion.pth'), 'w').write(d + chr(10))"
        )
        return [
            (
                f"{shlex.quote(python)} -m venv env && "
                f"env/bin/python -m pip install torch=={ENGINE_TORCH_VERSION}{index} && "
                f"env/bin/python -m pip install -r {shlex.quote(_ENGINE_REQUIREMENTS)} && "
                f'env/bin/python -c "{link}" {shlex.quote(_PACKAGE_DIR)} && '
                f"env/bin/python -m {ENGINE_MODULE} --help > /dev/null && touch {_ENV_INSTALLED}",
                _ENV_INSTALLED,
            )
        ]

    def _supportedPython() -> str:
        """Scipion's own interpreter when the engine supports it, else the first of python3.13 …
        python3.10 / python3 on the PATH that it supports (Scipion's installer may use 3.8)."""
        import shutil
        import subprocess

        if sys.version_info[:2] >= ENGINE_MIN_PYTHON:
            return sys.executable
        candidates = [f"python3.{minor}" for minor in range(13, ENGINE_MIN_PYTHON[1] - 1, -1)] + ["python3"]
        for name in candidates:
            path = shutil.which(name)
            if path:
                version = subprocess.run(
                    [path, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True
                ).stdout.split()
                if version and tuple(map(int, version)) >= ENGINE_MIN_PYTHON:
                    return path
        raise RuntimeError(
            f"no Python >= {'.'.join(map(str, ENGINE_MIN_PYTHON))} found for the engine environment; "
            f"set {TOMOCPT_PYTHON} to one."
        )

    class Plugin(pwem.Plugin):
        """tomocpt_scipion: deep-learning particle picking in tomograms.

        The engine runs in its own environment, as the plugins of other deep-learning pickers
        do: ``scipion3 installb tomocpt-engine`` builds a venv (``TOMOCPT_PYTHON``, default
        Scipion's own Python when ≥ 3.10, else the newest python3 ≥ 3.10 on the PATH) with
        torch (``TOMOCPT_TORCH_INDEX``: the pip index of the CUDA build, e.g.
        https://download.pytorch.org/whl/cu126; empty = PyPI's default build) and the engine's
        requirements. ``TOMOCPT_ENV_ACTIVATION`` empty (the
        default) uses that environment when it is built, else Scipion's own Python (which
        then needs the ``[engine]`` extra); any other value is the activation command of an
        environment of your own. Engine jobs run with no PYTHONPATH.
        """

        _url = "https://github.com/scipion-em/scipion-em-tomocpt"

        @classmethod
        def _defineVariables(cls):
            cls._defineVar(
                TOMOCPT_ENV_ACTIVATION,
                "",
                description="Command that activates the engine environment; empty = the one installb built, "
                "else Scipion's own Python.",
            )
            cls._defineVar(TOMOCPT_PYTHON, "", description="Python (>= 3.10) installb builds the engine from.")
            cls._defineVar(
                TOMOCPT_TORCH_INDEX,
                "",
                description="pip index of the torch build installb installs (CUDA version); empty = PyPI's.",
            )

        @classmethod
        def getEngineEnvFolder(cls) -> str:
            """Folder installb builds the engine environment in."""
            return os.path.join(pwem.Config.EM_ROOT, f"{TOMOCPT_ENV_PACKAGE}-{__version__}")

        @classmethod
        def getActivation(cls) -> str:
            """Shell command that activates the engine environment; "" = Scipion's Python."""
            activation = cls.getVar(TOMOCPT_ENV_ACTIVATION)
            if activation:
                return activation
            folder = cls.getEngineEnvFolder()
            if os.path.exists(os.path.join(folder, _ENV_INSTALLED)):
                return f". {shlex.quote(os.path.join(folder, 'env', 'bin', 'activate'))}"
            return ""

        @classmethod
        def getEnviron(cls) -> Environ:
            """Environment of engine jobs: Scipion's, without PYTHONPATH (the engine environment has
            the package through its .pth file; Scipion's Python has it installed)."""
            environ = Environ(os.environ)
            environ.pop("PYTHONPATH", None)
            return environ

        @classmethod
        def getEngineCommand(cls, gpus: bool = True, processes: int = 1) -> str:
            """Shell prefix that runs ``python -m tomocpt_scipion.engine``.

            With ``gpus`` the job sees only the protocol's GPUs (``%(GPU)s``, filled by Scipion);
            without, it sees none and runs on the CPU. ``processes`` > 1 launches the engine
            under ``torchrun`` (one data-parallel process per GPU, on this machine).
            """
            activation = cls.getActivation()
            python = "python" if activation else shlex.quote(sys.executable)
            devices = "CUDA_VISIBLE_DEVICES=%(GPU)s" if gpus else "CUDA_VISIBLE_DEVICES=''"
            launcher = (
                f"-m torch.distributed.run --standalone --nproc_per_node {processes} -m" if processes > 1 else "-m"
            )
            command = f"{devices} {python} {launcher} {ENGINE_MODULE}"
            return f"{activation} && {command}" if activation else command

        @classmethod
        def runEngine(cls, protocol, args, cwd=None, processes: int = 1):
            """Run ``tomocpt-engine ARGS`` as a job of ``protocol`` (logged, queue-aware);
            ``processes`` > 1: data-parallel training, one process per GPU."""
            gpus = bool(protocol.getGpuList()) if hasattr(protocol, "getGpuList") else False
            protocol.runJob(cls.getEngineCommand(gpus, processes), args, env=cls.getEnviron(), cwd=cwd, numberOfMpi=1)

        @classmethod
        def defineBinaries(cls, env):
            """``tomocpt-engine``: the engine's own environment (see the class doc)."""
            python = cls.getVar(TOMOCPT_PYTHON) or _supportedPython()
            env.addPackage(
                TOMOCPT_ENV_PACKAGE,
                version=__version__,
                tar="void.tgz",
                commands=engineEnvCommands(python, cls.getVar(TOMOCPT_TORCH_INDEX)),
                default=True,
            )
