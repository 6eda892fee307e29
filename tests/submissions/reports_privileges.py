"""Prints what the run may do: capabilities, uid, no_new_privs, the processes it can see, and
whether it can remount or unmount anything. Its output is read by a test."""
import ctypes
import os


def unlearning(net, retain_loader, forget_loader, val_loader):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("Cap", "NoNewPrivs", "Uid")):
                print("STATUS", line.strip())
    print("PIDS", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
    libc = ctypes.CDLL(None, use_errno=True)
    for target in (b"/inputs", b"/usr", b"/"):
        print("UMOUNT", target.decode(), libc.umount2(target, 2), ctypes.get_errno())
    print("REMOUNT", libc.mount(None, b"/usr", None, 32 | 4096, None), ctypes.get_errno())
    print("ETC", sorted(os.listdir("/etc")))
    for secret in ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/root/.ssh", "/root/.bash_history"):
        print("SEES" if os.path.exists(secret) else "HIDDEN", secret)
