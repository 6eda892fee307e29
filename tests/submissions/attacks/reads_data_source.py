"""Attack: read the real data source, test images and labels included, from inside a run (to
train on the test set, or to find the forget set's neighbours). A run is told no path, so it looks
where the harness was started (`--data PATH` in any process's command line it can see); digits ship
inside scikit-learn. Fails the run loudly when it can read either."""
import os


def _paths_on_command_lines():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        for flag, value in zip(args, args[1:]):
            if flag == "--data":
                yield value.split(":", 1)[-1] if ":" in value and not value.startswith("/") else value


def unlearning(net, retain_loader, forget_loader, val_loader):
    from harness.protocol import active

    p = active()
    seen = []
    for path in {p.data_path, *_paths_on_command_lines()} - {""}:
        if os.path.isfile(path) or (os.path.isdir(path) and os.listdir(path)):
            seen.append(path)
    if p.data_source == "digits":
        try:
            from sklearn.datasets import load_digits

            load_digits()
            seen.append("load_digits")
        except Exception:
            pass
    if seen:
        raise RuntimeError("LEAK: read the data source: " + ", ".join(seen))
