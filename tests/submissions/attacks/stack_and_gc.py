"""Attack: search the run's own process for what the harness knows: every frame up the stack and
every live object, for the test split, the original model's path, the cache or pool paths."""
import gc
import sys
from pathlib import PurePath

SUSPECT = ("reference", "retrain", "cache", "results", "pool", "test.csv", "original.json")


def _suspicious(obj):
    if type(obj) is dict and "test" in obj and type(obj["test"]).__name__ == "Split":
        return "the test split"
    if isinstance(obj, (str, PurePath)):
        text = str(obj)
        if text.startswith("/") and any(s in text for s in SUSPECT) and "site-packages" not in text \
                and "/harness/" not in text and "python3" not in text and "__pycache__" not in text:
            return f"a path {text!r}"
    return None


def unlearning(net, retain_loader, forget_loader, val_loader):
    frame, seen = sys._getframe(), 0
    while frame is not None:
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            what = _suspicious(value)
            if what:
                print(f"LEAK: frame {frame.f_code.co_name} holds {what}")
        frame, seen = frame.f_back, seen + 1
    gc.collect()
    for obj in gc.get_objects():
        items = obj.values() if type(obj) is dict else obj if type(obj) in (list, tuple) else [obj]
        for value in list(items)[:1000]:
            what = _suspicious(value)
            if what:
                print(f"LEAK: the garbage collector reaches {what}")
                break
