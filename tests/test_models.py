"""The model registry: exact parameter counts and working forward passes."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from gridrun.cli import cli
from gridrun.models import MODELS, build_model, count_params
from gridrun.spec import catalog as registry
from gridrun.spec.catalog import ACTIVATIONS, NORMS

from .helpers import fresh_process_imports

EXPECTED_PARAMS = {  # 32x32x3 inputs, 10 classes
    "lenet": 62_006, "base4": 651_978,
    "three_conv": 110_598, "five_conv": 3_154_982, "cerberus": 3_223_882,  # report 001
    "simple_cnn": 2_122_186, "simple_cnn_bn": 1_070_986,  # report 000
    "three_layer": 256_058,  # report 003
    "multikernel": 5_517_964,  # report 002 (widths are ours: the report gives none)
    "resnet18": 11_181_642, "efficientnet_b0": 4_020_358, "efficientnet_b2": 7_715_084,
    "mobilenet_v2": 2_236_682, "mobilenet_v3_small": 1_528_106, "squeezenet1_1": 727_626,
    "densenet121": 6_964_106, "efficientnet_b0_cifar": 4_020_358, "mobilenet_v2_cifar": 2_236_682,
}


def test_the_registry_read_without_torch_agrees_with_the_builders():
    """registry.py reads the builders' signatures from their source, so that checking a grid
    needs no torch: it must find every builder, option, default and summary the import finds."""
    read = {name: (info.options, info.summary) for name, info in registry._shipped().items()}
    imported = {name: (spec.options, spec.summary) for name, spec in MODELS.items()}
    assert read == imported


def test_every_registered_model_has_its_exact_parameter_count():
    assert set(MODELS) == set(EXPECTED_PARAMS)
    counts = {name: count_params(build_model(name, 10))[0] for name in MODELS}
    assert counts == EXPECTED_PARAMS


@pytest.mark.parametrize("options, expected", [
    ({"filters": (64, 128, 256)}, 64 * 75 + 64 + 128 * 64 * 9 + 128 + 256 * 128 * 9 + 256
     + 1024 * 512 + 512 + 5130),
    ({"fc": (512, 128)}, 256_058 - 5130 + 512 * 128 + 128 + 1290),
    ({"norm": "batch"}, 256_058 + 2 * (24 + 48) + 2 * 512),
])
def test_three_layer_variants(options, expected):
    assert count_params(build_model("three_layer", 10, **options))[0] == expected


def test_efficientnet_b0_on_cub_matches_the_report():
    # report 004: EfficientNet-B0 with a 200-class head has 4,263,748 parameters
    assert count_params(build_model("efficientnet_b0", 200))[0] == 4_263_748


def test_lenet_has_exactly_62006_parameters():
    total, trainable = count_params(build_model("lenet", 10))
    assert (total, trainable) == (62_006, 62_006)


def test_base4_reads_3_32_64_128_as_three_convs():
    model = build_model("base4", 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 32, (3, 3), (1, 1)), (32, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1))]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(2048, 256), (256, 128), (128, 10)]


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
    lenet = next(line for line in result.output.splitlines() if line.startswith("lenet"))
    assert "62,006" in lenet


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_architecture_takes_a_real_training_step(name):
    torch.manual_seed(0)
    model = build_model(name, 10)
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_models_built_on_meta_count_the_same_and_small_ones_probe_on_the_cpu():
    """A launch builds each model on PyTorch's `meta` device to check it before anything
    exists. Every model counts exactly as on the CPU; a small one's shape probe runs on the
    CPU (the first meta pass imports torch._dynamo, seconds of every launch's head: checked in
    a fresh interpreter), a large one, or one on large images, stays on meta."""
    with torch.device("meta"):
        counts = {name: count_params(build_model(name, 10))[0] for name in MODELS}
    assert counts == EXPECTED_PARAMS

    from gridrun.models.layers import CPU_PROBE_LIMITS, shape_probe
    with torch.device("meta"):
        small = build_model("base4", 10)
        wide = torch.nn.Conv2d(4096, 4096, 3)  # 151M parameters: never allocated
    probe, device = shape_probe(small, 32)
    assert device.type == "cpu" and probe is not small
    assert next(small.parameters()).is_meta  # the model checked is left as it was
    assert shape_probe(small, CPU_PROBE_LIMITS["image_size"] + 1)[1].type == "meta"
    assert shape_probe(wide, 32)[1].type == "meta"

    assert not fresh_process_imports(
        "import torch\nfrom gridrun.models import build_model\n"
        "with torch.device('meta'):\n    build_model('base4', 10)", "torch._dynamo")
