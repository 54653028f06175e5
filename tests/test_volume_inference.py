"""Pieces of slice-wise 3D inference: the text-aware slice inferer, per-organ label transforms, HD95 in mm,
and the by-case MSD split."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from lmseg_components.data import MultiLabelToIndexd, OneHotForegroundd, read_msd, read_msd_split
from lmseg_components.inferers import TextSliceInferer
from lmseg_components.metrics import SpacedHausdorffDistanceMetric


class _Recorder(torch.nn.Module):
    """A 2D 'network': prompt p's map is the slice times the prompt's first feature; records each call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, image, text=None, aux_text=None):
        self.calls.append((tuple(image.shape), tuple(text.shape)))
        return image * text[:, :, 0, 0].expand(image.shape[0], -1)[..., None, None]


def test_text_slice_inferer_passes_text_to_every_slice_batch():
    volume = torch.rand(1, 1, 8, 8, 5)
    text = torch.zeros(1, 2, 4, 3)
    text[0, :, 0, 0] = torch.tensor([2.0, -1.0])
    network = _Recorder()
    out = TextSliceInferer(spatial_dim=2, roi_size=(8, 8), sw_batch_size=2)(volume, network, text=text)
    assert out.shape == (1, 2, 8, 8, 5)
    assert torch.allclose(out[:, 0], 2 * volume[:, 0]) and torch.allclose(out[:, 1], -volume[:, 0])
    assert [c[0] for c in network.calls] == [(2, 1, 8, 8), (2, 1, 8, 8), (1, 1, 8, 8)]
    assert all(c[1] == (1, 2, 4, 3) for c in network.calls)
    with pytest.raises(ValueError, match="one volume at a time"):
        TextSliceInferer(roi_size=(8, 8))(torch.rand(2, 1, 8, 8, 5), network, text=text)


def test_one_hot_foreground_and_back_to_labels():
    label = MetaTensor(torch.tensor([[[0, 1], [2, 3]]]).float(), meta={"filename_or_obj": "case.nii.gz"})
    channels = OneHotForegroundd("label", num_classes=4)({"label": label})["label"]
    assert channels.shape == (3, 2, 2) and isinstance(channels, MetaTensor)
    assert channels.meta["filename_or_obj"] == "case.nii.gz"
    assert torch.equal(channels[:, 1, 1], torch.tensor([0.0, 0.0, 1.0])) and channels[:, 0, 0].sum() == 0
    with pytest.raises(ValueError, match=r"case.nii.gz: label values \[0, 1, 2, 3\] are outside \[0, 3\)"):
        OneHotForegroundd("label", num_classes=3)({"label": label})
    probs = torch.tensor([[[0.9, 0.2], [0.6, 0.1]], [[0.95, 0.1], [0.3, 0.4]], [[0.1, 0.3], [0.55, 0.2]]])
    labels = MultiLabelToIndexd("pred", threshold=0.5)({"pred": MetaTensor(probs)})["pred"]
    assert labels.dtype == torch.uint8 and labels.tolist() == [[[2, 0], [1, 0]]]


def test_hd95_uses_each_volume_affine():
    truth = torch.zeros(1, 10, 10, 10)
    truth[0, 2:5, 2:5, 2:5] = 1
    pred = torch.roll(truth, 1, dims=3)  # one voxel along z
    metric = SpacedHausdorffDistanceMetric(include_background=True, percentile=95)
    affines = [torch.diag(torch.tensor([1.0, 1.0, 3.0, 1.0])), torch.diag(torch.tensor([1.0, 1.0, 0.5, 1.0]))]
    metric([MetaTensor(pred, affine=a) for a in affines], [MetaTensor(truth, affine=a) for a in affines])
    assert torch.allclose(metric.get_buffer()[:, 0], torch.tensor([3.0, 0.5]))  # 1 voxel: 3 mm, then 0.5 mm


def test_msd_split_is_by_case_reproducible_and_complete(tmp_path):
    from lmseg_components.data import make_synthetic_msd

    make_synthetic_msd(tmp_path, seed=0, n_cases=6, shape=(16, 16, 8))
    parts = [read_msd_split(tmp_path, part) for part in ("train", "val", "test")]
    names = [sorted(r["name"] for r in p) for p in parts]
    assert [len(n) for n in names] == [4, 1, 1]
    assert sorted(sum(names, [])) == sorted(r["name"] for r in read_msd(tmp_path))
    assert names == [sorted(r["name"] for r in read_msd_split(tmp_path, p)) for p in ("train", "val", "test")]
    assert parts[0][0]["text"] == [f"A computerized tomography of a {o}" for o in ("liver", "spleen", "kidney")]
    with pytest.raises(ValueError, match="the 'val' part of the case split"):
        read_msd_split(tmp_path, "val", (0.9, 0.0, 0.1))
    with pytest.raises(ValueError, match="part must be one of"):
        read_msd_split(tmp_path, "validation")
