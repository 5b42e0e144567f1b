"""Correlation over a rollout: per-step Pearson correlation, high-correlation time, sample
decorrelation (PDE-Refiner's metrics, Lippe et al. 2023).

Shapes: ``pred``, ``truth: (B, C, *S)``; ``members: (M, B, C, *S)``; ``mask: (B, *S)`` or
``(*S)`` bool. A sample's field is flattened over channels and masked cells, as PDE-Refiner
does, and correlated as one vector.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from sciflow.metrics.spatial import as_float64, check_same_shape, mask_weights

DEFAULT_THRESHOLDS = (0.8, 0.9, 0.95)


def pearson_correlation(pred: Tensor, truth: Tensor, mask: Tensor | None = None) -> Tensor:
    """Pearson correlation of each sample over channels and masked space: ``(B,)`` float64.

    1 for ``pred == truth``, -1 for ``pred == -truth``; 0 when either field is constant.
    """
    p = as_float64(pred, "pred")
    t = as_float64(truth, "truth")
    check_same_shape("pred", p, "truth", t)
    w = mask_weights(mask, p.shape, p.device)
    dims = tuple(range(1, p.ndim))
    zp = _standardise_samples(p, w, dims)
    zt = _standardise_samples(t, w, dims)
    return (zp * zt).sum(dim=dims)


def _standardise_samples(x: Tensor, w: Tensor | None, dims: tuple[int, ...]) -> Tensor:
    """Centre each sample of ``x`` on its (masked) mean over ``dims`` and scale to unit norm.

    A constant sample maps to zeros, so its correlation with anything is 0 (it then counts as
    decorrelated rather than poisoning averages with NaN).
    """
    if w is None:
        mean = x.mean(dim=dims, keepdim=True)
        z = x - mean
    else:
        w = w.expand_as(x)
        count = w.sum(dim=dims, keepdim=True)
        if bool((count == 0).any()):
            raise ValueError("mask selects no cell for some sample")
        mean = (x * w).sum(dim=dims, keepdim=True) / count
        z = (x - mean) * w
    norm = z.pow(2).sum(dim=dims, keepdim=True).sqrt()
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    return torch.where(norm > 0, z / safe, torch.zeros_like(z))


def sample_decorrelation(members: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean pairwise Pearson correlation between ensemble members at one step: ``(B,)``.

    ``members: (M, B, C, *S)`` with ``M >= 2``; averages the ``M (M - 1) / 2`` distinct pairs.
    Falling correlation between samples signals that the model no longer knows the state
    (PDE-Refiner compares its decay with the decay of the correlation with the truth).
    """
    x = as_float64(members, "members", min_ndim=4)
    M = x.shape[0]
    if M < 2:
        raise ValueError(f"sample_decorrelation needs M >= 2 members, got members {tuple(x.shape)}")
    w = mask_weights(mask, x.shape[1:], x.device)
    dims = tuple(range(2, x.ndim))
    z = _standardise_samples(x, None if w is None else w.unsqueeze(0), dims)
    z = z.reshape(M, x.shape[1], -1)
    gram = torch.einsum("mbn,kbn->bmk", z, z)  # (B, M, M) correlations
    off = gram.sum(dim=(1, 2)) - torch.diagonal(gram, dim1=1, dim2=2).sum(dim=1)
    return off / (M * (M - 1))


def high_correlation_time(
    corr: Tensor,
    times: Tensor,
    threshold: float = 0.8,
    *,
    per_trajectory: bool = False,
    return_censored: bool = False,
) -> float | Tensor | tuple[float, bool] | tuple[Tensor, Tensor]:
    """Time of the first step whose correlation is below ``threshold``.

    ``corr: (T,)`` or ``(T, B)``, ``times: (T,)``. With ``(T, B)`` the correlation is first
    averaged over trajectories (PDE-Refiner's definition) and a float is returned; with
    ``per_trajectory=True`` each trajectory gets its own time, ``(B,)``. A NaN correlation (a
    blown-up rollout) counts as decorrelated.

    If the correlation never drops below the threshold, the time is *censored*: the result is
    ``times[-1]``, a lower bound (the rollout was too short to see the decorrelation), not a
    drop at the last step. ``return_censored=True`` returns ``(time, censored)`` with
    ``censored`` a bool (``(B,)`` bool tensor per trajectory) that says so; report censored
    times as ``>= time``.
    """
    c = torch.as_tensor(corr, dtype=torch.float64)
    t = torch.as_tensor(times, dtype=torch.float64, device=c.device)
    if c.ndim not in (1, 2) or t.ndim != 1 or c.shape[0] != t.shape[0] or t.numel() == 0:
        raise ValueError(
            f"corr must be (T,) or (T, B) with times (T,), got corr {tuple(c.shape)} "
            f"and times {tuple(t.shape)}"
        )
    if c.ndim == 2 and not per_trajectory:
        c = c.mean(dim=1)
    below = (c < threshold) | torch.isnan(c)  # (T,) or (T, B); NaN = the rollout blew up
    dropped = below.any(dim=0)
    first = torch.where(dropped, below.to(torch.int64).argmax(dim=0), t.shape[0] - 1)
    out = t[first]
    value = float(out) if out.ndim == 0 else out
    if not return_censored:
        return value
    return (value, not bool(dropped)) if out.ndim == 0 else (value, ~dropped)


def decorrelation_times(
    stream: Iterable[tuple[float, Tensor | float]],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    per_trajectory: bool = False,
) -> dict[float, float | Tensor]:
    """Consume ``(t, corr)`` pairs, ``corr`` a float or ``(B,)``, and return threshold -> time.

    Only the per-step correlations are kept (``T x B`` numbers), so a rollout can stream its
    steps through :func:`pearson_correlation` into this. Times follow
    :func:`high_correlation_time` (average over trajectories first unless ``per_trajectory``).
    """
    tracker = DecorrelationTracker()
    for t, c in stream:
        tracker.update(t, c)
    return tracker.times(thresholds, per_trajectory=per_trajectory)


class DecorrelationTracker:
    """Accumulates per-step correlations; ``times()`` gives the high-correlation times."""

    def __init__(self) -> None:
        self._t: list[float] = []
        self._c: list[Tensor] = []

    def update(self, t: float, corr: Tensor | float) -> None:
        """Record the correlation ``corr`` (float or ``(B,)``) at time ``t``."""
        c = torch.as_tensor(corr, dtype=torch.float64).detach().cpu().reshape(-1)
        if self._c and c.shape != self._c[0].shape:
            raise ValueError(
                f"corr at t={t} has shape {tuple(c.shape)}, earlier steps {tuple(self._c[0].shape)}"
            )
        if self._t and t <= self._t[-1]:
            raise ValueError(f"times must increase, got t={t} after t={self._t[-1]}")
        self._t.append(float(t))
        self._c.append(c)

    def times(
        self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *, per_trajectory: bool = False
    ) -> dict[float, float | Tensor]:
        """Threshold -> high-correlation time (float, or ``(B,)`` when ``per_trajectory``)."""
        if not self._t:
            raise ValueError("no steps recorded")
        corr = torch.stack(self._c)  # (T, B)
        times = torch.tensor(self._t, dtype=torch.float64)
        return {
            float(th): high_correlation_time(corr, times, th, per_trajectory=per_trajectory)
            for th in thresholds
        }


__all__ = [
    "DEFAULT_THRESHOLDS",
    "DecorrelationTracker",
    "decorrelation_times",
    "high_correlation_time",
    "pearson_correlation",
    "sample_decorrelation",
]
