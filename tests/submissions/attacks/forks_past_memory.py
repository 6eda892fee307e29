"""Attack: RLIMIT_AS binds one process, so fork: three children each fill 500 MiB of their own,
all held at once, far past the run's 1 GiB in total. Prints LEAK when every child held its share
at the same moment (the run's cgroup counts every process it starts)."""
import os
import time


def unlearning(net, retain_loader, forget_loader, val_loader):
    ready_r, ready_w = os.pipe()
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            hoard = bytearray(500 * 2**20)          # zero-filled: every page touched
            hoard[::4096] = b"\1" * len(hoard[::4096])
            os.write(ready_w, b"x")
            time.sleep(3)
            os._exit(0)
        children.append(pid)
    os.close(ready_w)
    held = 0
    deadline = time.time() + 10
    while held < 3 and time.time() < deadline:
        chunk = os.read(ready_r, 3)
        if not chunk:
            break
        held += len(chunk)
    statuses = [os.waitpid(pid, 0)[1] for pid in children]
    if held == 3 and all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses):
        print(f"LEAK: three processes held {3 * 500} MiB at once")
