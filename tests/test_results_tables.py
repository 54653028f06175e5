"""Result tables are data: benchmarks write ``benchmarks/results/<name>.json`` and the docs' tables between
``<!-- results: NAME -->`` markers are their renderings, so a docs table cannot drift from the measured numbers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from benchmarks.results import (
    BLOCK,
    DOCS,
    RESULTS_DIR,
    ROOT,
    bundle_version,
    paired_differences,
    render,
    render_docs,
    save_results,
)

COLUMNS = [("correct_mdice", "correct m-Dice"), ("paraphrased_mdice", "paraphrased m-Dice")]


def _measured(version: str = "0.6.0", commit: str = "0123456789ab") -> dict:
    return {
        "command": "python benchmarks/text_grounding.py --seeds 0,1",
        "seeds": [0, 1],
        "commit": commit,
        "bundle": "tirnet_lmis",
        "bundle_version": version,
        "torch": "2.14.1",
        "monai": "1.5.1",
        "python": "3.11.2",
        "device": "cpu",
        "wall_minutes": 31.4,
        "date": "2026-12-02",
    }


def _rows(a: float, b: float) -> list[dict]:
    return [{"correct_mdice": a, "paraphrased_mdice": 0.5}, {"correct_mdice": b, "paraphrased_mdice": 0.7}]


def test_the_docs_tables_are_the_renderings_of_their_result_files():
    assert render_docs(check=True) == []


def test_every_results_file_is_rendered_somewhere():
    rendered = {match["name"] for doc in DOCS for match in BLOCK.finditer(doc.read_text())}
    for path in RESULTS_DIR.glob("*.json"):
        assert path.stem in rendered, f"{path.name} is rendered in no docs page"


def test_rows_are_summarised_as_mean_and_sample_std_with_how_they_were_measured(tmp_path):
    path = save_results(
        "tg", {"full": _rows(0.9, 0.8)}, COLUMNS, _measured(), "TIRNet, 30 epochs.", {"e": 30}, tmp_path
    )
    result = json.loads(path.read_text())
    full = result["variants"]["full"]
    assert full["mean"]["correct_mdice"] == pytest.approx(0.85) and full["std"]["correct_mdice"] == pytest.approx(
        0.0707107, abs=1e-6
    )  # sample std of 0.9 and 0.8: sqrt(0.005)
    assert full["mean"]["paraphrased_mdice"] == pytest.approx(0.6) and full["measured"]["commit"] == "0123456789ab"
    table = render(result, current_version="0.6.0")
    assert "| `full` | 0.850 ± 0.071 | 0.600 ± 0.141 | 31 |" in table
    assert "seeds 0, 1, tirnet_lmis 0.6.0, commit `0123456789ab`, 2026-12-02, cpu" in table and "**" not in table
    assert "python benchmarks/text_grounding.py --seeds 0,1" in table
    one = save_results("one", {"full": _rows(0.9, 0.8)[:1]}, COLUMNS, _measured(), "c.", {}, tmp_path)
    assert "| `full` | 0.900 | 0.500 | 31 |" in render(json.loads(one.read_text()), current_version="0.6.0")


def test_an_older_bundle_version_is_shown_and_variants_of_the_same_settings_merge(tmp_path):
    save_results("tg", {"full": _rows(0.9, 0.8)}, COLUMNS, _measured("0.5.0", "aaaa"), "c.", {"e": 30}, tmp_path)
    path = save_results("tg", {"no_aug": _rows(0.7, 0.7)}, COLUMNS, _measured(), "c.", {"e": 30}, tmp_path)
    result = json.loads(path.read_text())
    assert list(result["variants"]) == ["full", "no_aug"]
    table = render(result, current_version="0.6.0")
    assert "`full`: seeds 0, 1, tirnet_lmis 0.5.0 **(today's is 0.6.0)**, commit `aaaa`" in table
    assert "`no_aug`: seeds 0, 1, tirnet_lmis 0.6.0, commit `0123456789ab`" in table
    path = save_results("tg", {"no_aug": _rows(0.7, 0.7)}, COLUMNS, _measured(), "c.", {"e": 40}, tmp_path)
    assert list(json.loads(path.read_text())["variants"]) == ["no_aug"]  # other settings: a new table


def test_paired_differences_match_rows_by_seed_with_a_hand_computed_t_test(tmp_path):
    """a - b over the seeds both have (seed 3 only in b): 0.05, 0.10, 0.05 -> mean 0.0667, sample std 0.0289,
    t = 4 on 2 degrees of freedom, two-sided p = 1 - 4 / sqrt(18) = 0.0572 (Student's t CDF for 2 d.o.f.)."""
    a = [{"seed": s, "correct_mdice": v, "paraphrased_mdice": 0.5} for s, v in ((0, 0.9), (1, 0.8), (2, 0.75))]
    b = [
        {"seed": s, "correct_mdice": v, "paraphrased_mdice": 0.5} for s, v in ((3, 0.6), (0, 0.85), (1, 0.7), (2, 0.7))
    ]
    save_results("p", {"a": a}, COLUMNS, _measured(), "c.", {}, tmp_path, paired=[("a", "b"), ("a", "missing")])
    path = save_results("p", {"b": b}, COLUMNS, _measured(), "c.", {}, tmp_path, paired=[("b", "a")])
    result = json.loads(path.read_text())
    assert result["paired"] == [["a", "b"], ["a", "missing"], ["b", "a"]]  # pairs of the earlier run stay
    d = paired_differences(result)
    assert set(d) == {("a", "b"), ("b", "a")}  # a pair naming no variant of the table is left out
    assert d[("a", "b")]["mean"] == pytest.approx(0.2 / 3) and d[("a", "b")]["n"] == 3
    assert d[("a", "b")]["std"] == pytest.approx((0.0025 / 3) ** 0.5)
    assert d[("a", "b")]["p"] == pytest.approx(1 - 4 / 18**0.5, abs=1e-9) == pytest.approx(d[("b", "a")]["p"])
    table = render(result, current_version="0.6.0")
    assert (
        "| `a` − `b` | +0.067 ± 0.029 | 3 | 0.057 |" in table and "| `b` − `a` | -0.067 ± 0.029 | 3 | 0.057 |" in table
    )


def test_check_names_a_docs_table_that_differs_from_its_rendering(tmp_path):
    save_results("tg", {"full": _rows(0.9, 0.8)}, COLUMNS, _measured(), "c.", {"e": 30}, tmp_path)
    doc = tmp_path / "README.md"
    doc.write_text("# Results\n<!-- results: tg -->\nold table\n<!-- /results -->\nafter\n")
    shutil.copy(doc, tmp_path / "copy.md")
    assert render_docs([doc], tmp_path, check=True) == [f"{doc}: tg"]
    assert doc.read_text() == (tmp_path / "copy.md").read_text()  # --check changes nothing
    assert render_docs([doc], tmp_path) == [f"{doc}: tg"]
    assert render_docs([doc], tmp_path, check=True) == [] and doc.read_text().endswith("<!-- /results -->\nafter\n")
    doc.write_text(doc.read_text().replace("0.850 ± 0.071", "0.860 ± 0.071"))  # a hand edit
    assert render_docs([doc], tmp_path, check=True) == [f"{doc}: tg"]


def test_a_marker_selects_variants_and_columns_in_its_order(tmp_path):
    rows = {"full": _rows(0.9, 0.8), "no_aug": _rows(0.7, 0.6)}
    save_results("tg", rows, COLUMNS, _measured(), "c.", {"e": 30}, tmp_path)
    doc = tmp_path / "README.md"
    marker = "<!-- results: tg variants=no_aug columns=paraphrased_mdice,correct_mdice -->"
    doc.write_text(f"{marker}\n<!-- /results -->\n")
    render_docs([doc], tmp_path)
    table = doc.read_text()
    assert "| variant | paraphrased m-Dice | correct m-Dice | minutes |" in table
    assert "| `no_aug` | 0.600 ± 0.141 | 0.650 ± 0.071 | 31 |" in table and "`full`" not in table
    doc.write_text("<!-- results: tg variants=nope -->\n<!-- /results -->\n")
    with pytest.raises(
        ValueError, match=r"results block tg: no variants \['nope'\]; the file has \['full', 'no_aug'\]"
    ):
        render_docs([doc], tmp_path)


CARRIED = re.compile(
    r"^\*Carried over: measured at (?P<bundle>\w+) (?P<version>[\d.]+) \(commit (?P<commit>[0-9a-f]{7,})\) and not "
    r"rerun since; today's (?P<today_bundle>\w+) is (?P<today>[\d.]+)\.\*$"
)


def _tables(doc) -> list[tuple[int, str, bool]]:
    """(line number, the nearest non-blank line above the header, inside a results block) of each table."""
    lines = doc.read_text().splitlines()
    out, inside = [], False
    for i, line in enumerate(lines):
        inside = (inside or line.startswith("<!-- results: ")) and line != "<!-- /results -->"
        if i and line.startswith("|---") and lines[i - 1].startswith("|"):
            above = next((lines[j] for j in range(i - 2, -1, -1) if lines[j].strip()), "")
            out.append((i, above, inside))
    return out


def test_every_docs_table_is_rendered_quoted_reference_or_visibly_carried_over():
    """Each table of the README and the bundle docs is rendered from a result file, or marked as quoted paper
    numbers or reference (no measurement), or says visibly at which bundle version and commit it was measured;
    that version is the one the bundle had at that commit (checked where the clone has the history), and "today's"
    is today's."""
    history = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    shallow = history.stdout.strip() != "false"
    for doc in DOCS:
        for line, above, rendered in _tables(doc):
            where = f"{doc.relative_to(ROOT)}:{line}"
            if rendered or above in ("<!-- table: paper -->", "<!-- table: reference -->"):
                continue
            carried = CARRIED.match(above)
            assert carried, f"{where}: a table needs a results block, a table marker or a carried-over line: {above}"
            assert carried["today_bundle"] == carried["bundle"] and carried["today"] == bundle_version(
                carried["bundle"]
            ), f"{where}: today's {carried['bundle']} is {bundle_version(carried['bundle'])}"
            if shallow:  # a shallow clone lacks the commits the lines name
                continue
            metadata = f"{carried['commit']}:bundles/{carried['bundle']}/configs/metadata.json"
            shown = subprocess.run(["git", "show", metadata], cwd=ROOT, capture_output=True, text=True)
            assert shown.returncode == 0, f"{where}: no {metadata} in this clone's history"
            assert json.loads(shown.stdout)["version"] == carried["version"], f"{where}: {metadata} says otherwise"


def _finished_run(folder, regime: str, dice: float, validation: bool = True, trained: dict | None = None) -> None:
    folder.mkdir(parents=True)
    result = {"frame_mean_dice": dice, "frame_mean_hd95": 3.0, "train_minutes": 2.5}
    (folder / f"result_{regime}.json").write_text(json.dumps(result))
    if validation:
        (folder / f"validation_{regime}.json").write_text(json.dumps({"validation_frame_mean_dice": dice}))
    if trained is not None:
        (folder / "trained.json").write_text(json.dumps(trained))


def test_jras_benchmark_collects_finished_runs_without_training(tmp_path, capsys):
    """``--collect`` reads the runs done so far (each row with its own seeds, training minutes and provenance),
    names those not done, and makes, trains and evaluates nothing (not the stage-one run of ``two_stage``)."""
    from torch.utils.tensorboard import SummaryWriter

    from benchmarks import jras_retrieval

    runs = tmp_path / "out" / "runs" / "current" / "unet"
    measured = {"commit": "0123abcd", "bundle_version": "0.9.0", "date": "2026-12-07", "torch": "2.14.1"}
    measured |= {"monai": "1.6.1", "python": "3.11.2", "device": "cpu"}
    _finished_run(runs / "none" / "seed0", "current", 0.80, trained={"epochs": 4, "measured": measured})
    _finished_run(runs / "none" / "seed1", "current", 0.84)  # trained before runs kept their provenance
    _finished_run(runs / "jras" / "seed0", "current", 0.83, trained={"epochs": 4})
    _finished_run(runs / "jras" / "seed1", "current", 0.85, validation=False)  # not evaluated on validation yet
    _finished_run(runs / "two_stage" / "seed0", "current", 0.81)  # its stage-one run (no_seg_grad) is missing
    board = runs / "none" / "seed0" / "eval" / "tensorboard"
    for suffix, logged in ((".1", ((2, 0.5), (4, 0.6))), (".2", ((4, 0.8), (6, 0.9)))):  # resumed at epoch 4
        with SummaryWriter(str(board), filename_suffix=suffix) as writer:
            for epoch, value in logged:
                writer.add_scalar("val_mean_dice", value, epoch)
    args = dict(out=str(tmp_path / "out"), n_patients=4, regimes="current", backbones="unet", seeds="0,1", epochs=4)
    table = jras_retrieval.run(**args, variants="none,two_stage,jras", results_dir=str(tmp_path), collect=True)

    out = capsys.readouterr().out
    assert (
        "not done yet (2 runs, left out of the table): current unet two_stage seeds 1; current unet jras seeds 1\n"
        in out
    )
    assert sorted(table) == ["current|unet|jras", "current|unet|none", "current|unet|two_stage"]
    saved = json.loads((tmp_path / "jras_retrieval_hard.json").read_text())
    none, jras = saved["variants"]["current unet none"], saved["variants"]["current unet jras"]
    assert none["mean"]["frame_mean_dice"] == pytest.approx(0.82)
    assert none["measured"]["seeds"] == [0, 1] and none["measured"]["wall_minutes"] == pytest.approx(5.0)
    assert none["measured"]["commit"] == "0123abcd, not recorded"
    assert none["measured"]["date"] == "2026-12-07, not recorded"
    assert none["measured"]["bundle_version"] == "0.9.0, not recorded"  # rendered as not today's version
    assert jras["measured"]["seeds"] == [0] and jras["measured"]["commit"] == "not recorded"
    assert paired_differences(saved)[("current unet jras", "current unet none")]["n"] == 1
    curves = json.loads((tmp_path / "jras_retrieval_hard_curves.json").read_text())
    assert list(curves["variants"]) == ["current unet none"]
    assert [c[0] for c in curves["columns"]] == ["val_dice_epoch_2", "val_dice_epoch_4"]  # epoch 6: past its 4
    assert curves["variants"]["current unet none"]["mean"]["val_dice_epoch_4"] == pytest.approx(0.8)  # logged last
    made = [p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*") if p.suffix in (".pt", ".nii", ".gz")]
    assert not (tmp_path / "out" / "data").exists() and not (runs / "no_seg_grad").exists() and not made

    shutil.rmtree(runs / "two_stage")  # done in another run folder: its row stays as the results file has it
    jras_retrieval.run(**args, variants="none,two_stage,jras", results_dir=str(tmp_path), collect=True)
    out = capsys.readouterr().out
    assert "kept from jras_retrieval_hard.json, done elsewhere (1 rows): current unet two_stage seeds 0\n" in out
    assert "not done yet (1 runs, left out of the table): current unet jras seeds 1\n" in out
    saved = json.loads((tmp_path / "jras_retrieval_hard.json").read_text())
    assert saved["variants"]["current unet two_stage"]["mean"]["frame_mean_dice"] == pytest.approx(0.81)

    with pytest.raises(SystemExit, match="--collect: no finished run under"):
        jras_retrieval.run(**args, variants="oracle", results_dir=str(tmp_path), collect=True)
    with pytest.raises(SystemExit, match=r"none/seed0/trained.json: trained 4 epochs, not the 10 of this command"):
        jras_retrieval.run(**{**args, "epochs": 10}, variants="none", results_dir=str(tmp_path), collect=True)


def test_benchmark_overrides_must_be_bundle_config_ids(tmp_path):
    """A typo of an option (``--colect``) would become a new config id, and hours of training start without it."""
    from benchmarks import jras_retrieval

    with pytest.raises(SystemExit, match=r"unknown option\(s\) --colect \(did you mean --collect\?\)|--colect"):
        jras_retrieval.run(out=str(tmp_path), colect=True)
    with pytest.raises(SystemExit, match=r"--val_intervall \(did you mean --val_interval\?\): neither an option"):
        jras_retrieval.run(out=str(tmp_path), val_intervall=4)
    assert not any(tmp_path.iterdir())  # refused before making data


def test_config_repeats_counts_values_written_twice():
    """The four kinds of repeat of benchmarks/config_repeats.py on a hand-made pair of configs."""
    from benchmarks.config_repeats import count

    load = {"_target_": "LoadImaged", "keys": ["image", "label"]}
    train = {
        "image_size": 64,  # recorded and restated by inference: a restated hyperparameter, a same top-level id
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",  # same top-level id
        "network": "@network_def",  # a plain reference: how a value is written once, never counted
        "num_workers": 4,  # both write it, with other values: no repeat
        "train": {
            "transforms": [load, load],  # the same component twice in one file
            "checkpoint": {"run_record": {"image_size": "@image_size"}},
        },
    }
    inference = {
        "image_size": 64,
        "device": train["device"],
        "network": "@network_def",
        "num_workers": 0,
        "preprocessing": [load],
    }
    assert count({"train.json": train, "inference.json": inference}) == {
        "same file": 1,  # load, in train.json
        "overlays": 0,
        "train vs inference": 2,  # the device expression and load (its keys list inside it is not counted again)
        "restated hyperparameters": 1,  # image_size
        "same top-level ids": 3,  # image_size, device, network
    }
