"""Labels, the split, and what is forgotten (PROTOCOL §2), the same for every data source.

The split: one seeded shuffle of all images (`split_seed`), then train/validation/test by image
(`split_fractions`, 80/10/10). The forget set is drawn from the training images by the scenario:

    identity  every training image of the `n_forget_identities` lowest person indices (the
              competition: whole people, ~2% of the training images)
    random    a seeded random `forget_fraction` of the training images (the papers' random-subset
              unlearning; the only choice besides class for data without identities)
    class     every training image of class `forget_class` (the papers' class unlearning)

Retain is the rest of the training images. A source that fixes its own split (a Kaggle-layout
folder) keeps it under `identity`; under the other scenarios its retain and forget sets are pooled
into one training set and the forget set is drawn again.
"""
from __future__ import annotations

import numpy as np

from harness.protocol import Protocol

SPLITS = ("retain", "forget", "validation", "test")
SCENARIOS = ("identity", "random", "class")
RETAIN, FORGET, VALIDATION, TEST = range(4)


def age_group_edges(ages: np.ndarray, n_classes: int) -> np.ndarray:
    """PROTOCOL §2: n_classes equal-width bins, edges evenly spaced from the youngest age to the
    oldest age + 1."""
    return np.linspace(float(ages.min()), float(ages.max()) + 1, n_classes + 1)


def age_groups(ages: np.ndarray, edges: np.ndarray) -> np.ndarray:
    n_classes = len(edges) - 1
    return np.clip(np.searchsorted(edges, ages, side="right") - 1, 0, n_classes - 1).astype(np.int64)


def by_image(protocol: Protocol, n: int) -> np.ndarray:
    """int64 [n]: RETAIN (train), VALIDATION or TEST per image, after one seeded shuffle."""
    order = np.random.default_rng(protocol.split_seed).permutation(n)
    f_train, f_val, _ = protocol.split_fractions
    n_train, n_val = int(round(f_train * n)), int(round(f_val * n))
    split = np.empty(n, np.int64)
    split[order[:n_train]] = RETAIN
    split[order[n_train:n_train + n_val]] = VALIDATION
    split[order[n_train + n_val:]] = TEST
    return split


def forget(protocol: Protocol, split: np.ndarray, person: np.ndarray | None, label: np.ndarray,
           source: str) -> np.ndarray:
    """`split` with the scenario's forget set marked FORGET among its training (RETAIN) images.
    ValueError, naming the fix, when the data cannot give the scenario a forget and a retain set."""
    split = split.copy()
    train = split == RETAIN
    if protocol.scenario == "identity":
        if person is None:
            raise ValueError(f"data source {source} has no identities, so --scenario identity cannot forget whole "
                             "people: use --scenario random or --scenario class")
        people = len(np.unique(person))
        if people <= protocol.n_forget_identities:
            raise ValueError(f"data source {source} has {people} identities; the identity scenario forgets the "
                             f"{protocol.n_forget_identities} lowest and needs more people than that to retain: add "
                             "people, or use --scenario random")
        chosen = train & (person < protocol.n_forget_identities)
    elif protocol.scenario == "random":
        if not 0 < protocol.forget_fraction < 1:
            raise ValueError(f"--scenario random:{protocol.forget_fraction}: the fraction must be between 0 and 1")
        idx = np.flatnonzero(train)
        n = max(1, int(round(protocol.forget_fraction * len(idx))))
        chosen = np.zeros(len(split), bool)
        if len(idx):
            chosen[np.random.default_rng([protocol.split_seed, 3]).choice(idx, min(n, len(idx)), replace=False)] = True
    elif protocol.scenario == "class":
        if not 0 <= protocol.forget_class < protocol.n_classes:
            raise ValueError(f"--scenario class:{protocol.forget_class}: the class must be 0..{protocol.n_classes - 1}")
        chosen = train & (label == protocol.forget_class)
    else:
        raise ValueError(f"unknown scenario {protocol.scenario!r}: choose one of {', '.join(SCENARIOS)}")
    split[chosen] = FORGET
    require_every_split(split, source, f"would be empty under --scenario {protocol.scenario} ({len(split)} images): "
                        "use a larger data set" + (" or another class" if protocol.scenario == "class" else ""))
    return split


def require_every_split(split: np.ndarray, source: str, why: str) -> None:
    """ValueError naming the splits that `split` (int64 [N] into SPLITS) leaves empty, then `why`."""
    empty = [name for k, name in enumerate(SPLITS) if not (split == k).any()]
    if empty:
        raise ValueError(f"data source {source}: the {' and '.join(empty)} split(s) {why}")


def pooled(given: np.ndarray) -> np.ndarray:
    """A fixed split with its forget set returned to training, for a scenario that draws its own."""
    out = given.copy()
    out[out == FORGET] = RETAIN
    return out
