"""Inference cost of particle operators on refined clouds (dam break, or the periodic
Taylor-Green box): GNS on every particle against the reduced-order operator (sparse network +
kernel interpolation to every particle).

The dense clouds refine the dam's initial lattice: the water column and the tank of the dataset's
first test frame, rebuilt with a smaller spacing ``dx' = dx * sqrt(N0 / N)`` (2D), fluid on a
cell-centred lattice and the stored wall layer around the tank at the new spacing. Every particle is given the same small random velocity
history, so one model step costs what it costs mid-flow.

- (a) GNS, the trained architecture, on all particles; its connectivity radius scales with the
  spacing (``R' = R dx' / dx``), so its graph has the neighbour count it was trained with: the
  cost of a GNS trained at that resolution.
- (b) the reduced-order operator keeps the sparse particle density in space it was trained with
  (``ratio' = ratio N_train / N``: about the same number of sparse particles at every N), runs
  its network there and interpolates to all ``N`` particles.

Each (model, N) is measured in a fresh process (``spawn``): one warm-up step, then the median
CPU seconds (``time.process_time``, 1 thread) of ``REPEATS`` steps of
``ParticleSurrogate.predict_next`` (the graph built inside), and the peak resident memory of the
process above what it held before the first step (``ru_maxrss``). The trials alternate between
(a) and (b), and the speed-up is the ratio of medians measured in the same run.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import resource
import statistics
import time
from typing import Any

import numpy as np
import torch

WALL_LAYERS = 1  # the dam card stores the innermost wall layer only: the models were trained with one
REPEATS = 3


def dense_dam(frame: np.ndarray, types: np.ndarray, meta: dict[str, Any], n_target: int
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """A dam-break cloud of about ``n_target`` particles refining the lattice of ``frame (N0, 2)``:
    ``(positions (N, 2), types (N,), dx')``. The water column is the bounding box of the fluid
    particles of ``frame`` (to their lattice cells' edges), the tank the box half a spacing inside
    ``fluid_bounds`` (where the innermost wall particles sit); walls are ``WALL_LAYERS`` lattice
    layers just outside the tank, as the card stores them."""
    dx0 = float(meta["dx"])
    fluid = frame[types == 0]
    lo_w, hi_w = fluid.min(0) - dx0 / 2, fluid.max(0) + dx0 / 2
    inner = np.asarray(meta.get("fluid_bounds") or meta["bounds"], dtype=float)
    tank_lo, tank_hi = inner[:, 0] + dx0 / 2, inner[:, 1] - dx0 / 2
    water = float(np.prod(hi_w - lo_w))

    def lattice(lo: np.ndarray, hi: np.ndarray, dx: float) -> np.ndarray:
        axes = [lo[d] + (np.arange(int(round((hi[d] - lo[d]) / dx))) + 0.5) * dx for d in range(2)]
        X, Y = np.meshgrid(*axes, indexing="ij")
        return np.stack([X.ravel(), Y.ravel()], -1)

    def build(dx: float) -> tuple[np.ndarray, np.ndarray]:
        w = lattice(lo_w, hi_w, dx)
        ring = lattice(tank_lo - WALL_LAYERS * dx, tank_hi + WALL_LAYERS * dx, dx)
        walls = ring[((ring < tank_lo) | (ring > tank_hi)).any(1)]
        return np.concatenate([w, walls]), np.r_[np.zeros(len(w), int), np.ones(len(walls), int)]

    dx = math.sqrt(water / n_target)
    for _ in range(4):  # walls grow with the perimeter: a few fixed-point steps on the total count
        pos, _ = build(dx)
        dx *= math.sqrt(len(pos) / n_target)
    pos, typ = build(dx)
    return pos.astype(np.float32), typ, dx


def dense_periodic(frame: np.ndarray, types: np.ndarray, meta: dict[str, Any], n_target: int
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    """A periodic-box cloud (Taylor-Green) of about ``n_target`` fluid particles: a cell-centred
    square lattice filling ``meta["bounds"]`` (2D) with spacing ``dx' = sqrt(area / n_target)``;
    ``frame`` and ``types`` are unused (the card's cloud fills the box uniformly too)."""
    b = np.asarray(meta["bounds"], dtype=float)
    size = b[:, 1] - b[:, 0]
    dx = math.sqrt(float(np.prod(size)) / n_target)
    axes = [b[d, 0] + (np.arange(max(1, int(round(size[d] / dx)))) + 0.5) * size[d] / round(size[d] / dx)
            for d in range(2)]
    X, Y = np.meshgrid(*axes, indexing="ij")
    pos = np.stack([X.ravel(), Y.ravel()], -1)
    return pos.astype(np.float32), np.zeros(len(pos), int), float(size[0] / round(size[0] / dx))


# card -> refined cloud builder (the dam's tank and column; the periodic box)
CLOUDS = {"sph_dam": dense_dam, "sph_tgv": dense_periodic}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _measure(args: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: build the model and the cloud, time ``REPEATS`` steps after a warm-up."""
    torch.set_num_threads(1)
    from sciflow.surrogate_base import load_surrogate

    model = load_surrogate(args["ckpt"]).eval()
    op = model.inference_stepper.operator
    for k, v in args["overrides"].items():
        setattr(op, k, v)
    pos = torch.from_numpy(args["pos"])
    types = torch.from_numpy(args["types"]).long()
    N = pos.shape[0]
    g = torch.Generator().manual_seed(0)
    dyn = (types == 0).float()[:, None]
    v = 0.3 * args["speed"] * torch.randn(N, 2, generator=g) * dyn
    h = int(model.hparams.data_spec["history"])
    frames = torch.stack([pos - (h - k) * v for k in range(h + 1)])  # uniform motion into the frame
    frames = torch.where(dyn.bool()[None], frames, pos[None])
    frames = model.stepper.constrain(frames.reshape(-1, 2), types.repeat(h + 1)).reshape(h + 1, N, 2)
    batch = torch.zeros(N, dtype=torch.long)
    params = args["params"]
    params = None if params is None else torch.tensor([params], dtype=torch.float32)
    before = _rss_mb()
    model.predict_next(frames, types, batch, params)  # warm-up
    cpu, wall = [], []
    for _ in range(REPEATS):
        c, w = time.process_time(), time.perf_counter()
        out = model.predict_next(frames, types, batch, params)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return {"cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall), "rss_before_mb": before,
            "peak_rss_mb": _rss_mb(), "step_memory_mb": _rss_mb() - before, "finite": bool(torch.isfinite(out).all()),
            "n": N}


def measure_scale(models: dict[str, dict[str, Any]], clouds: dict[int, tuple[np.ndarray, np.ndarray, float]],
                  dx0: float, n_train: int, params: list[float] | None, speed: float, trials: int = 3
                  ) -> list[dict[str, Any]]:
    """Alternate (model, N) measurements in fresh processes; ``models`` maps a label to
    ``{"ckpt": path, "kind": "gns" | "reduced_order", "ratio": trained ratio, "radius": R}``."""
    ctx = mp.get_context("spawn")
    out = []
    for n, (pos, types, dx) in clouds.items():
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in models}
        for _ in range(trials):
            for label, m in models.items():
                if m["kind"] == "gns":
                    over = {"radius": m["radius"] * dx / dx0}
                else:
                    over = {"ratio": min(1.0, m["ratio"] * n_train / len(pos))}
                args = {"ckpt": m["ckpt"], "overrides": over, "pos": pos, "types": types, "params": params,
                        "speed": speed}
                with ctx.Pool(1) as pool:
                    runs[label].append(pool.apply(_measure, (args,)))
                print(f"  scale N={len(pos)} {label}: {runs[label][-1]['cpu_s']:.3f} CPU s", flush=True)
        for label, rs in runs.items():
            out.append({"n_target": n, "n": len(pos), "dx": dx, "model": label, "kind": models[label]["kind"],
                        "cpu_s": statistics.median(r["cpu_s"] for r in rs),
                        "wall_s": statistics.median(r["wall_s"] for r in rs),
                        "step_memory_mb": statistics.median(r["step_memory_mb"] for r in rs),
                        "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
                        "finite": all(r["finite"] for r in rs), "trials": rs})
    return out


__all__ = ["CLOUDS", "dense_dam", "dense_periodic", "measure_scale"]
