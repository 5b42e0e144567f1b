"""PDE-Refiner (Lippe et al. 2023): a one-step prediction refined by K denoising steps.

Level ``k = 0`` predicts the (residual-scaled) next state from the history with a zero noised
estimate, trained with a plain MSE. Levels ``k = 1..K`` add Gaussian noise of standard deviation
``sigma_k = min_noise_std ** (k / K)`` to the current estimate; the operator, given the history,
the noised estimate and ``k / K``, predicts the noise, and the estimate becomes
``noised - sigma_k * predicted_noise``. Training draws ``k`` uniformly from ``0..K`` (or with
``level_weights``), noising the ground truth for ``k >= 1`` and regressing the noise. Sampling
costs ``K + 1`` operator calls, with fresh noise at every refinement, so rollouts are stochastic.

``min_noise_std`` is the standard deviation sigma_min (not its square): the paper's KS setting
``sigma_min^2 = 2e-7`` is the default ``min_noise_std = sqrt(2e-7) ~ 4.5e-4``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from sciflow.steppers.generative import Generative, Noise, Predict, broadcast


class Refiner(Generative):
    """PDE-Refiner stepper; see the module docstring.

    Args:
        operator: operator spec.
        K: number of refinement (denoising) steps; ``K + 1`` operator calls per model step.
        min_noise_std: sigma_min, the noise std of the last level ``k = K``, in (0, 1).
        level_weights: relative frequency of each level ``0..K`` in training (``K + 1``
            non-negative numbers, normalised); None draws them uniformly. More weight on level 0
            helps when the budget is too small to train every level well.
        init_from: see :class:`~sciflow.steppers.generative.Generative`.
        n_channels, ..., residual_scale: data sizes and the residual parametrisation, as for
            :class:`~sciflow.steppers.base.Stepper`.
    """

    def __init__(self, operator: Mapping[str, Any], *, n_channels: int, n_dims: int, n_params: int = 0,
                 history: int = 1, has_mask: bool = False, periodic: bool = False, residual: bool = True,
                 residual_scale: Sequence[float] | None = None,
                 K: int = 3, min_noise_std: float = math.sqrt(2e-7), level_weights: Sequence[float] | None = None,
                 init_from: str | None = None):
        if int(K) != K or K < 1:
            raise ValueError(f"K must be an integer >= 1, got {K}")
        if not 0.0 < min_noise_std < 1.0:
            raise ValueError(f"min_noise_std must be in (0, 1), got {min_noise_std}")
        K = int(K)
        probs = torch.ones(K + 1) if level_weights is None else torch.as_tensor(level_weights, dtype=torch.float64)
        if probs.shape != (K + 1,) or not bool(torch.all(probs >= 0)) or float(probs.sum()) <= 0:
            raise ValueError(f"level_weights must be K + 1 = {K + 1} non-negative numbers with a positive sum, "
                             f"got {level_weights}")
        super().__init__(operator, init_from=init_from, n_channels=n_channels, n_dims=n_dims,
                         n_params=n_params, history=history, has_mask=has_mask, periodic=periodic,
                         residual=residual, residual_scale=residual_scale)
        self.K, self.min_noise_std = K, float(min_noise_std)
        # not persistent: both follow from the constructor arguments
        self.register_buffer("level_probs", (probs / probs.sum()).float(), persistent=False)
        self.register_buffer("sigmas", self.noise_stds(K, min_noise_std), persistent=False)
        # the same values as Python floats for the sampler's loop (reading the buffer would wait
        # for the device at every level)
        self.sigma_values: list[float] = self.sigmas.tolist()

    @staticmethod
    def noise_stds(K: int, min_noise_std: float) -> Tensor:
        """``(K + 1,)``: ``sigma_k = min_noise_std ** (k / K)``, so ``sigma_0 = 1`` (unused: level 0
        sees a zero estimate, not a noised one) and ``sigma_K = min_noise_std``."""
        k = torch.arange(K + 1, dtype=torch.float64)
        return (min_noise_std ** (k / K)).float()

    @property
    def calls_per_step(self) -> int:
        return self.K + 1

    # -- the template's formulas ----------------------------------------------------------------------
    def draw_levels(self, batch: int, device: torch.device) -> Tensor:
        return torch.multinomial(self.level_probs, batch, replacement=True).to(device)

    def corrupt(self, y: Tensor, noise: Tensor, level: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k = level.long()
        valid = ((k >= 0) & (k <= self.K)).all()
        if k.device.type == "cpu":
            if not bool(valid):
                raise ValueError(f"refinement levels must lie in 0..{self.K}, got {k.tolist()}")
        else:  # checked on the device, without waiting for it (a device-side assert)
            torch._assert_async(valid, f"refinement levels must lie in 0..{self.K}")
        first = broadcast(k == 0, y).bool()
        noised = y + broadcast(self.sigmas[k], y) * noise
        x = torch.where(first, torch.zeros_like(y), noised)
        want = torch.where(first, y, noise)
        return x, want, k.to(y.dtype) / self.K

    def sample(self, predict: Predict, noise: Noise, zeros: Tensor) -> Tensor:
        y = predict(zeros, 0.0)
        for k in range(1, self.K + 1):
            noised = y + self.sigma_values[k] * noise()
            y = self.denoise(noised, predict(noised, k / self.K), k)
        return y

    def denoise(self, noised: Tensor, predicted_noise: Tensor, k: int) -> Tensor:
        """The estimate after level ``k``: ``noised - sigma_k * predicted_noise``, ``(B, C, *S)``."""
        return noised - self.sigma_values[k] * predicted_noise
