"""The sandbox of one unlearning run: Linux namespaces around the run's process.

The launcher is a fork of the worker's zygote (harness.zygote) for an unlearning run on a CPU, or
`python -m harness.sandbox` started by the trusted worker (a GPU run, a notebook's kernel,
HARNESS_ZYGOTE=off), with a JSON spec on stdin. Its own code uses only the standard library.

    sandbox launcher (P0)   unshare: mount, PID, network, IPC, UTS namespaces (and a user
    │                       namespace where it is not root); waits, passes the exit status on
    └── init (P1)           PID 1 of the new PID namespace. Builds a new root file system that
        │                   holds only what a run needs, read-only: the system's libraries, the
        │                   Python installation, the harness package, the run's inputs. The
        │                   cache, the results, the checkout and every other process's /proc
        │                   entry do not exist there. /scratch (the working directory), /tmp and
        │                   /dev/shm are fresh size-limited tmpfs. Drops every capability for
        │                   good, reports which layers took effect, then reaps until the run ends;
        │                   when it exits the kernel kills whatever the run left in the namespace.
        └── run (P2)        exec `python -m harness.child` (or the spec's module: harness.kaggle.kernel
                            for a notebook): a fresh interpreter, nothing inherited
                            from the worker but the inputs folder and two pipes. Where the
                            launcher is a fork of the worker's zygote (harness.zygote), P2 calls
                            harness.child in the zygote's interpreter instead, torch imported.

Where the platform refuses namespaces (no root and no unprivileged user namespaces, or
HARNESS_SANDBOX=off), the run still gets a clean process, a clean environment, its own
scratch folder and the process-tree kill (P1 is a child subreaper), and the result says
`sandboxed: false` with the reason. HARNESS_SANDBOX=require makes that a failure instead.

The layers a run got are written by P1 on the control pipe before any submission code exists
in the sandbox; the worker trusts that line and nothing else the run says about itself.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import sys
import time

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_SECUREBITS, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 28, 36, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
# NOROOT, NO_SETUID_FIXUP, KEEP_CAPS (locked off), NO_CAP_AMBIENT_RAISE, each with its lock bit:
# root inside the sandbox can never regain a capability, not even through execve.
SECUREBITS_LOCKED_DOWN = 0b11101111
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41}

SCRATCH = "/scratch"        # the run's working directory, HOME and nothing else writable but /tmp
INPUTS = "/inputs"          # what the worker hands the run, read-only
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
SYSTEM_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys", "/opt")
# Of /etc only what the dynamic loader, Python and torch read: not shadow, sudoers, ssh keys.
ETC_ENTRIES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group",
               "hosts", "alternatives", "fonts")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(source, target, fstype, flags, data=None) -> None:
    _check(_libc.mount(None if source is None else source.encode(), target.encode(),
                       None if fstype is None else fstype.encode(), ctypes.c_ulong(flags),
                       None if data is None else data.encode()), f"mount {source or fstype} on {target}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# ---- P0: namespaces ---------------------------------------------------------------------------

def _unshare(user_ns: bool) -> None:
    """New mount, PID, network, IPC and UTS namespaces; in a new user namespace too when asked
    (mapping our own uid to root inside it, which needs no privilege)."""
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    _check(_libc.unshare(flags | (CLONE_NEWUSER if user_ns else 0)), "unshare")
    if user_ns:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")


def enter_namespaces(mode: str) -> tuple[bool, str]:
    """(True, how) when the namespaces took effect, else (False, why not)."""
    if mode == "off":
        return False, "HARNESS_SANDBOX=off"
    # Root needs no user namespace; "userns" asks for one anyway: the sandbox a normal user gets.
    attempts = [False, True] if os.geteuid() == 0 and mode != "userns" else [True]
    why = ""
    for user_ns in attempts:
        try:
            _unshare(user_ns)
            return True, "user namespace" if user_ns else "root"
        except OSError as e:
            why = f"{e.strerror or e} (unshare{' with a user namespace' if user_ns else ''})"
    return False, f"the platform refused namespaces: {why}"


# ---- P1: the new root ---------------------------------------------------------------------------

def exposed_paths() -> list[str]:
    """What the run may read: system trees, this Python installation, the harness package."""
    import harness

    found = [*SYSTEM_TREES, *(f"/etc/{name}" for name in ETC_ENTRIES), sys.prefix, sys.base_prefix, sys.exec_prefix,
             os.path.dirname(harness.__file__)]
    found += [p for p in sys.path if p and os.path.isdir(p)]
    # A symlinked installation (/usr/local/py -> /opt/py-3.11) needs the link and its target.
    return _outermost([q for p in found if os.path.lexists(p) for q in {os.path.abspath(p), os.path.realpath(p)}])


def _outermost(paths: list[str]) -> list[str]:
    """Drop paths that lie inside another one of the list (bound with it already)."""
    out: list[str] = []
    for p in sorted(set(os.path.normpath(p) for p in paths), key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def _bind(source: str, root: str, target: str | None = None) -> None:
    dest = root + (target or source)
    if os.path.islink(source) and target is None:  # /lib -> usr/lib on merged-/usr systems
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.lexists(dest):
            os.symlink(os.readlink(source), dest)
        return
    if os.path.isdir(source):
        os.makedirs(dest, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not os.path.exists(dest):
            open(dest, "w").close()
    _mount(source, dest, None, MS_BIND | MS_REC)


def _mount_flags(path: str) -> int:
    """Flags of the mount at path that a user namespace locks (remounting must keep them)."""
    f = os.statvfs(path).f_flag
    keep = 0
    for st, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                   (getattr(os, "ST_NOATIME", 1024), MS_NOATIME), (getattr(os, "ST_NODIRATIME", 2048), MS_NODIRATIME),
                   (getattr(os, "ST_RELATIME", 4096), MS_RELATIME)):
        if f & st:
            keep |= ms
    return keep


def _mounts_under(root: str) -> list[str]:
    """Mount points at or below root, in mount order (from /proc/self/mountinfo)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == root or point.startswith(root.rstrip("/") + "/"):
                out.append(point)
    return out


