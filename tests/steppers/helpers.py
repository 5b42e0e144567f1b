"""Helpers shared by the stepper tests: a tiny operator, steppers on a 1D grid, stub operators
and a toy linear PDE (advection-diffusion on a periodic line, solved exactly in Fourier space)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sciflow.steppers import build_stepper

NX = 32
TINY_FNO = {"class_path": "fno", "init_args": {"width": 12, "modes": 8, "n_layers": 2, "embed_dim": 16}}
SPECS = {
    "deterministic": "deterministic",
    "flow_matching": {"class_path": "flow_matching", "init_args": {"n_steps": 2, "solver": "midpoint"}},
    "refiner": {"class_path": "refiner", "init_args": {"K": 2}},
    "crps": {"class_path": "crps", "init_args": {"noise_dim": 4}},
    "crps_channels": {"class_path": "crps", "init_args": {"noise": "channels"}},
}


def make_stepper(spec, *, n_channels: int = 1, history: int = 1, n_params: int = 1, has_mask: bool = False,
                 residual_scale=None, **kw):
    """A stepper around the tiny FNO on a periodic 1D grid."""
    return build_stepper(spec, operator=TINY_FNO, n_channels=n_channels, n_dims=1, n_params=n_params,
                         history=history, has_mask=has_mask, periodic=True, residual_scale=residual_scale, **kw)


class CallCounter(nn.Module):
    """Wraps an operator, counts its forward calls and keeps their inputs."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        self.calls += 1
        self.inputs.append(x.detach().clone())
        return self.inner(x, cond)


class HistoryOnly(nn.Module):
    """An operator that looks only at the first ``n_in`` input channels (the history) and records
    the inputs it got; lets steppers with different input layouts share one function."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.n_in = n_in
        self.conv = nn.Conv1d(n_in, n_out, 3, padding=1, padding_mode="circular")
        self.seen: list[tuple[Tensor, Tensor | None]] = []

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        self.seen.append((x.detach().clone(), None if cond is None else cond.detach().clone()))
        return self.conv(x[:, : self.n_in])


def advection_diffusion(u0: Tensor, dt: float, speed: float = 1.0, nu: float = 0.01) -> Tensor:
    """Exact solution operator of ``u_t + speed u_x = nu u_xx`` on the periodic unit interval
    applied for time ``dt``: ``u0 (..., nx) -> (..., nx)``."""
    k = 2 * math.pi * torch.fft.rfftfreq(u0.shape[-1], d=1.0 / u0.shape[-1])
    factor = torch.exp((-1j * speed * k - nu * k**2) * dt)
    return torch.fft.irfft(torch.fft.rfft(u0.double()) * factor, n=u0.shape[-1]).to(u0.dtype)


def toy_batch(batch: int, generator: torch.Generator, dt: float = 0.05) -> tuple[Tensor, Tensor, Tensor]:
    """Pairs of a random smooth field and its exact successor, with the speed as a parameter:
    ``prev (B, 1, 1, NX)``, ``target (B, 1, NX)``, ``cond (B, 1)``, all of unit scale."""
    x = (torch.arange(NX) + 0.5) / NX
    modes = torch.arange(1, 4)
    amp = torch.randn(batch, 3, 1, generator=generator) / modes.view(1, 3, 1)
    phase = 2 * math.pi * torch.rand(batch, 3, 1, generator=generator)
    u0 = torch.sum(amp * torch.sin(2 * math.pi * modes.view(1, 3, 1) * x + phase), dim=1)
    speed = 0.5 + torch.rand(batch, generator=generator)
    u1 = torch.stack([advection_diffusion(u0[i], dt, float(speed[i])) for i in range(batch)])
    return u0.view(batch, 1, 1, NX), u1.view(batch, 1, NX), (speed - 1.0).view(batch, 1)
