"""Operators benchmark: parameters, forward+backward time and peak memory of FNO, U-Net, FactFormer
and IFactFormer-m at comparable parameter counts; how their cost scales with the number of grid
points; and the cost of one axis pass of the factorized attention.

Method (see the README section this writes for the reasoning):

- Every operator maps 3 channels to 3 channels with a 5-entry conditioning vector (the cavity
  sizes: u, v, p and ``[U, rho, mu, height, width]``), batch fixed, a fixed number of torch
  threads (``--threads``; default 1, because on a machine whose cores are busy with other jobs two
  OpenMP threads wait on each other at every barrier, which made the same passes 3-4x slower in
  wall time, and unevenly so across operators).
- Timings interleave operators *and* grid sizes within each repeat, in a seeded random order, so
  that load from other processes hits all alike; the first round is a warm-up; medians are
  reported and the raw repeats (wall and process CPU time) are kept in the JSON.
- Peak memory is the growth of the resident set size (RSS) of a fresh child process during one
  forward+backward: the high-water mark ``VmHWM`` (reset just before through
  ``/proc/self/clear_refs``) minus the RSS just before, with model and inputs built and one warm-up
  pass on a 16² grid done, so that library code paged in on first use is not counted. ``tracemalloc``
  cannot see torch's allocations, hence a process-level measure. ``ru_maxrss`` is not used: Linux
  carries it across ``fork``/``exec`` from the parent, so a child inherits the parent's peak.
- FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on fake tensors (no compute);
  it counts matrix products and convolutions, not FFTs, so FNO's FLOPs are a lower bound.

    python -m benchmarks.operators            # full run (~15 min on 2 busy cores): JSON + README
    python -m benchmarks.operators --quick    # smoke run on tiny grids; prints, writes nothing
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sciflow.operators import build_operator

REPO = Path(__file__).resolve().parents[1]
IN_CHANNELS, OUT_CHANNELS, COND_DIM = 3, 3, 5

# Hyperparameters chosen so that all four land within +-25 % of 1 M parameters; the cavity
# configs (configs/cavity_*.yaml) use the same ones.
OPERATORS: dict[str, dict[str, Any]] = {
    "FNO": {"class_path": "fno", "init_args": {"width": 40, "modes": 16, "n_layers": 4}},
    "U-Net": {"class_path": "unet",
              "init_args": {"base_channels": 20, "channel_multipliers": [1, 2, 2, 4], "n_blocks": 1}},
    "FactFormer": {"class_path": "factformer",
                   "init_args": {"width": 128, "depth": 3, "heads": 4, "dim_head": 32}},
    "IFactFormer-m": {"class_path": "ifactformer",
                      "init_args": {"width": 192, "heads": 6, "dim_head": 32, "n_iterations": 10}},
}
TARGET_PARAMS = 1_000_000

# Asymptotic cost in the number of points N: FNO's FFTs N log N, U-Net's convolutions N,
# factorized attention N^(1 + 1/n) on n = 2 axes.
THEORY = {"FNO": "N log N", "U-Net": "N", "FactFormer": "N^1.5", "IFactFormer-m": "N^1.5"}


# -- building and running -------------------------------------------------------------------------

def build(name: str, seed: int = 0) -> nn.Module:
    """The operator ``name`` of :data:`OPERATORS` with the benchmark's data sizes."""
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; known: {', '.join(OPERATORS)}")
    torch.manual_seed(seed)
    return build_operator(OPERATORS[name], in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS,
                          n_dims=2, cond_dim=COND_DIM)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def inputs(batch: int, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """x: (batch, 3, n, n), cond: (batch, 5), standard normal."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, IN_CHANNELS, n, n, generator=g),
            torch.randn(batch, COND_DIM, generator=g))


def forward_backward(model: nn.Module, x: Tensor, cond: Tensor) -> None:
    """One training-like pass: forward, scalar loss, backward into fresh gradients."""
    model.zero_grad(set_to_none=True)
    model(x, cond).square().mean().backward()


def forward_only(model: nn.Module, x: Tensor, cond: Tensor) -> None:
    """One inference pass (no autograd graph), as in a rollout."""
    with torch.no_grad():
        model(x, cond)


def time_interleaved(tasks: dict[Hashable, Callable[[], None]], *, warmup: int, repeats: int,
                     seed: int = 0, label: str = "") -> tuple[dict[Hashable, list[float]], dict[Hashable, list[float]]]:
    """Time every task over ``warmup + repeats`` rounds; each round runs all tasks once in a fresh
    seeded random order. Returns (wall seconds, process CPU seconds), each task -> ``repeats``
    values (warm-up rounds dropped). CPU time is less sensitive to other processes' load."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    rng = random.Random(seed)
    wall: dict[Hashable, list[float]] = {k: [] for k in tasks}
    cpu: dict[Hashable, list[float]] = {k: [] for k in tasks}
    keys = list(tasks)
    for r in range(warmup + repeats):
        rng.shuffle(keys)
        t_round = time.perf_counter()
        for k in keys:
            t0, c0 = time.perf_counter(), time.process_time()
            tasks[k]()
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if r >= warmup:
                wall[k].append(dt)
                cpu[k].append(dc)
        kind = "warm-up" if r < warmup else f"repeat {r - warmup + 1}/{repeats}"
        print(f"  {label} {kind}: {time.perf_counter() - t_round:.1f} s", flush=True)
    return wall, cpu


def fit_exponent(points: Sequence[float], times: Sequence[float]) -> float:
    """Least-squares slope alpha of log(time) against log(points): time ~ points^alpha."""
    if len(points) != len(times) or len(points) < 2:
        raise ValueError(f"need >= 2 matching points and times, got {len(points)} and {len(times)}")
    return float(np.polyfit(np.log(points), np.log(times), 1)[0])


def theory_exponent(name: str, points: Sequence[float]) -> float:
    """Exponent of the operator's asymptotic cost fitted over ``points`` (N log N is not a pure
    power: its effective exponent over a finite range is a little above 1)."""
    cost = {"N log N": lambda n: n * math.log(n), "N": lambda n: n,
            "N^1.5": lambda n: n ** 1.5}[THEORY[name]]
    return fit_exponent(points, [cost(n) for n in points])


def count_flops(name: str, batch: int, n: int, *, backward: bool) -> float | None:
    """FLOPs of one pass at grid n x n, counted on fake tensors (matmuls and convolutions; FFTs
    are not counted). None if the counter is unavailable."""
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    model = build(name)  # a throw-away copy: fake gradients must not reach timed models
    with FakeTensorMode(allow_non_fake_inputs=True), FlopCounterMode(display=False) as counter:
        x, cond = torch.randn(batch, IN_CHANNELS, n, n), torch.randn(batch, COND_DIM)
        if backward:
            model(x, cond).square().mean().backward()
        else:
            with torch.no_grad():
                model(x, cond)
    return float(counter.get_total_flops())


# -- peak memory in a fresh process ----------------------------------------------------------------

def _status_mib(key: str) -> float:
    """A memory line of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise OSError(f"/proc/self/status has no {key} line")


WARMUP_GRID = 16  # grid of the memory child's warm-up pass


def _child_memory(name: str, n: int, batch: int, threads: int) -> dict[str, Any]:
    """Run in a fresh process: peak RSS growth of one forward+backward at n x n (Linux only).

    A warm-up pass on a tiny grid comes first: the first call into torch's kernels maps hundreds
    of MiB of library code into the resident set, which is no part of the operator's cost. The
    kernel's RSS high-water mark is then reset to the current RSS, so it sees only the measured pass.
    """
    if n <= WARMUP_GRID:
        raise ValueError(f"memory grid {n} must exceed the warm-up grid {WARMUP_GRID}")
    torch.set_num_threads(threads)
    model = build(name)
    forward_backward(model, *inputs(batch, WARMUP_GRID))
    model.zero_grad(set_to_none=True)
    x, cond = inputs(batch, n)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    rss_before, hwm_before = _status_mib("VmRSS"), _status_mib("VmHWM")
    forward_backward(model, x, cond)
    hwm_after = _status_mib("VmHWM")
    return {"rss_before_mib": rss_before, "hwm_before_mib": hwm_before, "hwm_after_mib": hwm_after,
            "peak_delta_mib": hwm_after - rss_before, "params_mib": n_params(model) * 4 / 2**20}


def peak_memory(name: str, n: int, batch: int, threads: int) -> dict[str, Any]:
    """Peak RSS growth (MiB) of one forward+backward, measured in a child process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "benchmarks.operators", "--child", name, str(n), str(batch), str(threads)]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": f"child exited {res.returncode}: {res.stderr.strip()[-500:]}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


