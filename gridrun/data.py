"""Datasets, held in memory as uint8 tensors.

A dataset is decoded once into a cached tensor file (`$GRIDRUN_CACHE_DIR`, default
`~/.cache/gridrun`), so a second launch does not decode 60,000 JPEGs again. Cells then take
index-based splits of the same in-memory tensors: a stratified validation split carved from the
training set with a fixed seed, optional stratified subsets, and the test set scored once.

Supported sources:
- `cifar10`: the official torchvision layout (`cifar-10-batches-py/`), an ImageFolder layout
  (`train/<class>/*`, `test/<class>/*`), or torchvision's download when neither is present.
- `digits`: scikit-learn's bundled 8x8 digits, upscaled to 32x32 RGB, with a fixed stratified
  20 % test split. Offline and tiny: for quick runs and tests.
- `imagefolder`: any `train/<class>/*` + `test/<class>/*` tree.
- `cub200`: the CUB-200-2011 layout (`images/`, `images.txt`, `image_class_labels.txt`,
  `train_test_split.txt`, `classes.txt`), with its default train/test split.
"""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .errors import GridError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CACHE_VERSION = 1
PHOTO_DATASETS = ("imagefolder", "cub200")  # photos of many sizes: resized when decoded


@dataclass
class ImageSet:
    """A whole dataset in memory. Images are uint8 [N, C, H, W]; labels int64 [N]."""
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: list[float]  # per-channel mean of the training images, in [0, 1]
    std: list[float]
    source: str  # where it came from, for the run's params
    cache_file: str = ""  # the decode cache it was memory-mapped from (worker processes map it too)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


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


# --- locating and loading --------------------------------------------------------------------

