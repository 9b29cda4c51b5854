"""Online Local Tandem Learning (LTL paper, Eq. 9-11) and its gated on-chip form (Fig. 1d).

The student runs one time step at a time; its neuron states are carried forward *detached*, so the
autograd graph never spans more than one step and no ``[T, B, ...]`` tensor is kept (memory O(1)
in the window T).  At step t every neuron layer l compares its running rate with its target:

    L_l[t] = mean( (clamp(y_l / y_norm_l, 0, 1) - C_l[t] / t)^2 )                      (Eq. 9)
    dL_l[t]/dW_l = zeta_l[t] * s'(U_l[t]) * S_{l-1}[t]^T,
    zeta_l[t] = dL_l[t]/dS_l[t] = -(2 / (t N_l)) (y_l / y_norm_l - C_l[t] / t)         (Eq. 10-11)

with C_l[t] = C_l[t-1] + S_l[t] (the earlier count is a constant), N_l the number of elements of the
layer (the mean of ``F.mse_loss``; the paper writes a plain sum) and s' the surrogate.  The readout is
trained by cross-entropy on its running mean current m[t] = (sum_{k<t} O[k] + O[t]) / t, again
through step t only.  Steps t <= warm-up make no update; the spike counts still run from t = 1.

``online_update="batch"`` (default) sums the per-step gradients over the window and steps the
optimizer once per batch; ``"step"`` steps it after every post-warm-up time step (the on-chip form).

``onchip_gate`` replaces zeta by its sign, so a synapse changes by a fixed amount, and only where the
boxcar of Eq. 8 is open and its input is active:  dW_ij ~ sign(zeta_i) * 1[|U_i - theta| < p theta/2] * x_j.
It counts the weight updates made against a dense per-sample rule that writes every synapse at every
step, and logs the fraction skipped.
"""
from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..errors import SpiketandemError
from ..neuron import RunContext, SpikingNeuron, TimeAware
from ..student import attention_products
from .catalog import CATALOG
from .ltl_offline import LTLOffline


def warmup_steps(T: int, fraction: float, steps: int | None = None) -> int:
    """Number of leading steps without updates: ``steps`` if given, else round(fraction * T) capped at
    T - 1 (at least one step of the window must remain for learning)."""
    if steps is None:
        if not 0 <= fraction < 1:
            raise SpiketandemError(f"online warm-up fraction must lie in [0, 1), got {fraction}; e.g. --online-warmup 0.75")
        return min(int(round(fraction * T)), T - 1)
    if not 0 <= steps < T:
        raise SpiketandemError(f"an online warm-up of {steps} steps leaves no step to learn from at T={T}; "
                               f"use --online-warmup-steps between 0 and {T - 1}, or a larger --T")
    return steps


