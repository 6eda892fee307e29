"""The zygote: one per worker and model shape, a process that has imported torch and a run's
runtime once, and forks the sandbox of every run that worker starts.

A fresh interpreter per run paid ~2 s before each run's clock (torch's import, an optimiser's
first step importing torch._dynamo): a third of a score's wait on 2 cores. The zygote pays it
once per worker:

    worker (trusted, holds the pool)
    └── zygote                started by exec, never by a fork of the worker: a clean environment,
        │                     the run's runtime imported and warmed up, nothing of the cache, the
        │                     pool, the results or any data ever opened; one thread, no shared
        │                     writable memory (checked before it says ready)
        └── launcher          a fork per run, in a session of its own: harness.sandbox's launcher,
            └── init          with its spec read from a pipe the worker writes once the launcher
                └── run       is in the run's cgroup; init forks the run instead of exec'ing
                              harness.child, so the run starts with the runtime already imported

Why this fork is safe when a fork of the worker was not: a fork copies its parent's memory, and the
worker's memory holds the pool (retrained models, test outputs, the cache's key). The zygote's
memory holds only what any run may read anyway (the harness package, torch, a model of the public
recipe with zero weights), and every run is a fork of the zygote as it was before any run: a
child's writes (module state, the heap) are copy-on-write pages of that child alone, and its
files live in its own tmpfs folders. A run cannot reach the zygote itself: it is outside the
run's PID namespace, holds no capability over it, and shares no writable mapping with it. So
nothing passes from one run to the next, and nothing from the worker reaches any run.

Protocol on the socket (one line each way, fds as SCM_RIGHTS): the worker sends `fork` with the
launcher's stdin, output, result and control pipes; the zygote answers `pid N`, and `exit S` (a
wait status) when that launcher is gone. One run at a time: a worker runs one job at a time.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

ENV = "HARNESS_ZYGOTE"          # "off": every run is a fresh interpreter (exec), as before 2.1
RESULT_FD, CONTROL_FD = 3, 4    # where the launcher finds its result and control pipes
START_S = 300.0                 # the zygote's own start (torch's import, a warm-up), on no run's clock: a
                                # loaded 2-core machine took 30 s
_PR_SET_PDEATHSIG = 1


def self_check() -> str:
    """'' when this process may be forked for runs, else why not: a second thread would be copied
    mid-state into every child, and a shared writable mapping would be memory two runs share."""
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        return f"the zygote has {threads} threads"
    with open("/proc/self/maps") as f:
        shared = [line.split()[-1] for line in f if line.split()[1][1] == "w" and line.split()[1][3] == "s"]
    return f"the zygote has shared writable memory ({shared[0]})" if shared else ""


def _serve(sock: socket.socket) -> None:
    """Fork a launcher per request, report its pid, then its end."""
    from harness import sandbox

    while True:
        msg, fds, _, _ = socket.recv_fds(sock, 64, 4)
        if not msg:
            return  # the worker is gone
        pid = os.fork()
        if pid == 0:
            code = 125
            try:
                os.setsid()  # a process group of its own: the worker kills the whole sandbox with it
                sock.close()
                high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 16) for fd in fds]  # above the targets below
                for target, fd in zip((0, 1, 2, RESULT_FD, CONTROL_FD), (high[0], high[1], high[1], high[2], high[3])):
                    os.dup2(fd, target)
                os.closerange(CONTROL_FD + 1, os.sysconf("SC_OPEN_MAX"))  # nothing else of the zygote's
                code = sandbox.main()
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)  # the pipes' ends belong to the launcher now: EOF comes when it is gone
        sock.sendall(f"pid {pid}\n".encode())
        _, status = os.waitpid(pid, 0)  # retried on EINTR by Python itself (PEP 475)
        sock.sendall(f"exit {status}\n".encode())


def main() -> int:
    """`python -m harness.zygote SOCKET_FD PARENT_PID` with the warm-up protocol (JSON) on stdin."""
    import ctypes

    sock_fd, parent = int(sys.argv[1]), int(sys.argv[2])
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with its worker
    if os.getppid() != parent:
        return 125
    warm = json.loads(sys.stdin.read())
    sock = socket.socket(fileno=sock_fd)
    import torch

    from harness import child, protocol as protocol_mod, training  # noqa: F401 - the run's runtime, imported once

    protocol = protocol_mod.from_dict(warm)
    torch.set_num_threads(1)
    training.warm_up(protocol)
    problem = self_check()
    sock.sendall((json.dumps({"ready": not problem, "problem": problem}) + "\n").encode())
    if problem:
        return 1
    _serve(sock)
    return 0


# ---- the worker's side ------------------------------------------------------------------------

class Launched:
    """A launcher forked by the zygote, as the worker sees it: what subprocess.Popen offers the
    worker for an exec'd one (pid, stdin, poll, wait, returncode)."""

    def __init__(self, zygote: "Zygote", pid: int, stdin):
        self.zygote, self.pid, self.stdin, self.returncode = zygote, pid, stdin, None

    def poll(self) -> int | None:
        if self.returncode is None and self.zygote.readable(0):
            self._finish()
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            self._finish()
        return self.returncode

    def _finish(self) -> None:
        line = self.zygote.line()
        if line.startswith("exit "):
            self.returncode = os.waitstatus_to_exitcode(int(line.split()[1]))
        else:  # the zygote died with the run (killed with the worker's group, or crashed)
            self.zygote.close()
            self.returncode = -signal.SIGKILL


