"""finetune, slowed down so that a test can interrupt a score in the middle."""
import importlib.util
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "finetune", Path(__file__).resolve().parents[2] / "submissions" / "finetune.py")
_finetune = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_finetune)


def unlearning(net, retain_loader, forget_loader, val_loader):
    time.sleep(1.0)
    _finetune.unlearning(net, retain_loader, forget_loader, val_loader)
