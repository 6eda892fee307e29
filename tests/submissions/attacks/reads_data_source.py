"""Attack: read the real data source, test images and labels included, from inside a run (to
train on the test set, or to find the forget set's neighbours). The active protocol names the
source's path; digits ship inside scikit-learn. Fails the run loudly when it can read either."""
import os


def unlearning(net, retain_loader, forget_loader, val_loader):
    from harness.protocol import active

    p = active()
    seen = []
    if p.data_path and (os.path.isfile(p.data_path) or (os.path.isdir(p.data_path) and os.listdir(p.data_path))):
        seen.append(p.data_path)
    if p.data_source == "digits":
        try:
            from sklearn.datasets import load_digits

            load_digits()
            seen.append("load_digits")
        except Exception:
            pass
    if seen:
        raise RuntimeError("LEAK: read the data source: " + ", ".join(seen))
