"""What one more JPEG generation costs a trained model: an estimate of our CIFAR-10 copy's
re-encoding cost (issue 12).

Our CIFAR-10 copy is the standard split re-encoded as JPEG at quality 75; the report trained and
tested on the original lossless images, which we do not have. This script takes a model trained
on the JPEG copy (a logged model, e.g. the best cell of a launch), and scores it on the test set
as stored and after encoding every test image once more at quality 75 (and at other qualities),
in memory. The drop from one more generation is a measured proxy, at test time only, for what
the first generation took away; it says nothing about training on lossy images, which would
need the full grid trained twice.

    python benchmarks/jpeg_generation.py --model models:/<model id> \\
        --data-dir ../shared/data/cifar10-jpeg --tracking-uri sqlite:///runs.db
"""
from __future__ import annotations

import argparse
import io

import numpy as np
import torch
from PIL import Image

from gridrun import data
from gridrun.tracking.store import global_tracking_uri


def reencode(images: torch.Tensor, quality: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] images through one JPEG encode/decode at `quality` (PIL, 4:2:0 as
    PIL's default, the same library family that made the copy)."""
    out = np.empty_like(images.numpy())
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        out[i] = np.asarray(Image.open(buffer).convert("RGB")).transpose(2, 0, 1)
    return torch.from_numpy(out)


@torch.no_grad()
def accuracy(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    correct = 0
    for start in range(0, len(labels), 500):
        logits = model(data.to_float(images[start:start + 500]))
        correct += int((logits.argmax(1) == labels[start:start + 500]).sum())
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an MLflow model URI (models:/...)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--qualities", default="75,95", help="qualities of the extra generation")
    args = parser.parse_args()
    import mlflow.pytorch

    with global_tracking_uri(args.tracking_uri):
        model = mlflow.pytorch.load_model(args.model)
    images = data.load_dataset("cifar10", args.data_dir)
    test_x, test_y = images.test_x, images.test_y
    base = accuracy(model, test_x, test_y)
    print(f"test images as stored (one JPEG q75 generation): accuracy {base * 100:.2f}%")
    for quality in (int(q) for q in args.qualities.split(",")):
        again = accuracy(model, reencode(test_x, quality), test_y)
        print(f"after one more JPEG generation at q{quality}: accuracy {again * 100:.2f}% "
              f"({(again - base) * 100:+.2f} points)")


if __name__ == "__main__":
    main()
