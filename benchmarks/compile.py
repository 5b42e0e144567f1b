"""Eager against compiled (``torch.compile``, :mod:`sciflow.compile`): training steps and rollout
steps of the same model, in one process, with alternating trials.

Model: the FNO of ``benchmarks/peers.py`` (width 24, 12 modes, 4 layers) and the cavity FNO of
``configs/cavity_fno.yaml`` (width 40, 16 modes, 4 layers), on 64x64 cavity-shaped inputs (3
channels and the obstacle mask; synthetic values: the cost of a step does not depend on them).

- Training step: the stepper's loss, backward and an AdamW step (sciflow fit's work per step
  without Lightning's loop, which is the same for both), batch 16.
- Rollout step: one step of :func:`sciflow.rollout.rollout` (the engine with its blow-up checks),
  batch 8, timed over a rollout of ``--rollout-steps`` steps.

Per way: the first call's seconds (for compiled, the compilation), then the median seconds per
step of the timed steps over ``--trials`` alternating trials; wall and CPU seconds on the CPU
(one thread by default: the ratio is not hit by other load), wall seconds on a GPU (synchronised
at the ends of the timed block). The outputs of both ways are compared: one-step prediction and
20-step rollout, largest absolute difference relative to the largest value.

    python -m benchmarks.compile                 # results/compile.json and the README table (CPU)
    python -m benchmarks.compile --report        # rebuild the README section from the JSON
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from collections.abc import Callable
from typing import Any

import torch

from benchmarks._report import HERE, markdown_table, save_json, update_readme
from benchmarks._timing import timed
from benchmarks._train import grid_spec
from sciflow.compile import compile_model
from sciflow.rollout import rollout
from sciflow.surrogate import Surrogate
from sciflow.threads import load_average

MODELS = {
    "FNO width 24": {"class_path": "fno", "init_args": {"width": 24, "modes": 12, "n_layers": 4}},
    "cavity FNO (width 40)": {"class_path": "fno", "init_args": {"width": 40, "modes": 16, "n_layers": 4}},
}


def inputs(spec: dict[str, Any], batch: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    C, S, P = len(spec["channels"]), tuple(spec["spatial_shape"]), len(spec["params"])
    h = int(spec["history"])
    mask = torch.ones(batch, *S, dtype=torch.bool)
    mask[:, S[0] // 3 : S[0] // 2, S[1] // 3 : S[1] // 2] = False  # an obstacle
    return {"input": torch.randn(batch, h, C, *S, generator=g).to(device),
            "target": torch.randn(batch, C, *S, generator=g).to(device),
            "params": (torch.rand(batch, P, generator=g) + 0.5).to(device),
            "mask": mask.to(device)}


def train_steps(model: Surrogate, batch: dict[str, torch.Tensor], n: int,
                precision: str = "32") -> Callable[[], None]:
    """A function running ``n`` training steps (loss, backward, AdamW) of ``model``."""
    opt = torch.optim.AdamW(model.stepper.parameters(), lr=1e-4)
    device = batch["input"].device
    dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(precision)
    mask = batch["mask"] if model.hparams.data_spec["has_mask"] else None

    def run() -> None:
        for _ in range(n):
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                prev = model.normalize(batch["input"], mask)
                target = model.normalize(batch["target"], mask)
                loss = model.stepper.loss(prev, target, model.normalize_params(batch["params"]), mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run


def rollout_steps(model: Surrogate, batch: dict[str, torch.Tensor], n: int) -> Callable[[], None]:
    mask = batch["mask"] if model.hparams.data_spec["has_mask"] else None

    def run() -> None:
        for _ in rollout([model], batch["input"], batch["params"], n, mask=mask):
            pass

    return run


def agreement(eager: Surrogate, compiled: Surrogate, batch: dict[str, torch.Tensor], steps: int = 20) -> dict:
    """Largest |compiled - eager| relative to the largest |eager|: one step and after ``steps``."""
    mask = batch["mask"] if eager.hparams.data_spec["has_mask"] else None
    out = {}
    with torch.no_grad():
        a = eager.predict_next(batch["input"], batch["params"], mask)
        b = compiled.predict_next(batch["input"], batch["params"], mask)
        out["one_step"] = float((a - b).abs().max() / a.abs().max())
        ra = [s.members for s in rollout([eager], batch["input"], batch["params"], steps, mask=mask)][-1]
        rb = [s.members for s in rollout([compiled], batch["input"], batch["params"], steps, mask=mask)][-1]
        out[f"rollout_{steps}"] = float((ra - rb).abs().max() / ra.abs().max())
    return out


def measure(operator: dict, spec: dict, device: torch.device, *, mode: str = "default", train_batch: int = 16,
            rollout_batch: int = 8, train_steps_n: int = 10, rollout_steps_n: int = 20, trials: int = 3,
            precision: str = "32", parts: tuple[str, ...] = ("train", "rollout")) -> dict[str, Any]:
    """Eager against compiled training and rollout steps of one operator (see the module doc);
    ``parts`` picks which of the two are timed."""
    torch.manual_seed(0)
    eager = Surrogate(operator, data_spec=spec).to(device)
    compiled = copy.deepcopy(eager)
    compile_model(compiled, mode)
    tb, rb = inputs(spec, train_batch, device), inputs(spec, rollout_batch, device, seed=1)
    out: dict[str, Any] = {"operator": operator, "mode": mode, "precision": precision, "device": str(device),
                           "train_batch": train_batch, "rollout_batch": rollout_batch,
                           "params": sum(p.numel() for p in eager.stepper.parameters())}
    for part, make, n, model_mode in (("train", train_steps, train_steps_n, "train"),
                                      ("rollout", rollout_steps, rollout_steps_n, "eval")):
        if part not in parts:
            continue
        runs = {}
        for name, model in (("eager", eager), ("compiled", compiled)):
            getattr(model, model_mode)()
            kwargs = {"precision": precision} if part == "train" else {}
            runs[name] = make(model, tb if part == "train" else rb, n, **kwargs)
            one = make(model, tb if part == "train" else rb, 1, **kwargs)
            out[f"{part}_{name}_first_call_s"] = timed(one, device)[0]
            one()  # a second call: a recompilation for a new shape or mode happens here, untimed
        times: dict[str, list[tuple[float, float]]] = {"eager": [], "compiled": []}
        for t in range(trials):
            for name in (("eager", "compiled") if t % 2 == 0 else ("compiled", "eager")):
                wall, cpu = timed(runs[name], device)
                times[name].append((wall / n, cpu / n))
        for name, v in times.items():
            out[f"{part}_{name}_s"] = statistics.median(w for w, _ in v)
            out[f"{part}_{name}_cpu_s"] = statistics.median(c for _, c in v)
            out[f"{part}_{name}_trials"] = v
        out[f"{part}_speedup"] = out[f"{part}_eager_s"] / out[f"{part}_compiled_s"]
        out[f"{part}_cpu_speedup"] = out[f"{part}_eager_cpu_s"] / out[f"{part}_compiled_cpu_s"]
    eager.eval(), compiled.eval()
    out["agreement"] = agreement(eager, compiled, rb)
    return out


def _gpu_summary() -> str:
    """One sentence on the GPU figures of ``results/gpu.json`` (``benchmarks/gpu.py``), if measured."""
    path = HERE / "results" / "gpu.json"
    gpu = json.loads(path.read_text()) if path.is_file() else {}
    if "compile" not in gpu:
        return " On a GPU: not measured yet (`python -m benchmarks.gpu`)."
    c = gpu["compile"]
    text = (f" On a GPU (the \"GPU\" section below) the default mode gained {c['32']['rollout_speedup']:.2f}x on "
            f"rollout steps and {c['32']['train_speedup']:.2f}x (fp32)"
            + (f" / {c['bf16']['train_speedup']:.2f}x (bf16)" if "bf16" in c else "") + " on training steps")
    graphs = gpu.get("overhead", {}).get("reduce_overhead")
    if graphs:
        text += f", and `reduce-overhead` (CUDA graphs) {graphs['train_speedup']:.2f}x on a training step"
    return text + "."


def report(payload: dict[str, Any]) -> None:
    rows = []
    for name, r in payload["results"].items():
        for part, what in (("train", f"training step, batch {r['train_batch']}"),
                           ("rollout", f"rollout step, batch {r['rollout_batch']}")):
            rows.append([name, what, r[f"{part}_eager_s"], r[f"{part}_compiled_s"], f"{r[f'{part}_speedup']:.2f}x",
                         f"{r[f'{part}_cpu_speedup']:.2f}x", f"{r[f'{part}_compiled_first_call_s']:.0f}"])
    agree = "; ".join(f"{n}: one step {r['agreement']['one_step']:.1e}, 20-step rollout "
                      f"{r['agreement']['rollout_20']:.1e}" for n, r in payload["results"].items())
    s = payload["settings"]
    text = "\n".join([
        "### Compile: eager against `torch.compile` on the CPU (`benchmarks/compile.py`)",
        "",
        f"`python -m benchmarks.compile` -> `results/compile.json`. {s['threads']} torch thread(s), mode "
        f"`{s['mode']}` (inductor), median of {s['trials']} alternating trials of {s['train_steps']} training "
        f"steps and {s['rollout_steps']}-step rollouts; 64x64 cavity-shaped inputs with a mask. 1-minute load "
        f"average {payload['load_average'][0]:.1f}-{payload['load_average'][1]:.1f} on 2 cores.",
        "",
        markdown_table(["model", "what", "eager s", "compiled s", "speed-up (wall)", "speed-up (CPU s)",
                        "compilation s (first call)"], rows),
        "",
        f"Compiled against eager outputs (largest difference relative to the largest value): {agree}. "
        "Tests (`tests/test_compile.py`) hold compiled and eager predictions, losses and gradients to float32 "
        "round-off. What is compiled is the operator alone (`sciflow.compile`); checkpoints are the same. "
        "Read the speed-ups as this machine's. The rollout step (forward only) gains from fused element-wise "
        "work; the training step loses on the CPU: inductor generates no code for the complex (FFT) operators "
        "and leaves the 1x1 convolutions to oneDNN, and `torch.profiler` of 5 steps of the width-24 FNO showed "
        "the compiled step spending more in copies (0.58 s against 0.21 s eager) and in the convolutions' "
        "backward (0.87 against 0.72 s) than its fused kernels save (turning inductor's layout optimisation off "
        "did not change that). So `compile` stays off by default." + _gpu_summary() + " The compilation costs the first "
        "call's seconds.",
    ])
    update_readme("compile", text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mode", default="default")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--rollout-steps", type=int, default=20)
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    if args.report:
        report(json.loads((HERE / "results" / "compile.json").read_text()))
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = grid_spec()
    loads, results = [load_average()], {}
    for name, operator in MODELS.items():
        results[name] = measure(operator, spec, device, mode=args.mode, train_steps_n=args.train_steps,
                                rollout_steps_n=args.rollout_steps, trials=args.trials)
        loads.append(load_average())
        r = results[name]
        print(f"{name}: train {r['train_speedup']:.2f}x, rollout {r['rollout_speedup']:.2f}x, "
              f"agreement {r['agreement']}", flush=True)
    payload = {"settings": {k: v for k, v in vars(args).items() if k != "report"}, "results": results,
               "load_average": [min(loads), max(loads)]}
    save_json("compile", payload)
    if device.type == "cpu":
        report(payload)


if __name__ == "__main__":
    main()
