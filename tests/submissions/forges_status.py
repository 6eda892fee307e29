"""Writes its own status line on the result pipe, 200,000 brackets deep (json.loads raises
RecursionError on it), then leaves without the harness's own line: the worker must call that one
failed run, not crash."""
import os
import sys


def unlearning(net, retain_loader, forget_loader, val_loader):
    os.write(int(sys.argv[2]), b"[" * 200_000 + b"\n")
    os._exit(0)