# -- one axis pass of the factorized attention ------------------------------------------------------

def axis_pass_benchmark(sizes: Sequence[int], fixed: int, batch: int, *, warmup: int,
                        repeats: int) -> dict[str, Any]:
    """Time one axis pass (axis kernel + its application to the values) of FactFormer's
    attention, forward only, on grids ``(n_kernel_axis, n_other)``:

    - ``other``: kernel axis fixed at ``fixed`` points, the other axis varied -> cost ~ N;
    - ``kernel``: the other axis fixed, the kernel axis varied -> cost ~ N n_axis = N^2 / fixed.
    """
    from sciflow.operators.factformer import FactorizedAttention, apply_along_axis

    ff = OPERATORS["FactFormer"]["init_args"]
    torch.manual_seed(0)
    attn = FactorizedAttention(ff["width"], 2, heads=ff["heads"], dim_head=ff["dim_head"],
                               mode="chained", periodic=False, rotary_max_freq=32.0)
    h, c = ff["heads"], ff["dim_head"]

    def task(n_kernel: int, n_other: int) -> Callable[[], None]:
        u = torch.randn(batch, n_kernel, n_other, ff["width"])
        with torch.no_grad():
            v = attn.to_v(u).view(batch, n_kernel, n_other, h, c).movedim(-2, 1)  # (B,h,nk,no,c)

        def run() -> None:
            with torch.no_grad():
                apply_along_axis(attn.axis_kernel(u, 0), v, 0)
        return run

    grids = {("other", m): (fixed, m) for m in sizes} | {("kernel", m): (m, fixed) for m in sizes}
    times, _ = time_interleaved({k: task(*g) for k, g in grids.items()}, warmup=warmup,
                                repeats=repeats, seed=1, label="axis pass")
    out: dict[str, Any] = {"fixed": fixed, "batch": batch, "sizes": list(sizes)}
    for case in ("other", "kernel"):
        med = [statistics.median(times[(case, m)]) for m in sizes]
        points = [fixed * m for m in sizes]
        out[case] = {"points": points, "median_s": med, "raw_s": [times[(case, m)] for m in sizes],
                     "alpha": fit_exponent(points, med)}
    return out


