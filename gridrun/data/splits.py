"""A cell's data: the train/validation/test splits its `data.*` keys ask for, and batches.

Cells take index-based splits of the same in-memory tensors: a stratified validation split
carved from the training set with a fixed seed, optional stratified subsets, and the test set
scored once. `SPLIT_KEYS` are the keys that decide a cell's splits (the dataset aside): cells
that agree on them share splits, in a worker and in the recorded dataset inputs.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import GridError
from .cache import write_whole
from .images import ImageSet

SPLIT_KEYS = ("data.val_fraction", "data.val_size", "data.train_size", "data.test_size",
              "data.split_seed")


@dataclass
class Split:
    """Rows `index` of a dataset's image tensor `x`, with their labels `y`.

    On the CPU `x` is the whole dataset tensor, shared (memory-mapped from the decode cache) by
    every cell and worker process: a split costs its indices, never a copy of its images, and a
    batch gathers its rows. On a GPU `to()` copies exactly the split's images to the device once.
    """
    x: torch.Tensor  # uint8 [M, C, H, W]
    y: torch.Tensor  # int64 [N], this split's labels
    index: torch.Tensor  # int64 [N], rows of x

    def __len__(self) -> int:
        return len(self.y)

    def images(self, rows: torch.Tensor | slice | None = None) -> torch.Tensor:
        """uint8 images of this split: all of them, or those at `rows` (positions in the split)."""
        index = self.index if rows is None else self.index[rows]
        return self.x[index]

    def to(self, device: torch.device | str) -> "Split":
        device = torch.device(device)
        if device.type == "cpu" and self.x.device.type == "cpu":
            return self
        return Split(self.images().to(device), self.y.to(device),
                     torch.arange(len(self.y), device=device))


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: list[float]
    std: list[float]

    def to(self, device: torch.device | str) -> "Splits":
        return Splits(self.train.to(device), self.val.to(device), self.test.to(device),
                      self.classes, self.mean, self.std)


def _stratified_subset(y: torch.Tensor, size: int, seed: int) -> np.ndarray:
    """Indices of a class-balanced random subset of `size` items (plain random when tiny)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    if size >= len(y):
        return idx
    if size < len(torch.unique(y)):
        return np.random.default_rng(seed).permutation(idx)[:size]
    picked, _ = train_test_split(idx, train_size=size, stratify=y.numpy(), random_state=seed)
    return np.sort(picked)


def validation_size(n_train: int, val_fraction: float, train_size: int | None,
                    val_size: int | None) -> int:
    """How many training images are held out for validation.

    `data.val_size` when given; else `val_fraction` of the training set, or, when `train_size`
    picks a subset, the same share of what is trained on (train_size * f / (1 - f)): a 2,000-image
    subset is validated on 222 images, not on 5,000, so evaluation stays small next to training.
    """
    if val_size is not None:
        return val_size
    if train_size is None:
        return round(n_train * val_fraction)
    return max(1, round(train_size * val_fraction / (1 - val_fraction)))


def check_sizes(images: ImageSet, val_fraction: float, train_size: int | None,
                test_size: int | None, where: str, val_size: int | None = None) -> None:
    """Subsets larger than what the dataset holds, and datasets a classifier cannot learn from
    (one class: 100 % accuracy that means nothing), are input errors, found before training."""
    if images.num_classes < 2:
        raise GridError(f"{images.name} has {images.num_classes} class(es) "
                        f"({', '.join(images.classes) or 'none'}); a classifier needs at least 2 "
                        "class folders", where)
    total = len(images.train_y)
    n_val = validation_size(total, val_fraction, None, val_size)  # with the whole set trained on
    n_train = total - n_val
    if n_val < 1 or n_train < 1:
        what = f"data.val_size {val_size}" if val_size is not None else \
            f"data.val_fraction {val_fraction}"
        raise GridError(f"{what} leaves {n_train} training and {n_val} validation images", where)
    if train_size is not None and (train_size > n_train or train_size + validation_size(
            total, val_fraction, train_size, val_size) > total):
        raise GridError(f"data.train_size {train_size:,} exceeds the {n_train:,} training images of "
                        f"{images.name} left after the validation split", where)
    if test_size is not None and test_size > len(images.test_y):
        raise GridError(f"data.test_size {test_size:,} exceeds the {len(images.test_y):,} test "
                        f"images of {images.name}", where)


