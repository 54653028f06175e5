"""The J-RAS memory bank (``lmseg_components.apps.bank``): cases added to a trained bundle's gallery and index
without retraining, listed, removed; inference retrieves them; wrong sizes, label sets and duplicate ids refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import fire
import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from bundle_cli import BUNDLES, run_bundle, tiny_args, tiny_network

from lmseg_components.apps.bank import BankCase, add_cases, add_labelled_image, jras_bank, list_cases, remove_cases
from lmseg_components.data import make_synthetic_acdc, read_acdc_slices
from lmseg_components.errors import user_input_error
from lmseg_components.fingerprint import weights_fingerprint
from lmseg_components.outputs import RESULTS_LINES
from lmseg_components.retrieval import FaissIndex, Retriever, load_index
from lmseg_components.retrieval.augmented import concat_galleries
from lmseg_components.workflows import load_bundle

pytestmark = pytest.mark.bundle  # spawns python -m monai.bundle / torchrun / lmseg processes

TRAIN_CONFIG = BUNDLES / "jras_segmentation" / "configs" / "train.json"
TINY = tiny_network("jras_segmentation")
NEW_IDS = ["patient101", "patient102", "patient103"]


@pytest.fixture(scope="module")
def trained(train_bundle) -> Path:
    """A J-RAS bundle trained one epoch on 4 synthetic patients (2 in the gallery), 32 px."""
    data = partial(make_synthetic_acdc, seed=0, n_patients=4, shape=(32, 32, 3))
    tiny = [*tiny_args("jras_segmentation"), "--num_workers", "0", "--batch_size", "6"]
    return train_bundle("jras_segmentation", data, *tiny, "--epochs", "1", "--contrastive_candidates", "8")[0]


@pytest.fixture(scope="module")
def new_cases(tmp_path_factory) -> Path:
    """Three new labelled patients, ``patient101``-``patient103`` (ids not in the bank), scanned at 40 px."""
    raw, out = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("new_cases")
    make_synthetic_acdc(raw, seed=7, n_patients=3, shape=(40, 40, 3))
    for folder, new_id in zip(sorted(raw.iterdir()), NEW_IDS, strict=True):
        (out / new_id).mkdir()
        for f in folder.iterdir():
            f.rename(out / new_id / f.name.replace(folder.name, new_id))
    return out


@pytest.fixture
def bank(trained, tmp_path) -> Path:
    """A copy of the trained bundle's ``models`` (each test edits its own bank)."""
    shutil.copytree(trained / "models", tmp_path / "models")
    return tmp_path


def _add(root: Path, dataset: Path, **kwargs) -> list[BankCase]:
    return add_cases(root, dataset, config_file=TRAIN_CONFIG, **kwargs)


def _gallery(root: Path) -> dict:
    """The bank as inference reads it: the training gallery, then the user's cases (``user_gallery.pt``)."""
    names = [n for n in ("gallery.pt", "user_gallery.pt") if (root / "models" / n).is_file()]
    return concat_galleries([torch.load(root / "models" / n, weights_only=True) for n in names])


def _retriever(root: Path) -> Retriever:
    parser = load_bundle(BUNDLES / "jras_segmentation", ["train.json"], TINY)
    retriever = parser.get_parsed_content("retriever_def")
    retriever.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True)["retriever"])
    return retriever.eval()


def _index(root: Path, gallery: dict):
    """The bank's index, checked as inference checks it (retriever of model.pt, the gallery's ids in order)."""
    return load_index(root / "models" / "index.pt", weights_fingerprint(_retriever(root)), gallery["ids"])


