"""A run's cgroup (harness.cgroups): on this machine's v1 hierarchy for real (a process put in a
group is limited and killed with it); v2, which this machine does not delegate, on a copy of the
files the kernel would show, to check what is read and written; and the fallback's reason."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cgroups

LIMITS = cgroups.Limits(memory_bytes=256 << 20, cpus=1.0, pids=16)


def test_a_group_limits_kills_and_removes_what_is_in_it():
    group, why = cgroups.create(LIMITS)
    if group is None:
        pytest.skip(f"no cgroup here: {why}")
    assert group.describe() == {"version": group.version, "memory_bytes": 256 << 20, "cpus": 1.0, "pids_max": 16}
    # It allocates once it is in the group (v1 charges pages to the group that was the process's when
    # it touched them: allocated before, under load, they were the parent's).
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.readline(); x = bytearray(64 << 20); "
                             "print('ok', flush=True); time.sleep(60)"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        group.add(proc.pid)
        assert proc.pid in group.pids()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "ok\n"
        hog = subprocess.run(["sh", "-c", f"echo $$ > {group.dirs['pids'] / 'cgroup.procs'}; "
                              "for i in $(seq 40); do sleep 5 & done; wait"], capture_output=True, text=True, timeout=30)
        assert "fork" in hog.stderr.lower() or "resource" in hog.stderr.lower(), hog.stderr  # 16 pids, not 40
        usage = group.usage()
        assert usage["memory_peak_bytes"] >= 64 << 20 and usage["oom_killed"] is False
    finally:
        group.remove()
    assert proc.wait(timeout=10) == -9  # killed with its group
    assert not any(d.exists() for d in group.dirs.values())


def _fake_v2(root: Path, enabled: str) -> Path:
    """The files a machine with a delegated cgroup v2 tree shows, under root."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(
        "25 1 0:22 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n")
    (root / "proc/self/cgroup").write_text("0::/user.slice/harness.scope\n")
    own = root / "sys/fs/cgroup/user.slice/harness.scope"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (own / "cgroup.subtree_control").write_text(enabled)
    return own


def test_v2_delegates_the_controllers_and_writes_the_limits(tmp_path, monkeypatch):
    own = _fake_v2(tmp_path, "")
    monkeypatch.setattr(cgroups, "_ROOT", tmp_path)
    group, why = cgroups.create(LIMITS)
    assert group is not None, why
    assert group.version == "v2" and set(group.dirs.values()) == {own / f"{cgroups.PREFIX}{os.getpid()}-{cgroups._counter}"}
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    made = group.dirs["memory"]
    assert (made / "memory.max").read_text() == str(256 << 20)
    assert (made / "pids.max").read_text() == "16" and (made / "cpu.max").read_text() == "100000 100000"
    group.add(12345)
    assert (made / "cgroup.procs").read_text() == "12345"


def test_without_a_usable_hierarchy_the_reason_is_given(tmp_path, monkeypatch):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text("22 1 0:21 / / rw - ext4 /dev/root rw\n")
    (tmp_path / "proc/self/cgroup").write_text("0::/\n")
    monkeypatch.setattr(cgroups, "_ROOT", tmp_path)
    assert cgroups.create(LIMITS) == (None, "no cgroup v2 hierarchy; cgroup v1: the memory controller is not mounted")
    own = _fake_v2(tmp_path / "v2", "")
    (own / "cgroup.controllers").write_text("cpu io\n")
    monkeypatch.setattr(cgroups, "_ROOT", tmp_path / "v2")
    group, why = cgroups.create(LIMITS)
    assert group is None and why.startswith("cgroup v2: controller(s) memory, pids not available in ")
