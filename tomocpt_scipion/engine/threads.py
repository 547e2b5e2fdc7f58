"""How many CPU threads torch may use: the cores this process can really run on.

Torch starts one OpenMP thread per visible core. Containers, Kubernetes and many cluster
schedulers give a job fewer cores than it sees, through a CFS bandwidth quota of its
control group (cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, v2 ``cpu.max``).
With more threads than the quota, the kernel stops them all for the rest of each period
while OpenMP waits for the stopped ones: under a one-core quota on a two-core machine whose
other core was busy, engine 38d4866 (one thread per visible core) trained ResUNet small at
0.35 patches/s with a first step of 11.8 s; with the threads set here, 8.3 patches/s and
0.67 s (``benchmarks/speed.py --tables quota``, README; without a quota the two differ by
1.6 ×, the memory layout).

The quota is read from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``, the way the JDK
reads it: the limit of this process's control group and of every parent, the smallest wins.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

__all__ = ["cgroup_cpu_mounts", "cpu_quota", "usable_cpus", "limit_threads"]

logger = logging.getLogger(__name__)

#: environment variables by which a user sets the thread count himself
_USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cgroup_cpu_mounts(proc_self: Path = Path("/proc/self")) -> list[tuple[str, Path, Path]]:
    """(version, mount root inside the hierarchy, mount point) of the cgroup mounts that may
    hold the CPU controller: ``v2`` for the unified hierarchy, ``v1`` for a hierarchy with
    ``cpu``; empty where ``mountinfo`` cannot be read."""
    try:
        mountinfo = (proc_self / "mountinfo").read_text()
    except OSError:
        return []
    mounts = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        fstype, options = after[0], after[2].split(",") if len(after) > 2 else []
        if fstype == "cgroup2":
            mounts.append(("v2", Path(fields[3]), Path(fields[4])))
        elif fstype == "cgroup" and "cpu" in options:
            mounts.append(("v1", Path(fields[3]), Path(fields[4])))
    return mounts


def _process_cgroups(cgroup: str) -> dict[str, Path]:
    """This process's control group per version: ``v2`` from the ``0::`` line, ``v1`` from the
    line whose controllers include ``cpu``."""
    groups = {}
    for line in cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            groups["v2"] = Path(path)
        elif "cpu" in controllers.split(","):
            groups["v1"] = Path(path)
    return groups


def _quota_in(folder: Path, version: str) -> float | None:
    """The quota one control-group folder sets, in CPUs; None for none or an unreadable one."""
    try:
        if version == "v2":
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def cpu_quota(proc_self: Path = Path("/proc/self")) -> float | None:
    """The CFS bandwidth quota of this process, in CPUs (1.5 = one and a half cores).

    Parameters
    ----------
    proc_self : the ``/proc/self`` folder to read (tests give a fake one).

    Returns
    -------
    The smallest quota of this process's control group and its parents, over both cgroup
    versions; None where none is set or none can be read (not Linux, no cgroup file system).
    """
    try:
        groups = _process_cgroups((proc_self / "cgroup").read_text())
    except OSError:
        return None
    quotas = []
    for version, root, mount_point in cgroup_cpu_mounts(proc_self):
        group = groups.get(version)
        if group is None:
            continue
        # a mount of a sub-tree (a container's own group) holds the paths below its root
        relative = group.relative_to(root) if group.is_relative_to(root) else Path()
        folder = mount_point / relative
        while True:
            quota = _quota_in(folder, version)
            if quota is not None:
                quotas.append(quota)
            if folder == mount_point or folder == folder.parent:
                break
            folder = folder.parent
    return min(quotas) if quotas else None


def _visible_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def usable_cpus(proc_self: Path = Path("/proc/self")) -> int:
    """The cores this process can run on at once: its CPU affinity, capped by its CFS quota
    rounded down (a thread beyond the quota waits for the others), at least 1."""
    return _capped(_visible_cpus(), cpu_quota(proc_self))


def _capped(visible: int, quota: float | None) -> int:
    return max(1, min(visible, math.floor(quota) if quota is not None else visible))


def limit_threads(proc_self: Path = Path("/proc/self")) -> int | None:
    """Give torch (and the BLAS of numpy) one thread per :func:`usable_cpus` core when that is
    fewer than the visible cores, unless the user chose with ``OMP_NUM_THREADS`` or
    ``MKL_NUM_THREADS``.

    Call it before torch is imported: it sets ``OMP_NUM_THREADS``, which the OpenMP runtime
    reads when it starts (and lowers torch's threads too when torch is already loaded).

    Returns
    -------
    The thread count set, or None when nothing was changed.
    """
    if any(os.environ.get(name) for name in _USER_THREAD_VARIABLES):
        return None
    visible, quota = _visible_cpus(), cpu_quota(proc_self)
    usable = _capped(visible, quota)
    if usable >= visible:
        return None
    os.environ["OMP_NUM_THREADS"] = str(usable)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(usable)
    logger.info(
        "Using %d CPU thread(s), not %d: this process has a CPU quota of %g core(s) (OMP_NUM_THREADS overrides)",
        usable,
        visible,
        quota,
    )
    return usable
