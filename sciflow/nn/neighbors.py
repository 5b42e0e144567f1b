"""Neighbour search for particle graphs: radius graphs and bipartite radius queries, in boxes that
may be periodic along some axes.

Built on ``scipy.spatial.cKDTree``, whose ``boxsize`` gives the minimum-image topology on periodic
axes (an entry of 0 leaves an axis open). PyG's ``radius_graph`` needs compiled extensions that
are not installable everywhere; a k-d tree costs about 0.1 s for 1e5 points on one core.

The search runs on the CPU in float64 without gradients (a graph is discrete); positions on other
devices are copied over and the edges returned on the positions' device. Edges follow PyG's
``source_to_target`` convention: ``edge_index[0]`` sends, ``edge_index[1]`` receives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor


@dataclass(frozen=True)
class Domain:
    """An axis-aligned box: ``lower (D,)``, ``size (D,)`` edge lengths, ``periodic (D,)``.

    The torch twin of the data layer's ``Box`` for modules that must not import the data layer.
    """

    lower: tuple[float, ...]
    size: tuple[float, ...]
    periodic: tuple[bool, ...]

    @classmethod
    def from_bounds(cls, bounds: Sequence[Sequence[float]], periodic: Sequence[bool] | bool) -> Domain:
        lo = tuple(float(b[0]) for b in bounds)
        size = tuple(float(b[1]) - float(b[0]) for b in bounds)
        per = (bool(periodic),) * len(lo) if isinstance(periodic, bool) else tuple(bool(p) for p in periodic)
        if len(per) != len(lo):
            raise ValueError(f"Domain: {len(lo)} bounds but {len(per)} periodic flags")
        bad = [d for d, s in enumerate(size) if not (np.isfinite(s) and s > 0)]
        if bad:
            raise ValueError(f"Domain: bounds {list(map(list, bounds))} are not intervals with hi > lo on axes {bad}")
        return cls(lo, size, per)

    @property
    def dim(self) -> int:
        return len(self.lower)

    def tensors(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``lower, size`` as ``like``'s dtype/device and ``periodic`` as bool, each ``(D,)``."""
        kw = {"dtype": like.dtype, "device": like.device}
        return (torch.tensor(self.lower, **kw), torch.tensor(self.size, **kw),
                torch.tensor(self.periodic, device=like.device))

    def displacement(self, a: Tensor, b: Tensor) -> Tensor:
        """``a - b`` ``(..., D)``, the minimum image on periodic axes."""
        d = a - b
        if not any(self.periodic):
            return d
        _, size, per = self.tensors(d)
        return torch.where(per, d - size * torch.round(d / size), d)

    def wrap(self, x: Tensor) -> Tensor:
        """Positions ``(..., D)`` folded into ``[lower, lower + size)`` on periodic axes."""
        if not any(self.periodic):
            return x
        lo, size, per = self.tensors(x)
        return torch.where(per, lo + torch.remainder(x - lo, size), x)


