import os
import subprocess

MARKER = os.environ.get("SPAWN_MARKER_DEFAULT", "harness-orphan-marker-7f3c")


def unlearning(net, retain_loader, forget_loader, val_loader):
    # A grandchild in its own session, as a daemon would be: only the runner's cleanup can find it.
    subprocess.Popen(["sleep", "1000", MARKER], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.Popen(["sh", "-c", f"sleep 1000; echo {MARKER}"])
