"""The model registry: exact parameter counts and working forward passes."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from gridrun.cli import cli
from gridrun.models import ACTIVATIONS, MODELS, NORMS, build_model, count_params


def test_lenet_has_exactly_62006_parameters():
    total, trainable = count_params(build_model("lenet", 10))
    assert (total, trainable) == (62_006, 62_006)


def test_base4_reads_3_32_64_128_as_three_convs():
    model = build_model("base4", 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 32, (3, 3), (1, 1)), (32, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1))]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(2048, 256), (256, 128), (128, 10)]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_base4_variants_forward_and_backward(norm, act):
    model = build_model("base4", 10, conv_activation=act, fc_activation=act, norm=norm, dropout=0.2)
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    out.sum().backward()
    has_norm = any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for m in model.modules())
    assert has_norm == (norm != "none")


def test_base4_dropout_only_on_fc_layers():
    model = build_model("base4", 10, dropout=0.2)
    drops = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 2 and all(n.startswith("head.") for n in drops)


def test_models_command_lists_every_architecture_with_its_count():
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0
    assert len(result.output.strip().splitlines()) == len(MODELS)
    lenet = next(l for l in result.output.splitlines() if l.startswith("lenet"))
    assert "62,006" in lenet
