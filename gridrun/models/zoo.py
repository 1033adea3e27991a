"""The report architectures: one registered builder each (`gridrun.models.registry`).

Each is the network a report in `shared/reports/` describes, with the report's choices as
keyword defaults; `gridrun models` lists them with their parameter counts.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import Classifier, activation, flat_features, mlp_head, norm2d
from .registry import register

# --- architectures ---------------------------------------------------------------------------

@register("lenet")
def lenet(num_classes, in_channels, image_size, *, conv_activation="relu", fc_activation="relu"):
    """The classic 2-conv lab network: conv 6@5x5, pool, conv 16@5x5, pool, FC 120, 84 (62,006 params)."""
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5), activation(conv_activation), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), activation(conv_activation), nn.MaxPool2d(2),
    )
    head = mlp_head(flat_features(features, in_channels, image_size), [120, 84], num_classes,
                    fc_activation, dropout=0.0)
    return Classifier(features, head)


@register("base4")
def base4(num_classes, in_channels, image_size, *, conv_activation="relu", fc_activation="relu",
          norm="none", dropout=0.0, filters=(32, 64, 128), fc=(256, 128)):
    """The activation/optimizer study network: 3x3 convs (32, 64, 128), 2x2 pooling, 3 FC layers.

    The report describes "4 convolutional layers with 3, 32, 64, 128 filters". We read the four
    numbers as the channel widths of the four feature maps (the RGB input, then three conv outputs),
    so the network has three 3x3 convolutions with padding 1; each is followed by the chosen
    normalization, the conv activation and a 2x2 max pool that halves the size (32 -> 16 -> 8 -> 4).
    `filters: [32, 64, 128, 128]` gives a variant with a fourth convolution.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for width in filters:
        layers += [nn.Conv2d(channels, width, 3, padding=1), norm2d(norm, width),
                   activation(conv_activation), nn.MaxPool2d(2)]
        channels = width
    features = nn.Sequential(*layers)
    head = mlp_head(flat_features(features, in_channels, image_size), list(fc), num_classes,
                    fc_activation, dropout)
    return Classifier(features, head)


def conv_stack(in_channels: int, widths, kernels, *, padding, act: str, norm: str = "none",
               norm_after_act: bool = False, pool_after=None, act_on_last: bool = True
               ) -> nn.Sequential:
    """Convolutions, each followed by activation and normalization (in either order) and,
    where `pool_after` says so (default: after every conv), a 2x2 max pool."""
    layers: list[nn.Module] = []
    pool_after = set(range(len(widths))) if pool_after is None else set(pool_after)
    for i, (width, kernel) in enumerate(zip(widths, kernels)):
        layers.append(nn.Conv2d(in_channels, width, kernel, padding=padding))
        with_act = act_on_last or i < len(widths) - 1
        block = [norm2d(norm, width)] + ([activation(act)] if with_act else [])
        if norm_after_act:
            block.reverse()
            if not with_act:  # normalization follows an activation: none here, so none at all
                block = []
        layers += [m for m in block if not isinstance(m, nn.Identity)]
        if i in pool_after:
            layers.append(nn.MaxPool2d(2))
        in_channels = width
    return nn.Sequential(*layers)


@register("three_conv")
def three_conv(num_classes, in_channels, image_size, *, conv_activation="relu",
               fc_activation="gelu", dropout=0.2, fc=(128, 96, 84)):
    """Report 001's 3-conv network: 3x3 valid convs 32, 64, 64 with pooling; FC 128, 96, 84."""
    features = conv_stack(in_channels, (32, 64, 64), (3, 3, 3), padding=0, act=conv_activation)
    head = mlp_head(flat_features(features, in_channels, image_size), list(fc), num_classes,
                    fc_activation, dropout, dropout_after_last=False)
    return Classifier(features, head)


@register("five_conv")
def five_conv(num_classes, in_channels, image_size, *, conv_activation="relu",
              fc_activation="gelu", dropout=0.3, fc=(512, 128, 84)):
    """Report 001's 5-conv network: convs 32, 64, 128, 256, 256 with batch norm; FC 512, 128, 84."""
    features = conv_stack(in_channels, (32, 64, 128, 256, 256), (3,) * 5, padding=1,
                          act=conv_activation, norm="batch", pool_after=(1, 2, 4))
    head = mlp_head(flat_features(features, in_channels, image_size), list(fc), num_classes,
                    fc_activation, dropout, dropout_first=True, dropout_after_last=False)
    return Classifier(features, head)


