"""tomocpt_scipion: a Scipion plugin that picks particles in cryo-ET tomograms with deep learning.

The numerical engine (``tomocpt_scipion.engine``) needs no Scipion; in an engine-only
environment the Scipion side is simply absent.
"""
__version__ = "0.1.0"
_logo = "icon.png"
_references = ["Shah2025tomocpt", "Liu2024deepetpicker", "Uddin2024tomopicker"]

try:
    import pwem  # noqa: F401  (Scipion present: expose the plugin)
except ModuleNotFoundError as error:
    if error.name not in ("pwem", "pyworkflow"):
        raise
else:
    from .plugin import Plugin  # noqa: F401
