"""Where and how a cell computes: the device, the memory format and the number format.

- `train.device: auto` picks CUDA, then Apple's MPS, else the CPU.
- `train.memory_format: auto` trains and evaluates convolutional networks in channels_last on
  the CPU (oneDNN's fast layout: on this project's 2-core Intel machine, base4 trains about 1.5x
  and evaluates 2-3.6x faster than in the default layout) and on CUDA with bf16 (tensor cores).
- `train.precision: bf16` runs forward passes and losses under bf16 autocast; weights and
  optimizer state stay fp32. It needs hardware that computes bf16 natively (a CPU with AMX or
  AVX512-BF16, a GPU with bf16): elsewhere it is refused before anything runs, since emulated
  bf16 is slower than fp32.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn


def check_device(name: str) -> str | None:
    """Why `train.device` cannot be used on this machine, or None: checked before any run
    exists, so `cuda:99` on a CPU box is refused at once rather than failing every cell."""
    if name in ("auto", "cpu"):
        return None
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return f"{name!r} asked for, but this machine has no CUDA device; allowed: auto, cpu"
        index = int(name[5:]) if name.startswith("cuda:") else 0
        if index >= count:
            return (f"{name!r} asked for, but this machine has {count} CUDA device(s); allowed: "
                    f"auto, cpu, cuda, cuda:0..cuda:{count - 1}")
        return None
    if name == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        return "'mps' asked for, but Apple's MPS is not available here; allowed: auto, cpu"
    return None


def select_device(name: str) -> torch.device:
    """`auto`: CUDA when available, then Apple's MPS, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)  # seeds CUDA too
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def bf16_supported(device: torch.device) -> tuple[bool, str]:
    """(native bf16 on this device?, what was found), for the error message when not."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"GPU {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        amx = torch.cpu._is_amx_tile_supported()
        avx = torch.cpu._is_avx512_bf16_supported()
        return amx or avx, "a CPU without AMX or AVX512-BF16"
    return False, f"device {device.type}"


def check_precision(precision: str, device_name: str) -> str | None:
    """None when `precision` runs natively on the device, else what is wrong (one line)."""
    if precision != "bf16":
        return None
    ok, found = bf16_supported(select_device(device_name))
    if ok:
        return None
    return (f"bf16 is not computed natively on {found} (it would be slower than fp32); "
            "allowed there: fp32")


def autocast(precision: str, device: torch.device):
    """The context that runs forward passes in the cell's precision."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def is_convnet(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def memory_format(setting: str, model: nn.Module, device: torch.device,
                  precision: str) -> torch.memory_format:
    """The layout of weights and input batches (see the module docstring for `auto`)."""
    if setting == "channels_last":
        return torch.channels_last
    if setting == "contiguous" or not is_convnet(model):
        return torch.contiguous_format
    if device.type == "cpu" or (device.type == "cuda" and precision == "bf16"):
        return torch.channels_last
    return torch.contiguous_format
