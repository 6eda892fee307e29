"""The data (PROTOCOL §2): where images come from (sources: the synthetic generator, digits, Kaggle
folders, CSV manifests, CelebA, CIFAR-10), how they are split and what is forgotten (scenarios),
the Kaggle layout every data set is stored in (layout), the cache of made data sets (cache), and
what the model sees (loaders). This module re-exports what the rest of the harness uses."""
from harness.data.cache import ensure_data, generate  # noqa: F401
from harness.data.layout import (CSV_COLUMNS, ORIGINAL_MODEL, PACKED_CACHE, PACKED_RECORD, DataCorrupt,  # noqa: F401
                                 Split, images_digest, kaggle_order, load_splits, read_split)
from harness.data.loaders import FaceAgeDataset, class_weights, make_loader, to_model_input  # noqa: F401
from harness.data.scenarios import SCENARIOS, SPLITS  # noqa: F401
from harness.data.sources import resolve  # noqa: F401
from harness.data.synthetic import GENERATOR_VERSION  # noqa: F401