def test_add_appends_the_new_slices_to_gallery_and_index_and_list_shows_them(bank, new_cases):
    before, records = _gallery(bank), read_acdc_slices(new_cases)
    n0 = len(before["ids"])
    added = _add(bank, new_cases)
    assert added == [BankCase(c, 6, str(new_cases.resolve())) for c in NEW_IDS]  # 2 frames x 3 slices each
    after = _gallery(bank)
    assert len(after["ids"]) == n0 + len(records) and after["ids"][n0:] == [r["name"] for r in records]
    assert after["case_ids"][n0:] == [r["case_id"] for r in records]
    assert torch.equal(after["images"][:n0], before["images"]) and torch.equal(after["labels"][:n0], before["labels"])
    assert after["images"].shape[1:] == (1, 32, 32)  # the 40 px scans preprocessed as training's were
    assert set(after["labels"][n0:].unique().tolist()) <= {0, 1, 2, 3} and after["labels"][n0:].max() == 3
    index = _index(bank, after)
    with torch.no_grad():
        expected = F.normalize(_retriever(bank)(after["images"][n0:]), dim=1)
    assert len(index) == n0 + len(records) and index.case_ids == after["case_ids"]
    assert torch.allclose(index.embeddings[n0:], expected, atol=1e-5)
    listed = list_cases(bank, TRAIN_CONFIG)
    assert [c.case_id for c in listed[-3:]] == NEW_IDS and listed[-3:] == added
    assert all(c.source is None and c.slices == 6 for c in listed[:-3]) and len(listed) == 5


@pytest.mark.slow  # a second training run (~45 s on 2 cores); nightly
def test_added_cases_live_beside_the_training_gallery_and_outlive_retraining(trained, new_cases, tmp_path):
    """``add`` leaves gallery.pt as training wrote it and writes the cases to user_gallery.pt; a retraining (here
    from scratch with another seed) rewrites gallery.pt, keeps the user's cases and saves an index holding them,
    embedded by the new retriever."""
    root = tmp_path / "run"
    shutil.copytree(trained, root, symlinks=True)
    training = torch.load(root / "models" / "gallery.pt", weights_only=True)
    _add(root, new_cases)
    assert torch.load(root / "models" / "gallery.pt", weights_only=True)["ids"] == training["ids"]
    user = torch.load(root / "models" / "user_gallery.pt", weights_only=True)
    assert list(dict.fromkeys(user["case_ids"])) == NEW_IDS and set(user["sources"]) == set(NEW_IDS)
    old_retriever = weights_fingerprint(_retriever(root))
    (root / "models" / "checkpoint.pt").unlink()
    args = [*tiny_args("jras_segmentation"), "--num_workers", "0", "--batch_size", "6"]
    retrain = run_bundle(
        "jras_segmentation",
        "training",
        ["configs/train.json"],
        root,
        *args,
        "--epochs",
        "1",
        "--contrastive_candidates",
        "8",
        "--seed",
        "1",
        "--device",
        "cpu",
    )
    assert retrain.returncode == 0, retrain.stderr[-2000:]
    assert weights_fingerprint(_retriever(root)) != old_retriever
    gallery = _gallery(root)
    assert (
        gallery["ids"][: len(training["ids"])] == training["ids"]
        and gallery["ids"][len(training["ids"]) :] == user["ids"]
    )
    index = _index(root, gallery)  # refused unless it holds both parts, by the new model.pt's retriever
    with torch.no_grad():
        expected = F.normalize(_retriever(root)(user["images"]), dim=1)
    assert torch.allclose(index.embeddings[len(training["ids"]) :], expected, atol=1e-5)
    assert [c.case_id for c in list_cases(root, TRAIN_CONFIG)][-3:] == NEW_IDS


