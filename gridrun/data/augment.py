"""Training-time augmentation on whole batches of float images in [0, 1], shape [N, C, H, W].

One call transforms a batch with per-image random parameters drawn from the cell's generator, so
augmentation is as fast as a few tensor operations and reproducible with the cell's seed:
random crop with zero padding, horizontal flip, colour jitter (brightness, contrast,
saturation), small rotation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def enabled(cfg: dict) -> bool:
    return bool(cfg["augment.crop_padding"] or cfg["augment.flip"] or cfg["augment.color_jitter"]
                or cfg["augment.rotation"])


def augment(x: torch.Tensor, cfg: dict, generator: torch.Generator) -> torch.Tensor:
    if cfg["augment.crop_padding"]:
        x = random_crop(x, cfg["augment.crop_padding"], generator)
    if cfg["augment.flip"]:
        x = random_flip(x, generator)
    if cfg["augment.color_jitter"]:
        x = color_jitter(x, cfg["augment.color_jitter"], generator)
    if cfg["augment.rotation"]:
        x = random_rotation(x, cfg["augment.rotation"], generator)
    return x


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * (high - low) + low).to(device)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad with zeros, then cut each image at its own random offset (torchvision's RandomCrop)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [N, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [N, 1, 1, W]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def color_jitter(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation each scaled by a factor in [1 - s, 1 + s]."""
    n = x.shape[0]
    low, high = max(0.0, 1 - strength), 1 + strength
    brightness = _uniform(n, low, high, generator, x.device).view(-1, 1, 1, 1)
    contrast = _uniform(n, low, high, generator, x.device).view(-1, 1, 1, 1)
    saturation = _uniform(n, low, high, generator, x.device).view(-1, 1, 1, 1)
    x = (x * brightness).clamp(0, 1)
    gray = _grayscale(x)
    x = ((x - gray.mean(dim=(1, 2, 3), keepdim=True)) * contrast
         + gray.mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
    gray = _grayscale(x)
    return ((x - gray) * saturation + gray).clamp(0, 1)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def random_rotation(x: torch.Tensor, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate each image by its own angle in [-degrees, degrees], zero fill (bilinear)."""
    n = x.shape[0]
    angle = _uniform(n, -degrees, degrees, generator, x.device) * math.pi / 180
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