def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """--data-dir, else $GRIDRUN_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get("GRIDRUN_DATA_DIR") or "data")


def cache_dir() -> Path:
    return Path(os.environ.get("GRIDRUN_CACHE_DIR") or Path.home() / ".cache" / "gridrun")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None,
                 image_size: int | None = None) -> ImageSet:
    """Load a dataset by name, from the cache when its source has not changed.

    `image_size` matters for `imagefolder` and `cub200`, whose images are resized to it when they
    are decoded (their photos come in many sizes); CIFAR-10 and digits are stored as they are.
    """
    if name in PHOTO_DATASETS:
        root = resolve_data_dir(data_dir)
        if not root.is_dir():
            raise GridError(f"{name}: data directory not found", str(root))
        if name == "cub200":
            root = root / "CUB_200_2011" if (root / "CUB_200_2011").is_dir() else root
            build = lambda: _load_cub(root, image_size)  # noqa: E731
        else:
            _check_train_test(root)
            build = lambda: _load_image_folder(root, "imagefolder", image_size)  # noqa: E731
        return _cached(f"{name}-{image_size or 'native'}", _fingerprint(root), build,
                       str(root.resolve()))
    if name == "digits":
        return _cached("digits", _digits_fingerprint(), _load_digits, "sklearn.datasets.load_digits")
    if name == "cifar10":
        root = resolve_data_dir(data_dir)
        layout, path = _find_cifar10(root)
        if layout == "download":
            _download_cifar10(root)
            layout, path = "official", root / "cifar-10-batches-py"
        if layout == "official":
            build = lambda: _load_official_cifar10(path)  # noqa: E731
        else:
            build = lambda: _load_image_folder(path, "cifar10")  # noqa: E731
        return _cached("cifar10", _fingerprint(path), build, str(path.resolve()))
    raise GridError(f"unknown dataset '{name}'; allowed: cifar10, digits")


def _find_cifar10(root: Path) -> tuple[str, Path]:
    """Which layout `root` holds: official batches, an ImageFolder tree, or nothing (download)."""
    if root.exists() and not root.is_dir():
        raise GridError("data directory is not a directory", str(root))
    official = root / "cifar-10-batches-py"
    if official.is_dir():
        return "official", official
    if (root / "train").is_dir() or (root / "test").is_dir():
        _check_train_test(root)
        return "imagefolder", root
    return "download", root


def _check_train_test(root: Path) -> None:
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise GridError(f"ImageFolder layout needs both train/ and test/; {part}/ is "
                            "missing", str(root))


def _download_cifar10(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # no network should fail fast, never hang
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        CIFAR10(str(root), train=True, download=True)
    except Exception as e:  # noqa: BLE001 - any download failure becomes one clear line
        if created:
            shutil.rmtree(root, ignore_errors=True)  # leave nothing half-written behind
        raise GridError(
            f"CIFAR-10 not found (expected cifar-10-batches-py/, or train/ and test/ class folders) "
            f"and the download failed: {e.__class__.__name__}: {str(e).splitlines()[0][:200]}; "
            "put the data there or pass --data-dir", str(root)) from None
    finally:
        socket.setdefaulttimeout(old_timeout)


def _load_official_cifar10(path: Path) -> ImageSet:
    def read(batch: str) -> tuple[np.ndarray, np.ndarray]:
        file = path / batch
        try:
            with open(file, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
        except FileNotFoundError:
            raise GridError(f"missing {batch} in the official CIFAR-10 layout", str(path)) from None
        except Exception as e:  # noqa: BLE001
            raise GridError(f"unreadable CIFAR-10 batch {batch}: {e}", str(path)) from None
        return data, labels

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = read("test_batch")
    classes = list(CIFAR10_CLASSES)
    meta = path / "batches.meta"
    if meta.exists():
        with open(meta, "rb") as f:
            classes = list(pickle.load(f, encoding="latin1")["label_names"])
    train_x = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    train_y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return _image_set("cifar10", train_x, train_y, torch.from_numpy(test_x),
                      torch.from_numpy(test_y), classes, str(path))


def _list_image_folder(part: Path, classes: list[str] | None = None
                       ) -> tuple[list[str], list[tuple[Path, int]]]:
    found = sorted(d.name for d in part.iterdir() if d.is_dir())
    if not found:
        raise GridError("no class folders (expected <class>/<image> files)", str(part))
    if classes is not None and found != classes:
        raise GridError(f"class folders differ from train/: {found} vs {classes}", str(part))
    items = []
    for label, cls in enumerate(found):
        files = sorted(f for f in (part / cls).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise GridError("class folder has no images", str(part / cls))
        items += [(f, label) for f in files]
    return found, items


def _decode(items: list[tuple[Path, int]], size: int | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode image files to one uint8 tensor; all images must have the same size.

    JPEGs are decoded in batches by torchvision (about 4x faster than PIL one by one); anything
    else, or a batch with a broken file, goes through PIL, which also names the bad file.
    """
    from PIL import Image

    def one(path: Path) -> torch.Tensor:
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if size is not None and image.size != (size, size):
                    image = image.resize((size, size), Image.BILINEAR)
                return torch.from_numpy(np.array(image)).permute(2, 0, 1)
        except Exception as e:  # noqa: BLE001
            raise GridError(f"cannot decode image ({e.__class__.__name__})", str(path)) from None

    images: list[torch.Tensor] = []
    chunk = 4096
    for start in range(0, len(items), chunk):
        paths = [p for p, _ in items[start:start + chunk]]
        if size is None and all(p.suffix.lower() in (".jpg", ".jpeg") for p in paths):
            try:
                images += _decode_jpegs(paths)
                continue
            except Exception:  # noqa: BLE001 - find the bad file one by one below
                pass
        images += [one(p) for p in paths]
    for (path, _), image in zip(items, images):
        if image.shape != images[0].shape:
            raise GridError(f"image size {tuple(image.shape[1:])} differs from "
                            f"{tuple(images[0].shape[1:])} of the first image; set "
                            "data.image_size to resize them", str(path))
    return torch.stack(images), torch.tensor([label for _, label in items], dtype=torch.int64)


def _decode_jpegs(paths: list[Path]) -> list[torch.Tensor]:
    import warnings

    with warnings.catch_warnings():
        # torchvision 0.29 marks its image codecs deprecated in favour of torchcodec; they work
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg, read_file
        return decode_jpeg([read_file(str(p)) for p in paths], mode=ImageReadMode.RGB)


def _load_image_folder(root: Path, name: str, size: int | None = None) -> ImageSet:
    classes, train_items = _list_image_folder(root / "train")
    _, test_items = _list_image_folder(root / "test", classes)
    train_x, train_y = _decode(train_items, size)
    test_x, test_y = _decode(test_items, size)
    return _image_set(name, train_x, train_y, test_x, test_y, classes, str(root))


