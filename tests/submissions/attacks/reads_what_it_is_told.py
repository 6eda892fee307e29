"""Attack: read every seed, key and path the run is told (the active protocol, the environment,
/inputs/run.json): with public seeds they rebuild the pool, and a path says where the data lives.
LEAK for each one present."""
import json
import os

from harness import protocol

SEEDS = ("data_seed", "split_seed", "original_seed", "retrain_seed0", "unlearn_seed0")


def unlearning(net, retain_loader, forget_loader, val_loader):
    told = protocol.active()
    for name in SEEDS:
        if getattr(told, name) != -1:
            print(f"LEAK: the active protocol gives {name} = {getattr(told, name)}")
    if told.data_path or told.data_digest:
        print(f"LEAK: the active protocol gives the data's path {told.data_path!r}")
    spec = json.loads(open("/inputs/run.json").read())
    for name in SEEDS:
        if spec["protocol"].get(name) != -1:
            print(f"LEAK: run.json gives {name}")
    for name, value in os.environ.items():
        for token in value.replace(":", " ").replace('"', " ").split():
            if token.startswith("/") and any(s in token for s in ("cache", "reference", "secret.key", "results")):
                print(f"LEAK: the environment names {token} in {name}")
    budget = protocol.active_budget()
    print(f"told: {told.epochs} epochs, lr {told.lr}, batch {told.batch_size}, budget {budget['seconds']:.2f} s")
