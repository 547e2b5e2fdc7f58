"""Atomic writing: a file appears complete under its name or not at all, and a run's outputs
appear together or not at all. Existing files are never replaced unless asked."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "staged_outputs"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: os.PathLike | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` once the block succeeds.

    Parameters
    ----------
    path : destination file.
    overwrite : replace an existing ``path``. Defaults to False.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    OSError
        The folder cannot be written, or writing failed (disk full): the message names
        ``path``, and nothing is left behind.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: file exists; refusing to overwrite it (use --overwrite or overwrite=True).")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent)
    except OSError as error:
        raise OSError(error.errno, f"{path}: cannot write here ({error.strerror})") from error
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; a finished output gets the mode any new file gets (the umask)
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
        raise OSError(getattr(error, "errno", None), f"{path}: could not be written ({error})") from error
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def staged_outputs(out_dir: os.PathLike | str, overwrite: bool = False, expected: Sequence[str] = ()) -> Iterator[Path]:
    """Yield a staging folder inside ``out_dir``; move everything written there into
    ``out_dir`` once the block succeeds, so a run's outputs appear together or not at all.

    Parameters
    ----------
    out_dir : destination folder (created if needed; removed again on failure if it was
        created here and is empty).
    overwrite : replace existing files of the same names. Defaults to False.
    expected : relative names the block will write, checked before it runs, so a clash is
        reported before any work is done. Whatever is written is checked again at the end.

    Raises
    ------
    FileExistsError
        A file to be written exists and ``overwrite`` is False (all of them are named).
    OSError
        The folder cannot be written, or writing failed: nothing of this run is left.
    """
    out_dir = Path(out_dir)

    def refuse_clashes(names) -> None:
        clashes = sorted(str(out_dir / n) for n in names if (out_dir / n).exists())
        if clashes and not overwrite:
            raise FileExistsError(
                f"{', '.join(clashes[:5])}{' …' if len(clashes) > 5 else ''}: "
                f"{len(clashes)} output file(s) exist; refusing to overwrite "
                f"(use --overwrite or overwrite=True)."
            )

    refuse_clashes(expected)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    except OSError as error:
        raise OSError(error.errno, f"{out_dir}: cannot write here ({error.strerror})") from error
    try:
        yield staging
        written = [p.relative_to(staging) for p in sorted(staging.rglob("*")) if p.is_file()]
        refuse_clashes(written)
        for name in written:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, out_dir / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
