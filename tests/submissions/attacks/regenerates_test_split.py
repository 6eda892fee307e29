"""Attack: render the data set again inside the run to learn the hidden test split, images and
labels (to train on the test set: the score's test-accuracy ratio). The synthetic faces are a
function of the profile's seeds, which the repository publishes, and the harness package that
renders them is importable in a run. When the regenerated retain images are the ones the run was
given (public seeds), the regenerated test split is the real one: LEAK. Under secret seeds (the
default) they are other faces."""
import numpy as np

from harness import protocol
from harness.data import cache, scenarios


def unlearning(net, retain_loader, forget_loader, val_loader):
    told = protocol.active()
    public = protocol.PROFILES[told.name.split("+")[0].removesuffix(protocol.DEV_SUFFIX)]
    table, split = cache.table_and_split(public.replace(scenario=told.scenario))
    index = {f"{p}-{n}": i for i, (p, n) in enumerate(zip(table.person.tolist(), table.numbers().tolist()))}
    given = retain_loader.dataset.split
    checked = matched = 0
    for j, image_id in enumerate(given.image_id[:50]):
        checked += 1
        i = index.get(image_id)
        matched += i is not None and np.array_equal(table.images[i].transpose(2, 0, 1), given.images[j].numpy())
    test = split == scenarios.TEST
    print(f"regenerated {len(table)} images; {matched} of {checked} given retain images among them")
    if checked and matched == checked:
        print(f"LEAK: the test split, regenerated: {int(test.sum())} images with their labels "
              f"{np.bincount(table.label[test], minlength=10).tolist()}")
