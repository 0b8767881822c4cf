"""Network factory: every architecture builds from its defaults and from a JSON round trip of them."""

import json

import pytest
import torch

from annotation.ml.networks import ARCHITECTURES, build_network, default_network_config


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_builds_each_architecture_and_keeps_the_spatial_shape(architecture):
    torch.manual_seed(0)
    network = build_network(architecture, in_channels=1, out_channels=3).eval()
    size = 64 if architecture == "swinunetr" else 32  # SwinUNETR's smallest patch (check_patch_size)

    with torch.no_grad():
        logits = network(torch.randn(1, 1, size, size, size))

    assert logits.shape == (1, 3, size, size, size)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_config_survives_a_json_round_trip(architecture):
    # Model records keep network_config in a JSON field, so tuples come back as lists.
    config = json.loads(json.dumps(default_network_config(architecture)))

    network = build_network(architecture, in_channels=1, out_channels=2, config=config)

    assert isinstance(network, torch.nn.Module)


def test_config_overrides_defaults():
    network = build_network("unet", in_channels=1, out_channels=2, config={"channels": [8, 16, 32], "strides": [2, 2]})

    assert sum(p.numel() for p in network.parameters()) < sum(
        p.numel() for p in build_network("unet", in_channels=1, out_channels=2).parameters()
    )


def test_default_config_is_a_copy():
    default_network_config("unet")["channels"] = (1,)

    assert default_network_config("unet")["channels"] == (16, 32, 64, 128)


def test_rejects_unknown_architecture():
    with pytest.raises(ValueError, match="unknown network architecture"):
        build_network("resnet50", in_channels=1, out_channels=2)
    with pytest.raises(ValueError, match="unknown network architecture"):
        default_network_config("transformer")


def test_rejects_unknown_constructor_keyword():
    with pytest.raises(ValueError, match="cannot build unet"):
        build_network("unet", in_channels=1, out_channels=2, config={"no_such_option": 1})