def test_one_labelled_frame_joins_the_bank_slice_by_slice(bank, new_cases):
    """What MONAI Label's "submit label" gives: one image and its label, added as a case of its own, preprocessed
    as ``add_cases`` preprocesses the same slices."""
    frame = new_cases / "patient101" / "patient101_frame01.nii.gz"
    gt = frame.with_name("patient101_frame01_gt.nii.gz")
    by_folder = bank / "by_folder"
    shutil.copytree(bank / "models", by_folder / "models")
    n0 = len(_gallery(bank)["ids"])
    added = add_labelled_image(bank, frame, gt, "scan_7", config_file=TRAIN_CONFIG)
    assert added == BankCase("scan_7", 3, str(frame.resolve()))
    after = _gallery(bank)
    assert after["ids"][n0:] == ["scan_7_z00", "scan_7_z01", "scan_7_z02"] and after["case_ids"][n0:] == ["scan_7"] * 3
    _add(by_folder, new_cases)
    folder = _gallery(by_folder)
    rows = [r for r, i in enumerate(folder["ids"]) if i.startswith("patient101_frame01_")]
    assert torch.equal(after["labels"][n0:], folder["labels"][rows])
    assert torch.allclose(after["images"][n0:], folder["images"][rows])
    assert _index(bank, after).ids == after["ids"]
    with pytest.raises(ValueError, match=r"cases \['scan_7'\] are already in the bank"):
        add_labelled_image(bank, frame, gt, "scan_7", config_file=TRAIN_CONFIG)
    add_labelled_image(bank, frame, gt, "scan_7", replace=True, config_file=TRAIN_CONFIG)  # a corrected label
    assert _gallery(bank)["ids"][n0:] == ["scan_7_z00", "scan_7_z01", "scan_7_z02"]
    wrong = bank / "wrong_gt.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 2), np.uint8), np.eye(4)), wrong)
    with pytest.raises(ValueError, match=r"wrong_gt\.nii\.gz: label shape \(40, 40, 2\) differs from the image's"):
        add_labelled_image(bank, frame, wrong, "scan_8", config_file=TRAIN_CONFIG)


def test_inference_retrieves_the_new_cases(bank, new_cases):
    _add(bank, new_cases)
    overrides = {"bundle_root": str(bank), "dataset_dir": str(new_cases), "device": "$torch.device('cpu')", **TINY}
    load_bundle(BUNDLES / "jras_segmentation", ["inference.json"], overrides).get_parsed_content("inference")
    out = bank / "eval" / "inference"
    top1: dict[str, tuple[str, float]] = {}  # slice name -> (its best guide, similarity), as results.jsonl says
    for line in (out / RESULTS_LINES).read_text().splitlines():
        result = json.loads(line)
        frame = Path(result["image"]).name.split(".")[0]
        for s in result["slices"]:
            top1[f"{frame}_z{s['slice']:02d}"] = (s["guides"][0]["id"], s["guides"][0]["similarity"])
    queries = {r["name"] for r in read_acdc_slices(new_cases) if r["case_id"] in NEW_IDS}
    assert top1 and set(top1) <= queries  # the test part of the new folder
    for name, (guide, score) in top1.items():  # each new slice retrieves itself from the bank (cosine 1)
        assert guide == name and score > 0.999, (name, guide, score)
    assert len(list(out.glob("*_panel.png"))) == len(top1)


def test_remove_restores_the_original_bank(bank, new_cases):
    before = _gallery(bank)
    index_before = _index(bank, before)
    _add(bank, new_cases)
    removed = remove_cases(bank, NEW_IDS, TRAIN_CONFIG)
    assert [c.case_id for c in removed] == NEW_IDS and all(c.slices == 6 for c in removed)
    after = _gallery(bank)
    assert torch.equal(after["images"], before["images"]) and torch.equal(after["labels"], before["labels"])
    assert after["ids"] == before["ids"] and after["case_ids"] == before["case_ids"] and after["sources"] == {}
    index = _index(bank, after)
    assert index.ids == index_before.ids and index.case_ids == index_before.case_ids
    assert torch.allclose(index.embeddings, index_before.embeddings, atol=1e-6)
    assert [c.case_id for c in list_cases(bank, TRAIN_CONFIG)] == list(dict.fromkeys(before["case_ids"]))


