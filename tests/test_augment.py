"""Batched augmentation: shapes, ranges, the exact crop, determinism under a seed."""
from __future__ import annotations

import torch

from gridrun.data import augment
from gridrun.spec import config


def _batch(n=8, size=8):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_random_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = _batch()
    out = augment.random_crop(x, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert not torch.equal(out, x)


def test_flip_mirrors_some_images_and_keeps_the_rest():
    x = _batch(64)
    out = augment.random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54


def test_jitter_and_rotation_stay_in_range_and_change_images():
    x = _batch()
    jittered = augment.color_jitter(x, 0.4, torch.Generator().manual_seed(0))
    rotated = augment.random_rotation(x, 15, torch.Generator().manual_seed(0))
    for out in (jittered, rotated):
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
        assert not torch.allclose(out, x)


def test_same_seed_same_augmentation():
    cfg = config.resolve({"augment.crop_padding": 4, "augment.flip": True,
                          "augment.color_jitter": 0.2, "augment.rotation": 10.0})
    assert augment.enabled(cfg) and not augment.enabled(config.resolve({}))
    x = _batch()
    a = augment.augment(x, cfg, torch.Generator().manual_seed(3))
    b = augment.augment(x, cfg, torch.Generator().manual_seed(3))
    c = augment.augment(x, cfg, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
