"""Layer-pipelined offline LTL (``--pipeline-stages``, experimental) against one process and against data
parallelism: ``python benchmarks/pipelining.py [--stages 2] [--out benchmarks/results]``.

Every mode trains the same offline-LTL student (of a randomly initialised teacher: dense tensor work does
not depend on the values) on the same CIFAR-10-shaped synthetic data through the real training loop
(``train.fit``), each in a fresh process (or group of processes under torchrun, gloo on the CPU), for
``--epochs`` epochs of ``--batches`` global batches; the last epoch is timed (the first warms up), its
time includes the pipeline's fill and drain and the end-of-epoch exchange of the stages' weights.  The
modes run in turn ``--repeats`` times and each keeps its fastest run (the least disturbed by other work
on a shared machine); every run's samples/s and load average are recorded.

- ``single-1t``: 1 process x 1 thread; ``single-2t``: 1 process x 2 threads;
- ``pipeline``: ``--stages`` processes x 1 thread, one stage each;
- ``data-parallel``: ``--stages`` processes x 1 thread, data parallel at the same global batch;
- ``side-by-side``: ``--stages`` independent single-1t runs at the same time, which gives the machine's own
  ceiling for ``--stages`` busy cores (shared caches, memory bandwidth and clock): their summed samples/s
  over single-1t's.  A pipeline cannot beat it.

Reported: samples/s and the speed-ups (a) pipeline / single-1t, (b) pipeline / single-2t, (c) pipeline /
data-parallel; per stage its busy time (computing), its time waiting for the previous stage's message and
for its own sends, the bubble fraction (1 - busy / wall, averaged over stages) and the bytes it sends per
sample.

The cost model (``model``): from the per-layer times measured on a warm-up batch by the single-1t run (the
same measurement that balances the stages) and the message sizes of each partition, the throughput of S
stages on GPUs: a stage's period is its compute time (the CPU time divided by ``--gpu-speedup``, the
assumed speed of one GPU against one core of this CPU) plus, unless overlapped, the time to receive and
send its messages (bytes / bandwidth + a per-message latency), for NVLink- and PCIe-class links; speed-up
= total compute / slowest period, times the epoch's fill/drain factor N / (N + S - 1) for N batches.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

NAME = "pipeline"
HELP = "layer-pipelined LTL (S processes) vs 1 process (1 and 2 threads) and data parallelism; GPU cost model"
DESCRIPTION = __doc__
MODES = ("single-1t", "single-2t", "pipeline", "data-parallel", "side-by-side")
# link classes of the cost model: (name, bytes per second one way, seconds of latency per message)
LINKS = (("NVLink", 300e9, 10e-6), ("PCIe 4.0 x16", 25e9, 15e-6))
CIFAR_BATCHES = 782  # 50,000 images / 64: the N of the fill/drain factor


def add_arguments(p) -> None:
    p.add_argument("--arch", default="vgg11", help="teacher architecture")
    p.add_argument("--width", type=float, default=0.25, help="channel width multiplier")
    p.add_argument("--T", type=int, default=8, help="time window of the student")
    p.add_argument("--batch-size", type=int, default=64, help="global batch")
    p.add_argument("--batches", type=int, default=32, help="global batches per epoch")
    p.add_argument("--epochs", type=int, default=2, help="epochs per mode (the last one is timed)")
    p.add_argument("--stages", type=int, default=2, help="processes of the pipeline and data-parallel modes")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="what to run")
    p.add_argument("--model-stages", type=int, nargs="+", default=[2, 4, 8], help="stage counts of the cost model")
    p.add_argument("--model-replicas", type=int, nargs="+", default=[1, 2],
                   help="data-parallel replicas of each stage in the cost model (S x R GPUs)")
    p.add_argument("--gpu-speedup", type=float, nargs="+", default=[100.0, 1000.0],
                   help="cost model: one GPU's speed against one core of this CPU (compute time divided by it)")
    p.add_argument("--repeats", type=int, default=3, help="runs of every mode, in turn; the fastest is kept")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=int, default=3600, help="seconds allowed per mode")


# ---- the bench command: launch each mode, gather, model ------------------------------------------------

def _command(mode: str, args, result: Path) -> tuple[list, dict]:
    threads = 2 if mode == "single-2t" else 1
    import spiketandem
    src = str(Path(spiketandem.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    worker = [str(Path(__file__).resolve()), "--mode", mode, "--result", str(result), "--threads", str(threads),
              "--arch", args.arch, "--width", str(args.width), "--T", str(args.T), "--batch-size", str(args.batch_size),
              "--batches", str(args.batches), "--epochs", str(args.epochs), "--stages", str(args.stages),
              "--seed", str(args.seed), "--device", args.device, "--model-stages", *map(str, args.model_stages)]
    if mode in ("pipeline", "data-parallel"):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.stages}", "--master_addr",
               "127.0.0.1", "--master_port", str(port)] + worker
    else:
        cmd = [sys.executable] + worker + (["--no-model"] if mode == "side-by-side" else [])
    return cmd, env


def _launch(mode: str, args, result: Path) -> tuple[int, str, list]:
    """Run one mode (``side-by-side``: ``--stages`` single-1t workers at once); (exit code, output, results)."""
    copies = args.stages if mode == "side-by-side" else 1
    paths = [result.with_name(f"{result.stem}-{i}.json") for i in range(copies)]
    procs = []
    for path in paths:
        cmd, env = _command(mode, args, path)
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    code, output = 0, ""
    for proc in procs:
        out, _ = proc.communicate(timeout=args.timeout)
        code, output = code or proc.returncode, output + (out or "")
    results = [json.loads(p.read_text()) for p in paths if p.is_file()]
    return (code if len(results) == copies else code or 1), output, results


def run(args, log) -> dict:
    from spiketandem.errors import SpiketandemError
    runs: dict[str, list] = {mode: [] for mode in args.modes}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):  # the modes in turn, so that a change of the machine's load hits all
            for mode in args.modes:
                log(f"{mode} ({rep + 1}/{args.repeats}): {args.epochs} epochs of {args.batches} batches of "
                    f"{args.batch_size}")
                code, output, found = _launch(mode, args, Path(tmp) / f"{mode}-{rep}.json")
                if code != 0:
                    failed = Path(args.out) / f"{NAME}-{mode}-failed.log"
                    failed.parent.mkdir(parents=True, exist_ok=True)
                    failed.write_text(output)
                    raise SpiketandemError(f"bench pipeline: mode {mode} failed (exit {code}; its whole output is in "
                                           f"{failed}): {output[-2000:]}")
                runs[mode].append(found[0] if len(found) == 1 else {
                    "mode": mode, "processes": len(found), "threads_per_process": 1,
                    "samples_per_second": sum(r["samples_per_second"] for r in found),
                    "epoch_seconds": max(r["epoch_seconds"] for r in found),
                    "each_samples_per_second": [r["samples_per_second"] for r in found],
                    "load_average": found[0]["load_average"]})
                log(f"  {runs[mode][-1]['samples_per_second']:.1f} samples/s (epoch "
                    f"{runs[mode][-1]['epoch_seconds']:.2f} s; load {runs[mode][-1]['load_average']})")
    results = {}
    for mode, done in runs.items():  # the least disturbed run of each mode: the fastest
        best = max(done, key=lambda r: r["samples_per_second"])
        model = next((r["model"] for r in done if "model" in r), None)
        results[mode] = {**best, "every_run_samples_per_second": [r["samples_per_second"] for r in done],
                         **({"model": model} if model is not None else {})}
    speed = {m: r["samples_per_second"] for m, r in results.items()}
    ratios = {}
    if "pipeline" in speed:
        for key, other in (("a_vs_1_process_1_thread", "single-1t"), ("b_vs_1_process_2_threads", "single-2t"),
                           ("c_vs_data_parallel", "data-parallel")):
            if other in speed:
                ratios[key] = speed["pipeline"] / speed[other]
    if "side-by-side" in speed and "single-1t" in speed:
        ratios["machine_ceiling"] = speed["side-by-side"] / speed["single-1t"]
    for key, value in ratios.items():
        log(f"speed-up {key}: {value:.2f}x")
    model = cost_model(results["single-1t"]["model"], args) if "single-1t" in results else None
    if model:
        for row in model["rows"]:
            log(f"model {row['stages']} stages x {row['replicas']} = {row['gpus']} GPUs, {row['link']}, GPU x"
                f"{row['gpu_speedup']:g}: {row['speedup']:.2f}x ({row['speedup_over_gpus']:.2f} per GPU; overlapped "
                f"{row['speedup_overlapped']:.2f}x; layer balance bound {row['balance_bound']:.2f}x)")
    from spiketandem.bench import environment, load_average
    import torch
    return {"benchmark": NAME, "arch": args.arch, "width": args.width, "T": args.T, "batch_size": args.batch_size,
            "batches": args.batches, "epochs": args.epochs, "stages": args.stages, "repeats": args.repeats,
            "rows": [{"mode": m, **{k: v for k, v in r.items() if k != "model"}} for m, r in results.items()],
            "speedups": ratios, "model": model, "load_average": load_average(),
            "environment": environment(torch.device("cpu"))}


def cost_model(measured: dict, args) -> dict:
    """Modelled GPU throughput of S stages x R data-parallel replicas (S x R GPUs) against one GPU, from the
    per-layer CPU times and each partition's messages.  Each stage gets its teacher activations the cheaper
    way (relayed with the spikes, or its teacher prefix recomputed), as the real run chooses.  A replica
    computes 1/R of every batch (compute assumed linear in the batch) and sends 1/R of the messages; the R
    replicas of a stage all-reduce its gradients once per batch (ring: 2 (R-1)/R of its parameter bytes)."""
    rows = []
    total = sum(measured["layer_cost"])
    B = measured["batch"]
    for part in measured["partitions"]:
        S = part["stages"]
        for R in getattr(args, "model_replicas", [1]):
            for link_name, bandwidth, latency in LINKS:
                for gpu in args.gpu_speedup:
                    compute = [c / gpu / R for c in part["stage_cost"]]
                    message = list(part["spike_bytes"])
                    routes = ["first"]
                    for k in range(1, S):
                        relay = part["teacher_bytes"][k - 1] / R / bandwidth
                        recompute = part["teacher_prefix"][k] / gpu / R
                        if relay <= recompute:
                            message[k - 1] += part["teacher_bytes"][k - 1]
                            routes.append("relay")
                        else:
                            compute[k] += recompute
                            routes.append("recompute")
                    comm = [b / R / bandwidth + latency for b in message]  # per batch and replica, boundary b
                    reduce = [2 * (R - 1) / R * b / bandwidth + 2 * (R - 1) * latency if R > 1 else 0.0
                              for b in part.get("stage_param_bytes", [0] * S)]
                    inbound, outbound = [0.0] + comm, comm + [0.0]
                    period = max(c + i + o + r for c, i, o, r in zip(compute, inbound, outbound, reduce))
                    overlapped = max(max(c + r for c, r in zip(compute, reduce)), max(comm, default=0.0))
                    fill = CIFAR_BATCHES / (CIFAR_BATCHES + S - 1)
                    one = total / gpu
                    rows.append({"stages": S, "replicas": R, "gpus": S * R, "link": link_name, "gpu_speedup": gpu,
                                 "speedup": one / period * fill, "speedup_overlapped": one / overlapped * fill,
                                 "speedup_over_gpus": one / period * fill / (S * R),
                                 "balance_bound": R * total / max(part["stage_cost"]),
                                 "largest_layer_share": max(measured["layer_cost"]) / total,
                                 "stage_share": [c / total for c in part["stage_cost"]], "teacher": routes,
                                 "message_bytes_per_sample": [b / B for b in message],
                                 "comm_over_compute": max(comm, default=0.0) / max(compute)})
    return {"assumptions": {"links": [{"name": n, "bytes_per_second": b, "latency_s": lat} for n, b, lat in LINKS],
                            "gpu_speedup": args.gpu_speedup, "batches_per_epoch": CIFAR_BATCHES,
                            "compute": "per-layer times of this CPU (1 thread, warm-up batch) divided by gpu_speedup, "
                                       "the same factor for every layer, and by R (linear in the batch); a stage's "
                                       "messages and all-reduce are outside its compute (speedup) or its messages "
                                       "fully overlapped with it (speedup_overlapped)"},
            "layer_cost_seconds": dict(zip(measured["layers"], measured["layer_cost"])), "batch": B, "rows": rows}



# ---- one mode, in its own process(es) -----------------------------------------------------------------------

def _synthetic(args, n_train: int, n_test: int):
    import torch
    from spiketandem.data.arrays import ArrayDataset
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randint(0, 256, (n_train + n_test, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    return ArrayDataset("cifar10-synthetic", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                        [str(i) for i in range(10)], (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), augment=True)


def _partitions(rule, measured: dict, stage_counts) -> list[dict]:
    """For each S: the balanced partition's stage costs, each boundary's bytes per batch of spikes (bits +
    amplitudes) and of the teacher's activations (float32, if relayed), and each stage's teacher prefix
    (the seconds to recompute the teacher up to its first layer)."""
    from spiketandem.pipelining.graph import cut_student, cut_teacher
    from spiketandem.pipelining.messages import Link, Slot
    from spiketandem.pipelining.plan import balance
    cost = [s + t for s, t in zip(measured["student"], measured["teacher"])]
    names, B, T = measured["layers"], measured["batch"], rule.cfg.T
    gm = rule.model.graph_module
    out = []
    for S in stage_counts:
        if S > len(names):
            continue
        stage_of = balance(cost, S)
        scut = cut_student(rule.model, dict(zip(names, stage_of)), S)
        tcut = cut_teacher(rule.taps, dict(zip(names, stage_of)), S)
        spikes, teacher = [], []
        for b in range(S - 1):
            slots = []
            for name in scut.crossing[b]:
                node, shape = scut.nodes[name], measured["shapes"][name]
                neuron = node.op == "call_module" and node.target.startswith("neurons.")
                slots.append(Slot(name, "spikes" if neuron else "tensor", T if neuron else shape[0] // B,
                                  tuple(shape[1:]), "student", gm.get_submodule(node.target).name if neuron else ""))
            spikes.append(Link(slots).nbytes(B))
            teacher.append(sum(Slot(n, "tensor", 1, tuple(measured["teacher_shapes"][n][1:]), "teacher").nbytes(B)
                               for n in tcut.crossing[b]))
        params = [sum(4 * p.numel() for p in rule.model.layer_parameters(n)) for n in names]
        params[-1] += sum(4 * p.numel() for p in rule.model.readout_parameters())
        out.append({"stages": S, "stage_of": stage_of, "spike_bytes": spikes, "teacher_bytes": teacher,
                    "stage_param_bytes": [sum(b for b, st in zip(params, stage_of) if st == k) for k in range(S)],
                    "teacher_prefix": [sum(t for t, st in zip(measured["teacher"], stage_of) if st < k)
                                       for k in range(S)],
                    "stage_cost": [sum(c for c, st in zip(cost, stage_of) if st == k) for k in range(S)]})
    return out


def worker(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="benchmarks/pipelining.py")
    add_arguments(p)
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-model", action="store_true", help="skip the cost model's measurement")
    args = p.parse_args(argv)

    import torch
    from spiketandem import distributed, pipelining
    from spiketandem.config import make_config
    from spiketandem.data.feeding import calibration_images, training_batches
    from spiketandem.models import build_model
    from spiketandem.rules.base import DataInfo
    from spiketandem.rules.ltl_offline import LTLOffline
    from spiketandem.runs import atomic_text
    from spiketandem.train import fit, resolve_device, seed_everything, training_context
    from spiketandem.bench import load_average
    torch.set_num_threads(args.threads)
    device = distributed.setup(resolve_device(args.device))
    seed_everything(args.seed)
    n_train = args.batch_size * args.batches
    data = _synthetic(args, n_train, 64)
    info = DataInfo(10, 3, 32)
    teacher = build_model(args.arch, 10, 3, 32, args.width).to(device).eval()
    stages = args.stages if args.mode == "pipeline" else 1
    cfg = make_config({"rule": "ltl-offline", "dataset": "cifar10", "arch": args.arch, "width": args.width, "T": args.T,
                       "eval_T": [args.T], "batch_size": args.batch_size, "epochs": args.epochs, "progress": False,
                       "seed": args.seed, "lr_schedule": "constant", "pipeline_stages": stages, "device": args.device})
    rule = LTLOffline(cfg, info, teacher, calibration_images(data, device))
    rule.model.to(device)
    trained = pipelining.wrap(rule, cfg)
    rows = fit(trained, cfg, data, device, log=lambda *a, **k: None).rows
    result = {"mode": args.mode, "processes": distributed.world_size(), "threads_per_process": args.threads,
              "epoch_seconds": rows[-1]["epoch_seconds"], "samples_per_second": n_train / rows[-1]["epoch_seconds"],
              "every_epoch_seconds": [r["epoch_seconds"] for r in rows], "load_average": load_average()}
    if trained is not rule:
        report = trained.report()
        wall = rows[-1]["epoch_seconds"]
        result["pipeline"] = report
        result["stages"] = [{"stage": r["stage"], "rank": r["rank"], "busy_seconds": r["epoch"]["busy_s"],
                             "recv_wait_seconds": r["epoch"]["recv_wait_s"], "send_wait_seconds": r["epoch"]["send_wait_s"],
                             "exchange_seconds": r["epoch"]["exchange_s"],
                             "busy_fraction": r["epoch"]["busy_s"] / wall,
                             "bytes_sent_per_sample": r["epoch"]["bytes_sent"] / max(1, r["epoch"]["samples"])}
                            for r in trained.rank_stats]
        result["bubble_fraction"] = rows[-1].get("pipeline_bubble")
    if args.mode == "single-1t" and not args.no_model:  # the cost model's inputs: per-layer times and each partition's messages
        from spiketandem.pipelining.plan import measure_layers
        batches = training_batches(data, cfg, device)
        x, y = next(iter(batches))
        measured = measure_layers(rule, x, y, training_context(rule, cfg, device))
        result["model"] = {"layers": measured["layers"], "batch": measured["batch"],
                           "layer_cost": [s + t for s, t in zip(measured["student"], measured["teacher"])],
                           "student_seconds": measured["student"], "teacher_seconds": measured["teacher"],
                           "partitions": _partitions(rule, measured, args.model_stages)}
    if distributed.is_main():
        atomic_text(json.dumps(result, indent=1) + "\n", Path(args.result))
    distributed.barrier()  # leave together: no rank tears down the process group under another's feet
    return 0


if __name__ == "__main__":  # a worker of one mode (--mode), or the benchmark itself
    from spiketandem.bench import script_main
    sys.exit(worker() if "--mode" in sys.argv else script_main(sys.modules[__name__]))