def test_wrong_size_label_set_and_duplicate_ids_are_refused_and_leave_the_bank_unchanged(bank, new_cases):
    files = {p: p.read_bytes() for p in (bank / "models" / "gallery.pt", bank / "models" / "index.pt")}
    first = read_acdc_slices(new_cases)[0]
    with pytest.raises(ValueError, match=r"preprocessed to 1x48x48 \(image_size=48\).* holds 1x32x32 images") as e:
        _add(bank, new_cases, overrides={"image_size": 48})
    assert first["image"] in str(e.value) and str(bank / "models" / "gallery.pt") in str(e.value)
    with pytest.raises(ValueError, match=r"label values \[3\] are outside the bundle's label set 0-2") as e:
        # a 3-class bundle (the saved retriever keeps the 4 classes it was trained with, so that it loads)
        _add(bank, new_cases, overrides={"num_classes": 3, "retriever_def#num_classes": 4})
    assert "_gt.nii.gz" in str(e.value)
    assert all(p.read_bytes() == content for p, content in files.items())

    n_new = len(_add(bank, new_cases)) * 6
    grown = _gallery(bank)
    with pytest.raises(ValueError, match=r"cases \['patient101', 'patient102', 'patient103'\] are already in the bank"):
        _add(bank, new_cases)
    with pytest.raises(ValueError, match=r"cases \['patient999'\] are not in the bank"):
        remove_cases(bank, ["patient999"], TRAIN_CONFIG)
    assert torch.equal(_gallery(bank)["images"], grown["images"])
    _add(bank, new_cases, replace=True)
    replaced = _gallery(bank)
    assert replaced["ids"] == grown["ids"]  # the cases' rows dropped, then appended again
    assert torch.equal(replaced["images"][-n_new:], grown["images"][-n_new:])
    assert len(_index(bank, replaced)) == len(replaced["ids"])


def test_the_bank_refuses_an_index_from_another_retriever(bank, new_cases):
    state = torch.load(bank / "models" / "model.pt", weights_only=True)
    name = next(iter(state["retriever"]))
    state["retriever"][name] = state["retriever"][name] + 0.01
    torch.save(state, bank / "models" / "model.pt")
    with pytest.raises(ValueError, match="rebuild the index from the current retriever") as refused:
        _add(bank, new_cases)
    assert str(refused.value).endswith(f"Rebuild it from the gallery: lmseg jras-bank rebuild --bundle_root {bank}")


def test_an_index_copied_without_its_gallery_is_repaired_from_the_gallery(bank, new_cases, caplog):
    before = _gallery(bank)
    index_before = _index(bank, before)
    stale = (bank / "models" / "index.pt").read_bytes()
    _add(bank, new_cases)
    (bank / "models" / "index.pt").write_bytes(stale)  # the index of the bank before the add, restored alone
    remove_cases(bank, ["patient102"], TRAIN_CONFIG)
    assert "re-embedding the gallery with the saved retriever" in caplog.text
    after = _gallery(bank)
    index = _index(bank, after)
    assert [c.case_id for c in list_cases(bank, TRAIN_CONFIG)][-2:] == ["patient101", "patient103"]
    assert torch.allclose(index.embeddings[: len(before["ids"])], index_before.embeddings, atol=1e-5)


KILLED_ADD = """
import os, sys
import lmseg_components.files as files
from lmseg_components.apps.bank import add_cases
real, calls = os.replace, []
def dying(*args):  # the fourth rename of save_together (journal, gallery, user's gallery): the index not yet
    calls.append(1)
    if len(calls) == 4:
        os._exit(9)
    return real(*args)
files.os.replace = dying
add_cases(sys.argv[1], sys.argv[2], config_file=sys.argv[3])
"""


def test_an_add_killed_between_the_two_renames_leaves_the_new_bank(bank, new_cases):
    n0 = len(_gallery(bank)["ids"])
    killed = subprocess.run([sys.executable, "-c", KILLED_ADD, str(bank), str(new_cases), str(TRAIN_CONFIG)])
    assert killed.returncode == 9
    assert len(_gallery(bank)["ids"]) == n0 + 18 and len(torch.load(bank / "models" / "index.pt")["ids"]) == n0
    assert [c.case_id for c in list_cases(bank, TRAIN_CONFIG)][-3:] == NEW_IDS  # the reader completes the write
    assert len(_index(bank, _gallery(bank))) == n0 + 18
    assert sorted(p.name for p in (bank / "models").iterdir() if p.name.startswith(".")) == []


