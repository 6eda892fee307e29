"""Resource limits of one run, as a cgroup that the trusted worker makes and removes.

RLIMIT_AS binds one process only: a run that forks multiplies it, and what it writes into its
tmpfs folders counts against nothing. `torch.set_num_threads(1)` is advice: a run may use every
core against a wall-clock budget. And nothing bounds the number of processes. A cgroup bounds the
run as a whole, every process it starts included:

    memory   everything the run holds, its tmpfs folders included (the profile's memory_limit_gb);
             swap is not an escape (memsw / memory.swap.max)
    pids     at most PIDS_MAX processes and threads (a fork bomb stops there)
    cpu      a quota of the run's share of the cores per wall-clock second: the thread count the
             reference models were trained with (one on a CPU profile), whatever the run asks for

The worker puts the sandbox's launcher into the group before the launcher reads its spec, so the
sandbox, init and the run are all inside before any of them exists as more than an interpreter;
the run sees the cgroup file system only read-only (the sandbox's new root) and holds no
capability, so it can neither leave the group nor raise a limit. When the run ends the worker kills
whatever is left in the group and removes it.

Both hierarchies are supported: v2 (one unified tree) where the three controllers are enabled
below this process's cgroup, else v1 (a tree per controller) where that is what the machine has.
Where neither can be used (no permission, controllers missing, a v2 cgroup that holds processes and
so cannot delegate), `create` says why, and the run goes on without (HARNESS_SANDBOX=auto) or
fails (require). Which one a run had is recorded in its isolation report.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("memory", "pids", "cpu")
PIDS_MAX = 512                 # processes and threads of one run (a notebook's kernel has ~40)
CPU_PERIOD_US = 100_000
PREFIX = "harness-run-"        # harness-run-<worker pid>-<n>: a worker's groups, swept when it is gone
_ROOT = Path("/")              # where /proc and /sys are read (a test points it elsewhere)


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    cpus: float | None         # None: no CPU quota (a GPU run)
    pids: int = PIDS_MAX

    def describe(self) -> dict:
        return {"memory_bytes": self.memory_bytes, "cpus": self.cpus, "pids_max": self.pids}


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root within the hierarchy, fs type, super options) of every cgroup mount."""
    out = []
    with open(_ROOT / "proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
                point = fields[4].encode().decode("unicode_escape")
                out.append((point, fields[3], tail[0], set(tail[2].split(","))))
    return out


def _own_paths() -> dict[str, str]:
    """This process's cgroup per v1 controller, and "" -> its v2 cgroup (from /proc/self/cgroup)."""
    out = {}
    with open(_ROOT / "proc/self/cgroup") as f:
        for line in f:
            parts = line.rstrip("\n").split(":", 2)
            if len(parts) == 3:
                for controller in parts[1].split(",") if parts[1] else [""]:
                    out[controller] = parts[2]
    return out


def _inside(point: str, mount_root: str, path: str) -> Path:
    """The folder of cgroup `path` in a hierarchy mounted at `point` whose root is `mount_root`."""
    rel = path[len(mount_root):] if mount_root != "/" and path.startswith(mount_root) else path
    return Path(_ROOT, point.lstrip("/"), rel.lstrip("/"))


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _v2_parent() -> tuple[Path | None, str]:
    mounts = [m for m in _mounts() if m[2] == "cgroup2"]
    own = _own_paths().get("")
    if not mounts or own is None:
        return None, "no cgroup v2 hierarchy"
    point, root, *_ = mounts[0]
    parent = _inside(point, root, own)
    try:
        available = set(_read(parent / "cgroup.controllers").split())
        missing = [c for c in CONTROLLERS if c not in available]
        if missing:
            return None, f"cgroup v2: controller(s) {', '.join(missing)} not available in {parent}"
        enabled = set(_read(parent / "cgroup.subtree_control").split())
        if not set(CONTROLLERS) <= enabled:
            _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in CONTROLLERS))
    except OSError as e:
        why = ("it holds processes, so it cannot delegate controllers" if e.errno == errno.EBUSY
               else e.strerror or str(e))
        return None, f"cgroup v2: cannot enable {', '.join(CONTROLLERS)} below {parent} ({why})"
    return parent, ""


def _v1_parents() -> tuple[dict[str, Path] | None, str]:
    own = _own_paths()
    found = {}
    for controller in (*CONTROLLERS, "cpuacct"):
        mount = next((m for m in _mounts() if m[2] == "cgroup" and controller in m[3]), None)
        if mount is None or controller not in own:
            if controller == "cpuacct":
                continue  # only for the record of CPU time used
            return None, f"cgroup v1: the {controller} controller is not mounted"
        found[controller] = _inside(mount[0], mount[1], own[controller])
    return found, ""


