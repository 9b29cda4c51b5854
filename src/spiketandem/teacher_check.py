"""A teacher check before any training: ``check_teacher(model, example)`` lists, all at once,

- every operation the student builder refuses, each with its fix (the builder's own table, ``student.OPERATIONS``,
  and then the builder itself, so that the check refuses exactly what the builder refuses);
- what NIR export will refuse (the export's own node-by-node translation, ``export.nir_graph``, run on the teacher's
  graph, every refusal recorded instead of the first raised);
- what to expect at short windows (``train.short_window_advice``, the advice a training run gives).

``TeacherCheck.ok`` says whether the builder accepts the teacher; only its refusals make a teacher unusable."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import fx, nn

from .errors import SpiketandemError
from .export.nir_graph import _Translator
from .neuron import NeuronConfig
from .rules.base import DataInfo
from .student import (DROPOUT, NEURON, REFUSED, Finding, TeacherRefused, build_student, node_location, op_label,
                      refusal_heading, refused_operations, render_findings, role_of, trace_graph)
from .train import SHORT_WINDOW, short_window_advice

NIR, SHORT = "nir", "short-window"  # the kinds of finding besides the builder's REFUSED
NIR_LAYERS = ("a student is written to NIR from conv, linear, BatchNorm, average pooling, flatten, add and ReLU "
              "layers: express it with those and retrain the teacher")


@dataclass
class TeacherCheck:
    """What :func:`check_teacher` found about one teacher (``teacher``: its class name or file): ``findings`` in the
    order refused by the builder, refused by NIR export, short-window advice at window ``T``."""

    teacher: str
    T: int
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        """Whether the student builder accepts the teacher (NIR and short-window findings do not stop training)."""
        return not self.of_kind(REFUSED)

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def render(self) -> str:
        """One line when there is nothing to say; else a heading per kind and one line per finding."""
        refused, nir, short = self.of_kind(REFUSED), self.of_kind(NIR), self.of_kind(SHORT)
        if not self.findings:
            return (f"{self.teacher}: OK: the student builder accepts it, NIR export writes it, and nothing is known "
                    f"to cost accuracy at T = {self.T}")
        parts = [render_findings(f"{self.teacher}: {refusal_heading(refused)}", refused) if refused
                 else f"{self.teacher}: OK: the student builder accepts it"]
        if nir:
            parts.append(render_findings(f"NIR export will refuse {_count(nir, 'operation')} (training is not "
                                         "affected; `spiketandem export` is):", nir))
        if short:
            parts.append(render_findings(f"at short windows (T = {self.T}):", short))
        return "\n".join(parts)

    __str__ = render

    def as_dict(self) -> dict:
        return {"teacher": self.teacher, "ok": self.ok, "T": self.T,
                "findings": [dataclasses.asdict(f) for f in self.findings]}


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def check_teacher(model: nn.Module, example: torch.Tensor, *, T: int = SHORT_WINDOW,
                  membrane_init: float = 0.0) -> TeacherCheck:
    """Check ``model`` as a teacher before any training, on ``example`` (a batch of inputs as the teacher takes them,
    e.g. one batch of its training data): every operation the student builder refuses, each with its fix; what NIR
    export will refuse; and, for a student at window ``T`` whose membranes start at ``membrane_init`` x threshold,
    what is known to cost accuracy at short windows (T <= 4). ``model`` is not changed."""
    name = type(model).__name__
    if not isinstance(model, nn.Module):
        raise SpiketandemError(f"check_teacher takes the teacher as an nn.Module, got {name}")
    if not isinstance(example, torch.Tensor) or example.dim() < 2:
        raise SpiketandemError("check_teacher's example is a batch of inputs [B, ...] as the teacher takes them "
                               "(e.g. one batch of its training data)")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise SpiketandemError(f"check_teacher's T is the student's window in steps, a whole number >= 1; got {T!r}")
    if not 0 <= membrane_init < 1:
        raise SpiketandemError(f"check_teacher's membrane_init is a fraction of the threshold in [0, 1) (0.5: --recipe "
                               f"low-latency); got {membrane_init!r}")
    teacher = copy.deepcopy(model).eval()
    _check_example_fits(teacher, example)
    try:
        gm = trace_graph(teacher)
    except SpiketandemError as e:
        return TeacherCheck(name, T, [_whole_teacher(e)])
    refused = refused_operations(gm)
    nir = _nir_findings(gm, tuple(example.shape[1:]))
    student = None
    if not refused:  # the builder has the last word: what it refuses beyond the table (no ReLU, batch-size reads)
        try:
            student = build_student(teacher, NeuronConfig(), example, membrane_init=membrane_init)
        except TeacherRefused as e:
            refused = e.findings
        except SpiketandemError as e:
            refused = [_whole_teacher(e)]
    return TeacherCheck(name, T, refused + nir + _short_window(student, T))


def _check_example_fits(teacher: nn.Module, example: torch.Tensor) -> None:
    try:
        with torch.no_grad():
            teacher(example)
    except Exception as e:  # the user's forward: any error means the example does not fit it
        raise SpiketandemError(f"the example input of shape {list(example.shape)} does not fit the teacher "
                               f"({type(e).__name__}: {e}); give a batch shaped as its training inputs") from None


def _whole_teacher(error: SpiketandemError) -> Finding:
    """A refusal of the whole teacher (untraceable forward, no ReLU, ...): the builder's message says the fix."""
    return Finding(REFUSED, "the teacher", "", str(error), "")


