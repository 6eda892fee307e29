"""Supervision of one untrusted process tree in the sandbox, from the trusted side: start it (a
fork of this worker's zygote, or a fresh interpreter), feed it its spec, read its pipes with caps,
kill it at its time limit with everything it started, and say what it produced and when, all
measured here. Used by the runner (an unlearning run) and by harness.kaggle (a notebook's kernel).
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness import cgroups, zygote as zygote_mod

OUTPUT_KEEP_BYTES = 16_384    # head and tail of a run's stdout/stderr kept for the log
SCRATCH_MB = 1024             # each of the run's tmpfs folders (/scratch, /tmp, /dev/shm)
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphans of a run (an unsandboxed one's, or a launcher's) come back to this process, which
    kills them."""
    libc().prctl(PR_SET_CHILD_SUBREAPER, 1)


def drain(fd: int, keep: dict) -> None:
    """Read a run's output to EOF, keeping its head and tail, so a chatty run neither blocks on a
    full pipe nor fills the disk."""
    head, tail, total = bytearray(), bytearray(), 0
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        total += len(chunk)
        if len(head) < OUTPUT_KEEP_BYTES:
            head += chunk[:OUTPUT_KEEP_BYTES - len(head)]
        tail = (tail + chunk)[-OUTPUT_KEEP_BYTES:]
    os.close(fd)
    keep.update(head=bytes(head), tail=bytes(tail), total=total)


def children(pid: int) -> set[int]:
    """PIDs whose parent is pid."""
    from harness.sandbox import parents

    return {child for child, parent in parents().items() if parent == pid}


def kill_leftovers(pgid: int, spare: set[int]) -> int:
    """Kill the run's process group and every orphan it left (re-parented to this worker, a child
    subreaper), sparing the worker's own children from before the run; then reap. Returns how
    many processes were signalled."""
    killed = 0
    try:
        os.killpg(pgid, signal.SIGKILL)
        killed += 1
    except ProcessLookupError:
        pass
    for pid in children(os.getpid()) - spare:
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # reap: no zombies left behind
        left = children(os.getpid()) - spare
        if not left:
            break
        for pid in left:  # a grandchild orphaned by the kills above arrives here too: kill it as well
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, os.WNOHANG)
            except (ChildProcessError, ProcessLookupError):
                pass
        time.sleep(0.01)
    return killed


def output_text(keep: dict) -> str:
    head, tail, total = keep.get("head", b""), keep.get("tail", b""), keep.get("total", 0)
    if total <= len(head):
        return head.decode(errors="replace")
    return (head.decode(errors="replace") + f"\n[... {total - len(head) - len(tail)} bytes of output cut ...]\n"
            + tail.decode(errors="replace"))


def libc():
    return ctypes.CDLL(None, use_errno=True)


def read_capped(fd: int, keep: dict, cap: int) -> None:
    """Read the result pipe to EOF, keeping at most cap bytes (a run cannot fill the worker's memory)."""
    chunks, total = [], 0
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except OSError:
            break
        if not chunk:
            break
        total += len(chunk)
        if total <= cap:
            chunks.append(chunk)
    keep["eof"] = time.perf_counter()
    os.close(fd)
    keep.update(data=b"".join(chunks), total=total)


def read_control(fd: int, lines: list) -> None:
    """Control lines with the worker's clock at their arrival: (perf_counter, text)."""
    with os.fdopen(fd, "rb") as f:
        for raw in f:
            lines.append((time.perf_counter(), raw[:65536].decode(errors="replace").strip()))
            if len(lines) > 16:
                break


def json_object(text) -> dict | None:
    """A JSON object from a run's pipe, or None for anything else: malformed, nested past the
    parser's depth (RecursionError), or not an object."""
    try:
        obj = json.loads(text)
    except Exception:  # noqa: BLE001 - ValueError, RecursionError, ...: whatever the run wrote
        return None
    return obj if isinstance(obj, dict) else None


def control_facts(lines: list) -> tuple[dict | None, float | None, str | None]:
    """(isolation layers, ready time, sandbox setup error) from the control lines. Only the first
    isolation line counts (the init writes it before the run exists), and the first `ready`."""
    isolation = ready = error = None
    for t, text in lines:
        if text == "ready":
            ready = t if ready is None else ready
            continue
        msg = json_object(text)
        if msg is None:
            continue
        if isolation is None and isinstance(msg.get("isolation"), dict):
            isolation = msg["isolation"]
        if error is None and "setup_error" in msg:
            error = str(msg["setup_error"])
    return isolation, ready, error


