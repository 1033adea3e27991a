"""A dataset in memory: `ImageSet`, the one object every other data module passes around."""
from __future__ import annotations

from dataclasses import dataclass

import torch

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


def image_set(name, train_x, train_y, test_x, test_y, classes, source) -> ImageSet:
    pixels = train_x.float().div_(255).transpose(0, 1).reshape(train_x.shape[1], -1)
    return ImageSet(name, train_x, train_y, test_x, test_y, list(classes),
                    pixels.mean(1).tolist(), pixels.std(1).tolist(), source)


def dataset_key(cfg: dict) -> tuple:
    """Which stored dataset a cell reads: photo datasets are stored at the cell's image size."""
    name = cfg["data.dataset"]
    return (name, cfg["data.image_size"] if name in PHOTO_DATASETS else None)
