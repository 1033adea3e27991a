"""Where datasets come from, decoded into memory as uint8 tensors.

Each source is decoded once into the cache (`cache.py`), so a second launch does not decode
60,000 JPEGs again; cells then take splits of the same tensors (`splits.py`).

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

import os
import pickle
import shutil
import socket
from pathlib import Path

import numpy as np
import torch

from ..errors import GridError
from .cache import cached, digits_fingerprint, fingerprint
from .images import PHOTO_DATASETS, ImageSet, image_set

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


# --- locating and loading --------------------------------------------------------------------

def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """--data-dir, else $GRIDRUN_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get("GRIDRUN_DATA_DIR") or "data")




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
            build = lambda: _load_cub(root, image_size)
        else:
            _check_train_test(root)
            build = lambda: _load_image_folder(root, "imagefolder", image_size)
        return cached(f"{name}-{image_size or 'native'}", fingerprint(root), build,
                       str(root.resolve()))
    if name == "digits":
        return cached("digits", digits_fingerprint(), _load_digits, "sklearn.datasets.load_digits")
    if name == "cifar10":
        root = resolve_data_dir(data_dir)
        layout, path = _find_cifar10(root)
        if layout == "download":
            _download_cifar10(root)
            layout, path = "official", root / "cifar-10-batches-py"
        if layout == "official":
            build = lambda: _load_official_cifar10(path)
        else:
            build = lambda: _load_image_folder(path, "cifar10")
        return cached("cifar10", fingerprint(path), build, str(path.resolve()))
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


# What the official CIFAR-10 batches hold (numpy arrays of uint8, lists of int labels, bytes
# and str names), as the globals a pickle names to rebuild them; nothing else is ever built.
_BATCH_GLOBALS = {("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _BatchUnpickler(pickle.Unpickler):
    """`pickle.load` for the CIFAR-10 batch files, allowing only `_BATCH_GLOBALS`: a plain
    `pickle.load` of a tampered download folder would run whatever code the file names."""

    def find_class(self, module: str, name: str):
        module = module.replace("numpy.core.", "numpy._core.")  # numpy 1's name of the module
        if (module, name) not in _BATCH_GLOBALS:
            raise _Refused(f"{module}.{name}")
        return super().find_class(module, name)


class _Refused(pickle.UnpicklingError):
    pass


def _read_batch(file: Path) -> dict:
    with open(file, "rb") as f:
        return _BatchUnpickler(f, encoding="latin1").load()


def _load_official_cifar10(path: Path) -> ImageSet:
    def read(batch: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            entry = _read_batch(path / batch)
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
        except FileNotFoundError:
            raise GridError(f"missing {batch} in the official CIFAR-10 layout", str(path)) from None
        except _Refused as e:
            raise GridError(f"refused CIFAR-10 batch {batch}: it names {e}, which a CIFAR-10 "
                            "batch never holds (loading it could run code); allowed: numpy "
                            "arrays, lists, bytes, str, int. Download the batches again",
                            str(path)) from None
        except Exception as e:  # noqa: BLE001 - any damage to a batch: one line naming it
            raise GridError(f"unreadable CIFAR-10 batch {batch}: {e}", str(path)) from None
        return data, labels

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = read("test_batch")
    classes = list(CIFAR10_CLASSES)
    meta = path / "batches.meta"
    if meta.exists():
        try:
            classes = [str(c) for c in _read_batch(meta)["label_names"]]
        except Exception as e:  # noqa: BLE001 - a refused or damaged file: one line naming it
            raise GridError(f"unreadable or refused batches.meta: {e}; allowed: a dict with "
                            "label_names", str(path)) from None
    train_x = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    train_y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return image_set("cifar10", train_x, train_y, torch.from_numpy(test_x),
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
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds: one line naming the file
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
    return image_set(name, train_x, train_y, test_x, test_y, classes, str(root))


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
    return image_set("cub200", train_x, train_y, test_x, test_y, classes, str(root))


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
    return image_set("digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx],
                      [str(c) for c in digits.target_names], "sklearn.datasets.load_digits")