class Group:
    """One run's cgroup: a folder per hierarchy (v2: one; v1: one per controller)."""

    def __init__(self, version: str, dirs: dict[str, Path], limits: Limits):
        self.version, self.dirs, self.limits = version, dirs, limits

    def _folders(self) -> list[Path]:
        return list(dict.fromkeys(self.dirs.values()))

    def add(self, pid: int) -> None:
        for folder in self._folders():
            _write(folder / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        folder = self.dirs["pids"]
        try:
            return {int(x) for x in _read(folder / "cgroup.procs").split()}
        except OSError:
            return set()

    def kill(self) -> None:
        """SIGKILL everything in the group until it is empty (pids.max bounds how many can appear)."""
        kill_file = self.dirs["pids"] / "cgroup.kill"
        if self.version == "v2" and kill_file.exists():
            try:
                _write(kill_file, "1")
            except OSError:
                pass
        deadline = time.monotonic() + 5.0
        while (left := self.pids()) and time.monotonic() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def usage(self) -> dict:
        """What the run used: CPU seconds, peak memory, and whether the kernel killed it for memory."""
        out = {"cpu_seconds": None, "memory_peak_bytes": None, "oom_killed": False}
        try:
            if self.version == "v2":
                d = self.dirs["memory"]
                stat = dict(line.split() for line in _read(d / "cpu.stat").splitlines() if line.strip())
                out["cpu_seconds"] = int(stat["usage_usec"]) / 1e6
                if (d / "memory.peak").exists():
                    out["memory_peak_bytes"] = int(_read(d / "memory.peak"))
                events = dict(line.split() for line in _read(d / "memory.events").splitlines() if line.strip())
                out["oom_killed"] = int(events.get("oom_kill", 0)) > 0
            else:
                if "cpuacct" in self.dirs:
                    out["cpu_seconds"] = int(_read(self.dirs["cpuacct"] / "cpuacct.usage")) / 1e9
                d = self.dirs["memory"]
                out["memory_peak_bytes"] = int(_read(d / "memory.max_usage_in_bytes"))
                control = dict(line.split() for line in _read(d / "memory.oom_control").splitlines() if line.strip())
                out["oom_killed"] = int(control.get("oom_kill", 0)) > 0 or (
                    "oom_kill" not in control and int(_read(d / "memory.failcnt")) > 0)
        except (OSError, ValueError, KeyError):
            pass
        return out

    def remove(self) -> None:
        self.kill()
        for folder in self._folders():
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # the last killed processes are still leaving
                    time.sleep(0.02)

    def describe(self) -> dict:
        return {"version": self.version, **self.limits.describe()}


_counter = 0


def create(limits: Limits) -> tuple[Group | None, str]:
    """A new, empty group with `limits` below this process's cgroup, or (None, why not)."""
    global _counter
    _counter += 1
    name = f"{PREFIX}{os.getpid()}-{_counter}"
    made: list[Path] = []
    try:
        parent, why = _v2_parent()
        if parent is not None:
            version, dirs = "v2", {c: parent / name for c in CONTROLLERS}
        else:
            parents, why1 = _v1_parents()
            if parents is None:
                return None, f"{why}; {why1}"
            version, dirs = "v1", {c: p / name for c, p in parents.items()}
        for folder in dict.fromkeys(dirs.values()):
            folder.mkdir()
            made.append(folder)
        if version == "v2":
            d = dirs["memory"]
            _write(d / "memory.max", str(limits.memory_bytes))
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "0")
            _write(d / "pids.max", str(limits.pids))
            if limits.cpus is not None:
                _write(d / "cpu.max", f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        else:
            _write(dirs["memory"] / "memory.limit_in_bytes", str(limits.memory_bytes))
            if (dirs["memory"] / "memory.memsw.limit_in_bytes").exists():
                try:
                    _write(dirs["memory"] / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
                except OSError:
                    pass  # swap accounting off (the file exists, the kernel refuses): no swap to escape into
            _write(dirs["pids"] / "pids.max", str(limits.pids))
            if limits.cpus is not None:
                _write(dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(dirs["cpu"] / "cpu.cfs_quota_us", str(int(limits.cpus * CPU_PERIOD_US)))
        return Group(version, dirs, limits), ""
    except OSError as e:
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                pass
        return None, f"cannot make a cgroup ({e.strerror or e}: {e.filename or ''})".replace(": )", ")")


def sweep() -> int:
    """Remove the groups of workers that no longer exist (killed in the middle of a run), with
    whatever is still in them. Returns how many were removed."""
    removed = 0
    try:
        parents = [p for p in [_v2_parent()[0]] if p is not None] or list((_v1_parents()[0] or {}).values())
    except OSError:
        return 0
    for parent in parents:
        for folder in parent.glob(f"{PREFIX}*-*"):
            try:
                os.kill(int(folder.name[len(PREFIX):].split("-")[0]), 0)
                continue
            except ProcessLookupError:
                pass
            except (ValueError, PermissionError):
                continue
            try:
                for pid in _read(folder / "cgroup.procs").split():
                    os.kill(int(pid), signal.SIGKILL)
                folder.rmdir()
                removed += 1
            except (OSError, ValueError):
                pass
    return removed