def make_splits(images: ImageSet, val_fraction: float = 0.1, train_size: int | None = None,
                test_size: int | None = None, split_seed: int = 0,
                val_size: int | None = None) -> Splits:
    """Stratified validation split from the training set, then optional stratified subsets.
    The splits index the dataset's tensors; no image is copied. A dataset from the decode cache
    keeps its splits' rows beside it (`_kept_rows`)."""
    settings = (val_fraction, train_size, test_size, split_seed, val_size)
    rows = _kept_rows(images, settings)

    def take(x, y, i):
        i = torch.from_numpy(i)
        return Split(x, y[i], i)

    return Splits(take(images.train_x, images.train_y, rows["train"]),
                  take(images.train_x, images.train_y, rows["val"]),
                  take(images.test_x, images.test_y, rows["test"]),
                  images.classes, images.mean, images.std)


def _split_rows(images: ImageSet, val_fraction: float, train_size: int | None,
                test_size: int | None, split_seed: int, val_size: int | None
                ) -> dict[str, np.ndarray]:
    """The rows of each split (`make_splits`), by scikit-learn's stratified split."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(images.train_y))
    n_val = validation_size(len(idx), val_fraction, train_size, val_size)
    try:
        train_idx, val_idx = train_test_split(idx, test_size=n_val,
                                              stratify=images.train_y.numpy(),
                                              random_state=split_seed)
    except ValueError:  # fewer validation images than classes: no stratified split exists
        order = np.random.default_rng(split_seed).permutation(idx)
        train_idx, val_idx = order[n_val:], order[:n_val]
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    if train_size is not None:
        train_idx = train_idx[_stratified_subset(images.train_y[train_idx], train_size, split_seed)]
    test_idx = np.arange(len(images.test_y))
    if test_size is not None:
        test_idx = _stratified_subset(images.test_y, test_size, split_seed)
    return {"train": train_idx, "val": val_idx, "test": test_idx}


def _kept_rows(images: ImageSet, settings: tuple) -> dict[str, np.ndarray]:
    """`_split_rows` for these settings, kept in a file beside the dataset's decode-cache file
    once found.

    The launching process needs a cell's rows only to name them in its dataset inputs, and
    scikit-learn's import and split cost it about 1.5 s of CPU on the cores the workers train
    on; every worker process splits the same way. The file's name holds the split settings and
    scikit-learn's version (its split decides the rows); it is written whole or not at all, and
    a file that cannot be read or written is no error: the rows are found again."""
    if not images.cache_file:
        return _split_rows(images, *settings)
    from importlib.metadata import version

    key = hashlib.sha256(repr((settings, version("scikit-learn"))).encode()).hexdigest()[:16]
    file = Path(f"{images.cache_file}.splits") / f"{key}.npz"
    try:
        with np.load(file) as kept:
            return {name: kept[name] for name in ("train", "val", "test")}
    except (OSError, KeyError, ValueError):
        pass
    rows = _split_rows(images, *settings)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file, not a name: np.savez would add ".npz" to it
            np.savez(f, **rows)
    try:
        write_whole(file, save)
    except OSError:
        pass
    return rows


def split_for(cfg: dict, images: ImageSet) -> Splits:
    """The train/validation/test splits a cell's data keys ask for."""
    return make_splits(images, cfg["data.val_fraction"], cfg["data.train_size"],
                       cfg["data.test_size"], cfg["data.split_seed"], cfg["data.val_size"])


def batch_count(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Batches in one pass over `n` items. With `drop_last` the last partial batch is skipped,
    unless it is the only batch: a training set smaller than one batch still takes a step."""
    if drop_last and n >= batch_size:
        return n // batch_size
    return math.ceil(n / batch_size)


def batches(split: Split, batch_size: int, generator: torch.Generator | None = None,
            drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """uint8 image batches; shuffled when a generator is given (the cell's seed drives it).
    `drop_last` skips the last partial batch (see `batch_count`); the shuffle draws the same
    permutation either way, so only that batch differs."""
    n = len(split)
    order = torch.randperm(n, generator=generator) if generator is not None else None
    for start in range(0, batch_count(n, batch_size, drop_last) * batch_size, batch_size):
        if order is None:
            rows = slice(start, start + batch_size)
        else:
            rows = order[start:start + batch_size].to(split.index.device)
        yield split.images(rows), split.y[rows]


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float images in [0, 1], the input every gridrun model takes."""
    return x.float().div_(255)


def resizer(stored: int, wanted: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 batch -> float batch in [0, 1] at the cell's image size."""
    if wanted is None or wanted == stored:
        return to_float
    return lambda x: torch.nn.functional.interpolate(to_float(x), size=(wanted, wanted),
                                                     mode="bilinear", antialias=True,
                                                     align_corners=False)