class StepRunner:
    """Runs a Student one time step per call, with the neuron state carried in and out by a RunContext.

    Layers fed only by the constant analog image (the first conv: ``SpikingNeuron.static_input``)
    receive the same current at every step.  ``static_currents(x)`` computes those currents once and
    ``step(x, currents, ctx)`` takes them as inputs, so the image convolution is not redone T times.
    Both are fx graphs cut from the student's graph; they share its modules and parameters.
    """

    def __init__(self, student):
        gm = student.graph_module
        self.student = student
        static = [n for n in gm.graph.nodes if n.op == "call_module"
                  and isinstance(gm.get_submodule(n.target), SpikingNeuron) and gm.get_submodule(n.target).static_input]
        self.static_names = [gm.get_submodule(n.target).name for n in static]

        prefix = fx.Graph()
        env: dict = {}
        prefix.graph_copy(gm.graph, env)
        prefix.output(tuple(env[n.args[0]] for n in static))
        self.prefix = self._finish(gm, prefix)

        step = fx.Graph()
        env = {}
        out = step.graph_copy(gm.graph, env)
        step.output(out)
        first = next(n for n in step.nodes if n.op != "placeholder")
        for i, node in enumerate(static):
            with step.inserting_before(first):
                current = step.placeholder(f"static_current_{i}")
            env[node].replace_input_with(env[node.args[0]], current)
        self.step_module = self._finish(gm, step)
        self.timed = [m for m in self.step_module.modules() if isinstance(m, TimeAware)]

    @staticmethod
    def _finish(root: nn.Module, graph: fx.Graph) -> fx.GraphModule:
        module = fx.GraphModule(root, graph)
        module.graph.eliminate_dead_code()
        module.graph.lint()
        module.recompile()
        return module

    def static_currents(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The time-constant input currents [B, ...] of the static layers (empty for rate encoding)."""
        return tuple(self.prefix(x)) if self.static_names else ()

    def step(self, x: torch.Tensor, currents, ctx: RunContext) -> torch.Tensor:
        """One step (ctx.T must be 1): returns the readout output [B, ...]; ctx.state_out holds the new state.
        A frames student takes this step's event frame as ``[B, 1, C, H, W]``."""
        frames = self.student.encoding == "frames"
        per_sample = tuple(x.shape[2:]) if frames else tuple(x.shape[1:])
        if per_sample != self.student.input_shape or (frames and x.shape[1] != 1):
            raise SpiketandemError(f"student expects inputs of shape [B, {', '.join(map(str, self.student.input_shape))}]"
                                   f", got {list(x.shape)}")
        for m in self.timed:
            m.ctx = ctx
        try:
            return self.step_module(self.student.encode(x, 1), *currents)
        finally:
            for m in self.timed:
                m.ctx = None


def synaptic_updates(module: nn.Module, x: torch.Tensor, gate: torch.Tensor) -> tuple[int, int]:
    """Weight updates of one conv/linear layer at one step, summed over the batch.

    made  = sum_{b, i, j in RF(i)} gate[b, i] * 1[x[b, j] != 0]   (gated, event-driven rule)
    dense = sum_{b, i, j in RF(i)} 1                               (every synapse written)
    where i runs over output neurons and RF(i) over the inputs its weights connect to it (a conv's
    receptive field, padding excluded; all inputs for a linear layer)."""
    gate = gate.to(x.dtype)
    if isinstance(module, nn.Linear):
        active = (x != 0).flatten(1).sum(1).to(x.dtype)                  # [B] inputs firing
        made = (gate.flatten(1).sum(1) * active).sum()
        dense = gate.numel() * x[0].numel()
        return int(made), int(dense)
    ones = torch.ones_like(module.weight)
    active = module._conv_forward((x != 0).to(x.dtype), ones, None)    # [B, O, ...] active inputs per neuron
    fan_in = module._conv_forward(torch.ones_like(x[:1]), ones, None)  # [1, O, ...] synapses per neuron
    return int((gate * active).sum()), int(fan_in.sum()) * x.shape[0]


class LTLOnline(LTLOffline):
    """Temporally local LTL: per-step loss, per-step gradient, O(1) memory in T."""

    name = "ltl-online"
    options = CATALOG[name].options  # declared in catalog.py (torch-free)

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, teacher, calibration)
        # the student is a copy of the teacher made after the teacher was frozen: layers that had no BN
        # to fold (e.g. the readout) would inherit requires_grad=False
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.warmup = warmup_steps(cfg.T, self.option("online_warmup"), self.option("online_warmup_steps"))
        self.per_step = self.option("online_update") == "step"
        self.gated = bool(self.option("onchip_gate"))
        if self.gated and cfg.surrogate != "boxcar":
            raise SpiketandemError(f"the on-chip gate is the boxcar of Eq. 8, but --surrogate is {cfg.surrogate}; "
                                   "use --surrogate boxcar with --onchip-gate")
        self.runner = StepRunner(self.model)
        # extra per-step transforms (hardware noise): neuron name -> fn(current, t) / fn(spikes [1, B, ...])
        self.current_hooks: dict = {}
        self.output_hooks: dict = {}
        self.update_counts = {"made": 0, "dense": 0}
        self._inputs: dict = {}
        self._weights = self._gated_weight_modules() if self.gated else {}

    # ---- on-chip bookkeeping ----------------------------------------------------------------------

    def _gated_weight_modules(self) -> dict[str, list[nn.Module]]:
        """neuron name -> the conv/linear modules feeding it, each hooked to keep its last input."""
        gm = self.model.graph_module
        found = {}
        for info in self.model.layers:
            mods = [gm.get_submodule(t) for t in info.modules]
            found[info.name] = [m for m in mods if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
            for m in found[info.name]:
                m.register_forward_hook(self._keep_input)
        return found

    def _keep_input(self, module, args, output):
        if self._counting:
            self._inputs[module] = (args[0].detach(), tuple(output.shape))

    _counting = False

    def _count(self, name: str, gate: torch.Tensor) -> tuple[int, int]:
        made = dense = 0
        for module in self._weights[name]:
            x, out_shape = self._inputs[module]
            if out_shape != tuple(gate.shape):  # a weight layer whose output is pooled before the neuron
                continue
            m, d = synaptic_updates(module, x, gate)
            made, dense = made + m, dense + d
        return made, dense

    # ---- training ---------------------------------------------------------------------------------

    def setup(self, data, device):
        """Refuses, before the first epoch, a spiking transformer whose attention product is defined on running rates:
        online LTL runs the student one step per call, and only the per-step product needs nothing from earlier steps."""
        graded = {name: p.time for name, p in attention_products(self.model).items() if p.time != "step"}
        if graded:
            name, time = next(iter(graded.items()))
            raise SpiketandemError(f"online LTL runs the student one step at a time, but its attention product {name} "
                                   f"is defined in time {time!r}, which needs the whole window; set it to 'step' "
                                   "(--attention-time step, student.set_attention_time('step')) or train with "
                                   "--rule ltl-offline")
        return super().setup(data, device)

    def on_epoch_start(self, epoch: int) -> None:
        """All layers learn at every epoch (no sequential schedule)."""

    def loss(self, x, y, epoch):
        raise SpiketandemError("ltl-online updates inside the time loop; call train_step(x, y, optimizer, epoch)")

    def context(self, batch, T=None, **fields):
        """A whole window's context, with the hardware hooks (``current_hooks``: fn(current, t))."""
        fields = {"current_hooks": dict(self.current_hooks), "output_hooks": dict(self.output_hooks), **fields}
        return super().context(batch, T, **fields)

    def step_context(self, t: int, batch: int, state) -> RunContext:
        """The context of step t (1-based) of the window: one step, the state carried in, outputs detached,
        every layer recorded; the hardware hooks see the step's index in the window."""
        hooks = {n: (lambda current, _k, f=f: f(current, t - 1)) for n, f in self.current_hooks.items()}
        return self.context(batch, 1, detach=True, records={}, state_in=state, current_hooks=hooks)

    def train_step(self, x, y, optimizer, epoch: int) -> dict:
        """One batch: T steps forward, a backward (and in ``step`` mode an update) at every step after warm-up."""
        T = self.cfg.T
        with torch.no_grad():
            teacher_logits, acts = self.taps(x)
            targets = {name: self.targets.target(name, acts[name]) for name in self.active}
        del acts
        frames = self.model.encoding == "frames"
        self._counting = self.gated
        try:
            totals, out_sum, _ = self.run_window(
                x, y, optimizer, targets, teacher_logits,
                lambda t, currents, ctx: self.runner.step(x[:, t - 1:t] if frames else x, currents, ctx))
        finally:
            self._counting = False
            self._inputs.clear()
        steps = T - self.warmup
        logits = out_sum / T
        logs = {"loss": (totals["local"] + totals["ce"]) / steps, "correct": int((logits.argmax(1) == y).sum()),
                "ce": totals["ce"] / steps, "local": totals["local"] / steps}
        if self.gated:
            self.update_counts["made"] += totals["made"]
            self.update_counts["dense"] += totals["dense"]
            logs["onchip_updates_skipped"] = 1 - totals["made"] / max(1, totals["dense"])
            logs["onchip_gate_open"] = totals["open"] / max(1, totals["neurons"])
        return logs

    def run_window(self, x, y, optimizer, targets: dict, teacher_logits, forward, *, static: bool = True,
                   keep=()) -> tuple[dict, torch.Tensor | None, dict]:
        """The online time loop over one batch's window, t = 1..T.

        ``forward(t, currents, ctx)`` runs step t of the network (or of a pipelined stage's segment) in ``ctx``
        with the static layers' ``currents`` and returns the readout's output O[t], or None where this process
        holds no readout.  After the warm-up, step t backpropagates the local losses of the layers in
        ``targets`` (name -> clamp(y / y_norm, 0, 1)) and, with a readout, its cross-entropy on m[t]; the
        optimizer steps after every such step (``online_update="step"``) or once after the window.
        ``static``: this process runs the static (time-constant) layers, whose gradient it passes on at each
        update.  ``keep``: layers whose spikes of all T steps are returned.  The states between steps are
        detached.  Returns (totals of the losses and gate counts, sum_t O[t] or None, {layer: spikes [T, B, ...]})."""
        B = x.shape[0]
        optimizer.zero_grad(set_to_none=True)
        state, counts, out_sum, kept = None, {}, None, {name: [] for name in keep}
        totals = {"local": 0.0, "ce": 0.0, "made": 0, "dense": 0, "open": 0.0, "neurons": 0}
        static_graph, static_leaves = self._static_currents(x) if static else ((), ())
        for t in range(1, self.cfg.T + 1):
            learn = t > self.warmup
            if static and learn and self.per_step and t > self.warmup + 1:    # the weights changed at step t-1
                static_graph, static_leaves = self._static_currents(x)
            with torch.set_grad_enabled(learn):
                currents = static_leaves if learn else tuple(c.detach() for c in static_leaves)
                ctx = self.step_context(t, B, state)
                out = forward(t, currents, ctx)
                mean_out = None if out is None else (out if out_sum is None else out_sum + out) / t  # m[t]: O[t]'s graph
                if learn:
                    self._learn_step(t, ctx, counts, targets, mean_out, y, teacher_logits, totals)
                    if self.per_step:
                        self._backprop_static(static_graph, static_leaves)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
            if out is not None:
                out_sum = out.detach() if out_sum is None else out_sum + out.detach()
            for name, spikes in ctx.records.items():
                counts[name] = spikes[0].detach() + counts.get(name, 0)
            for name, spikes in kept.items():
                spikes.append(ctx.records[name].detach())
            state = {k: v.detach() for k, v in ctx.state_out.items()}
        if not self.per_step:
            self._backprop_static(static_graph, static_leaves)
            optimizer.step()
        return totals, out_sum, {name: torch.cat(spikes) for name, spikes in kept.items()}

    def _learn_step(self, t, ctx, counts, targets, mean_out, y, teacher_logits, totals) -> None:
        """Backward of step t's local losses (Eq. 9-11, or the gated form) and, given the readout's running mean
        ``mean_out``, of its cross-entropy."""
        objective = None
        if mean_out is not None:
            objective = self.readout_loss(mean_out, y, teacher_logits)
            totals["ce"] += float(objective.detach())
        for name, target in targets.items():
            spikes = ctx.records[name][0]
            rate = (counts.get(name, 0) + spikes) / t                   # C[t]/t; C[t-1] carries no graph
            local = F.mse_loss(rate, target)
            totals["local"] += float(local.detach())
            if self.gated:
                error_sign = torch.sign(rate.detach() - target)         # sign(zeta[t])
                local = (error_sign * spikes).sum() / spikes.numel()
                neuron = self.model.neurons[name]
                u = ctx.state_out[name].u.detach()
                gate = (error_sign != 0) & (neuron.config.surrogate.derivative((u - neuron.threshold) / neuron.threshold) > 0)
                made, dense = self._count(name, gate)
                totals["made"] += made
                totals["dense"] += dense
                totals["open"] += float(gate.sum())
                totals["neurons"] += gate.numel()
            objective = local if objective is None else objective + local
        if objective is not None and objective.requires_grad:
            objective.backward()

    def _static_currents(self, x) -> tuple[tuple, tuple]:
        """The static layers' currents with their graph to the weights, and leaf copies to feed the steps."""
        graph = self.runner.static_currents(x)
        return graph, tuple(c.detach().requires_grad_(c.requires_grad) for c in graph)

    @staticmethod
    def _backprop_static(graph, leaves) -> None:
        """The static currents were fed as leaves: pass their gradient (summed over the steps so far)
        on to the static layers' weights, dL/dW0 = sum_t dL[t]/dI0 * x (the image is constant)."""
        pairs = [(g, leaf.grad) for g, leaf in zip(graph, leaves) if g.requires_grad and leaf.grad is not None]
        if pairs:
            torch.autograd.backward([g for g, _ in pairs], [d for _, d in pairs])
        for leaf in leaves:
            leaf.grad = None

    def extra_state(self):
        return {**super().extra_state(), "update_counts": dict(self.update_counts)}

    def load_extra_state(self, state):
        super().load_extra_state(state)
        self.update_counts = dict(state.get("update_counts", self.update_counts))

    def summary_extras(self) -> dict:
        """Run-level totals for summary.json (on-chip gating only)."""
        if not self.gated:
            return {}
        made, dense = self.update_counts["made"], self.update_counts["dense"]
        return {"onchip_updates_made": made, "onchip_updates_dense": dense,
                "onchip_updates_skipped": 1 - made / max(1, dense)}
