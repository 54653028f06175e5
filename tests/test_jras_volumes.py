"""J-RAS on whole volumes: each slice scaled as training scaled it, each slice retrieving its own guides (recorded
in slice order), and what a segmented volume holds in mL with the gallery cases that guided each slice."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRangePercentiles

from lmseg_components.data import PerSliced
from lmseg_components.engines import describe_retrieval
from lmseg_components.inferers import RetrievalSliceInferer
from lmseg_components.networks import GuidedSegmenter
from lmseg_components.retrieval import RetrievalAugmentedSegmenter, Retriever

SCALE = ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)


def test_each_slice_is_scaled_by_its_own_percentiles():
    torch.manual_seed(0)
    volume = torch.rand(1, 8, 8, 3) * torch.tensor([1.0, 50.0, 1000.0])  # slices of very different ranges
    scaled = PerSliced("image", SCALE)({"image": MetaTensor(volume)})["image"]
    assert isinstance(scaled, MetaTensor) and scaled.shape == volume.shape
    for z in range(3):
        assert torch.allclose(scaled[..., z].as_tensor(), SCALE(volume[..., z]), atol=1e-6)
    whole = SCALE(volume)  # what a volume transform does: the dim slices stay near 0
    assert not torch.allclose(scaled.as_tensor(), whole, atol=1e-2)


def test_a_2d_volume_is_refused_naming_its_file():
    image = MetaTensor(torch.rand(1, 8, 8), meta={"filename_or_obj": "frame.nii.gz"})
    with pytest.raises(ValueError, match=r"frame\.nii\.gz: expected a channel-first volume"):
        PerSliced("image", SCALE)({"image": image})


def _network() -> RetrievalAugmentedSegmenter:
    """A small J-RAS network over a gallery of four distinct 32 x 32 slices of cases a, b, c, d (index built)."""
    torch.manual_seed(0)
    net = RetrievalAugmentedSegmenter(
        Retriever(1, embed_dim=8, hidden_dim=8, widen_factor=0.25),
        GuidedSegmenter(1, 4, "unet", features=(4, 4, 8, 8, 8, 4)),
        k=2,
        exclude_same_case=False,
    )
    images = torch.rand(4, 1, 32, 32)
    labels = torch.randint(0, 4, (4, 1, 32, 32))
    net.set_gallery(images, labels, ["a_z0", "b_z0", "c_z0", "d_z0"], ["a", "b", "c", "d"])
    net.eval()
    net.rebuild_index()
    return net


@torch.no_grad()
def test_slice_inferer_retrieves_for_each_slice_in_slice_order():
    net = _network()
    order = [2, 0, 3, 1, 2]  # slice z is the gallery's image order[z]: its best match is that row
    volume = torch.stack([net.gallery_images[r] for r in order], -1)[None]  # (1, 1, 32, 32, 5)
    inferer = RetrievalSliceInferer(spatial_dim=2, roi_size=(32, 32), sw_batch_size=2)  # batches of 2, 2, 1
    pred = inferer(volume, net)
    assert pred.shape == (1, 4, 32, 32, 5)
    assert net.last_indices.shape == (5, 2) and net.last_indices[:, 0].tolist() == order
    assert torch.allclose(net.last_scores[:, 0], torch.ones(5), atol=1e-5)
    for z, row in enumerate(order):  # each slice as a 2D query gives the same logits
        assert torch.allclose(pred[..., z], net(net.gallery_images[row][None]), atol=1e-5)


def test_slice_inferer_takes_one_volume():
    with pytest.raises(ValueError, match=r"one \(1, C, H, W, D\) volume"):
        RetrievalSliceInferer(spatial_dim=2, roi_size=(32, 32))(torch.rand(2, 1, 32, 32, 3), _network())


@torch.no_grad()
def test_described_volume_has_millilitres_and_the_guides_of_each_slice():
    net = _network()
    volume = torch.stack([net.gallery_images[r] for r in (3, 1)], -1)[None]
    RetrievalSliceInferer(spatial_dim=2, roi_size=(32, 32))(volume, net)
    labels = torch.zeros(1, 32, 32, 2)
    labels[0, :4, :5, 0] = 1  # 20 voxels of class 1
    labels[0, :2, :3, 1] = 3  # 6 voxels of class 3
    pred = MetaTensor(labels, affine=torch.diag(torch.tensor([2.0, 1.5, 3.0, 1.0])))  # 9 mm^3 per voxel
    described = describe_retrieval(net, pred, ["background", "RV", "myocardium", "LV"])
    assert described["structures"] == {
        "RV": {"voxels": 20, "ml": 0.18},
        "myocardium": {"voxels": 0, "ml": 0.0},
        "LV": {"voxels": 6, "ml": 0.054},
    }
    assert [s["slice"] for s in described["slices"]] == [0, 1]
    best = [s["guides"][0] for s in described["slices"]]
    assert [(g["id"], g["case_id"]) for g in best] == [("d_z0", "d"), ("b_z0", "b")]
    assert best[0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert len(described["slices"][0]["guides"]) == 2


def test_described_2d_image_has_pixels_and_one_slice():
    net = _network()
    with torch.no_grad():
        net(net.gallery_images[[1, 2]])  # a batch of two queries: the second image's guides are row 1
    pred = torch.zeros(1, 32, 32)
    pred[0, :3, :3] = 1
    described = describe_retrieval(net, pred, ["background", "lesion"], first_query=1)
    assert described["structures"] == {"lesion": {"voxels": 9}}
    assert len(described["slices"]) == 1 and described["slices"][0]["guides"][0]["id"] == "c_z0"