def _read_table(path: Path, root: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise GridError(f"CUB-200-2011 layout needs {path.name}", str(root)) from None


def _load_cub(root: Path, size: int | None) -> ImageSet:
    """CUB-200-2011: images.txt, image_class_labels.txt and train_test_split.txt define the
    images, their classes (1-based) and the default train/test split; classes.txt the names."""
    images = {i: name for i, name in _read_table(root / "images.txt", root)}
    labels = {i: int(c) - 1 for i, c in _read_table(root / "image_class_labels.txt", root)}
    is_train = {i: flag == "1" for i, flag in _read_table(root / "train_test_split.txt", root)}
    classes = [name for _, name in sorted(_read_table(root / "classes.txt", root),
                                          key=lambda row: int(row[0]))]
    missing = set(images) - set(labels) | set(images) - set(is_train)
    if missing:
        raise GridError(f"{len(missing)} images have no label or split entry (first: "
                        f"{sorted(missing)[0]})", str(root))
    items = {True: [], False: []}
    for i in sorted(images, key=int):
        items[is_train[i]].append((root / "images" / images[i], labels[i]))
    train_x, train_y = _decode(items[True], size)
    test_x, test_y = _decode(items[False], size)
    return _image_set("cub200", train_x, train_y, test_x, test_y, classes, str(root))


def _load_digits() -> ImageSet:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.from_numpy(digits.images).float().unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(digits.target).long()
    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y.numpy(),
                                           random_state=0)
    return _image_set("digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx],
                      [str(c) for c in digits.target_names], "sklearn.datasets.load_digits")


def _image_set(name, train_x, train_y, test_x, test_y, classes, source) -> ImageSet:
    pixels = train_x.float().div_(255).transpose(0, 1).reshape(train_x.shape[1], -1)
    return ImageSet(name, train_x, train_y, test_x, test_y, list(classes),
                    pixels.mean(1).tolist(), pixels.std(1).tolist(), source)


# --- the decode-once cache -------------------------------------------------------------------

def _fingerprint(path: Path) -> str:
    """Changes when any file below `path` is added, removed, resized or touched."""
    h = hashlib.sha256(f"{CACHE_VERSION}:{path.resolve()}".encode())
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(filenames):
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError as e:  # e.g. a symlink whose target is gone
                raise GridError(f"cannot read this file ({e.strerror}); remove or fix it",
                                os.path.join(dirpath, name)) from None
            h.update(f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _digits_fingerprint() -> str:
    import sklearn
    return hashlib.sha256(f"{CACHE_VERSION}:digits:{sklearn.__version__}".encode()).hexdigest()[:20]


def open_cached(file: str | os.PathLike) -> ImageSet:
    """A dataset from its decode-cache file, memory-mapped: the images stay in the page cache,
    shared by every process that maps the same file, instead of one private copy each."""
    blob = torch.load(file, weights_only=True, mmap=True)
    blob.pop("cache_file", None)
    return ImageSet(**blob, cache_file=str(file))


def _cached(name: str, fingerprint: str, build, source: str) -> ImageSet:
    file = cache_dir() / f"{name}-{fingerprint}.pt"
    if file.exists():
        try:
            return open_cached(file)
        except Exception:  # noqa: BLE001 - a broken cache file is rebuilt, not fatal
            pass
    images = build()
    images.source = source
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(f".tmp{os.getpid()}")
    torch.save({k: v for k, v in images.__dict__.items() if k != "cache_file"}, tmp)
    os.replace(tmp, file)  # atomic: a concurrent or killed launch never sees half a file
    return open_cached(file)


def dataset_key(cfg: dict) -> tuple:
    """Which stored dataset a cell reads: photo datasets are stored at the cell's image size."""
    name = cfg["data.dataset"]
    return (name, cfg["data.image_size"] if name in PHOTO_DATASETS else None)


# --- splits and batches ----------------------------------------------------------------------

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
    The splits index the dataset's tensors; no image is copied."""
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

    def take(x, y, i):
        i = torch.from_numpy(i)
        return Split(x, y[i], i)

    return Splits(take(images.train_x, images.train_y, train_idx),
                  take(images.train_x, images.train_y, val_idx),
                  take(images.test_x, images.test_y, test_idx),
                  images.classes, images.mean, images.std)


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
