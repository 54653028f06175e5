"""TGC-Net checkpoints people can ship: with a pretrained (here: local-file) CLIP image tower the checkpoint holds the
tower's weight fingerprint instead of its frozen weights; loading checks it and names the tower on a mismatch;
a random-init tower keeps its weights in the checkpoint."""

from __future__ import annotations

import io

import open_clip
import pytest
import torch

from lmseg_components.networks import TGCNet

CLIP = "ViT-B-16-quickgelu"
SMALL = {"text_dim": 24, "clip_model": CLIP, "clip_image_size": 64, "dim": 32, "cnn_width": 8, "n_heads": 4}


def _weights_file(path, seed: int):
    """An open_clip checkpoint file of random ViT-B/16 weights: a "local-file" pretrained tower."""
    torch.manual_seed(seed)
    torch.save(open_clip.create_model(CLIP, pretrained=None).state_dict(), path)
    return str(path)


def _size(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


def test_pretrained_tower_is_left_out_and_restored_after_its_fingerprint(tmp_path):
    weights = _weights_file(tmp_path / "clip.bin", seed=1)
    torch.manual_seed(0)
    trained = TGCNet(**SMALL, clip_pretrained=weights)
    state = trained.state_dict()
    assert not any(k.startswith("sse.vit.visual.") for k in state) and "sse.vit.fingerprint" in state
    random_init = TGCNet(**SMALL)  # no other copy of its weights: all of them in the checkpoint
    full = random_init.state_dict()
    assert "sse.vit.fingerprint" not in full and any(k.startswith("sse.vit.visual.") for k in full)
    assert _size(state) < _size(full) / 20  # ViT-B/16's 86M frozen parameters are most of the file

    torch.manual_seed(5)  # other trainable weights: loading must bring the trained ones
    served = TGCNet(**SMALL, clip_pretrained=weights)
    served.load_state_dict(state)  # strict: the frozen weights come from the tower built here
    image, text = torch.rand(1, 1, 64, 64), torch.randn(1, 6, 24)
    with torch.no_grad():
        assert torch.equal(served.eval()(image, text), trained.eval()(image, text))


def test_half_precision_tower_takes_the_float32_checkpoint_and_keeps_its_fingerprint(tmp_path):
    weights = _weights_file(tmp_path / "clip.bin", seed=1)
    state = TGCNet(**SMALL, clip_pretrained=weights).state_dict()
    half = TGCNet(**SMALL, clip_pretrained=weights, clip_dtype="float16")
    assert torch.equal(half.state_dict()["sse.vit.fingerprint"], state["sse.vit.fingerprint"])  # the weights as loaded
    half.load_state_dict(state)  # strict; the frozen weights (float16) come from the tower built here
    assert half.sse.vit.visual.conv1.weight.dtype == torch.float16


def test_another_tower_is_refused_naming_what_to_provide(tmp_path):
    state = TGCNet(**SMALL, clip_pretrained=_weights_file(tmp_path / "a.bin", seed=1)).state_dict()
    other = _weights_file(tmp_path / "b.bin", seed=2)
    with pytest.raises(
        ValueError, match=r"weight fingerprint .* the tower built here \(ViT-B-16-quickgelu, pretrained="
    ):
        TGCNet(**SMALL, clip_pretrained=other).load_state_dict(state)
    with pytest.raises(ValueError, match="clip_model and clip_pretrained"):
        TGCNet(**SMALL).load_state_dict(state)  # a random-init tower cannot stand in for the trained-on weights


def test_fine_tuned_blocks_are_saved_and_the_frozen_rest_fingerprinted(tmp_path):
    weights = _weights_file(tmp_path / "clip.bin", seed=1)
    torch.manual_seed(0)
    net = TGCNet(**SMALL, clip_pretrained=weights, clip_trainable_blocks=1)
    with torch.no_grad():  # "training" moved the unfrozen block away from the file's weights
        for p in net.sse.vit.parameters():
            if p.requires_grad:
                p.add_(0.01)
    state = net.state_dict()
    tuned = [k for k in state if k.startswith("sse.vit.visual.transformer.resblocks.11.")]
    assert tuned and not any(k.startswith("sse.vit.visual.transformer.resblocks.0.") for k in state)
    served = TGCNet(**SMALL, clip_pretrained=weights, clip_trainable_blocks=1)
    served.load_state_dict(state)
    for key in tuned:
        assert torch.equal(served.state_dict()[key], state[key]), key
