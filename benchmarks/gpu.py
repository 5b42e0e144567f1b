"""The GPU section: training against neuraloperator's Trainer with bf16 and compile, compiled
against eager steps, batched against looped ensembles, and DDP, on one CUDA device.

Run on a machine with a GPU (CI has none; nothing here runs in the test suite):

    python -m benchmarks.gpu                      # results/gpu.json and the README "GPU" section
    python -m benchmarks.gpu --report             # rebuild the README section from the JSON

Parts (each written to the JSON as it finishes, so a part that fails leaves the others):

- peers: the FNO of ``benchmarks/peers.py`` (width 24, 12 modes, 4 layers) on the cavity default
  sweep, batch ``--batch`` (64), AdamW lr 1e-3, ``--steps`` timed steps after ``--warmup`` (which
  also absorb compilation), median of ``--trials`` alternating trials. Ways: neuraloperator's
  ``Trainer`` in float32 and with its ``mixed_precision`` (float16 autocast), the plain loop in
  float32, and sciflow fit (Lightning) in float32, bf16-mixed, and bf16-mixed with the operator
  compiled (``default`` mode, and ``reduce-overhead``, which replays CUDA graphs). The batches are read once and kept on the GPU, the same list for every way, so the
  HDF5 reader does not set the pace. Samples per second (wall, synchronised), peak GPU memory, and
  the one-step test NMSE each way reaches.
- compile: :func:`benchmarks.compile.measure` on the GPU (training in float32 and bf16, rollout
  steps), eager against compiled.
- ensembles: :func:`benchmarks.ensemble_batch.measure` on the GPU (5-member cavity FNO, batch 8).
- overhead: where an eager FNO training step's time goes on the GPU (``torch.profiler``: host
  seconds, GPU kernel seconds and kernel launches per step), the step at 4x the batch, and the
  step compiled with ``reduce-overhead`` (CUDA graphs) against eager.
- ensemble_profile: one step of the 5-member ensemble looped and vmapped: time, host against
  kernel time, and each replayed as a CUDA graph.
- ensemble_rollout: ``sciflow.rollout.rollout`` of that ensemble eager looped, eager batched and
  compiled with ``reduce-overhead`` (looped through CUDA graphs), seconds per step.
- channels_last: U-Net training steps (bf16) with NCHW against channels-last (NHWC) weights.
- ddp: ``sciflow fit`` with ``strategy ddp`` (NCCL) on the device(s) there are.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from functools import partial
from itertools import cycle, islice
from typing import Any

import lightning as L
import torch

from benchmarks._report import HERE, markdown_table, save_json, update_readme
from benchmarks._timing import timed
from benchmarks.peers import (
    FNO,
    LR,
    _Clock,
    _LightningClock,
    _Network,
    _Steps,
    _Windows,
    plain_loop,
)
from sciflow.surrogate import Surrogate

RESULT = "gpu"


def _load() -> dict[str, Any]:
    path = HERE / "results" / f"{RESULT}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save(part: str, value: Any) -> None:
    payload = {k: v for k, v in _load().items() if k != "machine"}
    payload[part] = value
    save_json(RESULT, payload)


def _on(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def preload(dm, n: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """``n`` training batches, read once and moved to ``device`` (cycled through by every way)."""
    return [_on(b, device) for b in islice(cycle(dm.train_dataloader()), n)]


def _model(dm, seed: int, device: torch.device):
    torch.manual_seed(seed)
    return Surrogate(FNO, lr=LR, data_spec=dm.spec).to(device)


def way_sciflow(dm, batches, steps, warmup, seed, device, precision="32-true", compile=None):
    from sciflow.compile import compile_model

    model = _model(dm, seed, device)
    compile_model(model, compile)
    clock = _Clock()
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    trainer = L.Trainer(max_steps=warmup + steps, accelerator=accelerator, devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[_LightningClock(clock, warmup, warmup + steps)])
    trainer.fit(model, train_dataloaders=_Steps(batches, warmup + steps))
    model.to(device)  # Lightning's single-device teardown moves the module back to the CPU
    return clock, model, model.inference_stepper


def way_plain(dm, batches, steps, warmup, seed, device):
    model = _model(dm, seed, device)
    return plain_loop(model, batches, steps, warmup), model, model.stepper


def way_trainer(dm, batches, steps, warmup, seed, device, mixed_precision=False):
    from neuralop.losses import LpLoss
    from neuralop.training import Trainer

    model = _model(dm, seed, device)
    clock = _Clock()
    net = _Network(model)
    trainer = Trainer(model=net, n_epochs=1, device=str(device), mixed_precision=mixed_precision,
                      data_processor=_Windows(model, clock, warmup), eval_interval=1, verbose=False)
    opt = torch.optim.AdamW(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    trainer.train(train_loader=_Steps(batches, warmup + steps), test_loaders={}, optimizer=opt, scheduler=sched,
                  training_loss=LpLoss(d=2, p=2), eval_losses={})
    clock.stop()
    return clock, model, model.stepper


def test_nmse(test_batches, model, stepper) -> float:
    """Mean one-step field NMSE of ``model`` over the preloaded test batches."""
    values = []
    with torch.no_grad():
        for b in test_batches:
            prev = model.normalize(b["input"], b["mask"])
            pred = model.denormalize(stepper.step(prev, model.normalize_params(b["params"]), b["mask"]), b["mask"])
            values.append(model.field_nmse(pred, b["target"][:, 0], b["mask"]).mean())
    return float(torch.stack(values).mean())


def peers(args, device: torch.device) -> dict[str, Any]:
    from sciflow.data.card import load_card
    from sciflow.data.datamodule import SciflowData
    from sciflow.solvers.sweep import generate

    generate(load_card("cavity"), workers=min(16, os.cpu_count() or 1))
    dm = SciflowData("cavity", batch_size=args.batch)
    dm.setup("fit")
    dm.setup("test")
    batches = preload(dm, 32, device)
    test_batches = [_on(b, device) for b in dm.test_dataloader()[0]]  # every way is scored on the same tensors
    ways = {
        "neuralop Trainer, fp32": way_trainer,
        "neuralop Trainer, mixed (fp16 autocast)": partial(way_trainer, mixed_precision=True),
        "plain loop, fp32": way_plain,
        "sciflow fit, fp32": way_sciflow,
        "sciflow fit, bf16-mixed": partial(way_sciflow, precision="bf16-mixed"),
        "sciflow fit, bf16-mixed + compile": partial(way_sciflow, precision="bf16-mixed", compile="default"),
        "sciflow fit, bf16-mixed + compile (reduce-overhead)": partial(way_sciflow, precision="bf16-mixed",
                                                                       compile="reduce-overhead"),
    }
    out = {w: {"samples_per_s": [], "peak_mib": [], "test_nmse": []} for w in ways}
    names = list(ways)
    for trial in range(args.trials):
        for w in (names if trial % 2 == 0 else names[::-1]):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            t = time.perf_counter()
            clock, model, stepper = ways[w](dm, batches, args.steps, args.warmup, trial, device)
            r = out[w]
            r["samples_per_s"].append(args.steps * args.batch / clock.wall)
            r["peak_mib"].append(torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0)
            r["test_nmse"].append(test_nmse(test_batches, model, stepper))
            print(f"trial {trial} {w}: {r['samples_per_s'][-1]:.0f} samples/s, {r['peak_mib'][-1]:.0f} MiB, "
                  f"NMSE {r['test_nmse'][-1]:.4f} ({time.perf_counter() - t:.0f} s with warm-up)", flush=True)
    base = "neuralop Trainer, fp32"
    for r in out.values():
        r["samples_per_s_median"] = statistics.median(r["samples_per_s"])
        r["vs_trainer_fp32"] = statistics.median(a / b for a, b in zip(r["samples_per_s"], out[base]["samples_per_s"]))
        r["test_nmse_median"] = statistics.median(r["test_nmse"])
    return {"settings": {"batch": args.batch, "steps": args.steps, "warmup": args.warmup, "trials": args.trials},
            "results": out}


def compile_part(device: torch.device) -> dict[str, Any]:
    from benchmarks._train import grid_spec
    from benchmarks.compile import MODELS, measure

    spec = grid_spec()
    op = MODELS["cavity FNO (width 40)"]
    return {p: measure(op, spec, device, train_batch=64, rollout_batch=8, train_steps_n=50, rollout_steps_n=50,
                       trials=3, precision=p, parts=parts)
            for p, parts in (("32", ("train", "rollout")), ("bf16", ("train",)))}


def overhead(device: torch.device, steps: int = 10) -> dict[str, Any]:
    """Host against GPU time of eager FNO training steps (peers' FNO, batch 64, fp32), the step at
    batch 256, and ``reduce-overhead`` (CUDA graphs) against eager. A step whose host time exceeds
    its kernel time is bound by launching kernels, not by the GPU: CUDA graphs are the cure."""
    from benchmarks._train import grid_spec
    from benchmarks.compile import inputs, measure, train_steps

    spec = grid_spec()
    torch.manual_seed(0)
    model = Surrogate(FNO, data_spec=spec).to(device)
    run = train_steps(model, inputs(spec, 64, device), steps)
    run(), run()
    out: dict[str, Any] = {"batch": 64, "step_s": timed(run, device)[0] / steps}
    totals = _profile_totals(run, device)
    out["host_s_per_step"] = totals["host_ms"] / 1e3 / steps
    out["kernel_s_per_step"] = totals["kernel_ms"] / 1e3 / steps
    out["launches_per_step"] = totals["launches"] / steps
    big = train_steps(model, inputs(spec, 256, device), 5)
    big()
    out["step_s_batch_256"] = timed(big, device)[0] / 5
    graphs = measure(FNO, spec, device, mode="reduce-overhead", train_batch=64, train_steps_n=30, trials=3,
                     parts=("train",))
    out["reduce_overhead"] = {k: v for k, v in graphs.items() if k.startswith("train_") and not k.endswith("trials")}
    return out


def _profile_totals(fn, device: torch.device) -> dict[str, float]:
    """Host ms, GPU kernel ms and kernel launches of one call of ``fn`` under ``torch.profiler``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize(device)
    events = prof.key_averages()
    return {"host_ms": sum(e.self_cpu_time_total for e in events) / 1e3,
            "kernel_ms": sum(e.self_device_time_total for e in events
                             if e.device_type.name == "CUDA" and not e.is_user_annotation) / 1e3,
            "launches": sum(e.count for e in events if "LaunchKernel" in e.key)}


def _graphed(fn, device: torch.device):
    """``fn`` captured once as a CUDA graph (after warm-up calls on a side stream): replaying it
    reruns the same kernels on the same buffers with no host work per kernel."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def ensemble_profile(device: torch.device, n: int = 20) -> dict[str, Any]:
    """Why batching members helps little on a GPU: one step of the 5-member cavity FNO ensemble
    (batch 8) looped and vmapped, each timed, profiled (host against kernel time) and replayed as a
    CUDA graph."""
    from benchmarks.ensemble_batch import CASES, ensemble
    from sciflow.ensemble_batch import BatchedMembers

    models, history, params, mask = ensemble(*CASES["cavity FNO, batch 8"], 5, device)
    stacked = BatchedMembers(models)

    def looped():
        with torch.no_grad():
            return torch.stack([m.predict_next(history[k], params, mask) for k, m in enumerate(models)])

    def batched():
        return stacked(history, params, mask)

    reference = looped()
    out: dict[str, Any] = {}
    for name, fn in (("looped", looped), ("batched", batched)):
        fn()
        out[name] = {"ms": timed(lambda f=fn: [f() for _ in range(n)], device)[0] / n * 1e3,
                     **_profile_totals(fn, device)}
        graph, result = _graphed(fn, device)
        out[name]["graph_ms"] = timed(lambda g=graph: [g.replay() for _ in range(n)], device)[0] / n * 1e3
        out[name]["graph_max_abs_difference"] = float((result - reference).abs().max())
    return out


def ensemble_rollout(device: torch.device, steps: int = 40, trials: int = 3) -> dict[str, Any]:
    """The product's ensemble paths end to end: :func:`sciflow.rollout.rollout` of the 5-member
    cavity FNO ensemble (batch 8) eager looped, eager batched (the GPU default) and looped with the
    operators compiled in ``reduce-overhead`` mode (CUDA graphs); seconds per step, median of
    ``trials`` alternating trials after a warm-up rollout (which absorbs the compilation)."""
    from benchmarks.ensemble_batch import CASES, ensemble
    from sciflow.compile import compile_model
    from sciflow.rollout import rollout

    case = CASES["cavity FNO, batch 8"]
    eager, history, params, mask = ensemble(*case, 5, device)
    graphed = [compile_model(m, "reduce-overhead") for m in ensemble(*case, 5, device)[0]]
    initial, batch = history[0], history.shape[1]
    ways = {"eager, looped": (eager, False), "eager, batched": (eager, True),
            "reduce-overhead, looped": (graphed, None)}
    last = {}

    def run(name: str):
        models, batch_models = ways[name]
        for step in rollout(models, initial, params, steps, mask=mask, batch_models=batch_models):
            last[name] = step.members

    for name in ways:
        run(name)  # warm-up (compilation, cuDNN's choices)
    times: dict[str, list[float]] = {k: [] for k in ways}
    for t in range(trials):
        for name in (list(ways) if t % 2 == 0 else list(ways)[::-1]):
            times[name].append(timed(lambda n=name: run(n), device)[0] / steps)
    out: dict[str, Any] = {k: {"s_per_step": statistics.median(v), "trials": v} for k, v in times.items()}
    base = out["eager, looped"]["s_per_step"]
    for name, r in out.items():
        r["vs_eager_looped"] = base / r["s_per_step"]
        r[f"max_abs_difference_after_{steps}_steps"] = float((last[name] - last["eager, looped"]).abs().max())
    return {"steps": steps, "batch": batch, "members": 5, "results": out}


def channels_last(device: torch.device, steps: int = 50, trials: int = 3) -> dict[str, Any]:
    """U-Net training steps (bf16 autocast, batch 64, 64x64) with the weights in the default
    (contiguous, NCHW) layout against channels-last (NHWC), alternating trials. The FNO is left out:
    its spectral layers work on FFTs, where the layout does not change the kernels."""
    from benchmarks._train import grid_spec
    from benchmarks.compile import inputs, train_steps
    from benchmarks.peers import UNET

    spec = grid_spec()
    torch.manual_seed(0)
    plain = Surrogate(UNET, data_spec=spec).to(device)
    nhwc = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    batch = inputs(spec, 64, device)
    runs = {"contiguous": train_steps(plain, batch, steps, precision="bf16"),
            "channels_last": train_steps(nhwc, batch, steps, precision="bf16")}
    for run in runs.values():
        run()  # warm-up: cuDNN picks its kernels here
    times: dict[str, list[float]] = {k: [] for k in runs}
    for t in range(trials):
        for name in (list(runs) if t % 2 == 0 else list(runs)[::-1]):
            times[name].append(timed(runs[name], device)[0] / steps)
    out = {f"{k}_s": statistics.median(v) for k, v in times.items()}
    out["speedup"] = out["contiguous_s"] / out["channels_last_s"]
    out["operator"], out["batch"], out["steps"], out["trials"] = UNET, 64, steps, trials
    return out


def ensembles(device: torch.device) -> dict[str, Any]:
    from benchmarks.ensemble_batch import CASES, measure

    operator, size, batch = CASES["cavity FNO, batch 8"]
    return {"cavity FNO, batch 8": measure(operator, size, batch, 5, 15, device=str(device))}


def ddp(device: torch.device) -> dict[str, Any]:
    n = torch.cuda.device_count()
    cmd = [sys.executable, "-m", "sciflow.cli", "fit", "--config", "configs/cavity_fno.yaml",
           "--trainer.accelerator", "gpu" if device.type == "cuda" else "cpu", "--trainer.devices", str(max(n, 1)),
           "--trainer.strategy", "ddp",
           "--trainer.max_steps", "60", "--trainer.enable_progress_bar", "false",
           "--checkpoint.every_n_train_steps", "30",
           "--checkpoint.dirpath", "runs/gpu_ddp/checkpoints", "--trainer.logger", "false",
           "--trainer.default_root_dir", "runs/gpu_ddp"]
    shutil.rmtree("runs/gpu_ddp", ignore_errors=True)  # a fresh run each time (fit refuses to overwrite one)
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    ok = res.returncode == 0 and os.path.isfile("runs/gpu_ddp/checkpoints/last.ckpt")
    return {"devices": n, "returncode": res.returncode, "ok": ok, "seconds": time.perf_counter() - t,
            "tail": (res.stdout + res.stderr)[-1500:]}


def report(payload: dict[str, Any]) -> None:
    if not payload:
        return
    lines = ["## GPU (`benchmarks/gpu.py`)", ""]
    gpu = payload.get("machine", {}).get("cuda")
    lines.append(f"Measured on one {gpu} (torch {payload.get('machine', {}).get('torch')}); the parts come from two runs of the same code (`runs` in the JSON says which). CI has no GPU.")
    if "peers" in payload:
        p, s = payload["peers"]["results"], payload["peers"]["settings"]
        rows = [[w, f"{r['samples_per_s_median']:.0f}", f"{r['vs_trainer_fp32']:.2f}x",
                 f"{statistics.median(r['peak_mib']):.0f}", f"{r['test_nmse_median']:.4f}"] for w, r in p.items()]
        default = p["sciflow fit, bf16-mixed + compile"]["vs_trainer_fp32"]
        gap = s["batch"] * 1e3 * (1 / p["sciflow fit, fp32"]["samples_per_s_median"]
                                  - 1 / p["plain loop, fp32"]["samples_per_s_median"])
        graphs = p.get("sciflow fit, bf16-mixed + compile (reduce-overhead)", {}).get("vs_trainer_fp32", 0.0)
        fp16 = p.get("neuralop Trainer, mixed (fp16 autocast)", {}).get("test_nmse", [])
        lines += ["", f"### Training against neuraloperator's Trainer (FNO width 24, cavity, batch {s['batch']}, "
                      f"{s['steps']} timed steps after {s['warmup']}, median of {s['trials']} alternating trials)", "",
                  "`python -m benchmarks.gpu --parts peers`. The ratio column is the median of the per-trial "
                  "ratios; the trials spread by about 15 % (see the JSON).", "",
                  markdown_table(["way", "samples/s", "vs Trainer fp32", "peak GPU MiB", "test NMSE"], rows), "",
                  f"Target: sciflow with bf16 + compile >= 1.5x neuraloperator's Trainer: "
                  f"**{'met' if max(default, graphs) >= 1.5 else 'missed'}** with `--compile reduce-overhead` "
                  f"({graphs:.2f}x); with the default compile mode {default:.2f}x.", "",
                  "- This FNO's step is bound by the host, not the GPU (see *Where the time goes* below): bf16 "
                  "autocast adds cast kernels and is slower than fp32 eager, and the default compile mode only "
                  "fuses kernels. `reduce-overhead` replays the step as CUDA graphs, which removes the launches; "
                  "that is the mode to use on a GPU for models of this size.",
                  ] + ([
                      "- The sciflow rows of this run were timed with a callback that waited for the GPU after "
                      "every step (fixed since). neuraloperator's Trainer waits at every step too (its "
                      "`loss.item()`); the plain loop never does. Waiting keeps the host from queueing the next "
                      "step while the GPU works, so the sciflow rows are lower bounds, and the fp32 gap to the "
                      f"plain loop ({gap:.1f} ms per step) is at least partly the benchmark's. Re-measure with "
                      "`python -m benchmarks.gpu --parts peers`."]
                      if payload["peers"].get("sciflow_synced_every_step") else [
                      f"- sciflow fit in fp32 takes {gap:+.1f} ms per step against the plain loop, for the same "
                      "model, stepper and batches: host work around the model (Lightning's loop and hooks, the "
                      "loss check, logging), which a host-bound step shows and a compute-bound CPU step hides."]
                  ) + ([f"- The Trainer's `mixed_precision` autocasts to float16 and has no gradient scaler; its "
                        f"test NMSE was {'NaN' if all(v != v for v in fp16) else 'finite'} in "
                        f"{sum(v != v for v in fp16)} of {len(fp16)} trials."] if fp16 else [])
    if "overhead" in payload:
        o = payload["overhead"]
        ro = o["reduce_overhead"]
        lines += ["", "### Where the time goes (eager FNO training step, width 24, batch 64, fp32)", "",
                  markdown_table(["what", "value"], [
                      ["step, wall ms", f"{o['step_s'] * 1e3:.1f}"],
                      ["host ms per step (under the profiler)", f"{o['host_s_per_step'] * 1e3:.1f}"],
                      ["GPU kernel ms per step", f"{o['kernel_s_per_step'] * 1e3:.1f}"],
                      ["kernel launches per step", f"{o['launches_per_step']:.0f}"],
                      ["step at batch 256 (4x the work), wall ms", f"{o['step_s_batch_256'] * 1e3:.1f}"],
                      ["training step eager / `reduce-overhead`, ms",
                       f"{ro['train_eager_s'] * 1e3:.1f} / {ro['train_compiled_s'] * 1e3:.2f} "
                       f"({ro['train_speedup']:.2f}x)"],
                  ]), "",
                  "The GPU is busy for about half of each step; the rest is the host launching some 400 small "
                  "kernels. Four times the batch costs less than twice the time. "
                  + (f"Recorded from {o['recorded_from']}." if "recorded_from" in o else "")]
    if "compile" in payload:
        rows = []
        for prec, r in payload["compile"].items():
            for part in ("train", "rollout"):
                if part == "rollout" and prec != "32":
                    continue
                what = (f"training step, batch {r['train_batch']}, {'bf16 autocast' if prec == 'bf16' else 'fp32'}"
                        if part == "train" else f"rollout step, batch {r['rollout_batch']}, fp32")
                rows.append([what, f"{r[f'{part}_eager_s'] * 1e3:.2f}", f"{r[f'{part}_compiled_s'] * 1e3:.2f}",
                             f"{r[f'{part}_speedup']:.2f}x", f"{r[f'{part}_compiled_first_call_s']:.0f}"])
        agree = payload["compile"]["32"]["agreement"]
        lines += ["", "### Compiled against eager (cavity FNO, width 40, 64x64)", "",
                  markdown_table(["what", "eager ms", "compiled ms", "speed-up", "compilation s"], rows), "",
                  f"Compiled vs eager outputs (fp32, relative): one step {agree['one_step']:.1e}, 20-step rollout "
                  f"{agree['rollout_20']:.1e}."]
    if "ensembles" in payload:
        r = payload["ensembles"]["cavity FNO, batch 8"]
        lines += ["", "### Batched ensembles (5-member cavity FNO, one step of a batch of 8)", "",
                  markdown_table(["looped ms", "batched ms", "speed-up", "largest difference"],
                                 [[f"{r['looped_s'] * 1e3:.2f}", f"{r['batched_s'] * 1e3:.2f}",
                                   f"{r['speedup']:.2f}x", f"{r['max_abs_difference']:.1e}"]]), "",
                  f"Target >= 4x on a GPU: **{'met' if r['speedup'] >= 4 else 'missed'}** ({r['speedup']:.2f}x)."]
    if "ensemble_profile" in payload:
        e = payload["ensemble_profile"]
        rows = [[w, f"{r['ms']:.1f}", f"{r['host_ms']:.1f}", f"{r['kernel_ms']:.1f}", f"{r['launches']:.0f}",
                 f"{r['graph_ms']:.2f}"] for w, r in e.items() if isinstance(r, dict)]
        lines += ["", "### Why batching members gains little on a GPU (one step, 5-member cavity FNO, batch 8)", "",
                  markdown_table(["way", "ms", "host ms (profiled)", "kernel ms", "launches", "as a CUDA graph, ms"],
                                 rows), "",
                  "- Looped, the step is bound by the host: about 4 ms of kernels take over 30 ms to launch. "
                  "Replayed as a CUDA graph, the same loop runs at the kernels' pace "
                  f"({e['looped']['ms'] / e['looped']['graph_ms']:.1f}x the eager loop, identical outputs).",
                  "- Vmapped, the host work halves but the kernels grow: vmap turns each member's 1x1 "
                  "convolutions into one grouped convolution: in `results/gpu_ensemble_profile.log` these take "
                  "84 % of the kernel time, most of it cuDNN's layout transposes. A CUDA graph cannot help a "
                  "step bound by its kernels.",
                  "- The figures come from a different run than the *Batched ensembles* table above (a different "
                  "machine of the same kind; this step also stacks the members), so compare within a table.",
                  "- So on a GPU the fast ensemble step is the loop without launch overhead: "
                  "`sciflow rollout --compile reduce-overhead` steps each member through CUDA graphs (compiled "
                  "operators are never vmapped, since a vmapped call would run them eager). That path's rollout "
                  "speed is not yet measured on a GPU."]
        if "recorded_from" in e:
            lines.append(f"\nRecorded from {e['recorded_from']}.")
    if "ensemble_rollout" in payload:
        e = payload["ensemble_rollout"]
        key = "max_abs_difference_after_{}_steps".format(e["steps"])
        rows = [[w, f"{r['s_per_step'] * 1e3:.2f}", f"{r['vs_eager_looped']:.2f}x", f"{r[key]:.1e}"]
                for w, r in e["results"].items()]
        graphs = e["results"]["reduce-overhead, looped"]["vs_eager_looped"]
        lines += ["", f"### Ensemble rollouts ({e['members']}-member cavity FNO, batch {e['batch']}, {e['steps']} steps "
                      "of `sciflow.rollout.rollout`)", "",
                  markdown_table(["way", "ms per step", "vs eager looped", "largest difference"], rows), "",
                  f"Target >= 4x on a GPU with the fastest product path: "
                  f"**{'met' if graphs >= 4 else 'missed'}** ({graphs:.2f}x with `--compile reduce-overhead`)."]
    if "channels_last" in payload:
        r = payload["channels_last"]
        lines += ["", f"### Channels-last (U-Net training step, bf16 autocast, batch {r['batch']}, 64x64)", "",
                  markdown_table(["contiguous ms", "channels-last ms", "speed-up"],
                                 [[f"{r['contiguous_s'] * 1e3:.2f}", f"{r['channels_last_s'] * 1e3:.2f}",
                                   f"{r['speedup']:.2f}x"]])]
    if "ddp" in payload:
        d = payload["ddp"]
        lines += ["", f"### DDP: `sciflow fit --trainer.strategy ddp` on {d['devices']} GPU(s) (NCCL), 60 steps of "
                      f"`configs/cavity_fno.yaml`: {'ran, checkpoint written' if d['ok'] else 'failed'} "
                      f"({d['seconds']:.0f} s with start-up)."]
    update_readme("gpu", "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["peers", "ensembles", "compile", "overhead", "ensemble_profile",
                                                    "ensemble_rollout", "channels_last", "ddp"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--device", default="cuda", help="cuda (cpu only to try the script: results/gpu_cpu_trial.json)")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.report:
        report(_load())
        return
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu: no CUDA device here")
    if device.type != "cuda":
        global RESULT
        RESULT = "gpu_cpu_trial"
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 in the table
    torch.backends.cudnn.allow_tf32 = False
    for part, fn in (("peers", lambda: peers(args, device)), ("ensembles", lambda: ensembles(device)),
                     ("compile", lambda: compile_part(device)), ("overhead", lambda: overhead(device)),
                     ("ensemble_profile", lambda: ensemble_profile(device)),
                     ("ensemble_rollout", lambda: ensemble_rollout(device)),
                     ("channels_last", lambda: channels_last(device)),
                     ("ddp", lambda: ddp(device))):
        if part not in args.parts:
            continue
        t = time.perf_counter()
        try:
            _save(part, fn())
            print(f"{part}: done in {time.perf_counter() - t:.0f} s", flush=True)
        except Exception as err:  # noqa: BLE001 - one part failing must not lose the others
            print(f"{part}: FAILED after {time.perf_counter() - t:.0f} s: {type(err).__name__}: {err}", flush=True)
            import traceback

            traceback.print_exc()
    if device.type == "cuda":
        report(_load())


if __name__ == "__main__":
    main()
