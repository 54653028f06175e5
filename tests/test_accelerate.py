"""The speed options (``channels_last``, ``compile``; off by default in every bundle) keep the networks' outputs and
their ``state_dict`` keys."""

import pytest
import torch
from monai.networks.nets import BasicUNet

from lmseg_components.networks import GuidedSegmenter, TGCNet, TIRNet, accelerate
from lmseg_components.workflows import SMALL_CONFIG, bundle_dir, load_bundle

TOLERANCE = 1e-4  # largest logit difference allowed (float32; only the summation order changes)


def _tirnet():
    return TIRNet(in_channels=1, width=8, text_dim=32), (torch.rand(2, 1, 64, 64), torch.randn(2, 12, 32))


def _tgcnet():
    net = TGCNet(text_dim=24, clip_model="ViT-B-16-quickgelu", clip_image_size=64, dim=32, cnn_width=8, n_heads=4)
    return net, (torch.rand(2, 1, 64, 64), torch.randn(2, 6, 24), torch.randn(2, 6, 24))


def _guided():
    return GuidedSegmenter(1, 4, "unet", use_retrieval=False), (torch.rand(2, 1, 64, 64),)


def _unet_3d():  # a 3-D network: its 5-D kernels take channels_last_3d
    return BasicUNet(3, 1, 2, features=(4, 4, 8, 8, 16, 4)), (torch.rand(1, 1, 32, 32, 32),)


def _accelerated(build, **options) -> torch.nn.Module:
    """Build a network, run it plain and with ``options``; assert equal outputs and state-dict keys."""
    torch.manual_seed(0)
    net, inputs = build()
    net.eval()
    keys = list(net.state_dict())
    with torch.no_grad():
        reference = net(*inputs)
        fast = accelerate(net, **options)(*inputs)
    assert list(net.state_dict()) == keys
    assert (fast - reference).abs().max() <= TOLERANCE
    return net


@pytest.mark.parametrize("build", [_tirnet, _tgcnet, _guided, _unet_3d], ids=["tirnet", "tgcnet", "jras", "unet3d"])
def test_channels_last_keeps_outputs_and_state_dict_keys(build):
    net = _accelerated(build, channels_last=True)
    kernels = [p for p in net.parameters() if p.dim() in (4, 5)]
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    assert kernels and all(p.is_contiguous(memory_format=formats[p.dim()]) for p in kernels)


def _channels_last_kernels(configs: list[str], overrides: dict) -> list[bool]:
    network = load_bundle(bundle_dir("tirnet_lmis"), configs, overrides).get_parsed_content("network")
    return [p.is_contiguous(memory_format=torch.channels_last) for p in network.parameters() if p.dim() == 4]


def test_bundle_configs_switch_channels_last_on():
    assert all(_channels_last_kernels(["train.json", SMALL_CONFIG], {"channels_last": True}))
    assert not all(_channels_last_kernels(["inference.json", SMALL_CONFIG], {}))  # the default: off


@pytest.mark.slow
def test_compile_keeps_outputs_and_state_dict_keys():
    """TorchInductor on the CPU (about 75 s of compilation on 2 cores: nightly)."""
    _accelerated(_tirnet, compile=True)


def test_a_string_switch_is_refused():
    """``--compile false`` on the command line arrives as the truthy string "false"."""
    with pytest.raises(
        TypeError, match=r"compile must be True or False \(command line: --compile False\), got 'false'"
    ):
        accelerate(torch.nn.Linear(2, 2), compile="false")
    with pytest.raises(TypeError, match="channels_last must be True or False"):
        accelerate(torch.nn.Linear(2, 2), channels_last="true")