def test_a_truncated_index_is_refused_by_inference_and_rebuilt_by_the_bank_command(bank, new_cases, capsys):
    gallery = _gallery(bank)
    index_before = _index(bank, gallery)
    index_path = bank / "models" / "index.pt"
    index_path.write_bytes(index_path.read_bytes()[:500])
    overrides = {"bundle_root": str(bank), "dataset_dir": str(new_cases), "device": "$torch.device('cpu')", **TINY}
    parser = load_bundle(BUNDLES / "jras_segmentation", ["inference.json"], overrides)
    with pytest.raises(Exception) as refused:
        parser.get_parsed_content("inference")
    message = str(user_input_error(refused.value))  # what the process prints as its one line
    assert message.startswith(f"{index_path}: not a readable retrieval index")
    assert message.endswith(f"Rebuild it from the gallery: lmseg jras-bank rebuild --bundle_root {bank}")
    with pytest.raises(ValueError, match="lmseg jras-bank rebuild"):
        _add(bank, new_cases)
    fire.Fire(jras_bank, command=["rebuild", "--bundle_root", str(bank), "--config_file", str(TRAIN_CONFIG)])
    # the last line: MONAI's logger may also have written the inference run's error to stdout
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"indexed {len(gallery['ids'])} gallery items"
    rebuilt = _index(bank, gallery)
    assert rebuilt.ids == index_before.ids and rebuilt.case_ids == index_before.case_ids
    assert torch.allclose(rebuilt.embeddings, index_before.embeddings, atol=1e-5)
    assert len(_add(bank, new_cases)) == 3


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_faiss_index_add_and_remove(bank, new_cases, kind):
    pytest.importorskip("faiss")
    gallery = _gallery(bank)
    torch_index = _index(bank, gallery)
    index = FaissIndex(torch_index.dim, kind)
    index.add(torch_index.embeddings, torch_index.ids, torch_index.case_ids)
    index.save(bank / "models" / "index.pt", weights_fingerprint(_retriever(bank)))
    _add(bank, new_cases)
    grown = _index(bank, _gallery(bank))
    assert isinstance(grown, FaissIndex) and grown.kind == kind and len(grown) == len(gallery["ids"]) + 18
    remove_cases(bank, NEW_IDS, TRAIN_CONFIG)
    shrunk = _index(bank, _gallery(bank))
    assert shrunk.ids == gallery["ids"] and shrunk.kind == kind
    assert shrunk.search(torch_index.embeddings, 1).ids == [[i] for i in gallery["ids"]]  # each finds itself


def test_command_line(bank, new_cases, capsys):
    common = ["--bundle_root", str(bank), "--config_file", str(TRAIN_CONFIG)]
    add = [sys.executable, "-m", "lmseg_components.apps.bank", "add", "--dataset_dir", str(new_cases), *common]
    run = subprocess.run(add, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"added 3 cases (18 slices) from {new_cases}" in run.stdout
    # the other commands as python-fire parses them, in this process
    fire.Fire(jras_bank, command=["remove", "--case_id", "patient101,patient103", *common])
    fire.Fire(jras_bank, command=["list", *common])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "removed 2 cases (12 slices): ['patient101', 'patient103']"
    assert lines[1].split() == ["case_id", "slices", "source"]
    assert [line.split() for line in lines[-3:]] == [
        [case, "6", "(training)"] for case in list(dict.fromkeys(_gallery(bank)["case_ids"]))[:2]
    ] + [["patient102", "6", str(new_cases.resolve())]]
    with pytest.raises(SystemExit, match=r"error: .*already in the bank .*pass --replace"):
        jras_bank("add", str(bank), str(new_cases), config_file=str(TRAIN_CONFIG))
    with pytest.raises(SystemExit, match="error: add needs --dataset_dir"):
        jras_bank("add", str(bank), config_file=str(TRAIN_CONFIG))
    with pytest.raises(SystemExit, match=r"error: action must be one of \('add', 'list', 'remove', 'rebuild'\)"):
        jras_bank("show", str(bank), config_file=str(TRAIN_CONFIG))


def test_a_truncated_gallery_is_named_with_what_to_do(bank):
    gallery = bank / "models" / "gallery.pt"
    gallery.write_bytes(gallery.read_bytes()[:1000])  # killed mid-write by something other than lmseg's own writes
    command = [sys.executable, "-m", "lmseg_components.apps.bank", "list", "--bundle_root", str(bank)]
    run = subprocess.run([*command, "--config_file", str(TRAIN_CONFIG)], capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {gallery}: not a readable checkpoint, truncated or not written by torch.save")
    assert last.endswith("restore the gallery from a copy, or train the bundle again (it writes one)")
