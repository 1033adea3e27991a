"""What a launch checks before anything exists in the tracking store: devices, data (loaded
once, every subset size checked), pretrained weights, precision, and each model's size and
memory against `model.max_params` and this machine. A problem is one `GridError`."""
from __future__ import annotations

import os

import torch

from ..data.images import ImageSet, dataset_key
from ..data.sources import load_dataset
from ..data.splits import SPLIT_KEYS, check_sizes, split_for
from ..errors import GridError
from ..models import count_params
from ..models.backbones import check_weights
from ..models.layers import shape_probe
from ..spec.grid import Cell, Grid
from ..train.precision import check_device, check_precision
from ..train.recipe import build_cell_model


def prepare_data(grid: Grid, cells: list[Cell], data_dir: str | None) -> dict[tuple, ImageSet]:
    """Load every dataset the grid uses and check every subset size, before any run exists.

    Then, every size being fine, find each split's rows, once per dataset and split settings:
    they are kept beside the dataset's decode cache (`gridrun.data.splits`), where every worker
    reads them. So no worker imports scikit-learn to split (1.5-1.8 s of CPU per process), and
    the launch, which names the rows in each run's dataset inputs, splits no later than it
    would have."""
    images: dict[tuple, ImageSet] = {}
    splits: dict[tuple, dict] = {}  # (dataset, split settings) -> a config that asks for them
    for cell in cells:
        cfg = cell.config
        key = dataset_key(cfg)
        if key not in images:
            images[key] = load_dataset(key[0], data_dir, key[1])
        check_sizes(images[key], cfg["data.val_fraction"], cfg["data.train_size"],
                    cfg["data.test_size"], grid.path, cfg["data.val_size"])
        splits.setdefault((key, *(cfg[k] for k in SPLIT_KEYS)), cfg)
    for (key, *_), cfg in splits.items():
        split_for(cfg, images[key])
    return images


def check_devices(grid: Grid, cells: list[Cell]) -> None:
    """Every `train.device` of the grid exists on this machine (before any data is read)."""
    for device in sorted({c.config["train.device"] for c in cells}):
        problem = check_device(device)
        if problem:
            raise GridError(f"train.device: {problem}", grid.path)


def _available_bytes() -> int:
    """Physical memory of this machine (the CPU's; a GPU's when training there is checked by
    CUDA itself)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _model_cost(cfg: dict, dataset: ImageSet, where: str) -> int:
    """The cell's parameter count, from its model built on PyTorch's `meta` device (shapes, no
    memory), and a forward pass of one image (on the CPU for a small model:
    `models.layers.shape_probe`): a model that cannot run on the configured image size (a
    kernel larger than the image) or that would need more memory than this machine has (a
    million filters, `image_size: 100000`) is refused here, before any run exists. A builder
    that needs real tensors is built on the CPU instead."""
    channels, stored, _ = dataset.image_shape
    size = cfg["data.image_size"] or stored
    cfg = {**cfg, "model.pretrained": False} if cfg.get("model.pretrained") else cfg
    name = cfg["model.name"]

    def refuse(e: Exception) -> GridError:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        return GridError(f"{name} cannot run on {channels}x{size}x{size} images ({reason}); "
                         "allowed: a larger data.image_size or a smaller model", where)

    try:
        with torch.device("meta"):
            model = build_cell_model(cfg, dataset.num_classes, channels, size)
    except GridError:
        raise
    except Exception:  # noqa: BLE001 - a builder that needs real tensors: build it for real
        try:
            model = build_cell_model(cfg, dataset.num_classes, channels, size)
        except GridError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to build: refused, with its reason
            raise refuse(e) from None
    params = count_params(model)[0]
    model, device = shape_probe(model, size)
    outputs: list[int] = []
    hooks = [m.register_forward_hook(
        lambda _m, _i, out: outputs.append(out.numel()) if isinstance(out, torch.Tensor) else None)
        for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad(), torch.device(device):
            model.eval()(torch.zeros(1, channels, size, size))
    except Exception as e:  # noqa: BLE001 - say which model and size; the first line says why
        raise refuse(e) from None
    finally:
        for hook in hooks:
            hook.remove()
    # training holds weights, gradients and up to two optimizer states (4 x fp32 per
    # parameter) and every layer's output for the backward pass, with its gradient (2 x fp32
    # per activation value, per image of a batch)
    need = 16 * params + 8 * sum(outputs) * cfg["data.batch_size"]
    have = _available_bytes()
    if need > have:
        raise GridError(f"{name} at {size}x{size} with batch {cfg['data.batch_size']} would need "
                        f"about {need / 2**30:,.1f} GiB to train ({params:,} parameters); this "
                        f"machine has {have / 2**30:,.1f} GiB; allowed: a smaller model, image "
                        "size or batch", where)
    return params


def check_models(grid: Grid, cells: list[Cell], images: dict[tuple, ImageSet]) -> dict[int, int]:
    """Pretrained weights present, `model.max_params` respected and `train.precision` native
    on the device, for every cell, before any run exists. Returns each cell's parameter count
    (keyed by cell index): each distinct model is built once."""
    counted: dict[str, int] = {}
    sizes: dict[int, int] = {}
    for cell in cells:
        cfg = cell.config
        if cfg.get("model.pretrained"):
            try:
                check_weights(cfg["model.name"])
            except GridError as e:
                raise GridError(f"cell {cell.name}: {e}", grid.path) from None
        problem = check_precision(cfg["train.precision"], cfg["train.device"])
        if problem:
            raise GridError(f"train.precision: {problem}", grid.path)
        dataset = images[dataset_key(cfg)]
        channels = dataset.image_shape[0]
        model_keys = {k: v for k, v in cfg.items() if k.startswith("model.")}
        key = repr(sorted(model_keys.items())) + repr((dataset.num_classes, channels))
        key += repr((cfg["data.image_size"], cfg["data.batch_size"]))
        if key not in counted:
            counted[key] = _model_cost(cfg, dataset, f"{grid.path}: cell {cell.name}")
        sizes[cell.index] = counted[key]
        limit = cfg.get("model.max_params")
        if limit is not None and counted[key] > limit:
            raise GridError(f"cell {cell.name}: {cfg['model.name']} has {counted[key]:,} "
                            f"parameters, more than model.max_params={limit:,}", grid.path)
    return sizes