# -- the whole run -----------------------------------------------------------------------------------

def run(*, batch: int, threads: int, table_sizes: Sequence[int], series_sizes: Sequence[int],
        axis_sizes: Sequence[int], axis_fixed: int, warmup: int, repeats: int,
        series_repeats: int, memory_sizes: Sequence[int]) -> dict[str, Any]:
    torch.set_num_threads(threads)
    names = list(OPERATORS)
    load_start = os.getloadavg()
    models = {k: build(k) for k in names}
    params = {k: n_params(m) for k, m in models.items()}
    for k in names:
        print(f"{k}: {params[k]:,} parameters ({params[k] / TARGET_PARAMS - 1:+.0%} of target)")

    # first, while this process is still small (children start as copies of it)
    print("peak memory (fresh process per operator and grid)", flush=True)
    memory = {k: {str(n): peak_memory(k, n, batch, threads) for n in memory_sizes} for k in names}

    print(f"forward+backward, batch {batch}, grids {list(table_sizes)}", flush=True)
    data = {n: inputs(batch, n) for n in table_sizes}
    train, train_cpu = time_interleaved(
        {(k, n): (lambda m=models[k], d=data[n]: forward_backward(m, *d)) for k in names for n in table_sizes},
        warmup=warmup, repeats=repeats, seed=0, label="fwd+bwd")
    for m in models.values():
        m.zero_grad(set_to_none=True)

    print(f"forward only, batch {batch}, grids {list(series_sizes)}", flush=True)
    data = {n: inputs(batch, n) for n in series_sizes}
    infer, infer_cpu = time_interleaved(
        {(k, n): (lambda m=models[k], d=data[n]: forward_only(m, *d)) for k in names for n in series_sizes},
        warmup=warmup, repeats=series_repeats, seed=0, label="forward")
    del data

    print("FLOP counts", flush=True)
    flops_train = {k: {str(n): count_flops(k, batch, n, backward=True) for n in table_sizes} for k in names}
    flops_infer = {k: {str(n): count_flops(k, batch, n, backward=False) for n in series_sizes} for k in names}

    print("axis pass of the factorized attention", flush=True)
    axis = axis_pass_benchmark(axis_sizes, axis_fixed, batch, warmup=max(warmup, 2), repeats=max(repeats, 7))

    points = [n * n for n in series_sizes]
    operators: dict[str, Any] = {}
    for k in names:
        tr = {str(n): train[(k, n)] for n in table_sizes}
        inf = {str(n): infer[(k, n)] for n in series_sizes}
        inf_med = [statistics.median(inf[str(n)]) for n in series_sizes]
        inf_cpu_med = [statistics.median(infer_cpu[(k, n)]) for n in series_sizes]
        tr_med = [statistics.median(tr[str(n)]) for n in table_sizes]
        fl = [flops_infer[k][str(n)] for n in series_sizes]
        operators[k] = {
            "spec": OPERATORS[k], "params": params[k], "theory": THEORY[k],
            "train_s": tr, "train_median_s": dict(zip(map(str, table_sizes), tr_med)),
            "train_cpu_s": {str(n): train_cpu[(k, n)] for n in table_sizes},
            "forward_s": inf, "forward_median_s": dict(zip(map(str, series_sizes), inf_med)),
            "forward_cpu_s": {str(n): infer_cpu[(k, n)] for n in series_sizes},
            "memory": memory[k], "flops_train": flops_train[k], "flops_forward": flops_infer[k],
            "alpha_forward": fit_exponent(points, inf_med),
            "alpha_forward_cpu": fit_exponent(points, inf_cpu_med),
            "alpha_train": fit_exponent([n * n for n in table_sizes], tr_med),
            "alpha_flops": fit_exponent(points, fl) if all(fl) else None,
            "alpha_theory": theory_exponent(k, points),
            "ratio_forward": inf_med[-1] / inf_med[0], "ratio_points": points[-1] / points[0],
        }
    return {
        "batch": batch, "in_channels": IN_CHANNELS, "out_channels": OUT_CHANNELS, "cond_dim": COND_DIM,
        "threads": threads, "warmup": warmup, "repeats": repeats, "series_repeats": series_repeats,
        "table_sizes": list(table_sizes), "series_sizes": list(series_sizes),
        "memory_sizes": list(memory_sizes), "target_params": TARGET_PARAMS,
        "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "memory_method": "VmHWM (reset via /proc/self/clear_refs) after one forward+backward minus VmRSS "
                         "just before, in a fresh child process per operator and grid, after a warm-up "
                         f"pass at {WARMUP_GRID}^2",
        "operators": operators, "axis_pass": axis,
    }


