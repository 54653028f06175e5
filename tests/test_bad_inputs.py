"""Bad inputs stop the run with one clear line naming the file, and ``lmseg check-data`` refuses what training
refuses: masks of any binary encoding train as masks, non-binary ones are named; truncated checkpoints, PNGs,
NIfTI volumes and retrieval indexes; 4-D volumes; label maps with gaps; missing LViT splits; ACDC and BUSI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_cli import BUNDLES, TIRNET_TINY, run_bundle, small_record
from monai.bundle import ConfigParser
from PIL import Image

from lmseg_components.data import (
    DatasetValidationError,
    check_dataset,
    make_synthetic_acdc,
    make_synthetic_lvit,
    read_lvit_split,
    read_msd_labels,
)
from lmseg_components.data.image_transforms import BinaryMaskd
from lmseg_components.engines import CheckedCheckpointLoader
from lmseg_components.retrieval import create_index, load_index

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

LVIT_BUNDLES = ("tirnet_lmis", "tgcnet_lmis")


def _parser(bundle: str, config: str, dataset_dir: Path) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / config))
    parser["bundle_root"], parser["dataset_dir"] = str(dataset_dir.parent), str(dataset_dir)
    return parser


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def lvit(tmp_path):
    make_synthetic_lvit(tmp_path / "data", seed=2, size=32, n_train=4, n_val=1, n_test=2)
    return tmp_path / "data"


def _mask_path(root: Path, i: int) -> Path:
    return root / "Train_Folder" / "labelcol" / f"mask_syn_train_{i:04d}.png"


def _encode(path: Path, encoding: str) -> np.ndarray:
    """Rewrite the 0/255 mask at ``path`` in another binary encoding; return its foreground."""
    foreground = np.asarray(Image.open(path).convert("L")) > 127
    if encoding == "0/1":
        Image.fromarray(foreground.astype(np.uint8)).save(path)
    elif encoding == "0/128":
        Image.fromarray(foreground.astype(np.uint8) * 128).save(path)
    elif encoding == "boolean":
        Image.fromarray(foreground).save(path)  # mode "1"
    elif encoding == "palette":
        image = Image.new("P", foreground.shape[::-1])
        image.putpalette([0, 0, 0, 255, 255, 255])
        image.putdata(foreground.astype(np.uint8).ravel().tolist())
        image.save(path)
    elif encoding == "rgb":
        Image.fromarray(np.repeat(foreground[..., None].astype(np.uint8) * 255, 3, -1)).save(path)
    return foreground


def _load_labels(bundle: str, root: Path, records: list[dict]) -> list:
    parser = _parser(bundle, "train.json", root)
    parser["image_size"] = 32
    transforms = parser.get_parsed_content("load_transforms")
    labels = []
    for record in records:
        data = dict(record)
        for transform in transforms:
            data = transform(data)
        labels.append(data["label"])
    return labels


@pytest.mark.parametrize("bundle", LVIT_BUNDLES)
def test_binary_masks_of_every_encoding_train_as_masks(bundle, lvit):
    encodings = ("0/1", "boolean", "palette", "0/128")
    truths = [_encode(_mask_path(lvit, i), e) for i, e in enumerate(encodings)]
    assert check_dataset(lvit) == ("lvit", [])
    records = read_lvit_split(lvit, "Train")
    for encoding, truth, label in zip(encodings, truths, _load_labels(bundle, lvit, records), strict=True):
        assert set(label.unique().tolist()) == {0.0, 1.0}, encoding
        assert torch.equal(label[0].T.bool(), torch.from_numpy(truth)), encoding  # PILReader gives (W, H)


@pytest.mark.parametrize("bundle", LVIT_BUNDLES)
def test_non_binary_mask_refused_by_check_data_and_training(bundle, lvit):
    path = _mask_path(lvit, 1)
    Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32) % 3 * 100).save(path)
    problems = check_dataset(lvit)[1]
    assert [str(p) for p in problems] == [
        f"{path} (row 3): non-binary mask: 3 values (0, 100, 200), expected background 0 and one foreground value"
    ]
    records = read_lvit_split(lvit, "Train", strict_masks=False)  # a reader told not to look: training still refuses
    with pytest.raises(ValueError, match=rf"^{path}: non-binary mask: 3 values"):
        _load_labels(bundle, lvit, records[1:2])


def test_mask_without_background_is_named(lvit):
    path = _mask_path(lvit, 2)
    foreground = _encode(path, "0/1")
    Image.fromarray(np.where(foreground, 255, 1).astype(np.uint8)).save(path)
    assert "values 1 and 255, expected background 0" in str(check_dataset(lvit)[1][0])
    with pytest.raises(ValueError, match=r"^mask\.png: non-binary mask: values 1 and 255"):
        BinaryMaskd("label")({"label": _meta_tensor(np.where(foreground, 255, 1)[None], "mask.png")})


def _meta_tensor(array: np.ndarray, filename: str):
    from monai.data import MetaTensor

    return MetaTensor(torch.as_tensor(array, dtype=torch.float32), meta={"filename_or_obj": filename})


def test_binary_mask_keeps_metadata_and_float_type():
    out = BinaryMaskd("label")({"label": _meta_tensor(np.array([[[0, 255], [255, 0]]]), "m.png")})["label"]
    assert out.dtype == torch.float32 and out.tolist() == [[[0.0, 1.0], [1.0, 0.0]]]
    assert out.meta["filename_or_obj"] == "m.png"


@pytest.mark.parametrize("bundle", LVIT_BUNDLES)
def test_inference_refuses_a_corrupt_input_before_writing(bundle, lvit):
    path = lvit / "Test_Folder" / "img" / "syn_test_0001.png"
    _truncate(path, 0.3)
    with pytest.raises(Exception) as info:
        _parser(bundle, "inference.json", lvit).get_parsed_content("datalist")
    cause = info.value
    while not isinstance(cause, DatasetValidationError) and cause.__cause__ is not None:
        cause = cause.__cause__
    assert isinstance(cause, DatasetValidationError)
    assert [str(p) for p in cause.problems] == [f"{path}: unreadable or corrupt image (image file is truncated)"]


def test_truncated_checkpoint_is_named(tmp_path):
    from ignite.engine import Engine

    path = tmp_path / "model.pt"
    network = torch.nn.Linear(64, 64)
    torch.save(network.state_dict(), path)
    loader = CheckedCheckpointLoader(load_path=str(path), load_dict={"model": network})
    loader(Engine(lambda engine, batch: None))  # a complete file loads
    _truncate(path)
    with pytest.raises(ValueError, match=rf"^{path}: not a readable checkpoint, truncated"):
        loader(Engine(lambda engine, batch: None))
    torch.save(network.state_dict(), path)
    raw = bytearray(path.read_bytes())
    start = raw.find(b"data/0") + 200  # inside the 16 kB weight record: the archive's CRC no longer matches
    raw[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"not a readable checkpoint, its member .* is corrupt"):
        loader(Engine(lambda engine, batch: None))


def test_inference_with_truncated_model_names_it(tmp_path):
    make_synthetic_lvit(tmp_path / "data", seed=0, size=32, n_train=2, n_val=1, n_test=2)
    (tmp_path / "models").mkdir()
    record = {**small_record("tirnet_lmis"), **TIRNET_TINY}  # a run whose model file was cut short
    (tmp_path / "models" / "run_record.json").write_text(json.dumps(record))
    torch.save({"weight": torch.zeros(4096)}, tmp_path / "models" / "model.pt")
    _truncate(tmp_path / "models" / "model.pt")
    run = run_bundle("tirnet_lmis", "inference", ["configs/inference.json"], tmp_path, small=False)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert f"ERROR - Exception: {tmp_path / 'models' / 'model.pt'}: not a readable checkpoint" in output
    assert "Errno 22" not in output
    assert not list((tmp_path / "eval").rglob("*_mask.png"))


@pytest.fixture
def msd(tmp_path, msd_root):
    shutil.copytree(msd_root, tmp_path / "msd")
    return tmp_path / "msd"


def _ct_datalist(root: Path):
    parser = _parser("tgcnet_ct_organs", "train.json", root)
    parser["split_fractions"] = [0.34, 0.33, 0.33]
    return parser.get_parsed_content("train#datalist")


def _unwrap(error: BaseException) -> BaseException:
    while not isinstance(error, DatasetValidationError) and error.__cause__ is not None:
        error = error.__cause__
    return error


@pytest.mark.parametrize("name", ["synct_000", "synct_001", "synct_002"])
def test_ct_training_names_a_truncated_volume(msd, name):
    path = msd / "imagesTr" / f"{name}.nii.gz"
    _truncate(path, 0.6)
    with pytest.raises(Exception) as info:
        _ct_datalist(msd)  # every case is read, whichever part it falls in
    assert str(_unwrap(info.value).problems[0]).startswith(f"{path}: truncated or corrupt NIfTI")
    assert [p.file for p in check_dataset(msd)[1]] == [str(path)]


def test_ct_training_names_a_4d_volume(msd):
    path = msd / "imagesTr" / "synct_001.nii.gz"
    volume = nib.load(str(path))
    nib.save(nib.Nifti1Image(np.asarray(volume.dataobj)[..., None].repeat(2, -1), volume.affine), str(path))
    with pytest.raises(Exception) as info:
        _ct_datalist(msd)
    assert str(_unwrap(info.value).problems[0]) == f"{path}: 4-D volume (24, 24, 10, 2), expected a 3-D volume"
    assert "4-D volume" in str(check_dataset(msd)[1][0])


def test_uncompressed_truncated_nifti_is_named(msd):
    path = msd / "labelsTr" / "synct_002.nii.gz"
    plain = path.with_name("synct_002.nii")
    nib.save(nib.load(str(path)), str(plain))
    meta = json.loads((msd / "dataset.json").read_text())
    meta["training"][2]["label"] = "./labelsTr/synct_002.nii"
    (msd / "dataset.json").write_text(json.dumps(meta))
    assert check_dataset(msd) == ("msd", [])
    _truncate(plain, 0.8)
    problems = check_dataset(msd)[1]
    assert len(problems) == 1 and problems[0].file == str(plain) and "truncated NIfTI" in problems[0].message


def test_label_map_with_gaps_is_refused(msd):
    meta = json.loads((msd / "dataset.json").read_text())
    labels = meta["labels"]
    meta["labels"] = {"0": labels["0"], "1": labels["1"], "3": labels["2"]}
    (msd / "dataset.json").write_text(json.dumps(meta))
    message = "'labels' keys must be 0..2 without gaps (label k is trained as class k), got [0, 1, 3]"
    assert [str(p) for p in check_dataset(msd)[1]] == [f"{msd / 'dataset.json'}: {message}"]
    with pytest.raises(DatasetValidationError, match=r"without gaps"):
        read_msd_labels(msd)  # the CT bundle's num_classes


def test_msd_split_with_an_empty_part_is_reported(msd):
    assert check_dataset(msd) == ("msd", [])  # 3 cases: one per part of the default 70/10/20 % split
    meta = json.loads((msd / "dataset.json").read_text())
    meta["training"] = meta["training"][:2]
    (msd / "dataset.json").write_text(json.dumps(meta))
    problems = check_dataset(msd)[1]
    assert len(problems) == 1 and "part of the case split [0.7, 0.1, 0.2] is empty" in str(problems[0])


def test_lvit_without_val_folder_is_refused(lvit):
    shutil.rmtree(lvit / "Val_Folder")
    problems = check_dataset(lvit)[1]
    assert [str(p) for p in problems] == [
        f"{lvit / 'Val_Folder'}: split folder is missing (training reads Train_Folder and Val_Folder)"
    ]
    with pytest.raises(DatasetValidationError, match="Val_Folder/img: folder is missing"):
        read_lvit_split(lvit, "Val")  # the training datalist


@pytest.fixture
def acdc(tmp_path):
    make_synthetic_acdc(tmp_path / "acdc", seed=0, n_patients=4, shape=(24, 24, 3))
    return tmp_path / "acdc"


def test_check_data_reads_acdc(acdc, capsys):
    from lmseg_components.apps.cli import check_data

    assert check_dataset(acdc) == ("acdc", [])
    check_data(str(acdc))
    assert "is a valid acdc dataset" in capsys.readouterr().out
    gt = acdc / "patient002" / "patient002_frame01_gt.nii.gz"
    volume = nib.load(str(gt))
    labels = np.asarray(volume.dataobj).copy()
    labels[0, 0, 0] = 5
    nib.save(nib.Nifti1Image(labels, volume.affine), str(gt))
    frame = acdc / "patient003" / "patient003_frame12.nii.gz"
    _truncate(frame, 0.7)
    layout, problems = check_dataset(acdc)
    assert layout == "acdc" and sorted(p.file for p in problems) == sorted([str(gt), str(frame)])
    assert any("label values [5] are not ACDC classes 0-3" in str(p) for p in problems)
    with pytest.raises(SystemExit) as info:
        check_data(str(acdc))
    assert info.value.code == 1


def test_check_data_reports_acdc_split_too_small(tmp_path):
    make_synthetic_acdc(tmp_path, seed=0, n_patients=2, shape=(24, 24, 3))
    problems = check_dataset(tmp_path)[1]
    assert problems and all("part of the case split" in str(p) for p in problems)


def _busi(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("benign", "malignant", "normal"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(root / cls / f"{cls} ({i}).png")
            mask = np.zeros((20, 24), np.uint8)
            mask[5:10, 6:12] = 255
            Image.fromarray(mask).save(root / cls / f"{cls} ({i})_mask.png")
    return root


def test_check_data_reads_busi(tmp_path):
    root = _busi(tmp_path / "busi")
    assert check_dataset(root) == ("busi", [])
    three = root / "benign" / "benign (1)_mask.png"
    Image.fromarray(np.arange(20 * 24, dtype=np.uint8).reshape(20, 24) % 3).save(three)
    small = root / "malignant" / "malignant (0)_mask_1.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    (root / "normal" / "normal (0).png").unlink()
    problems = [str(p) for p in check_dataset(root)[1]]
    assert len(problems) == 3
    assert f"{root / 'normal' / 'normal (0)_mask.png'}: mask has no image normal (0).png" in problems
    assert any(p.startswith(f"{three}: non-binary mask: 3 values") for p in problems)
    assert any(p.startswith(f"{small}: mask size 10x10 differs from image") for p in problems)


def test_unknown_layout_lists_all_four(tmp_path):
    message = str(check_dataset(tmp_path)[1][0])
    assert all(word in message for word in ("MSD", "LViT", "ACDC", "BUSI"))


def _saved_index(tmp_path: Path) -> Path:
    index = create_index(8, "torch")
    index.add(torch.randn(5, 8), [f"id{i}" for i in range(5)], [f"case{i // 2}" for i in range(5)])
    index.save(tmp_path / "index.pt", "fingerprint")
    return tmp_path / "index.pt"


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "not an index", "missing key"])
def test_corrupt_index_is_named(tmp_path, damage):
    path = _saved_index(tmp_path)
    if damage == "truncated":
        _truncate(path)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"\x80\x02}q\x00" * 40)
    elif damage == "not an index":
        torch.save(torch.zeros(3), path)
    else:
        state = torch.load(path, weights_only=True)
        del state["case_ids"]
        torch.save(state, path)
    with pytest.raises(ValueError, match=rf"^{path}: not a (readable )?retrieval index .*; rebuild it\.$"):
        load_index(path, "fingerprint")


@pytest.mark.parametrize("damage", ["embeddings", "case_ids", "duplicate ids"])
def test_inconsistent_index_is_named(tmp_path, damage):
    path = _saved_index(tmp_path)
    state = torch.load(path, weights_only=True)
    if damage == "embeddings":
        state["embeddings"] = state["embeddings"][:4]
    elif damage == "case_ids":
        state["case_ids"] = state["case_ids"][:3]
    else:
        state["ids"][1] = state["ids"][0]
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"^{path}: inconsistent retrieval index .*; rebuild it\.$"):
        load_index(path, "fingerprint")
