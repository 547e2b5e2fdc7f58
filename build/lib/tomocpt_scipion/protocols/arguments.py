"""Engine command-line arguments from protocol form values."""

__all__ = ["setFlags"]


def setFlags(*flagParams):
    """``[flag, value, …]`` for every ``(flag, param)`` whose value is set (not 0, empty or None):
    a zero in a form means "the engine's default", so the flag is left out."""
    return [text for flag, param in flagParams if param.get() for text in (flag, str(param.get()))]
