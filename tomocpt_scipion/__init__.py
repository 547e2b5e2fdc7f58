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

    from .constants import ENGINE_MODULE, ENGINE_TORCH_VERSION, TOMOCPT_ENV_ACTIVATION, TOMOCPT_ENV_NAME

    _PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _ENGINE_REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "engine", "requirements.txt")

    class Plugin(pwem.Plugin):
        """tomocpt_scipion: deep-learning particle picking in tomograms.

        ``TOMOCPT_ENV_ACTIVATION`` is the shell command that activates the engine's Python
        environment (for example ``source /opt/tomocpt/bin/activate``); empty (the default)
        runs the engine with the interpreter that runs Scipion, which has torch because this
        plugin requires it.
        """

        _url = "https://github.com/scipion-em/scipion-em-tomocpt"

        @classmethod
        def _defineVariables(cls):
            cls._defineVar(
                TOMOCPT_ENV_ACTIVATION,
                "",
                description="Command that activates the engine environment; empty = "
                "run the engine with Scipion's own Python.",
            )

        @classmethod
        def getEnviron(cls) -> Environ:
            """Environment of engine jobs: the plugin importable even from a separate engine env."""
            environ = Environ(os.environ)
            environ.update({"PYTHONPATH": _PACKAGE_PARENT}, position=Environ.BEGIN)
            return environ

        @classmethod
        def getEngineCommand(cls, gpus: bool = True, processes: int = 1) -> str:
            """Shell prefix that runs ``python -m tomocpt_scipion.engine``.

            With ``gpus`` the job sees only the protocol's GPUs (``%(GPU)s``, filled by Scipion);
            without, it sees none and runs on the CPU. ``processes`` > 1 launches the engine
            under ``torchrun`` (one data-parallel process per GPU, on this machine).
            """
            activation = cls.getVar(TOMOCPT_ENV_ACTIVATION)
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
            """A venv with the engine's dependencies, for installs that want CUDA torch apart."""
            installed = f"{TOMOCPT_ENV_NAME}_installed"
            commands = [
                (
                    f"{shlex.quote(sys.executable)} -m venv env && "
                    f"env/bin/pip install torch=={ENGINE_TORCH_VERSION} -r {shlex.quote(_ENGINE_REQUIREMENTS)} "
                    f"&& touch {installed}",
                    installed,
                )
            ]
            env.addPackage(TOMOCPT_ENV_NAME, version="0.1.0", tar="void.tgz", commands=commands, default=True)
