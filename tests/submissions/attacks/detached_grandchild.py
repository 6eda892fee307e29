"""Attack: leave a daemon behind. Double fork, new session, ignore every catchable signal, then
become a process that keeps writing (to its scratch and to /tmp) long after the run ends."""
import os
import signal
import sys

MARKER = "harness-detached-grandchild-5b2a"


def unlearning(net, retain_loader, forget_loader, val_loader):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_IGN)
            code = ("import time\nwhile True:\n"
                    "    for p in ('keeps_writing.txt', '/tmp/keeps_writing.txt'):\n"
                    "        open(p, 'a').write('still here\\n')\n"
                    f"    time.sleep(0.05)  # {MARKER}\n")
            os.execv(sys.executable, [sys.executable, "-c", code, MARKER])
        os._exit(0)
    os.wait()