@register("cerberus")
def cerberus(num_classes, in_channels, image_size, *, conv_activation="relu", dropout=0.5,
             widths=(64, 128, 256), units_per_block=4):
    """Report 001's CerberusNet: 3 macro blocks of 4 conv-ReLU-BN units, pool after each; FC 128."""
    per_block = [w for w in widths for _ in range(units_per_block)]
    pools = [i * units_per_block + units_per_block - 1 for i in range(len(widths))]
    features = conv_stack(in_channels, per_block, (3,) * len(per_block), padding=1,
                          act=conv_activation, norm="batch", norm_after_act=True, pool_after=pools)
    head = mlp_head(flat_features(features, in_channels, image_size), [128], num_classes,
                    conv_activation, dropout)
    return Classifier(features, head)


@register("simple_cnn")
def simple_cnn(num_classes, in_channels, image_size, *, filters=(32, 64), fc=(512,),
               conv_activation="relu", dropout=0.0, norm="none"):
    """Report 000's simple CNN: 3x3 convs 32, 64 with pooling, FC 512 (vanilla: 2,122,186)."""
    features = conv_stack(in_channels, filters, (3,) * len(filters), padding=1,
                          act=conv_activation, norm=norm, norm_after_act=True)
    if dropout > 0:
        features.append(nn.Dropout(dropout))
    head = mlp_head(flat_features(features, in_channels, image_size), list(fc), num_classes,
                    conv_activation, dropout)
    return Classifier(features, head)


@register("simple_cnn_bn")
def simple_cnn_bn(num_classes, in_channels, image_size, *, conv_activation="relu", dropout=0.5):
    """Report 000's custom simple CNN: batch norm after each activation, dropout 0.5, FC 256."""
    return simple_cnn(num_classes, in_channels, image_size, filters=(32, 64), fc=(256,),
                      conv_activation=conv_activation, dropout=dropout, norm="batch")


@register("three_layer")
def three_layer(num_classes, in_channels, image_size, *, filters=(24, 48, 96), kernels=(5, 3, 3),
                fc=(512,), conv_activation="relu", dropout=0.0, norm="none"):
    """Report 003's configurable 3-layer network: valid convs 24/48/96 (5, 3, 3), FC 512: 256,058.

    As in the report, the third convolution has no activation; `norm: batch` adds batch norm
    after each activation (convs and FC layers); dropout follows each hidden FC layer.
    """
    features = conv_stack(in_channels, filters, kernels, padding=0, act=conv_activation,
                          norm=norm, norm_after_act=True, act_on_last=False)
    head = mlp_head(flat_features(features, in_channels, image_size), list(fc), num_classes,
                    conv_activation, dropout, batch_norm=norm == "batch")
    return Classifier(features, head)


class MultiKernelBlock(nn.Module):
    """Three parallel convolutions of different kernel sizes, weighted by an MLP-generated vector
    (from the block input's spatial average), summed, then batch norm and ReLU (report 002)."""

    def __init__(self, in_channels: int, out_channels: int, kernels=(1, 3, 5), hidden: int = 16):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(in_channels, out_channels, k, padding=k // 2)
                                      for k in kernels)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(in_channels, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, len(kernels)), nn.Softmax(dim=1))
        self.post = nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.gate(x)  # [N, branches]
        mixed = sum(w.view(-1, 1, 1, 1) * branch(x)
                    for w, branch in zip(weights.unbind(1), self.branches))
        return self.post(mixed)


@register("multikernel")
def multikernel(num_classes, in_channels, image_size, *, widths=(64, 64, 128, 128, 256, 256),
                kernels=(1, 3, 5), dropout=0.5, fc=(256,)):
    """Report 002's 6-block network: multi-kernel gated blocks, max pool after blocks 2, 4, 5."""
    layers: list[nn.Module] = []
    channels = in_channels
    for i, width in enumerate(widths):
        layers.append(MultiKernelBlock(channels, width, kernels))
        if i in (1, 3, 4):
            layers.append(nn.MaxPool2d(2))
        channels = width
    features = nn.Sequential(*layers)
    head = mlp_head(flat_features(features, in_channels, image_size), list(fc), num_classes,
                    "relu", dropout, batch_norm=True)
    return Classifier(features, head)