# -- report ---------------------------------------------------------------------------------------------

def _hyper(spec: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in spec["init_args"].items())


def _mib(mem: dict[str, Any]) -> Any:
    return "failed" if "error" in mem else round(mem["peak_delta_mib"])


def readme_text(res: dict[str, Any]) -> str:
    from benchmarks._report import markdown_table

    ops, B = res["operators"], res["batch"]
    t_sizes, s_sizes, m_sizes = res["table_sizes"], res["series_sizes"], res["memory_sizes"]
    ref = ops["FNO"]["train_median_s"][str(t_sizes[-1])]
    rows = []
    for k, o in ops.items():
        row = [k, _hyper(o["spec"]), f"{o['params'] / 1e6:.3f} M"]
        row += [o["train_median_s"][str(n)] for n in t_sizes]
        row += [o["train_median_s"][str(t_sizes[-1])] / ref]
        row += [_mib(o["memory"][str(n)]) for n in m_sizes]
        f = o["flops_train"][str(t_sizes[0])]
        row += [f / 1e9 if f else "n/a"]
        rows.append(row)
    header = (["operator", "hyperparameters", "params"]
              + [f"fwd+bwd {n}² (s)" for n in t_sizes] + [f"time / FNO at {t_sizes[-1]}²"]
              + [f"peak mem {n}² (MiB)" for n in m_sizes] + [f"GFLOP fwd+bwd {t_sizes[0]}²"])
    table1 = markdown_table(header, rows)

    rows = []
    for k, o in ops.items():
        row = [k] + [o["forward_median_s"][str(n)] for n in s_sizes]
        row += [f"{o['ratio_forward']:.1f} (points x{o['ratio_points']:.0f})", round(o["alpha_forward"], 2),
                round(o["alpha_forward_cpu"], 2), round(o["alpha_train"], 2),
                round(o["alpha_flops"], 2) if o["alpha_flops"] is not None else "n/a",
                f"{o['alpha_theory']:.2f} ({o['theory']})"]
        rows.append(row)
    header = (["operator"] + [f"forward {n}² (s)" for n in s_sizes]
              + [f"time {s_sizes[-1]}² / {s_sizes[0]}²", "alpha (forward)", "alpha (forward, CPU time)",
                 f"alpha (fwd+bwd, {t_sizes[0]}²-{t_sizes[-1]}²)", "alpha of FLOPs", "alpha theory"])
    table2 = markdown_table(header, rows)

    ax = res["axis_pass"]
    rows = []
    for case, what, expect in (("other", f"kernel axis fixed at {ax['fixed']}, other axis varied", "1"),
                               ("kernel", f"other axis fixed at {ax['fixed']}, kernel axis varied", "2")):
        a = ax[case]
        rows.append([what, ", ".join(f"{p}: {t * 1e3:.2f} ms" for p, t in zip(a["points"], a["median_s"])),
                     round(a["alpha"], 2), expect])
    table3 = markdown_table(["axis pass", "points N: median time", "alpha in N", "expected"], rows)
    kt, kp = ax["kernel"]["median_s"], ax["kernel"]["points"]
    last_slope = math.log(kt[-1] / kt[-2]) / math.log(kp[-1] / kp[-2])
    axis_note = ""
    if last_slope > 2.5:
        axis_note = (
            f"\nBetween the two largest kernel axes the time grows as N^{last_slope:.1f}, faster than N^2: "
            "`apply_along_axis` multiplies the kernel, broadcast over the other axes, with `torch.matmul`, "
            "which materialises that broadcast (O(N n_axis) memory per head instead of O(n_axis^2)); "
            "one matrix product per head on the values reshaped to (n_axis, rest) avoids the copy.\n")

    l0, l1 = res["load_average_start"][0], res["load_average_end"][0]
    return f"""### Operators: cost at comparable parameter counts (CPU)

`python -m benchmarks.operators` -> `results/operators.json` (raw repeats included).
All four map 3 -> 3 channels with a 5-entry conditioning vector (the cavity sizes), batch {B},
`torch.set_num_threads({res['threads']})`, float32. Hyperparameters are chosen so that every operator is
within +-25 % of {res['target_params'] / 1e6:.0f} M parameters; `configs/cavity_*.yaml` use the same ones.

**Absolute times are indicative, ratios are the claim.** The machine (2 cores) was shared with
other jobs while this ran (1-minute load average {l0:.1f} at the start, {l1:.1f} at the end), so
operators and grid sizes are interleaved in a seeded random order within every repeat (load hits
all alike), the first round is a warm-up, and the tables show medians of {res['repeats']} repeats
(forward+backward) and {res['series_repeats']} repeats (forward only). Torch threads: {res['threads']} (`--threads`).
With every core busy, two OpenMP threads wait on each other at each barrier: in a separate check
under the same load, a forward+backward at 64² took 4x (FNO) and 2.8x (FactFormer) longer in wall
time with 2 threads than with 1, unevenly enough to distort the ratios; 2 threads suit an idle machine.

Peak memory: growth of the resident set size of a fresh process during one forward+backward (the
kernel's high-water mark `VmHWM`, reset just before, minus the RSS just before; model and inputs
built and one warm-up pass on a {WARMUP_GRID}² grid done, so library code paged in on first use is not
counted); it includes the gradients and the autograd graph. FLOPs: `torch.utils.flop_counter` on
fake tensors (matrix products and convolutions; FFTs are not counted, so FNO's figure is a lower
bound).

{table1}

Scaling with the number of points N from {s_sizes[0]}² to {s_sizes[-1]}²: forward-only time (an inference
pass, as in a rollout) fitted as time ~ N^alpha over {', '.join(f'{n}²' for n in s_sizes)}.
Forward-only because a forward+backward of IFactFormer-m at {s_sizes[-1]}² would need about
{(s_sizes[-1] / m_sizes[0]) ** 2:.0f}x its {m_sizes[0]}² memory above, more than this machine has;
the two-point forward+backward exponent over {t_sizes[0]}²-{t_sizes[-1]}² is shown alongside.
"alpha of FLOPs" is the same fit on the counted FLOPs; "alpha theory" fits the asymptotic cost over
the same N (N log N has an effective exponent a little above 1 over a finite range).

{table2}

Why the transformers do not show N^1.5 here: per point and block, the pointwise linear maps and
MLP cost O(d^2) (d = 128-192 features) while applying the axis kernels costs O(n_axis d); the
second overtakes the first only once an axis holds several times d points (about 400 for this
FactFormer), so at 64²-256² both FLOPs and times grow close to N. The N^(1+1/n) term itself is
isolated below.

The factorized attention never forms an N x N matrix: one axis pass (build the axis kernel from a
learned projection onto the axis, apply it along that axis) costs O(N n_axis d). With the kernel
axis fixed it is linear in the number of points N; growing the kernel axis itself costs N n_axis,
i.e. N^2 here (the other axis is fixed), which on a square grid (n_axis = N^(1/2)) gives the
N^(3/2) of the full operator. FactFormer's attention (width {OPERATORS['FactFormer']['init_args']['width']},
{OPERATORS['FactFormer']['init_args']['heads']} heads), forward only, batch {ax['batch']}:

{table3}
{axis_note}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny grids and repeats; print, write nothing")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (see the module docstring)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=4, help="repeats of the forward+backward timings")
    ap.add_argument("--series-repeats", type=int, default=3, help="repeats of the forward-only series")
    ap.add_argument("--from-json", action="store_true",
                    help="rewrite the README section from results/operators.json, measuring nothing")
    ap.add_argument("--child", nargs=4, metavar=("OPERATOR", "N", "BATCH", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        name, n, batch, threads = args.child
        print(json.dumps(_child_memory(name, int(n), int(batch), int(threads))))
        return

    if args.from_json:
        from benchmarks._report import HERE, update_readme

        res = json.loads((HERE / "results" / "operators.json").read_text())
        update_readme("operators", readme_text(res))
        return

    t0 = time.perf_counter()
    if args.quick:
        res = run(batch=args.batch, threads=args.threads, table_sizes=(16, 32), series_sizes=(16, 32, 64), axis_sizes=(16, 32, 64),
                  axis_fixed=16, warmup=1, repeats=2, series_repeats=2, memory_sizes=(32,))
    else:
        res = run(batch=args.batch, threads=args.threads, table_sizes=(64, 128), series_sizes=(64, 128, 256),
                  axis_sizes=(128, 256, 512, 1024), axis_fixed=128, warmup=args.warmup,
                  repeats=args.repeats, series_repeats=args.series_repeats, memory_sizes=(64, 128))
    res["wall_s"] = time.perf_counter() - t0
    text = readme_text(res)
    print(text)
    print(f"total {res['wall_s']:.0f} s")
    if not args.quick:
        from benchmarks._report import save_json, update_readme

        save_json("operators", res)
        update_readme("operators", text)


if __name__ == "__main__":
    main()
