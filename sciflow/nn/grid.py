"""Helpers on the spatial grid: padding to a size and cropping back, spectral resizing,
coordinate channels. Shared by the grid operators (FNO, U-Net)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _spatial(x: Tensor, n_dims: int) -> tuple[int, ...]:
    if x.ndim != n_dims + 2:
        raise ValueError(
            f"expected x of shape (B, C, *S) with {n_dims} spatial dims, got {tuple(x.shape)}"
        )
    return tuple(x.shape[2:])


def pad_spatial(
    x: Tensor, before: Sequence[int], after: Sequence[int], mode: str = "constant"
) -> Tensor:
    """Pad the trailing ``len(before)`` axes of x: (B, C, *S) by ``before[i]``/``after[i]`` cells.

    ``mode`` is one of torch's ``constant`` (zeros), ``replicate``, ``reflect``, ``circular``.
    """
    if len(before) != len(after):
        raise ValueError(f"before {tuple(before)} and after {tuple(after)} differ in length")
    if not any(before) and not any(after):
        return x
    # F.pad takes (last_before, last_after, second_last_before, ...).
    pads: list[int] = []
    for b, a in zip(reversed(before), reversed(after)):
        pads += [int(b), int(a)]
    if mode == "constant":
        return F.pad(x, pads, mode="constant", value=0.0)
    return F.pad(x, pads, mode=mode)


def crop_spatial(x: Tensor, before: Sequence[int], size: Sequence[int]) -> Tensor:
    """Inverse of :func:`pad_spatial`: keep ``size[i]`` cells from offset ``before[i]`` on each of
    the trailing ``len(size)`` axes. x: (B, C, *S_padded) -> (B, C, *size)."""
    index = (Ellipsis,) + tuple(slice(b, b + n) for b, n in zip(before, size))
    return x[index]


def pad_to_multiple(
    x: Tensor, multiple: int, n_dims: int, mode: str = "constant"
) -> tuple[Tensor, tuple[int, ...]]:
    """Pad every spatial axis of x: (B, C, *S) at its end up to a multiple of ``multiple``.

    Returns the padded tensor and the original spatial size (for :func:`crop_spatial` with
    ``before = (0,) * n_dims``).
    """
    size = _spatial(x, n_dims)
    after = [(-n) % multiple for n in size]
    if mode == "circular" and any(a > n for a, n in zip(after, size)):
        raise ValueError(f"cannot circularly pad spatial size {size} to a multiple of {multiple}")
    return pad_spatial(x, [0] * n_dims, after, mode), size


def fourier_resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Band-limited (trigonometric) interpolation of a periodic field to a new grid size.

    x: (B, C, *S) sampled at ``j L / S_i`` on each of the trailing ``len(size)`` axes ->
    (B, C, *size). Modes that fit both grids are kept with their amplitude; the rest are dropped
    (a Nyquist mode of an even grid is dropped too, as it has no unique continuation).
    """
    n = len(size)
    out = x
    for axis, new in zip(range(x.ndim - n, x.ndim), size):
        old = out.shape[axis]
        if old == new:
            continue
        # FFTs of half-precision tensors are limited to power-of-two sizes: compute in float32.
        real = out if out.dtype in (torch.float32, torch.float64) else out.float()
        spec = torch.fft.rfft(real, dim=axis, norm="forward")
        keep = (min(old, new) + 1) // 2  # modes 0 .. keep-1 are unambiguous on both grids
        spec = spec.narrow(axis, 0, keep)
        out = torch.fft.irfft(spec, n=new, dim=axis, norm="forward").to(x.dtype)
    return out


def coordinate_channels(batch: int, size: Sequence[int], *, device=None, dtype=None) -> Tensor:
    """Cell-centred coordinates in [0, 1] of a regular grid, one channel per axis.

    Returns (batch, len(size), *size); channel i holds ``(j_i + 0.5) / size[i]``.
    """
    axes = [(torch.arange(n, device=device, dtype=dtype) + 0.5) / n for n in size]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh, dim=0).unsqueeze(0).expand(batch, -1, *size)
