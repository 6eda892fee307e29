"""Writes into its working folder until the file system says no: the sandbox's /scratch is a
size-limited tmpfs, so the host's disk never fills."""
import errno
import os


def unlearning(net, retain_loader, forget_loader, val_loader):
    chunk, written = b"\0" * (1 << 24), 0
    try:
        with open("fill.bin", "wb") as f:
            while written < (4 << 30):
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as e:
        print("STOPPED", errno.errorcode.get(e.errno), written >> 20, "MiB")
    os.remove("fill.bin")