def build_root(root: str, spec: dict) -> None:
    """Everything the run will see, mounted at root (an empty folder), before pivot_root."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks back to the host
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    os.makedirs(root + "/dev")
    _mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID, "size=64k,mode=0755")
    for name in DEVICES + tuple(n for n in os.listdir("/dev") if n.startswith("nvidia")):
        if os.path.exists("/dev/" + name):
            _bind("/dev/" + name, root)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    # Pseudo-terminals of the sandbox's own (a new devpts instance sees none of the host's): a
    # notebook's `!command` runs under one.
    os.makedirs(root + "/dev/pts")
    try:
        _mount("devpts", root + "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
        os.symlink("pts/ptmx", root + "/dev/ptmx")
    except OSError:
        pass  # no terminals then; nothing else needs them
    # The writable folders first: an exposed tree may lie below one (a checkout in /tmp) and is
    # then bound on top of it.
    size = f"size={int(spec['scratch_mb'])}m"
    for path, mode in (("/dev/shm", "1777"), ("/tmp", "1777"), (SCRATCH, "0777")):
        os.makedirs(root + path, exist_ok=True)
        _mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode={mode}")
    for path in exposed_paths():
        _bind(path, root)
    _bind(spec["inputs"], root, INPUTS)
    # Extra folders at fixed places (a notebook's /kaggle); a writable one stays writable.
    writable = {root + p for p in ("/dev/shm", "/dev/pts", "/tmp", SCRATCH, "/proc")}
    for source, target, rw in spec.get("binds") or ():
        _bind(source, root, target)
        if rw:
            writable.add(root + target)
    # Hide what must stay unseen even where it lies inside an exposed tree (a cache in /opt, a
    # checkout on sys.path): an empty read-only tmpfs over it.
    for path in spec["hide"]:
        if os.path.isdir(root + path):
            _mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=0555")
    os.makedirs(root + "/proc", exist_ok=True)
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for point in _mounts_under(root):
        if point != root and point not in writable and not point.startswith(root + "/proc/"):
            try:
                _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _mount_flags(point))
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.EACCES):  # a vanished or unreachable submount
                    raise
    _mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _pivot(root)


def _pivot(root: str) -> None:
    """Make root the file system's root and detach the old one entirely (not a chroot)."""
    os.chdir(root)
    if hasattr(_libc, "pivot_root"):
        ret = _libc.pivot_root(b".", b".")
    else:
        ret = _libc.syscall(_PIVOT_ROOT_SYSCALL[os.uname().machine], b".", b".")
    _check(ret, "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "umount the old root")
    os.chdir("/")


def drop_capabilities() -> bool:
    """Give up every capability for good: empty bounding and ambient sets, locked securebits,
    no_new_privs, then capset to nothing. Root in the sandbox cannot unmount what hides the
    cache, remount anything writable, or ptrace the sandbox's init. True when CapEff is 0."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read()) if os.path.exists("/proc/sys/kernel/cap_last_cap") else 40
    for cap in range(last + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails harmlessly without CAP_SETPCAP
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _libc.prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_DOWN, 0, 0, 0)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    _check(_libc.capset(ctypes.byref(Header(_LINUX_CAPABILITY_VERSION_3, 0)), (Data * 2)()), "capset")
    return _status_field("CapEff") == 0 and _status_field("CapPrm") == 0


def _status_field(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1], 16)
    return -1


# ---- P1: init ----------------------------------------------------------------------------------

def parents() -> dict[int, int]:
    """Every visible process's parent: {pid: ppid}, from /proc/<pid>/stat."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    found[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return found


def _descendants_of_self() -> set[int]:
    """Every process whose parent chain reaches this one (for the no-namespace fallback)."""
    parent = parents()
    me, found, frontier = os.getpid(), set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found - {me}


def _init(spec: dict, namespaced: bool, how: str) -> int:
    """PID 1 of the sandbox: build the root, report the layers, start the run, reap, exit."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the launcher, and so does the namespace
    control = spec["control_fd"]
    # clean_process: the run inherits nothing of the worker (a fresh interpreter, or a fork of the
    # zygote, which never held any of it).
    layers = {"fresh_interpreter": not spec.get("fork_run"), "clean_process": True, "namespaces": namespaced,
              "how": how, "mount_namespace": False, "pid_namespace": False, "network_namespace": False,
              "capabilities_dropped": False, "filesystem_hidden": False}
    workdir = spec["fallback_scratch"]
    if namespaced:
        try:
            build_root(spec["root"], spec)
            workdir = spec.get("workdir") or SCRATCH
            layers.update(mount_namespace=True, filesystem_hidden=True, pid_namespace=os.getpid() == 1,
                          network_namespace=True)
        except OSError as e:
            if spec["mode"] == "require":
                raise
            layers["refused"] = f"file system: {e}"
            _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            layers.update(pid_namespace=os.getpid() == 1, network_namespace=True)
    else:
        layers["refused"] = how
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of the run come back here to be killed
    try:
        layers["capabilities_dropped"] = drop_capabilities()
    except OSError as e:
        layers["refused"] = (layers.get("refused", "") + f"; capabilities: {e}").lstrip("; ")
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the run cannot open this process's fds or ptrace it
    os.write(control, (json.dumps({"isolation": layers}) + "\n").encode())

    pid = os.fork()
    if pid == 0:
        try:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            os.chdir(workdir)
            env = dict(spec["env"], HOME=workdir, TMPDIR="/tmp" if layers["filesystem_hidden"] else workdir)
            module = spec.get("module") or "harness.child"
            args = [INPUTS if layers["filesystem_hidden"] else spec["inputs"], str(spec["result_fd"]), str(control)]
            if spec.get("fork_run") and module == "harness.child":
                # Forked from the zygote (harness.zygote): the runtime is imported already. The spec
                # (the host's paths of what is hidden) is dropped from this process's objects first.
                spec.clear()
                os.environ.clear()
                os.environ.update(env)
                sys.argv = [module, *args]
                from harness import child

                child.exit_after(child.main)
            argv = [sys.executable, "-s", *(["-P"] if sys.version_info >= (3, 11) else []), "-m", module, *args]
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    os.close(control)
    os.close(spec["result_fd"])
    for fd in (0, 1, 2):  # the output pipe reaches EOF when the run's last process is gone
        os.dup2(os.open(os.devnull, os.O_RDWR), fd)
    code = _reap_until(pid)
    if not layers["pid_namespace"]:
        for _ in range(3):  # a process that forks while we kill: go again
            left = _descendants_of_self()
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
            _reap_all()
    return code


def _reap_until(pid: int) -> int:
    """Reap every child (orphans are re-parented to init) until pid ends; its exit code, or
    128 + signal number when it was killed."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 127
        except InterruptedError:
            continue
        if done == pid:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _reap_all() -> None:
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def _read_spec() -> dict:
    """The spec, from stdin's descriptor to its end (a launcher forked by the zygote has a fresh
    pipe there, under a sys.stdin that read its own)."""
    chunks = []
    while chunk := os.read(0, 1 << 16):
        chunks.append(chunk)
    return json.loads(b"".join(chunks))


def main() -> int:
    spec = _read_spec()
    # Dies with the worker that started it (a worker killed when a score fails or is interrupted),
    # and with it init and the whole run (init's own death signal, then the PID namespace).
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != spec.get("parent", os.getppid()):
        return 125  # the worker died before the line above took effect
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    namespaced, how = enter_namespaces(spec["mode"])
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # again: a new user namespace's credentials clear it
    if not namespaced and spec["mode"] == "require":
        os.write(spec["control_fd"], (json.dumps({"isolation": {"namespaces": False, "refused": how}}) + "\n").encode())
        return 125
    pid = os.fork()  # the first child in a new PID namespace is its PID 1
    if pid == 0:
        code = 126
        try:
            code = _init(spec, namespaced, how)
        except BaseException as e:  # noqa: BLE001 - reported, and the run never started
            os.write(spec["control_fd"], (json.dumps({"setup_error": f"{type(e).__name__}: {e}"}) + "\n").encode())
        finally:
            os._exit(code)
    os.close(spec["control_fd"])
    os.close(spec["result_fd"])
    _, status = os.waitpid(pid, 0)  # retried on EINTR by Python itself (PEP 475)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main())