def _tree_coords(x: np.ndarray, domain: Domain | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Coordinates a periodic ``cKDTree`` accepts (shifted to 0 and wrapped into ``[0, L)``) and the
    ``boxsize`` (0 on open axes), or the raw points and None when nothing is periodic."""
    if domain is None or not any(domain.periodic):
        return x, None
    lo, size, per = np.array(domain.lower), np.array(domain.size), np.array(domain.periodic)
    y = x - lo
    y[:, per] = np.mod(y[:, per], size[per])
    # np.mod can return exactly L for tiny negative inputs in floating point
    y[:, per] = np.where(y[:, per] >= size[per], 0.0, y[:, per])
    return y, np.where(per, size, 0.0)


def _as_numpy(x: Tensor, name: str) -> np.ndarray:
    if x.ndim != 2:
        raise ValueError(f"{name}: expected positions (N, D), got shape {tuple(x.shape)}")
    a = x.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: positions contain NaN or Inf (particle {int(np.argwhere(~np.isfinite(a))[0, 0])})")
    return a


def _segments(batch: Tensor | None, n: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each sample; ``batch`` must be sorted (as collated batches are)."""
    if batch is None:
        return [(0, n)]
    b = batch.detach().cpu()
    if b.shape != (n,):
        raise ValueError(f"batch: expected shape ({n},), got {tuple(b.shape)}")
    if n and bool((b[1:] < b[:-1]).any()):
        raise ValueError("batch must be sorted (samples concatenated one after the other)")
    counts = torch.bincount(b, minlength=int(b.max()) + 1 if n else 0).tolist()
    bounds = np.cumsum([0] + counts)
    return [(int(a), int(z)) for a, z in zip(bounds[:-1], bounds[1:])]


def _paired_segments(source_batch: Tensor | None, n_source: int, target_batch: Tensor | None,
                     n_target: int, who: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Per-sample ``[start, stop)`` of sources and targets; a side without a batch is shared."""
    seg_s, seg_t = _segments(source_batch, n_source), _segments(target_batch, n_target)
    if source_batch is None and target_batch is not None:
        seg_s = seg_s * len(seg_t)
    elif target_batch is None and source_batch is not None:
        seg_t = seg_t * len(seg_s)
    if len(seg_s) != len(seg_t):
        raise ValueError(f"{who}: {len(seg_s)} source samples but {len(seg_t)} target samples")
    return seg_s, seg_t


def radius_graph(pos: Tensor, radius: float, batch: Tensor | None = None, *,
                 domain: Domain | None = None, loop: bool = False) -> Tensor:
    """Directed edges between particles closer than ``radius`` (inclusive), both directions.

    Args:
        pos: ``(N, D)`` positions.
        radius: connectivity radius.
        batch: ``(N,)`` sorted sample index of each particle; edges never join samples.
        domain: the box; on its periodic axes distances are minimum images.
        loop: also add the self-edge of every particle.

    Returns:
        ``edge_index (2, E)`` int64 on ``pos.device``, sorted by receiver then sender.
    """
    if not radius > 0:
        raise ValueError(f"radius_graph: radius must be > 0, got {radius}")
    x = _as_numpy(pos, "radius_graph")
    parts = []
    for a, z in _segments(batch, x.shape[0]):
        if z - a < 1:
            continue
        y, box = _tree_coords(x[a:z].copy(), domain)
        pairs = cKDTree(y, boxsize=box).query_pairs(radius, output_type="ndarray")
        pairs = np.concatenate([pairs, pairs[:, ::-1]]) + a
        if loop:
            self_ = np.arange(a, z)
            pairs = np.concatenate([pairs, np.stack([self_, self_], 1)])
        parts.append(pairs)
    e = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    e = e[np.lexsort((e[:, 0], e[:, 1]))]
    return torch.from_numpy(np.ascontiguousarray(e.T).astype(np.int64)).to(pos.device)


def radius_bipartite(source: Tensor, target: Tensor, radius: float, *,
                     source_batch: Tensor | None = None, target_batch: Tensor | None = None,
                     domain: Domain | None = None) -> Tensor:
    """Edges from every ``source`` point to every ``target`` point within ``radius`` (inclusive).

    Args:
        source: ``(N, D)`` points that send.
        target: ``(M, D)`` points that receive.
        source_batch, target_batch: ``(N,)``, ``(M,)`` sorted sample indices; only points of the
            same sample are joined (both None: one sample; one None: that side is shared by
            every sample, e.g. a fixed latent grid).
        domain: the box (minimum images on periodic axes).

    Returns:
        ``edge_index (2, E)``: row 0 indexes ``source``, row 1 ``target``; sorted by target.
    """
    if not radius > 0:
        raise ValueError(f"radius_bipartite: radius must be > 0, got {radius}")
    xs, xt = _as_numpy(source, "radius_bipartite source"), _as_numpy(target, "radius_bipartite target")
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"radius_bipartite: source has {xs.shape[1]} coordinates, target {xt.shape[1]}")
    seg_s, seg_t = _paired_segments(source_batch, xs.shape[0], target_batch, xt.shape[0], "radius_bipartite")
    parts = []
    for (a, z), (c, w) in zip(seg_s, seg_t):
        if z - a < 1 or w - c < 1:
            continue
        ys, box = _tree_coords(xs[a:z].copy(), domain)
        yt, _ = _tree_coords(xt[c:w].copy(), domain)
        m = cKDTree(yt, boxsize=box).sparse_distance_matrix(
            cKDTree(ys, boxsize=box), radius, output_type="ndarray")
        parts.append(np.stack([m["j"] + a, m["i"] + c], 1))
    e = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    e = e[np.lexsort((e[:, 0], e[:, 1]))]
    return torch.from_numpy(np.ascontiguousarray(e.T).astype(np.int64)).to(source.device)


def knn_bipartite(source: Tensor, target: Tensor, k: int, *, source_batch: Tensor | None = None,
                  target_batch: Tensor | None = None, domain: Domain | None = None) -> Tensor:
    """Edges from the ``k`` nearest ``source`` points of each ``target`` point (fewer when a sample
    has fewer than ``k`` sources; none when it has no source).

    Batches and the domain work as in :func:`radius_bipartite`. Returns ``edge_index (2, E)``
    (row 0 sources, row 1 targets), sorted by target and, per target, nearest first.
    """
    if k < 1:
        raise ValueError(f"knn_bipartite: k must be >= 1, got {k}")
    xs, xt = _as_numpy(source, "knn_bipartite source"), _as_numpy(target, "knn_bipartite target")
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"knn_bipartite: source has {xs.shape[1]} coordinates, target {xt.shape[1]}")
    seg_s, seg_t = _paired_segments(source_batch, xs.shape[0], target_batch, xt.shape[0], "knn_bipartite")
    parts = []
    for (a, z), (c, w) in zip(seg_s, seg_t):
        if z - a < 1 or w - c < 1:
            continue
        kk = min(k, z - a)
        ys, box = _tree_coords(xs[a:z].copy(), domain)
        yt, _ = _tree_coords(xt[c:w].copy(), domain)
        _, j = cKDTree(ys, boxsize=box).query(yt, kk)
        j = j.reshape(w - c, kk)
        i = np.repeat(np.arange(c, w), kk)
        parts.append(np.stack([j.ravel() + a, i], 1))
    e = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    return torch.from_numpy(np.ascontiguousarray(e.T).astype(np.int64)).to(source.device)


__all__ = ["Domain", "knn_bipartite", "radius_bipartite", "radius_graph"]
