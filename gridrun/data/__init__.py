"""Datasets as in-memory uint8 tensors, and the splits and batches a cell trains on.

    images.py   `ImageSet`: a whole dataset in memory (and which stored set a cell reads)
    sources.py  CIFAR-10 (official or folder layout), scikit-learn's digits, image folders,
                CUB-200, decoded into `ImageSet`s
    cache.py    the decode-once cache, memory-mapped and shared by every worker
    splits.py   stratified validation splits and subsets, batches, resizing
    augment.py  batched augmentation on the device, from the cell's own generator

May import: `gridrun.spec`, `gridrun.errors`.
"""
from .cache import open_cached
from .images import ImageSet, dataset_key
from .sources import load_dataset, resolve_data_dir
from .splits import (
                     SPLIT_KEYS,
                     Split,
                     Splits,
                     batch_count,
                     batches,
                     check_sizes,
                     make_splits,
                     split_for,
                     to_float,
)

__all__ = ["ImageSet", "SPLIT_KEYS", "Split", "Splits", "batch_count", "batches", "check_sizes",
           "dataset_key", "load_dataset", "make_splits", "open_cached", "resolve_data_dir",
           "split_for", "to_float"]
