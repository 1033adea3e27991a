"""torchvision backbones: new heads, freezing policies, pretrained weights from the hub cache."""
from __future__ import annotations

import pytest
import torch

from gridrun.errors import GridError
from gridrun.models import backbones, build_model, count_params


def test_freezing_policies_choose_what_trains():
    full = build_model("efficientnet_b0", 200, freeze="none")
    head = build_model("efficientnet_b0", 200, freeze="head")
    last = build_model("efficientnet_b0", 200, freeze="last_block")
    total = count_params(full)[0]
    assert count_params(full)[1] == total
    assert count_params(head) == (total, 1280 * 200 + 200)
    trainable = {n for n, p in last.named_parameters() if p.requires_grad}
    norm_params = {f"{m}.{p}" for m, mod in last.named_modules()
                   if isinstance(mod, torch.nn.BatchNorm2d) for p, _ in mod.named_parameters()}
    last_block = {n for n, _ in last.named_parameters()
                  if n.startswith(("features.7.", "features.8.", "classifier."))}
    assert trainable == last_block | norm_params
    norms = [m for m in last.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(p.requires_grad for m in norms for p in m.parameters())
    assert count_params(head)[1] < count_params(last)[1] < total


def test_head_dropout_is_configurable():
    model = build_model("resnet18", 10, dropout=0.5)
    assert isinstance(model.fc[0], torch.nn.Dropout) and model.fc[0].p == 0.5
    assert model.fc[1].out_features == 10


def test_missing_pretrained_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(GridError, match=r"ImageNet weights for resnet18 not found at .*"
                                        r"checkpoints/resnet18-f37072fd.pth; download https://"):
        build_model("resnet18", 10, pretrained=True)


def test_pretrained_weights_load_from_the_local_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torchvision
    source = torchvision.models.squeezenet1_1(weights=None)
    path = backbones.weights_file("squeezenet1_1")
    path.parent.mkdir(parents=True)
    torch.save(source.state_dict(), path)
    model = build_model("squeezenet1_1", 10, pretrained=True)
    assert torch.equal(model.features[0].weight, source.features[0].weight)
    assert model.classifier[1].out_channels == 10
