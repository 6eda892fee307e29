"""Holds memory where RLIMIT_AS does not look: 900 MiB in /dev/shm and 900 MiB in /tmp, each under
its own 1 GiB tmpfs cap, 1.8 GiB in all on top of the process. The run's cgroup counts tmpfs: the
run must fail for memory."""


def unlearning(net, retain_loader, forget_loader, val_loader):
    chunk = b"\1" * (1 << 24)
    for folder in ("/dev/shm", "/tmp"):
        with open(f"{folder}/hoard.bin", "wb") as f:
            for _ in range(900 >> 4):
                f.write(chunk)
                f.flush()
    print("LEAK: held 1800 MiB in tmpfs")
