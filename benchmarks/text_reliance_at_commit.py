"""How much does an earlier commit's text bundle lean on the text, and how well does it segment? Train ``--bundle``
(``tirnet_lmis`` or ``tgcnet_lmis``) as the code of ``--commit`` does (its own ``train.json``,
``workflows.run_workflow`` and ``evaluate_metrics``, in a git worktree of that commit put first on ``PYTHONPATH``),
one run per training seed, on the synthetic set of ``benchmarks/text_grounding.py`` (``--data``: its ``<out>/data``
folder, so both codes see the same images), and score the same 100 test images with their correct texts and with
the texts shuffled across images (the prompts that name nothing are left out: an older commit has no presence
decision). Compare with ``text_grounding.py``'s rows of today's code.

    python benchmarks/text_reliance_at_commit.py --commit 8c94c8d --data runs/text_grounding/data --seeds 0,1,2 \\
        --out runs/at_8c94c8d
    python benchmarks/text_reliance_at_commit.py --bundle tgcnet_lmis --commit 7566a43 --image_size 128 --epochs 20 \\
        --data runs/tgc/data --seeds 0,1,2,3,4 --out runs/at_7566a43
    python benchmarks/text_reliance_at_commit.py --bundle tgcnet_lmis --commit 3f2b53c --image_size 128 --epochs 20 \\
        --data runs/tgc/data --seeds 0 --out runs/at_3f2b53c_no_reseed --override "train#checkpoint#seed=null"

The commit's own defaults apply (8c94c8d: 30 epochs, 64 px, width 16, one channel, MiniLM: today's ``small.json``);
``--override id=json`` sets one of its config values (``null``: None). Writes ``<out>/seed<k>/result.json``
(resumable), prints mean ± sample std of the correct and shuffled m-Dice and of their difference, and writes them
to ``benchmarks/results/text_reliance_<bundle>_at_<commit>[_<name>].json`` (``--name`` tells runs of one commit
apart), with the commit's own bundle version.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _worker(data: Path, run: Path, seed: int, settings: dict, bundle_name: str) -> None:
    """In the commit's code: train one seed, score correct and shuffled texts, write ``result.json``."""
    from lmseg_components.data import read_lvit_split
    from lmseg_components.workflows import bundle_dir, evaluate_metrics, run_workflow

    layout = json.loads((data / "synthetic.json").read_text())
    nothing = set(layout.get("names_nothing", []))
    test = [r for r in read_lvit_split(data, "Test") if r["name"] not in nothing]
    shuffled = [r["text"] for r in test]
    random.Random(0).shuffle(shuffled)  # as text_grounding.py shuffles with data seed 0
    conditions = {"correct": test, "shuffled": [{**r, "text": t} for r, t in zip(test, shuffled, strict=True)]}
    common = {"bundle_root": str(run), "dataset_dir": str(data), "text_cache_dir": str(run.parent / "text_cache")}
    common |= {"seed": seed, "device": "$torch.device('cpu')", "num_workers": 2, "text_encoder_name": "minilm"}
    common |= {k: v for k, v in settings.items() if k != "epochs"}
    bundle = bundle_dir(bundle_name)
    start = time.perf_counter()
    training = {**common, **({"epochs": settings["epochs"]} if "epochs" in settings else {})}
    run_workflow(bundle, "training", ["train.json"], training, logging_conf=False)
    result = {"train_minutes": (time.perf_counter() - start) / 60}
    for condition, records in conditions.items():
        metrics = evaluate_metrics(bundle, common, records)
        result[f"{condition}_mdice"] = float(metrics["val_mean_dice"])
    (run / "result.json").write_text(json.dumps(result, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--data", required=True, type=Path, help="text_grounding.py's <out>/data folder")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--bundle", default="tirnet_lmis", choices=["tirnet_lmis", "tgcnet_lmis"])
    parser.add_argument("--epochs", type=int, default=None, help="default: the commit's own train.json")
    parser.add_argument("--image_size", type=int, default=None, help="default: the commit's own train.json")
    parser.add_argument("--override", action="append", default=[], metavar="ID=JSON", help="a config value")
    parser.add_argument("--name", default="", help="tells result files of one commit apart")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out, data = args.out.resolve(), args.data.resolve()
    settings = {k: v for k, v in (("epochs", args.epochs), ("image_size", args.image_size)) if v is not None}
    for override in args.override:
        key, _, value = override.partition("=")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            sys.exit(f'error: --override {override}: the value must be JSON (a number, true, null, "text")')
    if args.worker is not None:
        _worker(data, out / f"seed{args.worker}", args.worker, settings, args.bundle)
        return
    if not (data / "synthetic.json").is_file():
        sys.exit(
            f"error: {data} is not a synthetic LViT set (no synthetic.json): run benchmarks/text_grounding.py first"
        )
    code = out / "code"
    if not code.is_dir():
        repo = Path(__file__).resolve().parent.parent
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(code), args.commit], check=True)
    rows, started = [], time.perf_counter()
    for seed in (int(s) for s in args.seeds.split(",")):
        result = out / f"seed{seed}" / "result.json"
        if not result.is_file():
            (out / f"seed{seed}").mkdir(parents=True, exist_ok=True)
            command = [sys.executable, str(Path(__file__).resolve()), "--commit", args.commit, "--data", str(data)]
            command += ["--out", str(out), "--worker", str(seed), "--bundle", args.bundle]
            command += [a for key, value in settings.items() for a in ("--override", f"{key}={json.dumps(value)}")]
            env = {**os.environ, "PYTHONPATH": str(code)}
            subprocess.run(command, cwd=code, env=env, check=True)
        rows.append(json.loads(result.read_text()))
        print(f"[seed {seed}] " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()), flush=True)
    correct, shuffled = (np.array([r[f"{c}_mdice"] for r in rows]) for c in ("correct", "shuffled"))
    for name, values in (("correct", correct), ("shuffled", shuffled), ("correct - shuffled", correct - shuffled)):
        spread = values.std(ddof=1) if len(values) > 1 else 0.0
        print(f"{args.commit} {name}: {values.mean():.3f} ± {spread:.3f} (seeds {args.seeds})")
    _save(args, rows, settings, started)


def _save(args: argparse.Namespace, rows: list[dict], settings: dict, started: float) -> Path:
    """The rows as ``benchmarks/results/text_reliance_<bundle>_at_<commit>[_<name>].json``: measured at the commit's
    code and its bundle version (a table rendered from it says how far that is from today's)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.results import provenance, save_results

    repo = Path(__file__).resolve().parent.parent
    metadata = f"{args.commit}:bundles/{args.bundle}/configs/metadata.json"
    shown = subprocess.run(["git", "-C", str(repo), "show", metadata], capture_output=True, text=True, check=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    measured = provenance(args.bundle, "cpu", seeds, started)
    measured |= {"commit": args.commit, "bundle_version": json.loads(shown.stdout)["version"]}
    name = f"text_reliance_{args.bundle}_at_{args.commit}" + (f"_{args.name}" if args.name else "")
    columns = [(f"{c}_mdice", f"{c} m-Dice") for c in ("correct", "shuffled")] + [("train_minutes", "train min")]
    caption = (
        f"{args.bundle} as commit {args.commit} trains it ({', '.join(f'{k} {v}' for k, v in settings.items())}; "
        "its own defaults otherwise) on text_grounding.py's synthetic set: test m-Dice with correct and shuffled texts."
    )
    return save_results(name, {"at_commit": rows}, columns, measured, caption, settings)


if __name__ == "__main__":
    main()
