"""CPU threads follow the cores a process may really use (affinity and cgroup CPU quota)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tomocpt_scipion.engine import threads


def _fake_proc(tmp_path: Path, mountinfo: list[str], cgroup: list[str]) -> Path:
    proc = tmp_path / "proc_self"
    proc.mkdir()
    (proc / "mountinfo").write_text("\n".join(mountinfo) + "\n")
    (proc / "cgroup").write_text("\n".join(cgroup) + "\n")
    return proc


def _v1(tmp_path: Path, group: str, mount_root: str, quota_us: int, period_us: int = 100_000) -> Path:
    mount = tmp_path / "cgroup_cpu"
    folder = mount / Path(group).relative_to(mount_root)
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    (folder / "cpu.cfs_period_us").write_text(f"{period_us}\n")
    return _fake_proc(
        tmp_path,
        [
            f"31 23 0:28 / {tmp_path} rw,relatime - tmpfs tmpfs rw",
            f"32 31 0:29 {mount_root} {mount} rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct",
            f"33 31 0:30 / {tmp_path / 'cgroup_memory'} rw - cgroup cgroup rw,memory",
        ],
        ["5:memory:/elsewhere", f"3:cpu,cpuacct:{group}"],
    )


def _v2(tmp_path: Path, limits: dict[str, str]) -> Path:
    mount = tmp_path / "unified"
    for group, cpu_max in limits.items():
        folder = mount / group
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cpu.max").write_text(cpu_max + "\n")
    deepest = max(limits, key=len)
    return _fake_proc(tmp_path, [f"41 31 0:38 / {mount} rw - cgroup2 cgroup2 rw"], [f"0::/{deepest}"])


def test_v1_quota_of_a_container_mounted_at_its_own_group(tmp_path):
    proc = _v1(tmp_path, "/docker/abc", "/docker/abc", quota_us=150_000)
    assert threads.cpu_quota(proc) == pytest.approx(1.5)


def test_v1_without_quota_reads_as_none(tmp_path):
    proc = _v1(tmp_path, "/job", "/", quota_us=-1)
    assert threads.cpu_quota(proc) is None


def test_v2_smallest_limit_of_the_group_and_its_parents_wins(tmp_path):
    proc = _v2(tmp_path, {"slice": "200000 100000", "slice/job": "max 100000"})
    assert threads.cpu_quota(proc) == pytest.approx(2.0)
    proc = _v2(tmp_path / "tighter", {"slice": "200000 100000", "slice/job": "50000 100000"})
    assert threads.cpu_quota(proc) == pytest.approx(0.5)


def test_no_cgroup_file_system_reads_as_no_quota(tmp_path):
    assert threads.cpu_quota(tmp_path / "missing") is None
    assert threads.cgroup_cpu_mounts(tmp_path / "missing") == []


def test_usable_cpus_round_the_quota_down_to_at_least_one(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "_visible_cpus", lambda: 8)
    assert threads.usable_cpus(_v1(tmp_path / "a", "/", "/", quota_us=250_000)) == 2
    assert threads.usable_cpus(_v1(tmp_path / "b", "/", "/", quota_us=50_000)) == 1
    assert threads.usable_cpus(_v1(tmp_path / "c", "/", "/", quota_us=-1)) == 8
    assert threads.usable_cpus(_v1(tmp_path / "d", "/", "/", quota_us=1_600_000)) == 8


def _unset_thread_variables(monkeypatch) -> None:
    """Empty (read as unset), so that monkeypatch restores what limit_threads writes."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "")


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_quota_below_the_visible_cores_lowers_torch_threads(tmp_path, monkeypatch, torch_threads):
    _unset_thread_variables(monkeypatch)
    monkeypatch.setattr(threads, "_visible_cpus", lambda: 4)
    assert threads.limit_threads(_v1(tmp_path, "/", "/", quota_us=100_000)) == 1
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_user_thread_setting_is_left_alone(tmp_path, monkeypatch, torch_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(threads, "_visible_cpus", lambda: 4)
    before = torch.get_num_threads()
    assert threads.limit_threads(_v1(tmp_path, "/", "/", quota_us=100_000)) is None
    assert torch.get_num_threads() == before


def test_no_quota_changes_nothing(tmp_path, monkeypatch, torch_threads):
    _unset_thread_variables(monkeypatch)
    monkeypatch.setattr(threads, "_visible_cpus", lambda: 4)
    assert threads.limit_threads(_v1(tmp_path, "/", "/", quota_us=-1)) is None


def test_every_engine_command_sets_the_threads_first(tmp_path, monkeypatch):
    from tomocpt_scipion.engine import cli

    calls = []
    monkeypatch.setattr(threads, "limit_threads", lambda: calls.append("limited"))
    assert cli.main(["inspect", str(tmp_path / "missing.pt")]) == 2
    assert calls == ["limited"]
