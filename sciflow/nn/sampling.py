"""Sub-sampling of particle clouds: farthest-point and random, per sample of a batch.

A reduced-order operator evaluates its network on a sparse sub-sample of the particles (GIOROM:
3-33 %). Farthest-point sampling covers space evenly (every chosen point is the one farthest from
those chosen before) at ``O(N n)`` cost; random sampling costs ``O(N)`` and, with a fixed
generator seed, picks the same particle indices every step (a Lagrangian sub-sample).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sciflow.nn.neighbors import Domain

SAMPLING_METHODS = ("fps", "random")


def sample_counts(n_particles: Tensor, ratio: float) -> Tensor:
    """Particles kept per sample: ``ceil(ratio * n)``, at least 1 (``n_particles (B,)``)."""
    if not 0 < ratio <= 1:
        raise ValueError(f"sampling ratio must be in (0, 1], got {ratio}")
    return torch.clamp(torch.ceil(n_particles.double() * ratio).long(), min=1)


def farthest_point_sample(pos: Tensor, n: int, *, domain: Domain | None = None, start: int = 0) -> Tensor:
    """Indices ``(n,)`` of ``n`` points of ``pos (N, D)`` chosen by farthest-point sampling, from
    point ``start``, distances as minimum images in ``domain``."""
    N = pos.shape[0]
    if not 1 <= n <= N:
        raise ValueError(f"farthest_point_sample: cannot choose {n} of {N} points")
    x = pos.detach()
    chosen = torch.empty(n, dtype=torch.long, device=pos.device)
    best = torch.full((N,), float("inf"), dtype=x.dtype, device=x.device)
    cur = int(start)
    for k in range(n):
        chosen[k] = cur
        d = x - x[cur] if domain is None else domain.displacement(x, x[cur])
        best = torch.minimum(best, (d * d).sum(-1))
        cur = int(torch.argmax(best))
    return chosen


def subsample(pos: Tensor, batch: Tensor, ratio: float, method: str = "fps", *,
              domain: Domain | None = None, generator: torch.Generator | None = None,
              random_start: bool = False) -> Tensor:
    """Indices into ``pos (N, D)`` of the particles kept, sample by sample (sorted ``batch (N,)``).

    ``method``: ``"fps"`` (from each sample's first particle, or a random one when
    ``random_start``) or ``"random"`` (a random subset drawn with ``generator``). The result is
    sorted, so the kept particles stay grouped by sample.
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"unknown sampling method {method!r}; expected one of {SAMPLING_METHODS}")
    counts = torch.bincount(batch.cpu(), minlength=int(batch.max()) + 1 if batch.numel() else 0)
    keep = sample_counts(counts, ratio).tolist()
    out, offset = [], 0
    for n_b, k_b in zip(counts.tolist(), keep):
        if n_b == 0:
            continue
        if method == "random":
            idx = torch.randperm(n_b, generator=generator)[:k_b]
        else:
            start = int(torch.randint(n_b, (1,), generator=generator)) if random_start else 0
            idx = farthest_point_sample(pos[offset:offset + n_b], k_b, domain=domain, start=start).cpu()
        out.append(torch.sort(idx).values + offset)
        offset += n_b
    return torch.cat(out).to(pos.device)


def sparse_spacing(dx: float, ratio: float, dim: int) -> float:
    """Typical distance between sub-sampled particles of a lattice of spacing ``dx``."""
    return dx / math.pow(ratio, 1.0 / dim)


__all__ = ["SAMPLING_METHODS", "farthest_point_sample", "sample_counts", "sparse_spacing", "subsample"]
