"""Pointwise errors reduced over space: MSE, MAE, NMSE, nRMSE, VRMSE, all optionally masked.

Shapes: ``pred``, ``truth: (B, C, *S)`` (at least one spatial axis); ``mask: (B, *S)`` or
``(*S)`` bool, True on the cells that count (fluid cells). Every metric averages over the masked
cells of each sample and returns ``(B,)`` float64 (``per_channel=True``: ``(B, C)``), so callers
average over samples and steps as they like. Computation is in float64.

The helpers ``as_float64``, ``check_same_shape`` and ``masked_mean`` are shared by the other
metric modules.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def as_float64(x: Tensor, name: str, *, min_ndim: int = 3) -> Tensor:
    """``x`` as a float64 tensor on its own device; ValueError if it has < ``min_ndim`` axes."""
    x = torch.as_tensor(x)
    if x.ndim < min_ndim:
        raise ValueError(
            f"{name}: expected at least {min_ndim} axes (B, C, *S), got {tuple(x.shape)}"
        )
    return x.to(torch.float64)


def check_same_shape(a_name: str, a: Tensor, b_name: str, b: Tensor) -> None:
    """Raise ValueError naming both shapes when ``a`` and ``b`` differ."""
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def mask_weights(mask: Tensor | None, shape: torch.Size, device: torch.device) -> Tensor | None:
    """Turn ``mask: (B, *S)`` or ``(*S)`` into float64 weights broadcastable to ``(B, C, *S)``."""
    if mask is None:
        return None
    mask = torch.as_tensor(mask, device=device)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool, got dtype {mask.dtype}")
    B, S = shape[0], tuple(shape[2:])
    if tuple(mask.shape) == S:
        w = mask.reshape(1, 1, *S)
    elif tuple(mask.shape) == (B, *S):
        w = mask.unsqueeze(1)
    else:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not fit fields of shape {tuple(shape)}: "
            f"expected {S} or {(B, *S)}"
        )
    return w.to(torch.float64)


def masked_mean(x: Tensor, mask: Tensor | None = None, *, per_channel: bool = False) -> Tensor:
    """Mean of ``x: (B, C, *S)`` over masked space (and channels unless ``per_channel``).

    Returns ``(B,)`` or ``(B, C)``. ValueError if a sample's mask selects no cell.
    """
    x = x.to(torch.float64)
    space = tuple(range(2, x.ndim))
    dims = space if per_channel else (1, *space)
    w = mask_weights(mask, x.shape, x.device)
    if w is None:
        return x.mean(dim=dims)
    w = w.expand_as(x)
    count = w.sum(dim=dims)
    if bool((count == 0).any()):
        empty = torch.nonzero(count.reshape(x.shape[0], -1).sum(-1) == 0).flatten().tolist()
        raise ValueError(f"mask selects no cell for samples {empty}")
    return (x * w).sum(dim=dims) / count


def _pair(pred: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    p = as_float64(pred, "pred")
    t = as_float64(truth, "truth")
    check_same_shape("pred", p, "truth", t)
    return p, t


def mse(
    pred: Tensor, truth: Tensor, mask: Tensor | None = None, *, per_channel: bool = False
) -> Tensor:
    """Mean squared error over masked space (and channels): ``(B,)`` or ``(B, C)``."""
    p, t = _pair(pred, truth)
    return masked_mean((p - t) ** 2, mask, per_channel=per_channel)


def mae(
    pred: Tensor, truth: Tensor, mask: Tensor | None = None, *, per_channel: bool = False
) -> Tensor:
    """Mean absolute error over masked space (and channels): ``(B,)`` or ``(B, C)``."""
    p, t = _pair(pred, truth)
    return masked_mean((p - t).abs(), mask, per_channel=per_channel)


def nmse(
    pred: Tensor,
    truth: Tensor,
    mask: Tensor | None = None,
    *,
    per_channel: bool = False,
    eps: float = 0.0,
) -> Tensor:
    """CFDBench's normalised MSE, ``mean((pred - truth)^2) / (mean(truth^2) + eps)``.

    Both means run over the same cells (and channels, pooled, unless ``per_channel``), so
    ``nmse(0, truth) == 1``. ``(B,)`` or ``(B, C)``; a zero truth with ``eps = 0`` gives inf/NaN.
    """
    p, t = _pair(pred, truth)
    num = masked_mean((p - t) ** 2, mask, per_channel=per_channel)
    den = masked_mean(t**2, mask, per_channel=per_channel)
    return num / (den + eps)


def nrmse(
    pred: Tensor,
    truth: Tensor,
    mask: Tensor | None = None,
    *,
    per_channel: bool = False,
    eps: float = 0.0,
) -> Tensor:
    """``sqrt(nmse)``: RMSE relative to the RMS of the truth. ``(B,)`` or ``(B, C)``."""
    return nmse(pred, truth, mask, per_channel=per_channel, eps=eps).sqrt()


def vrmse(
    pred: Tensor,
    truth: Tensor,
    mask: Tensor | None = None,
    *,
    per_channel: bool = False,
    eps: float = 1e-7,
) -> Tensor:
    """The Well's variance-scaled RMSE, ``sqrt(mse / (var(truth) + eps))`` per channel.

    ``var`` is the spatial variance of the truth over the masked cells of each sample and
    channel, so predicting the spatial mean scores ~1. Channels are normalised separately and
    then averaged (``per_channel=False``): ``(B,)``; or kept: ``(B, C)``.
    """
    p, t = _pair(pred, truth)
    err = masked_mean((p - t) ** 2, mask, per_channel=True)
    mean_t = masked_mean(t, mask, per_channel=True)
    centred = t - mean_t.reshape(*mean_t.shape, *([1] * (t.ndim - 2)))
    var = masked_mean(centred**2, mask, per_channel=True)
    out = (err / (var + eps)).sqrt()
    return out if per_channel else out.mean(dim=1)


__all__ = [
    "as_float64",
    "check_same_shape",
    "mae",
    "mask_weights",
    "masked_mean",
    "mse",
    "nmse",
    "nrmse",
    "vrmse",
]


def grouped_nmse(
    pred: Tensor,
    truth: Tensor,
    groups: Sequence[Sequence[int]],
    mask: Tensor | None = None,
) -> Tensor:
    """NMSE per group of channels, ``(B, C, *S) -> (B, G)``: channels of one group (the components
    of a vector field, which share units) are pooled, groups (fields of different units) are
    scored separately. ``groups`` lists channel indices, e.g. ``[[0, 1], [2]]`` for velocity and
    pressure."""
    return torch.stack([nmse(pred[:, list(g)], truth[:, list(g)], mask) for g in groups], dim=-1)
