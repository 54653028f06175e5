"""How much does an earlier commit's TIRNet lean on the text? Train ``tirnet_lmis`` as the code of ``--commit`` does
(its own ``train.json``, ``workflows.run_workflow`` and ``evaluate_metrics``, in a git worktree of that commit put
first on ``PYTHONPATH``), one run per training seed, on the synthetic set of ``benchmarks/text_grounding.py``
(``--data``: its ``<out>/data`` folder, so both codes see the same images), and score the same 100 test images with
their correct texts and with the texts shuffled across images (the prompts that name nothing are left out: an
older commit has no presence decision). Compare with ``text_grounding.py``'s ``no_text_aug`` / ``full`` rows of
today's code.

    python benchmarks/text_reliance_at_commit.py --commit 8c94c8d --data runs/text_grounding/data --seeds 0,1,2 \\
        --out runs/at_8c94c8d

The commit's own defaults apply (8c94c8d: 30 epochs, 64 px, width 16, one channel, MiniLM: today's ``small.json``).
Writes ``<out>/seed<k>/result.json`` (resumable) and prints mean ± sample std of the correct and shuffled m-Dice
and of their difference.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np


def _worker(data: Path, run: Path, seed: int, epochs: int | None) -> None:
    """In the commit's code: train one seed, score correct and shuffled texts, write ``result.json``."""
    import time

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
    bundle = bundle_dir("tirnet_lmis")
    start = time.perf_counter()
    training = common if epochs is None else {**common, "epochs": epochs}
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
    parser.add_argument("--epochs", type=int, default=None, help="default: the commit's own train.json")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out, data = args.out.resolve(), args.data.resolve()
    if args.worker is not None:
        _worker(data, out / f"seed{args.worker}", args.worker, args.epochs)
        return
    if not (data / "synthetic.json").is_file():
        sys.exit(
            f"error: {data} is not a synthetic LViT set (no synthetic.json): run benchmarks/text_grounding.py first"
        )
    code = out / "code"
    if not code.is_dir():
        repo = Path(__file__).resolve().parent.parent
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(code), args.commit], check=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        result = out / f"seed{seed}" / "result.json"
        if not result.is_file():
            (out / f"seed{seed}").mkdir(parents=True, exist_ok=True)
            command = [sys.executable, str(Path(__file__).resolve()), "--commit", args.commit, "--data", str(data)]
            command += ["--out", str(out), "--worker", str(seed)]
            command += [] if args.epochs is None else ["--epochs", str(args.epochs)]
            env = {**os.environ, "PYTHONPATH": str(code)}
            subprocess.run(command, cwd=code, env=env, check=True)
        rows.append(json.loads(result.read_text()))
        print(f"[seed {seed}] " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items()), flush=True)
    correct, shuffled = (np.array([r[f"{c}_mdice"] for r in rows]) for c in ("correct", "shuffled"))
    for name, values in (("correct", correct), ("shuffled", shuffled), ("correct - shuffled", correct - shuffled)):
        spread = values.std(ddof=1) if len(values) > 1 else 0.0
        print(f"{args.commit} {name}: {values.mean():.3f} ± {spread:.3f} (seeds {args.seeds})")


if __name__ == "__main__":
    main()
