"""Offline-LTL students of the zoo's ViT (``models/vit.py``), one per definition in time of the attention product
(``student.SpikingAttentionProduct``: step, rate, increment) and seed, all from one teacher run:

    python benchmarks/vit_students.py --teacher RUN_DIR --T 4 --epochs 5 --seeds 0 1 2 --out /tmp/vit-students \\
        --extra --recipe low-latency

Each student is ``spiketandem train --rule ltl-offline --teacher RUN_DIR --T T --epochs E --seed S`` with the
product's definition set for the run (``student.DEFAULT_ATTENTION_TIME``; saved with the student, so ``eval`` and
``load_student`` compute the same network).  Writes ``OUT/vit_students.json``: one row per definition and seed
(teacher and student accuracy at T, the gap, SynOps ratio, seconds) and the means."""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from spiketandem import cli, student
from spiketandem.student import ATTENTION_TIMES


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--times", nargs="+", default=list(ATTENTION_TIMES), choices=ATTENTION_TIMES)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `spiketandem train` flags")
    args = parser.parse_args(argv)
    rows = []
    for time in args.times:
        student.DEFAULT_ATTENTION_TIME = time
        for seed in args.seeds:
            run = args.out / f"{time}-seed{seed}"
            status = cli.main(["train", "--rule", "ltl-offline", "--teacher", args.teacher, "--T", str(args.T),
                               "--eval-T", str(args.T), "--epochs", str(args.epochs), "--seed", str(seed),
                               "--out", str(run), "--overwrite", "--quiet", *args.extra])
            if status:
                raise SystemExit(f"spiketandem train failed for {time} seed {seed}")
            s = json.loads((run / "summary.json").read_text())
            rows.append({"time": time, "seed": seed, "teacher_acc": s["teacher_acc"], "student_acc": s["student_acc"],
                         "gap": s["teacher_acc"] - s["student_acc"], "synops_ratio": s["synops_ratio"],
                         "train_seconds": s["train_seconds"]})
            print(json.dumps(rows[-1]))
    result = {"teacher": args.teacher, "T": args.T, "epochs": args.epochs, "extra_flags": args.extra, "rows": rows,
              "mean": {}}
    for time in args.times:
        mine = [r for r in rows if r["time"] == time]
        result["mean"][time] = {key: statistics.mean(r[key] for r in mine)
                                for key in ("student_acc", "gap", "synops_ratio")}
        result["mean"][time]["gap_std"] = statistics.stdev(r["gap"] for r in mine) if len(mine) > 1 else None
        result["mean"][time]["seeds"] = len(mine)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vit_students.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["mean"], indent=1))
    return result


if __name__ == "__main__":
    main()
