"""``Pipelined``: the rule wrapper that trains an offline-LTL student as S pipelined stages.

The training loop (``train.fit``) drives it like any rule, on every rank; nothing about the loop
changes.  Rank ``r`` is stage ``r % S`` of replica ``r // S`` (``R = world / S`` replicas, each a full
pipeline on its own slice of every global batch).  In each ``train_step`` a stage

1. receives the previous stage's message for this batch (spikes as bits, see ``messages.py``; the
   teacher's boundary activations where it relays them), blocking until it is there;
2. runs the teacher's segment of its layers (no grad) and its segment of the student (``graph.py``);
3. sends its message for this batch to the next stage *before* its own backward (``isend``: the next
   stage starts on this batch while this one computes its gradients and takes the next batch);
4. backpropagates its layers' local losses (the last stage: plus the readout's cross-entropy) and steps
   its optimizer (gradients averaged over its replicas by the loop's usual pre-hook).

There are no backward messages: every neuron layer's output is detached, so stage s's input for batch k
is what stage s-1 computed from batch k with the weights it had before its own update on batch k --
exactly what one process computes in the parallel schedule.  The pipeline fills in the first S-1 steps
of an epoch and drains in the last ones (``bubble``).

After the last step of each epoch every rank gets every stage's layers, its optimizer state and its
running y_norm (broadcast from the stage's first replica), so that what follows in the loop -- the
divergence check, the test evaluation on every rank's shard, rank 0's checkpoint, the final evaluation
and ``student.pt`` -- sees the whole student exactly as one process would have it.  A checkpoint of a
pipelined run is therefore the single-process checkpoint, and ``--resume`` may change --pipeline-stages.

Metrics: each stage reports S times its share of the batch's loss (its local losses; the last stage
also the cross-entropy and the correct count), so the loop's sum over all ranks divided by its count of
samples (every sample counted once per stage) is the single-process mean.
"""
from __future__ import annotations

import collections
import math
import time

import torch
import torch.distributed as dist

from .. import distributed
from ..data.feeding import training_batches
from ..errors import SpiketandemError
from ..precision import prepare_rule
from ..rules.base import Rule
from ..rules.wrapper import RuleWrapper
from .graph import cut_student, cut_teacher, stage_buffers, stage_parameters
from .messages import Link, Slot
from .plan import balance, measure_layers, only_active, placeholder_name, teacher_modes

class RecordsOnly:
    """A stand-in for a RunContext that only carries records (online stages send their T steps' spikes)."""

    def __init__(self, records: dict):
        self.records = records


IN_FLIGHT = 2  # sends a stage may have outstanding before it waits for the oldest (back-pressure)
PING_BYTES = 1 << 22


def check_launch(stages: int) -> None:
    """``stages`` stages need torchrun with a multiple of ``stages`` processes."""
    world = distributed.world_size()
    if not distributed.active():
        raise SpiketandemError(f"--pipeline-stages {stages} runs one stage per process: launch with `torchrun "
                               f"--nproc_per_node={stages} -m spiketandem train ...` (or a multiple of {stages}: "
                               "data-parallel replicas of the pipeline)")
    if world % stages:
        raise SpiketandemError(f"--pipeline-stages {stages} needs a multiple of {stages} processes (stages x "
                               f"data-parallel replicas); torchrun started {world}")


