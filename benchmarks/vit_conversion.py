"""Each definition in time of the attention product (``student.SpikingAttentionProduct``: step, rate, increment)
on a converted student, before any training: the zoo ViT teacher of a run, its student with thresholds at the
99.9th percentile of each layer's activations on 512 training images, every membrane starting at theta / 2.

    python benchmarks/vit_conversion.py --teacher RUN_DIR --neuron if --T 4 16 64 --out /tmp/vit-conversion

Per definition and T: test accuracy, and per neuron layer the relative error of rate x amplitude against the
teacher's activation, ||r a - y|| / ||y|| over the test set.  Writes ``OUT/vit_conversion.json``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from spiketandem.data import load_dataset
from spiketandem.neuron import NeuronConfig, RunContext
from spiketandem.student import ATTENTION_TIMES, TeacherTaps, build_student
from spiketandem.teachers import load_teacher


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--neuron", default="if", choices=["if", "lif"])
    parser.add_argument("--T", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    teacher, _ = load_teacher(args.teacher)
    teacher.eval()
    digits = load_dataset("digits")
    normalise = lambda x: (x.float() / 255 - digits.mean[0]) / digits.std[0]  # noqa: E731
    calibration, images, labels = normalise(digits.train_x[:512]), normalise(digits.test_x), digits.test_y
    student = build_student(teacher, NeuronConfig(args.neuron), calibration[:2], calibration_images=calibration,
                            percentile=99.9, membrane_init=0.5)
    rows = []
    with torch.no_grad():
        logits, acts = TeacherTaps(teacher, calibration[:2])(images)
        teacher_acc = float((logits.argmax(1) == labels).float().mean())
        for time in ATTENTION_TIMES:
            student.set_attention_time(time)
            for T in args.T:
                ctx = RunContext(T=T, batch=len(images), records={})
                acc = float((student.run(images, ctx).mean(0).argmax(1) == labels).float().mean())
                errors = {name: float((ctx.records[name].mean(0) * m.amplitude - acts[name]).norm()
                                      / acts[name].norm()) for name, m in student.neurons.items()}
                rows.append({"time": time, "T": T, "student_acc": acc, "relative_error": errors})
                print(json.dumps({"time": time, "T": T, "student_acc": round(acc, 4),
                                  "error_first_attention": round(errors["blocks_0_attn_attn_act"], 3),
                                  "error_last_layer": round(list(errors.values())[-1], 3)}))
    result = {"teacher": args.teacher, "teacher_acc": teacher_acc, "neuron": args.neuron, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vit_conversion.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