def _key(warm: dict) -> str:
    """Which zygote serves a run of the protocol `warm`: one per shape of the warm-up, not per
    protocol, so that another budget, K or name reuses it (a new zygote costs seconds)."""
    from harness import training

    return json.dumps({name: warm.get(name) for name in training.WARM_FIELDS}, sort_keys=True)


class Zygote:
    """The worker's zygote for one warm-up protocol; `launch()` forks a launcher."""

    def __init__(self, warm: dict, env: dict):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.key = _key(warm)
        self.sock, self.buf = ours, b""
        # One OpenMP thread from the start: with more, torch's import leaves a thread running, and a
        # CPU run has one thread anyway (harness.child). The run's own environment replaces this one.
        self.proc = subprocess.Popen(self.command(theirs.fileno()), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                                     env={**env, "OMP_NUM_THREADS": "1"}, cwd="/")
        theirs.close()
        self.proc.stdin.write(json.dumps(warm).encode())
        self.proc.stdin.close()
        self.pid = self.proc.pid
        line = self.line(time.monotonic() + START_S)
        reply = json.loads(line) if line.startswith("{") else {"ready": False, "problem": "it did not start"}
        self.problem = "" if reply.get("ready") else reply.get("problem") or "it did not start"
        if self.problem:
            self.close()

    def command(self, fd: int) -> list[str]:
        """A fresh interpreter, never a fork of the worker."""
        return [sys.executable, "-s", *(["-P"] if sys.version_info >= (3, 11) else []), "-m", "harness.zygote",
                str(fd), str(os.getpid())]

    def readable(self, timeout: float) -> bool:
        return b"\n" in self.buf or bool(select.select([self.sock], [], [], timeout)[0])

    def line(self, deadline: float | None = None) -> str:
        """The zygote's next line ('' when it is gone, or past deadline)."""
        while b"\n" not in self.buf:
            if deadline is not None and not select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return ""
            try:
                chunk = self.sock.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                return ""
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def alive(self) -> bool:
        return self.proc.poll() is None and self.sock.fileno() >= 0

    def launch(self, out_w: int, res_w: int, ctl_w: int) -> Launched | None:
        """Fork a launcher holding these pipes (the caller closes its own ends); None if the zygote
        is gone. The launcher waits for its spec on the returned stdin."""
        spec_r, spec_w = os.pipe()
        try:
            socket.send_fds(self.sock, [b"fork"], [spec_r, out_w, res_w, ctl_w])
            line = self.line(time.monotonic() + 10.0)
        except OSError:
            line = ""
        finally:
            os.close(spec_r)
        if not line.startswith("pid "):
            os.close(spec_w)
            self.close()
            return None
        return Launched(self, int(line.split()[1]), os.fdopen(spec_w, "wb"))

    def close(self) -> None:
        self.sock.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# A worker's zygotes, one per model shape, the most recently used last. A worker that alternates
# between profiles (sources, a session of tests) would otherwise start a new one, ~3 s of imports
# and warm-up, at every switch; each idle one holds ~0.4 GB of its own (RssAnon at quick's shape).
ZYGOTES_KEPT = 3
_ZYGOTES: dict[str, Zygote] = {}


def for_worker(warm: dict, env: dict) -> tuple[Zygote | None, str]:
    """This worker's zygote for `warm` (kept from an earlier run of that model shape, or started:
    again after a crash), or (None, why not) when runs must start as fresh interpreters."""
    if os.environ.get(ENV) == "off":
        return None, f"{ENV}=off"
    key = _key(warm)
    z = _ZYGOTES.pop(key, None)
    if z is not None and not z.alive():
        z.close()
        z = None
    if z is None:
        while len(_ZYGOTES) >= ZYGOTES_KEPT:
            _ZYGOTES.pop(next(iter(_ZYGOTES))).close()
        z = Zygote(warm, env)
        if z.problem:
            return None, z.problem
    _ZYGOTES[key] = z
    return z, ""


if __name__ == "__main__":
    sys.exit(main())