class Pipelined(RuleWrapper):
    """Trains ``inner`` (offline or online LTL) as ``stages`` pipelined stages; see the module docstring."""

    def __init__(self, inner: Rule, stages: int):
        from ..rules.ltl_offline import LTLOffline
        from ..rules.ltl_online import LTLOnline
        if not isinstance(inner, LTLOffline):
            raise SpiketandemError(f"--pipeline-stages: rule {inner.name!r} cannot be pipelined; only offline and "
                                   "online LTL train every layer from its own local loss on detached inputs")
        self.online = isinstance(inner, LTLOnline)
        if self.online and (inner.gated or inner.current_hooks or inner.output_hooks):
            raise SpiketandemError("--pipeline-stages: online LTL with the on-chip gate or hardware hooks is not "
                                   "pipelined (its update counts and hooks span the whole network); drop "
                                   "--onchip-gate or --pipeline-stages")
        if stages > len(inner.model.layers):
            raise SpiketandemError(f"--pipeline-stages {stages}: the student has only {len(inner.model.layers)} "
                                   f"neuron layers, and a stage holds at least one; use at most "
                                   f"{len(inner.model.layers)} stages")
        super().__init__(inner)
        self.stages = stages
        self.plan: dict | None = None
        self.stage = self.replica = 0
        self._pending: collections.deque = collections.deque()
        self._step = 0
        self._flags: dict = {}
        self.epoch_stats = self._empty_stats()
        self.totals = self._empty_stats()
        self.rank_stats: list[dict] = []

    # ---- what the loop sees: the inner rule (RuleWrapper), but for these --------------------------------

    def summary_extras(self) -> dict:
        return {**self.inner.summary_extras(), "pipeline": self.report()}

    # ---- lifecycle ----------------------------------------------------------------------------------

    def setup(self, data, device):
        """The process layout, the warm-up measurement (rank 0), the partition and the stage graphs."""
        data = self.inner.setup(data, device)
        check_launch(self.stages)
        S, world, rank = self.stages, distributed.world_size(), distributed.rank()
        replicas = world // S
        self.stage, self.replica = rank % S, rank // S
        self.device = torch.device(device)
        mine = None
        for s in range(S):  # every rank creates every group, in the same order
            group = dist.new_group([r * S + s for r in range(replicas)]) if replicas > 1 else None
            if s == self.stage:
                mine = group
        distributed.use_data_parallel_group(mine, self.replica, replicas)
        batches = training_batches(data, self.cfg, device)
        self._steps_per_epoch = len(batches)
        batches.set_epoch(0)
        x, y = next(iter(batches))
        context = prepare_rule(self.inner, getattr(self.cfg, "amp", "off"), getattr(self.cfg, "channels_last", False),
                               self.device)  # the loop applies it again (idempotent); the warm-up runs as training will
        measured = measure_layers(self.inner, x, y, context) if rank == 0 else None
        seconds_per_byte = self._ping()
        plan = [self._plan(measured, seconds_per_byte, replicas)] if rank == 0 else [None]
        dist.broadcast_object_list(plan, src=0)
        self._build(plan[0])
        return data

    def _ping(self) -> float:
        """Seconds per byte of a message from rank 0 to rank 1 (median of 3, after a warm-up)."""
        rank = distributed.rank()
        if rank > 1:
            return 0.0
        buf = torch.zeros(PING_BYTES, dtype=torch.uint8, device=self.device)
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            if rank == 0:
                dist.send(buf, 1)
                dist.recv(buf[:8], 1)
            else:
                dist.recv(buf, 0)
                dist.send(buf[:8], 0)
            times.append(time.perf_counter() - t0)
        return sorted(times[1:])[1] / PING_BYTES

    def _plan(self, measured: dict, seconds_per_byte: float, replicas: int) -> dict:
        cost = [s + t for s, t in zip(measured["student"], measured["teacher"])]
        stage_of = balance(cost, self.stages)
        names = measured["layers"]
        tcut = cut_teacher(self.inner.taps, dict(zip(names, stage_of)), self.stages)
        B = measured["batch"]
        tbytes = [sum(4 * math.prod(measured["teacher_shapes"][n]) for n in tcut.crossing[b])
                  for b in range(self.stages - 1)]
        modes = teacher_modes(stage_of, measured["teacher"], tbytes, seconds_per_byte)
        return {**measured, "stage_of": stage_of, "teacher_modes": modes, "seconds_per_byte": seconds_per_byte,
                "teacher_boundary_bytes": tbytes, "replicas": replicas,
                "stage_seconds": [sum(c for c, st in zip(cost, stage_of) if st == s) for s in range(self.stages)],
                "batch": B}

    def _build(self, plan: dict) -> None:
        self.plan = plan
        S, T, B0 = self.stages, self.cfg.T, plan["batch"]
        stage_of = dict(zip(plan["layers"], plan["stage_of"]))
        student, taps = self.inner.model, self.inner.taps
        # online LTL runs one step at a time: its stages are segments of the one-step graph (ltl_online.StepRunner)
        graph = self.inner.runner.step_module if self.online else student.graph_module
        self.scut = cut_student(student, stage_of, S, graph)
        self.tcut = cut_teacher(taps, stage_of, S)
        self.sx, self.tx = placeholder_name(graph), placeholder_name(taps.graph_module)
        self.static_inputs = [n.name for n in graph.graph.nodes if n.op == "placeholder"][1:]
        self.my_layers = [n for n in plan["layers"] if stage_of[n] == self.stage]
        self.modes = plan["teacher_modes"]
        layer_of_node = {}
        for name, node in self.scut.nodes.items():
            if node.op == "call_module" and node.target.startswith("neurons."):
                layer_of_node[name] = graph.get_submodule(node.target).name
        self.links = []
        for b in range(S - 1):
            slots = []
            for name in self.scut.crossing[b]:
                if name in layer_of_node:
                    layer = layer_of_node[name]
                    slots.append(Slot(name, "spikes", T, tuple(plan["spike_shapes"][layer]), "student", layer))
                elif self.online:
                    raise SpiketandemError(f"--pipeline-stages with online LTL: {name!r} crosses from stage {b + 1} to "
                                           f"{b + 2} and is no neuron output; only spikes cross between online stages "
                                           "(use fewer stages, or ltl-offline)")
                else:
                    shape = plan["shapes"][name]
                    slots.append(Slot(name, "tensor", shape[0] // B0, tuple(shape[1:]), "student"))
            if self.modes[b + 1] == "relay":
                for name in self.tcut.crossing[b]:
                    shape = plan["teacher_shapes"][name]
                    slots.append(Slot(name, "tensor", shape[0] // B0, tuple(shape[1:]), "teacher"))
            self.links.append(Link(slots))
        self.sent_layers = ({s.layer for s in self.links[self.stage].slots if s.kind == "spikes"}
                            & set(self.my_layers)) if self.stage < S - 1 else set()
        # what each stage trains and owns, from the student's own graph (online's one-step graph lacks the static
        # prefix: the first conv, run once per batch by stage 0)
        owners = cut_student(student, stage_of, S) if self.online else self.scut
        self.stage_tensors = [(stage_parameters(student, owners, s), stage_buffers(student, owners, s))
                              for s in range(S)]
        covered = {id(p) for params, _ in self.stage_tensors for p in params}
        missing = [n for n, p in student.named_parameters() if id(p) not in covered]
        if missing:
            raise SpiketandemError(f"--pipeline-stages: parameter(s) {', '.join(missing[:3])} belong to no stage; this "
                                   "student cannot be pipelined")
        self.owned = {id(p) for p in self.stage_tensors[self.stage][0]}
        self.prev = distributed.rank() - 1 if self.stage > 0 else None
        self.next = distributed.rank() + 1 if self.stage < S - 1 else None

    def on_epoch_start(self, epoch: int) -> None:
        self.inner.on_epoch_start(epoch)
        params = list(self.inner.model.parameters())
        self._flags = {id(p): p.requires_grad for p in params}
        for p in params:  # another stage's weights: never run here; left out of this stage's gradient averaging
            if id(p) not in self.owned:
                p.requires_grad_(False)
        self._step = 0
        self.epoch_stats = self._empty_stats()
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, row: dict) -> bool:
        stop = bool(self.inner.on_epoch_end(epoch, row))
        if self.rank_stats:
            wall = max(1e-9, row.get("epoch_seconds", 0.0))
            busy = [r["epoch"]["busy_s"] / wall for r in self.rank_stats]
            row["pipeline_bubble"] = 1.0 - sum(busy) / len(busy)
        return stop

    # ---- one batch ----------------------------------------------------------------------------------

    def _receive(self, x) -> tuple[dict, dict, dict]:
        """This batch's message from the previous stage: (student values, teacher values, relayable bytes)."""
        values, tvalues, raw = {}, {}, {}
        if self.prev is not None:
            B, link = x.shape[0], self.links[self.stage - 1]
            message = torch.empty(link.nbytes(B), dtype=torch.uint8, device=x.device)
            dist.recv(message, self.prev)
            decoded, raw = link.decode(message, B, self.cfg.T)
            for key, value in decoded.items():
                graph, name = key.split(":", 1)
                (values if graph == "student" else tvalues)[name] = value
        return values, tvalues, raw

    @torch.no_grad()
    def _teacher(self, x, tvalues: dict) -> dict:
        """The teacher's activations at this stage's layers (its segment, after its prefix where recomputed)."""
        tvalues[self.tx] = x.mean(1) if x.dim() == 5 else x  # event frames: the teacher sees their average
        if self.modes[self.stage] == "recompute":
            for s in range(self.stage):
                self.tcut.segments[s].run(tvalues)
        self.tcut.segments[self.stage].run(tvalues)
        return {name: tvalues[self.tcut.taps[name]] for name in self.my_layers}

    def _begin_step(self, x):
        """Every step's start, offline and online: the previous stage's message (values, teacher values, raw),
        the teacher's activations at this stage's layers, the layers that learn; with the times before and
        after receiving."""
        t_start = time.perf_counter()
        received = self._receive(x)
        t_recv = time.perf_counter()
        acts = self._teacher(x, received[1])
        return t_start, received, t_recv, acts, [n for n in self.inner.active if n in acts]

    def train_step(self, x, y, optimizer, epoch: int) -> dict:
        if self.online:
            return self._online_step(x, y, optimizer, epoch)
        t_start, (values, tvalues, raw), t_recv, acts, active = self._begin_step(x)
        inner, S, T, B = self.inner, self.stages, self.cfg.T, x.shape[0]
        segment = self.scut.segments[self.stage]
        if self.sx in segment.inputs:
            values[self.sx] = inner.model.encode(x, T)
        ctx = inner.run_context(B, record_names=set(active) | self.sent_layers)
        segment.run(values, ctx)
        send_wait = 0.0
        if self.next is not None:
            send_wait = self._send(self._message(B, values, tvalues, raw, ctx, x.device))
        with only_active(inner, active):
            local = inner.local_losses(ctx.records, acts)
        total = sum(local.values()) if local else None
        ce = correct = 0
        if self.next is None:
            out = values[segment.outputs[-1]]
            logits = out.reshape(T, B, *out.shape[1:]).mean(0)
            ce = inner.readout_loss(logits, y, tvalues.get(self.tcut.logits))
            total = ce if total is None else ce + total
            correct = int((logits.argmax(1) == y).sum())
        optimizer.zero_grad(set_to_none=True)
        if total is not None and total.requires_grad:
            total.backward()
        optimizer.step()
        self._finish_step(optimizer, epoch, t_start, t_recv, send_wait, B)
        local_sum = float(sum(v.detach() for v in local.values())) if local else 0.0
        ce = float(ce.detach()) if torch.is_tensor(ce) else 0.0
        return {"loss": S * (ce + local_sum), "correct": S * correct, "ce": S * ce, "local": S * local_sum}

    def _finish_step(self, optimizer, epoch, t_start, t_recv, send_wait, B) -> None:
        self._step += 1
        self._account(time.perf_counter() - t_start, t_recv - t_start, send_wait, B)
        if self._step == self._steps_per_epoch:
            self._end_epoch(optimizer, epoch)

    def _online_step(self, x, y, optimizer, epoch: int) -> dict:
        """Online LTL's time loop (``LTLOnline.run_window``) on this stage's layers: T steps of its segment of
        the one-step graph, each layer's per-step loss (the last stage: and the readout's cross-entropy)
        backpropagated after the warm-up, an update per batch or per step; then its spikes of all T steps go to
        the next stage.  Exact as offline: a stage's spikes at step t depend only on earlier stages and its own
        weights, which it updated at steps before t, as in one process."""
        t_start, (values_in, tvalues, raw), t_recv, acts, active = self._begin_step(x)
        inner, S, T, B = self.inner, self.stages, self.cfg.T, x.shape[0]
        with torch.no_grad():
            targets = {name: inner.targets.target(name, acts[name]) for name in active}
        segment, first, last = self.scut.segments[self.stage], self.stage == 0, self.next is None
        steps_in = {name: value.view(T, B, *value.shape[1:]).unbind(0) for name, value in values_in.items()}

        def forward(t, currents, ctx):
            values = {name: steps[t - 1] for name, steps in steps_in.items()}
            if first:
                frame = x[:, t - 1:t] if inner.model.encoding == "frames" else x  # event frames: frame t
                values[self.sx] = inner.model.encode(frame, 1)
                values.update(zip(self.static_inputs, currents))
            segment.run(values, ctx)
            return values[segment.outputs[-1]] if last else None

        totals, out_sum, sent = inner.run_window(x, y, optimizer, targets, tvalues.get(self.tcut.logits), forward,
                                                 static=first, keep=self.sent_layers)
        send_wait = 0.0
        if self.next is not None:
            send_wait = self._send(self._message(B, dict(values_in), tvalues, raw, RecordsOnly(sent), x.device))
        self._finish_step(optimizer, epoch, t_start, t_recv, send_wait, B)
        steps = T - inner.warmup
        correct = int(((out_sum / T).argmax(1) == y).sum()) if last else 0
        ce, local = totals["ce"] / steps, totals["local"] / steps
        return {"loss": S * (ce + local), "correct": S * correct, "ce": S * ce, "local": S * local}

    def _message(self, B, values, tvalues, raw, ctx, device) -> torch.Tensor:
        link = self.links[self.stage]
        items = {}
        for slot in link.slots:
            if slot.key in raw:
                items[slot.key] = raw[slot.key]  # relayed as it came
            elif slot.kind == "spikes":
                items[slot.key] = (ctx.records[slot.layer], self.inner.model.neurons[slot.layer].amplitude)
            else:
                items[slot.key] = (values if slot.graph == "student" else tvalues)[slot.name]
        message = link.encode(B, items, device)
        self.epoch_stats["bytes_sent"] += message.numel()
        return message

    def _send(self, message: torch.Tensor) -> float:
        t0 = time.perf_counter()
        while len(self._pending) >= IN_FLIGHT:
            self._pending.popleft()[0].wait()
        waited = time.perf_counter() - t0
        self._pending.append((dist.isend(message, self.next), message))
        return waited

    def _drain(self) -> float:
        t0 = time.perf_counter()
        while self._pending:
            self._pending.popleft()[0].wait()
        return time.perf_counter() - t0

    # ---- the end of an epoch: every rank gets the whole student -------------------------------------

    def _end_epoch(self, optimizer, epoch: int) -> None:
        self.epoch_stats["send_wait_s"] += self._drain()
        t0 = time.perf_counter()
        params = list(self.inner.model.parameters())
        for p in params:
            p.requires_grad_(self._flags.get(id(p), p.requires_grad))
        index = {id(p): i for i, p in enumerate(p for group in optimizer.param_groups for p in group["params"])}
        with torch.no_grad():
            for s, (stage_params, stage_bufs) in enumerate(self.stage_tensors):
                for t in list(stage_params) + list(stage_bufs):
                    data = t.data.to(distributed._device()) if t.device != distributed._device() else t.data
                    dist.broadcast(data, s)
                    if data is not t.data:
                        t.data.copy_(data)
                payload = [self._stage_state(optimizer, index, s) if self.stage == s and self.replica == 0 else None]
                dist.broadcast_object_list(payload, src=s)
                if self.stage != s:
                    self._load_stage_state(optimizer, index, payload[0])
        self.epoch_stats["exchange_s"] = time.perf_counter() - t0
        self.epoch_stats["wall_s"] = time.perf_counter() - self._epoch_start
        for key in ("busy_s", "recv_wait_s", "send_wait_s", "exchange_s", "bytes_sent", "samples", "steps"):
            self.totals[key] += self.epoch_stats[key]
        gathered = [None] * distributed.world_size()
        dist.all_gather_object(gathered, {"rank": distributed.rank(), "stage": self.stage, "replica": self.replica,
                                          "epoch": dict(self.epoch_stats), "total": dict(self.totals)})
        self.rank_stats = gathered
        if epoch == self.cfg.epochs - 1:  # training is over: later work in this process is not pipelined
            distributed.use_data_parallel_group(None, None, None)

    def _stage_state(self, optimizer, index: dict, s: int) -> dict:
        """Stage ``s``'s optimizer state (by parameter index) and running y_norm, as plain CPU values."""
        state = {}
        for p in self.stage_tensors[s][0]:
            if p in optimizer.state and id(p) in index:
                state[index[id(p)]] = {k: (v.detach().cpu(), v.device.type != "cpu") if torch.is_tensor(v) else (v, False)
                                       for k, v in optimizer.state[p].items()}
        targets = self.inner.targets.state_dict()
        mine = set(self.my_layers)
        return {"optimizer": state, "scales": {k: v for k, v in targets["scales"].items() if k in mine},
                "seen": [k for k in targets["seen"] if k in mine]}

    def _load_stage_state(self, optimizer, index: dict, payload: dict) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for i, entry in payload["optimizer"].items():
            p = params[i]
            optimizer.state[p] = {k: (v.to(p.device) if on_device else v) if torch.is_tensor(v) else v
                                  for k, (v, on_device) in entry.items()}
        targets = self.inner.targets.state_dict()
        targets["scales"].update(payload["scales"])
        targets["seen"] = sorted(set(targets["seen"]) | set(payload["seen"]))
        self.inner.targets.load_state_dict(targets)

    # ---- measurements -------------------------------------------------------------------------------

    @staticmethod
    def _empty_stats() -> dict:
        return {"busy_s": 0.0, "recv_wait_s": 0.0, "send_wait_s": 0.0, "exchange_s": 0.0, "bytes_sent": 0,
                "samples": 0, "steps": 0, "wall_s": 0.0}

    def _account(self, step_s: float, recv_s: float, send_s: float, batch: int) -> None:
        st = self.epoch_stats
        st["busy_s"] += step_s - recv_s - send_s
        st["recv_wait_s"] += recv_s
        st["send_wait_s"] += send_s
        st["samples"] += batch
        st["steps"] += 1

    def report(self) -> dict:
        """The partition, the teacher's route, the warm-up costs and every rank's busy and waiting times."""
        if self.plan is None:
            return {"stages": self.stages}
        plan = self.plan
        stages = [[n for n, s in zip(plan["layers"], plan["stage_of"]) if s == k] for k in range(self.stages)]
        per_rank = []
        for r in self.rank_stats:
            tot = r["total"]
            per_rank.append({"rank": r["rank"], "stage": r["stage"], "replica": r["replica"],
                             "busy_seconds": tot["busy_s"], "recv_wait_seconds": tot["recv_wait_s"],
                             "send_wait_seconds": tot["send_wait_s"], "exchange_seconds": tot["exchange_s"],
                             "bytes_sent_per_sample": tot["bytes_sent"] / max(1, tot["samples"])})
        return {"stages": self.stages, "replicas": plan["replicas"], "layers": stages,
                "teacher": plan["teacher_modes"], "warmup_batch": plan["batch"],
                "layer_seconds": dict(zip(plan["layers"], plan["student"])),
                "teacher_layer_seconds": dict(zip(plan["layers"], plan["teacher"])),
                "stage_seconds": plan["stage_seconds"], "seconds_per_byte": plan["seconds_per_byte"],
                "message_bytes_per_sample": [link.nbytes(plan["batch"]) / plan["batch"] for link in self.links],
                "per_rank": per_rank}
