"""Energy spectra along periodic axes and the relative spectrum error by wavenumber band.

Wavenumbers are integers in cycles per domain length (``j`` means ``j`` periods over the
axis). The spectrum is normalised so that Parseval reads ``E.sum(-1) == mean(u^2)`` over space:
a spectrum is the split of the mean energy density across wavenumbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sciflow.metrics.spatial import as_float64, check_same_shape


def energy_spectrum(u: Tensor, *, spatial_dims: int | None = None) -> Tensor:
    """Energy spectrum of ``u: (*lead, *S)`` along its last 1 or 2 (periodic) axes.

    ``spatial_dims`` defaults to ``u.ndim - 2`` (the ``(B, C, *S)`` convention). Returns
    ``E: (*lead, K)`` float64 with ``E[..., j]`` the energy at integer wavenumber ``j``:
    1D, ``K = N // 2 + 1`` and ``+j``/``-j`` are folded together; 2D, modes are binned by
    ``round(sqrt(jx^2 + jy^2))`` (radial shells, ``K`` = largest shell + 1).
    """
    x = torch.as_tensor(u).to(torch.float64)
    d = x.ndim - 2 if spatial_dims is None else spatial_dims
    if d not in (1, 2) or x.ndim < d:
        raise ValueError(
            f"energy_spectrum handles 1 or 2 spatial axes, got spatial_dims={d} for shape "
            f"{tuple(x.shape)}"
        )
    if d == 1:
        n = x.shape[-1]
        e = torch.fft.rfft(x, dim=-1).abs() ** 2 / n**2
        fold = torch.full((e.shape[-1],), 2.0, dtype=torch.float64, device=x.device)
        fold[0] = 1.0
        if n % 2 == 0:
            fold[-1] = 1.0  # the Nyquist mode has no mirror
        return e * fold
    nx, ny = x.shape[-2:]
    e = torch.fft.fft2(x, dim=(-2, -1)).abs() ** 2 / (nx * ny) ** 2
    jx = torch.fft.fftfreq(nx, d=1.0 / nx, dtype=torch.float64, device=x.device)
    jy = torch.fft.fftfreq(ny, d=1.0 / ny, dtype=torch.float64, device=x.device)
    shell = torch.sqrt(jx[:, None] ** 2 + jy[None, :] ** 2).round().to(torch.int64).flatten()
    K = int(shell.max()) + 1
    flat = e.reshape(*e.shape[:-2], nx * ny)
    out = torch.zeros(*flat.shape[:-1], K, dtype=torch.float64, device=x.device)
    return out.index_add_(-1, shell, flat)


def wavenumber_bands(K: int, bands: int | Sequence[tuple[int, int]] = 3) -> list[tuple[int, int]]:
    """Half-open integer bands ``[lo, hi)`` over wavenumbers ``0..K-1``.

    An int ``n`` splits ``1..K-1`` (the mean mode ``j = 0`` left out) into ``n`` contiguous
    bands of near-equal width: low, mid, high for ``n = 3``. Explicit bands are checked.
    """
    if isinstance(bands, int):
        if not 1 <= bands <= K - 1:
            raise ValueError(f"cannot split wavenumbers 1..{K - 1} into {bands} bands")
        edges = torch.linspace(1, K, bands + 1).round().to(torch.int64).tolist()
        return [(edges[i], edges[i + 1]) for i in range(bands)]
    out = [(int(lo), int(hi)) for lo, hi in bands]
    for lo, hi in out:
        if not 0 <= lo < hi <= K:
            raise ValueError(f"band [{lo}, {hi}) is empty or outside wavenumbers 0..{K - 1}")
    return out


def spectrum_error(
    pred: Tensor,
    truth: Tensor,
    bands: int | Sequence[tuple[int, int]] = 3,
    *,
    spatial_dims: int | None = None,
    eps: float = 1e-12,
) -> Tensor:
    """Relative spectrum error per wavenumber band: ``(*lead, n_bands)``, lead = ``(B,)`` for
    ``(B, C, *S)`` input.

    Spectra are summed over channels (total energy), then for each band
    ``sum_band |E_pred - E_truth| / (sum_band E_truth + eps * sum_all E_truth)``: 0 for a
    perfect spectrum, 1 for a field with no energy in the band. ``eps`` (relative to the truth's
    total energy) keeps bands that the truth leaves empty up to round-off (e.g. modes removed by
    dealiasing) from dividing noise by noise: such a band scores ~0 unless the prediction puts
    energy there.
    """
    p = as_float64(pred, "pred", min_ndim=2)
    t = as_float64(truth, "truth", min_ndim=2)
    check_same_shape("pred", p, "truth", t)
    d = p.ndim - 2 if spatial_dims is None else spatial_dims
    ep = energy_spectrum(p, spatial_dims=d)
    et = energy_spectrum(t, spatial_dims=d)
    if p.ndim - d >= 2:  # there is a channel axis just before the spatial ones
        ep, et = ep.sum(dim=-2), et.sum(dim=-2)
    diff = (ep - et).abs()
    floor = eps * et.sum(dim=-1)
    cols = []
    for lo, hi in wavenumber_bands(et.shape[-1], bands):
        num = diff[..., lo:hi].sum(dim=-1)
        den = et[..., lo:hi].sum(dim=-1) + floor
        # an all-zero truth leaves den = 0: 0 if the prediction is zero too, inf otherwise
        safe = torch.where(den > 0, den, torch.ones_like(den))
        zero_den = torch.where(num > 0, torch.full_like(num, float("inf")), torch.zeros_like(num))
        cols.append(torch.where(den > 0, num / safe, zero_den))
    return torch.stack(cols, dim=-1)


__all__ = ["energy_spectrum", "spectrum_error", "wavenumber_bands"]