def _short_window(student, T: int) -> list[Finding]:
    """The advice a training run of ``student`` at window ``T`` would give (``train.short_window_advice``)."""
    if student is None:
        return []
    advice = short_window_advice(SimpleNamespace(spiking=True, needs_teacher=True, model=student),
                                 SimpleNamespace(T=T))
    return [Finding(SHORT, "", "", advice.removeprefix("spiketandem: "), "")] if advice else []


# ---- NIR: the export's translation on the teacher's graph ----------------------------------------------------

class _NirRefusal(Exception):
    """One refusal of the export's translation, caught to record it and go on."""


class _NirProbe(_Translator):
    """The NIR export's node-by-node translation (``export.nir_graph``) run on the teacher's own graph: every refusal
    is recorded and its node passed through, so that all are found. Neuron layers, dropout and what the builder
    refuses pass through unexamined (the builder's findings name those)."""

    def __init__(self, gm: fx.GraphModule, input_shape: tuple):
        super().__init__(SimpleNamespace(graph_module=gm, input_shape=input_shape))
        self.findings: list[Finding] = []

    def refuse(self, node, what, why):
        raise _NirRefusal(why)

    def refuse_products(self):
        """Each attention product is recorded where ``translate`` meets it, like every other refusal."""

    def translate(self, node, signals):
        if role_of(self.gm, node) in (NEURON, DROPOUT, REFUSED):
            return self.signal[signals[0]]
        try:
            return super().translate(node, signals)
        except _NirRefusal as refusal:
            problem, _, fix = str(refusal).partition("; ")
            self.findings.append(Finding(NIR, op_label(self.gm, node), node_location(node), problem, fix or NIR_LAYERS))
            return self.signal[signals[0]]

    def output(self, node):
        try:
            super().output(node)
        except _NirRefusal:  # an output not computed from the input: the builder refuses that teacher
            pass


def _nir_findings(gm: fx.GraphModule, input_shape: tuple) -> list[Finding]:
    """What NIR export would refuse in the student of the traced teacher ``gm``, one finding per operation."""
    probe = _NirProbe(gm, input_shape)
    probe.run()
    return probe.findings


# ---- the command ------------------------------------------------------------------------------------------

def teacher_and_example(cfg) -> tuple[nn.Module, torch.Tensor, str]:
    """The teacher a `check-teacher` config names, a seeded example batch for it, and the teacher's name:
    ``--teacher`` (a record spiketandem wrote, shaped as it says; plain weights with ``--arch`` or
    ``--teacher-class``, shaped by ``--dataset``), else the user's ``--teacher-class`` or a zoo ``--arch`` with
    fresh weights, shaped by ``--dataset``."""
    from .models import build_model
    from .teachers import build_teacher_class, check_teacher_output, given_teacher_record, load_given_teacher
    from .workflow import _refuse_zoo_flags_with_class, default_arch
    if cfg.teacher_class:
        _refuse_zoo_flags_with_class(cfg)
    if cfg.teacher:
        record = given_teacher_record(cfg)
        info = DataInfo(**record["info"]) if record["info"] else _dataset_info(cfg)
        model, record = load_given_teacher(cfg, info)
        name = f"teacher {cfg.teacher} ({record['teacher_class'] or record['arch']})"
    elif cfg.teacher_class:
        info, model = _dataset_info(cfg), build_teacher_class(cfg.teacher_class)
        check_teacher_output(model, info, f"--teacher-class {cfg.teacher_class}")
        name = cfg.teacher_class
    else:
        info, arch = _dataset_info(cfg), cfg.arch or default_arch(cfg.dataset)
        model = build_model(arch, info.num_classes, info.in_channels, info.image_size, cfg.width, cfg.act_clip,
                            cfg.act_levels)
        name = f"{arch} on {cfg.dataset}"
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(8, info.in_channels, info.image_size, info.image_size, generator=generator)
    return model, example, name


def _dataset_info(cfg) -> DataInfo:
    """The shape of ``cfg.dataset``'s images and its number of classes (the dataset is read, once cached)."""
    from .workflow import load_data
    return load_data(cfg)[1]
