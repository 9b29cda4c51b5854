"""Every learning rule by name: where its class lives and the options it takes.

Declared here, without importing torch, so that the command line lists, checks and explains every rule
and option in a fraction of a second (``spiketandem train --help``, usage errors); each rule class takes
its ``options`` from its entry, and ``rules.RULES`` imports the classes when first asked for.

Adding a rule: write its file (a ``Rule`` subclass with ``options = CATALOG[name].options``) and add its
entry to ``CATALOG``; the CLI flags, YAML keys, option checks ("--my-lambda applies to rule(s) my-rule")
and help follow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SpiketandemError
from ..settings import Setting


# a rule's option is the same record as a run setting (settings.py), owned by its rule: becomes the flag
# ``--NAME`` (dashes for underscores) and the YAML key NAME; None as a default means "decided by the rule"
Option = Setting


@dataclass(frozen=True)
class RuleEntry:
    """One registered rule: its name (``--rule NAME``), its class (``"module:Class"`` inside
    ``spiketandem.rules``), its options, and why it cannot train as pipelined layer stages
    (``--pipeline-stages``, ``pipelining/``; None for a rule that can).

    ``fixed``: config fields the rule only runs with (e.g. conversion: IF neurons, no epochs); a
    comparison (``spiketandem compare``) sets them for it.  ``levels_option``: the option that is the
    rule's quantization levels, which a comparison's sweep over T sets to each window T."""

    name: str
    implementation: str
    options: tuple[Option, ...] = ()
    no_pipeline: str | None = None
    fixed: tuple[tuple[str, Any], ...] = ()
    levels_option: str | None = None

    def option_named(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


# ---- offline and online LTL (ltl_offline.py, ltl_online.py, ltl_targets.py) ---------------------------

YNORM_MODES = ("batch", "running", "fixed")
SCHEDULES = ("parallel", "sequential")
BPTT_MODES = ("full", "per-step", "printed")  # neuron.py: BPTT_MODES_DOC
UPDATE_MODES = ("batch", "step")
DEFAULT_WARMUP = 0.75  # fraction of T: 12 of 16 steps, as the authors' code

# settings shared by offline and online LTL
LTL_OPTIONS = (
    Option("ynorm", str, "batch", "y_norm of the local targets: the percentile of each batch (authors' code), a "
           "running average of it, or fixed once on calibration images", choices=YNORM_MODES),
    Option("kd", float, None, "weight of distillation to the teacher's logits at the readout (default 0; 1 with "
           "ltl-offline's --recipe low-latency)", minimum=0.0),
    Option("kd_temperature", float, 4.0, "distillation temperature", above=0.0),
)
TARGET_ROUNDINGS = ("none", "floor", "round")
RECIPES = ("default", "low-latency")
# what --recipe low-latency sets, for every part the user does not set (docs/ltl_offline.md: "Short windows")
LOW_LATENCY = {"membrane_init": 0.5, "target_rounding": "round", "kd": 1.0}
PAPER_PARTS = {"membrane_init": 0.0, "target_rounding": "none", "kd": 0.0}  # --recipe default


def recipe_values(declared, options: dict) -> dict:
    """What ``--recipe`` sets: for each part of the recipe that a rule declares (``declared``: its Options) and
    ``options`` leave unset, the recipe's value (the paper's parts without a recipe).  Applied once, when a
    run is configured (``rules.configure``), so config.yaml records the values that ran."""
    names = {o.name for o in declared}
    table = LOW_LATENCY if options.get("recipe") == "low-latency" else PAPER_PARTS
    return {name: value for name, value in table.items() if name in names and options.get(name) is None}

LTL_OFFLINE_OPTIONS = LTL_OPTIONS + (
    Option("recipe", str, "default", "default (the paper's settings), or low-latency: the settings for T <= 4 "
           "(--membrane-init 0.5 --target-rounding round --kd 1; each part can still be set alone)", choices=RECIPES),
    Option("membrane_init", float, None, "every membrane starts at this fraction of its threshold, in training and "
           "inference (0: the paper; 0.5 rounds instead of floors the spike count; default: the recipe's)",
           minimum=0.0, below=1.0),
    Option("target_rounding", str, None, "local targets as whole spike counts: none (the paper's Eq. 4), floor "
           "(floor(T y/y_norm)/T, the round-down of the paper's text) or round (default: the recipe's)",
           choices=TARGET_ROUNDINGS),
    Option("rate_penalty", float, 0.0, "energy-aware LTL: adds rate_penalty * mean firing rate to every layer's "
           "local loss, trading accuracy for fewer synaptic operations", minimum=0.0),
    Option("schedule", str, "parallel", "train all layers at once, or one layer after another (one stage per "
           "share of the epochs)", choices=SCHEDULES),
    Option("bptt", str, "full", "gradient through each layer's T steps: full BPTT; per-step (the state detached "
           "between steps: dL/dI[t] = dL/dS[t] s'(U[t]), cheapest); printed (the paper's Eq. 6-7 as printed: the "
           "reset path through delta, one step of the leak)", choices=BPTT_MODES),
)
LTL_ONLINE_OPTIONS = LTL_OPTIONS + (
    Option("online_warmup", float, DEFAULT_WARMUP, "fraction of the T steps that make no update (authors' code: "
           "12 of 16)", minimum=0.0, below=1.0),
    Option("online_warmup_steps", int, None, "number of warm-up steps (overrides --online-warmup)", minimum=0),
    Option("online_update", str, "batch", "batch: sum the per-step gradients and step once per batch; step: step "
           "the optimizer at every time step (the on-chip form)", choices=UPDATE_MODES),
    Option("onchip_gate", bool, False, "gated on-chip update sign(error) x boxcar(U) (Fig. 1d); logs the "
           "fraction of weight updates skipped"),
)

# ---- direct training: STBP, TET, Dspike, shortcut (direct.py and one file each); DECOLLE ---------------

INIT_RATE = Option("init_rate", float, 0.1, "students without BatchNorm: rescale each layer's random weights, layer "
                   "by layer, so that it fires at this mean rate on calibration images (0 = PyTorch's initialisation)",
                   minimum=0.0, below=1.0)
DIRECT_OPTIONS = (
    Option("tdbn", bool, None, "keep BatchNorm, with statistics over (T, B, H, W) scaled by V_th (tdBN); "
           "unset = the rule's paper (off for stbp, on for tet, dspike, shortcut)"),
    Option("tdbn_alpha", float, 1.0, "tdBN's alpha (the paper uses 1/sqrt(2) before a residual add)", above=0.0),
    Option("neunorm", bool, False, "NeuNorm: subtract alpha * an auxiliary neuron's trace of channel-summed spikes"),
    Option("neunorm_k", float, 0.9, "NeuNorm decay k of the auxiliary neuron", minimum=0.0, maximum=1.0),
    Option("neunorm_v", float, 0.1, "NeuNorm input scale v (the drive is v/F^2 times the channel sum)", minimum=0.0),
    Option("voting", int, 0, "voting output layer: M spiking output neurons per class, MSE loss on their mean rate "
           "(0 = off: cross-entropy on the mean output current)", minimum=0),
    INIT_RATE,
)
TET_OPTIONS = DIRECT_OPTIONS + (
    Option("tet_lambda", float, 1e-3, "weight lambda of TET's MSE regulariser (0 = per-step cross-entropy only)",
           minimum=0.0, maximum=1.0),
    Option("tet_phi", float, 1.0, "TET's MSE target phi (V_th = 1 in the paper)", minimum=0.0),
)
DSPIKE_OPTIONS = DIRECT_OPTIONS + (
    Option("dspike_b", float, 3.0, "initial Dspike temperature b", above=0.0),
    Option("dspike_db", float, 0.5, "step db of the per-epoch temperature search over {b - db, b, b + db}",
           above=0.0),
    Option("dspike_select", bool, True, "choose b each epoch by finite-difference gradients (else b is fixed)"),
    Option("dspike_fd_eps", float, 0.01, "finite-difference step on the first layer's weights", above=0.0),
    Option("dspike_fd_batch", int, 64, "images used for the finite-difference gradient", minimum=1),
    Option("dspike_fd_coords", int, 0, "first-layer weights probed by finite differences (0 = all; a random "
           "subset is cheaper)", minimum=0),
)
SHORTCUT_SCHEDULES = ("cosine", "linear", "constant")
SHORTCUT_OPTIONS = DIRECT_OPTIONS + (
    Option("shortcut_layers", str, "stages", "where heads attach: stages (last conv layer of each resolution), "
           "all (every spiking layer but the last), or comma-separated layer names"),
    Option("shortcut_schedule", str, "cosine", "balance coefficient schedule", SHORTCUT_SCHEDULES),
    Option("shortcut_lambda", float, 1.0, "balance coefficient at the first epoch (lambda0)", minimum=0.0),
)
DECOLLE_MODES = ("online", "offline")
DECOLLE_OPTIONS = (
    Option("decolle_mode", str, "online", "online: one step at a time with eligibility traces, memory O(1) in T; "
           "offline: BPTT within each layer", DECOLLE_MODES),
    Option("decolle_loss", str, "mse", "local loss on the random readouts: mse to the one-hot label (paper) or ce",
           ("mse", "ce")),
    Option("decolle_updates", str, "step", "online: update the weights after every time step (paper) or once per "
           "window", ("step", "window")),
    Option("decolle_burnin", int, 0, "first steps of each window with no loss (dynamics only)", minimum=0),
    INIT_RATE,
)

# ---- progressive tandem learning, conversion (ptl.py, convert.py) -------------------------------------

PTL_OPTIONS = (
    Option("ptl_patience", int, 6, "epochs without validation gain before the next layer is "
           "converted (Wu et al. 2021: 6)", minimum=1),
    Option("ptl_val_fraction", float, 0.1, "share of the training set held out for validation", above=0.0,
           below=1.0),
)
CONVERT_OPTIONS = (
    Option("membrane_init", float, 0.0, "initial membrane potential as a fraction of the threshold "
           "(0: Rueckauer et al. 2017; 0.5: rounds instead of floors the spike count)", minimum=0.0, below=1.0),
)
QCFS_OPTIONS = (
    Option("qcfs_levels", int, 8, "quantization levels L of the QCFS activation (Bu et al. 2022)", minimum=1),
    Option("qcfs_shift", float, 0.5, "QCFS shift phi; the converted SNN starts every membrane at phi * "
           "threshold", minimum=0.0, below=1.0),
)

def _option(cfg, entry: "RuleEntry", name: str):
    return cfg.options.get(name, entry.option_named(name).default)


def _check_ltl_online(cfg, entry) -> None:
    steps = _option(cfg, entry, "online_warmup_steps")
    if steps is not None and steps >= cfg.T:
        raise SpiketandemError(f"option --online-warmup-steps (online_warmup_steps): {steps} warm-up steps leave no "
                               f"step to learn from at T={cfg.T}; it must be an integer in [0, {cfg.T - 1}] (or a "
                               "larger --T)")
    if getattr(cfg, "attention_time", "step") != "step":
        raise SpiketandemError(f"online LTL runs the student one step at a time, but --attention-time "
                               f"{cfg.attention_time} needs the whole window; use --attention-time step (or --rule "
                               "ltl-offline)")
    if _option(cfg, entry, "onchip_gate") and getattr(cfg, "pipeline_stages", 1) > 1:
        raise SpiketandemError("option --onchip-gate (onchip_gate) with --pipeline-stages: the gated on-chip update "
                               "counts its updates over the whole network and is not pipelined; drop one of them")
    if _option(cfg, entry, "onchip_gate") and cfg.surrogate != "boxcar":
        raise SpiketandemError(f"option --onchip-gate (onchip_gate): the on-chip gate is the boxcar of Eq. 8, but "
                               f"--surrogate is {cfg.surrogate}; use --surrogate boxcar with --onchip-gate")


def _check_decolle(cfg, entry) -> None:
    burnin = _option(cfg, entry, "decolle_burnin")
    if burnin >= cfg.T:
        raise SpiketandemError(f"option --decolle-burnin (decolle_burnin): {burnin} is not allowed at T={cfg.T}; it "
                               f"must be an integer in [0, {cfg.T - 1}] (at least one step with a loss)")


def _check_shortcut(cfg, entry) -> None:
    spec = _option(cfg, entry, "shortcut_layers")
    if spec.strip() not in ("stages", "all") and not [s for s in spec.split(",") if s.strip()]:
        raise SpiketandemError(f"option --shortcut-layers (shortcut_layers): {spec!r} names no layer; it must be "
                               "stages, all, or comma-separated spiking layer names")


def _check_ann(cfg, entry) -> None:
    from ..models import activation_clip  # torch: configure runs once a command does work
    if cfg.epochs < 1:
        raise SpiketandemError(f"--epochs {cfg.epochs} trains no teacher; a teacher needs --epochs N with N >= 1")
    if cfg.act_penalty and cfg.arch is not None and activation_clip(cfg.arch, cfg.act_clip) is None:
        raise SpiketandemError(f"--act-penalty {cfg.act_penalty} measures each activation against its clip, and "
                               f"{cfg.arch} has a plain ReLU here: add --act-clip 2 (the LTL authors' teacher)")


# checks across an option and the config's other fields, run by ``rules.configure`` before any work (the
# rule's constructor would find them only after the data is loaded and a teacher trained)
CONFIG_CHECKS = {"ann": _check_ann, "ltl-online": _check_ltl_online, "decolle": _check_decolle, "shortcut": _check_shortcut}

# why a rule cannot train as pipelined layer stages (--pipeline-stages): only layer-local rules can, whose
# layers learn from their own losses on detached inputs, so that no gradient travels back between stages
END_TO_END = ("its loss is global: every layer's gradient flows back through all the layers above it, so no "
              "layer can update before the whole network has run backward, and stages would need backward "
              "messages; pipelining needs layer-local losses (--rule ltl-offline or ltl-online)")
ANN_END_TO_END = ("it trains an ANN end to end by backpropagation (every layer waits for the backward pass "
                  "through the layers above it); scale it by data parallelism: torchrun without --pipeline-stages")
NO_PIPELINE = {
    "ann": ANN_END_TO_END,
    "decolle": ("DECOLLE's layers learn locally, but from random readouts updated at every time step; its "
                "pipelined form is not implemented (scale it by data parallelism instead)"),
    "ptl": ("progressive tandem learning trains the network end to end through the ANN layers not yet "
            "converted, so every layer waits for the backward pass of the whole network"),
    "convert": "conversion trains nothing (it copies the teacher's weights and sets thresholds): there are no "
               "training steps to pipeline",
    "qcfs": ANN_END_TO_END,
    "qat": ANN_END_TO_END,
}

CATALOG: dict[str, RuleEntry] = {entry.name: entry for entry in (
    # the teacher's rule; offline and online LTL
    RuleEntry("ann", "ann:ANNRule", no_pipeline=NO_PIPELINE["ann"]),
    RuleEntry("ltl-offline", "ltl_offline:LTLOffline", LTL_OFFLINE_OPTIONS),
    RuleEntry("ltl-online", "ltl_online:LTLOnline", LTL_ONLINE_OPTIONS),
    # direct training and DECOLLE
    RuleEntry("stbp", "stbp:STBP", DIRECT_OPTIONS, END_TO_END),
    RuleEntry("convert-stbp", "stbp:ConvertSTBP", CONVERT_OPTIONS, END_TO_END),
    RuleEntry("tet", "tet:TET", TET_OPTIONS, END_TO_END),
    RuleEntry("dspike", "dspike:Dspike", DSPIKE_OPTIONS, END_TO_END),
    RuleEntry("shortcut", "shortcut:Shortcut", SHORTCUT_OPTIONS, END_TO_END),
    RuleEntry("decolle", "decolle:Decolle", DECOLLE_OPTIONS, NO_PIPELINE["decolle"]),
    # tandem learning, conversion, quantized ANN
    RuleEntry("tandem", "tandem:Tandem", no_pipeline=END_TO_END),
    RuleEntry("ptl", "ptl:PTL", PTL_OPTIONS, NO_PIPELINE["ptl"], fixed=(("neuron", "if"),)),
    RuleEntry("convert", "convert:Convert", CONVERT_OPTIONS, NO_PIPELINE["convert"],
              fixed=(("neuron", "if"), ("epochs", 0))),
    RuleEntry("qcfs", "convert:QCFS", QCFS_OPTIONS, NO_PIPELINE["qcfs"], fixed=(("neuron", "if"),),
              levels_option="qcfs_levels"),
    RuleEntry("qat", "qat:QAT", no_pipeline=NO_PIPELINE["qat"]),
)}


def check_pipeline(cfg, entry: RuleEntry) -> None:
    """``--pipeline-stages S`` (S > 1) only for a rule that can train as pipelined stages."""
    stages = getattr(cfg, "pipeline_stages", 1)
    if stages > 1 and entry.no_pipeline:
        raise SpiketandemError(f"--pipeline-stages {stages}: rule {entry.name} cannot train as pipelined layer "
                               f"stages: {entry.no_pipeline}")
