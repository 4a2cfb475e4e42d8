"""Datasets (offline-first loading, caching) and client partitioning."""

from flwr_gan.data.datasets import (
    DATASET_NAMES,
    DataNotFoundError,
    ImageDataset,
    default_cache_dir,
    load_dataset,
)
from flwr_gan.data.partition import (
    PARTITION_SCHEMES,
    Partition,
    make_partition,
    partition_dirichlet,
    partition_fegan,
    partition_iid,
)

__all__ = [
    "DATASET_NAMES",
    "PARTITION_SCHEMES",
    "DataNotFoundError",
    "ImageDataset",
    "Partition",
    "default_cache_dir",
    "load_dataset",
    "make_partition",
    "partition_dirichlet",
    "partition_fegan",
    "partition_iid",
]
