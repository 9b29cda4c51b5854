"""`spiketandem reproduce NAME`: one experiment of the LTL paper, end to end, from configs/NAME.yaml.

An experiment file holds the paper's settings and what the paper reports::

    title: "Table 1: CIFAR-10, VGG-11, offline and online LTL"
    paper:                      # shown next to the measured values
      source: "Table 1"
      teacher_acc: 92.89        # percent
      results: {offline-lif-T16: 93.20, ...}      # run name -> percent
      notes: "free text (figure readings, caveats)"
    defaults: {dataset: cifar10, arch: vgg11, batch_size: 64}   # RunConfig fields of every run
    teacher: {epochs: 200, optimizer: sgd, lr: 0.01, ...}       # the ANN teacher (omit: no teacher)
    runs:                                                       # one student per entry
      - {name: offline-lif-T16, rule: ltl-offline, neuron: lif, T: 16, epochs: 100, lr: 1.0e-4}
      - {name: offline-lif-T4, T: 4, seeds: [0, 1, 2]}          # one run per seed, reported as mean ± std
    evaluate: {sweep_T: [4, 8, 16, 32]}     # optional: accuracy + SynOps ratio of every spiking run vs T
    commands:                               # optional further steps, other spiketandem commands;
      - [noise, "{run:offline-lif-T16}", ...]   # {run:NAME} {teacher} {out} are replaced by folders;
      - [compare, "{defaults}", --arch, vgg11]  # the token {defaults}: the defaults as flags (--dataset ...)
    scales:                                 # --scale NAME: overrides of defaults/teacher/runs
      cpu: {note: "...", defaults: {width: 0.25}, teacher: {epochs: 10}, runs: {epochs: 2}}
      # a scale's `teacher: pretrained:NAME` (or a file) is used as given, none trained; a list of `runs`
      # replaces the experiment's runs

Every run is an ordinary run folder under OUT (OUT/teacher, OUT/<run name>, or OUT/<run name>-seed<S> for each
of several seeds: ``seeds.py``, ``--seeds`` overrides every run's); a finished one is reused,
so an interrupted reproduction continues where it stopped.  At the end OUT/report/ holds the report
(paper vs measured first, then the tables a further step wrote: every OUT/**/compare.md) and
OUT/reproduction.json the measured figures with the machine and scale.
"""
from .experiment import (Experiment, apply_scale, check_requirements, find_experiment, list_experiments,
                         load_experiment, select)
from .command import register
from .runner import reproduce, run_configs

__all__ = ["Experiment", "apply_scale", "check_requirements", "find_experiment", "list_experiments",
           "load_experiment", "select", "reproduce", "run_configs", "register"]