def sandboxed_process(box: Path, setup_s: float, limit_s: float, sandbox: str, cap: int, env_extra: dict,
                      hide: list[str], module: str = "harness.child", binds: tuple = (), workdir: str | None = None,
                      fallback_workdir: Path | None = None, on_tick=None, limits=None, warm: dict | None = None) -> dict:
    """Run `python -m module /inputs RESULT_FD CONTROL_FD` in the sandbox on box/inputs and return
    what it produced and when, all measured here. It is killed `setup_s` after its start if it has
    not written `ready` by then (the harness's own setup), else `limit_s` after `ready`.
    `hide` are folders that must not be seen even inside an exposed tree (the cache, the results,
    a real data source); `binds` extra (source, target, writable) folders in the sandbox,
    `workdir` its working directory there (fallback_workdir without namespaces); on_tick() is
    called while it runs; `limits` (harness.cgroups.Limits) puts the whole sandbox in a cgroup of
    its own, where the platform allows one. With `warm` (a public recipe, harness.child only) the
    sandbox is forked from this worker's zygote (harness.zygote) warmed up for it, where it can be."""
    out_r, out_w = os.pipe()
    res_r, res_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", **env_extra}
    env.update({k: v for k, v in os.environ.items() if k in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")
                and k not in env_extra})
    spec = {"mode": sandbox, "inputs": str(box / "inputs"), "root": str(box / "root"),
            "fallback_scratch": str(fallback_workdir or box / "scratch"), "hide": sorted(set(map(str, hide))),
            "scratch_mb": SCRATCH_MB, "env": env, "parent": os.getpid(), "result_fd": res_w, "control_fd": ctl_w,
            "module": module, "binds": [[str(s), t, bool(w)] for s, t, w in binds], "workdir": workdir}
    zygote, started_by = None, "a fresh interpreter"
    if warm is not None and module == "harness.child":
        base = {k: v for k, v in env.items() if k not in env_extra}  # what every run of this worker shares
        zygote, why = zygote_mod.for_worker(warm, base)
        started_by = "a fork of the worker's zygote" if zygote else f"a fresh interpreter ({why})"
    group, refused = (None, "") if limits is None or sandbox == "off" else cgroups.create(limits)
    before = children(os.getpid())  # the zygote among them: it outlives the run
    started = time.perf_counter()
    proc = zygote.launch(out_w, res_w, ctl_w) if zygote else None
    if proc is not None:
        spec.update(parent=zygote.pid, result_fd=zygote_mod.RESULT_FD, control_fd=zygote_mod.CONTROL_FD, fork_run=True)
    else:
        if zygote is not None:
            started_by = "a fresh interpreter (the zygote was gone)"
        proc = subprocess.Popen([sys.executable, "-s", "-m", "harness.sandbox"], stdin=subprocess.PIPE, stdout=out_w,
                                stderr=out_w, pass_fds=(res_w, ctl_w), cwd=box, env=env, start_new_session=True)
    for fd in (out_w, res_w, ctl_w):
        os.close(fd)
    if group is not None:
        try:  # before the launcher has read its spec: the sandbox and the run are born inside
            group.add(proc.pid)
        except OSError as e:
            group.remove()
            group, refused = None, f"cannot enter the cgroup ({e.strerror or e})"
    output: dict = {}
    payload: dict = {}
    control: list = []
    readers = [threading.Thread(target=fn, args=args, daemon=True) for fn, args in (
        (drain, (out_r, output)), (read_capped, (res_r, payload, cap)), (read_control, (ctl_r, control)))]
    for t in readers:
        t.start()
    try:
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    timed_out = None
    while proc.poll() is None:
        ready = next((t for t, text in list(control) if text == "ready"), None)
        if time.perf_counter() > (started + setup_s if ready is None else ready + limit_s):
            timed_out = "setup" if ready is None else "run"
            os.killpg(proc.pid, signal.SIGKILL)  # the sandbox's init dies with it, and with it every run process
            proc.wait()
            break
        if on_tick is not None:
            on_tick()
        time.sleep(0.01)
    exited = time.perf_counter()
    usage = {}
    if group is not None:
        group.kill()
        usage = group.usage()
        group.remove()
    kill_leftovers(proc.pid, spare=before)
    for t in readers:
        t.join(timeout=5)
    code = proc.returncode
    exit_info = (f"killed by signal {signal.Signals(code - 128).name}" if 128 < code < 128 + 65
                 else f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}")
    data = payload.get("data", b"")
    head, _, weights = data.partition(b"\n")
    status = json_object(head)
    isolation, ready, setup_error = control_facts(control)
    if isolation is not None:
        isolation = {**isolation, "started_by": started_by}
    if isolation is not None and limits is not None:
        isolation = {**isolation, "cgroup": group.describe() if group else None}
        if refused:
            isolation["refused"] = "; ".join(filter(None, [isolation.get("refused"), f"cgroup: {refused}"]))
    return {"timed_out": timed_out, "started": started, "exit": exited, "wall": exited - started, "ready": ready,
            "result_eof": payload.get("eof", exited),
            "isolation": isolation, "setup_error": setup_error, "status": status, "exit_info": exit_info,
            "payload": weights, "payload_bytes": payload.get("total", 0), "cap": cap, "usage": usage,
            "output": output_text(output), "output_bytes": output.get("total", 0)}
