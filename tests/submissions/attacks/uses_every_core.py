"""Attack: a wall-clock budget rewards using every core, whatever torch.set_num_threads says. Two
busy processes for 1.5 s; LEAK when they got well over one CPU-second per wall-clock second (the
run's cgroup has a quota of one CPU)."""
import os
import time


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def unlearning(net, retain_loader, forget_loader, val_loader):
    t0, c0 = time.perf_counter(), os.times()
    pid = os.fork()
    if pid == 0:
        _spin(1.5)
        os._exit(0)
    _spin(1.5)
    os.waitpid(pid, 0)
    c, wall = os.times(), time.perf_counter() - t0
    cpu = sum(getattr(c, f) - getattr(c0, f) for f in ("user", "system", "children_user", "children_system"))
    print(f"CPU {cpu:.2f} s in {wall:.2f} s of wall clock")
    if cpu > 1.4 * wall:
        print(f"LEAK: {cpu / wall:.2f} CPUs at once")
