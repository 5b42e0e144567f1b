"""A CRPS-trained ensemble stepper: one operator call per member, trained with the fair CRPS.

The operator gets a fresh random input with every call and learns to turn it into a sample of
the next state. Training draws ``train_samples = m >= 2`` noises per input, makes ``m`` samples
in one batched operator call and minimises their fair CRPS against the target, cell by cell,

    CRPS = mean_i |x_i - y| - sum_{i,j} |x_i - x_j| / (2 m (m - 1)),

which is minimised in expectation when the samples are drawn from the true conditional
distribution (a proper score): the first term pulls the samples onto the target, the second
pushes them apart. The fair form is unbiased for any ``m``, so training with two samples is
right, only noisier. At inference every ensemble member costs one operator call (flow matching
needs one per integration step).

Where the randomness enters:

- ``noise="latent"`` (default): a standard normal vector of ``noise_dim`` entries is appended to
  the conditioning (after the parameters), so it reaches every layer through the operator's
  FiLM / conditioning path and can change the whole field coherently;
- ``noise="channels"``: one white-noise field per state channel is appended to the operator's
  input channels (zero in solid cells).

Everything is in the operator's output space (the residual-scaled change, see ``target_of``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from sciflow.metrics.probabilistic import crps_cells
from sciflow.steppers.base import Stepper
from sciflow.steppers.generative import load_matching_operator_weights

NOISE_KINDS = ("latent", "channels")


class CRPSEnsemble(Stepper):
    """CRPS-trained stochastic stepper; see the module docstring.

    Args:
        operator: operator spec.
        noise: ``"latent"`` (a noise vector through the conditioning) or ``"channels"`` (noise
            fields as extra input channels).
        noise_dim: entries of the latent noise vector (``noise="latent"`` only).
        train_samples: samples ``m >= 2`` per input in the training loss (the batch the operator
            sees in training is ``m`` times the data batch).
        init_from: optional checkpoint whose operator tensors initialise this operator where
            names and shapes match (e.g. a trained deterministic model: CRPS fine-tuning); see
            :func:`~sciflow.steppers.generative.load_matching_operator_weights`.
        n_channels, ..., residual_scale: data sizes and the residual parametrisation, as for
            :class:`~sciflow.steppers.base.Stepper`.
    """

    stochastic = True

    def __init__(self, operator: Mapping[str, Any], *, n_channels: int, n_dims: int, n_params: int = 0,
                 history: int = 1, has_mask: bool = False, periodic: bool = False, residual: bool = True,
                 residual_scale: Sequence[float] | None = None, noise: str = "latent", noise_dim: int = 16,
                 train_samples: int = 2, init_from: str | None = None):
        if noise not in NOISE_KINDS:
            raise ValueError(f"noise {noise!r} unknown; use one of {list(NOISE_KINDS)}")
        if int(train_samples) != train_samples or train_samples < 2:
            raise ValueError(f"train_samples must be an integer >= 2 (the fair CRPS needs two samples), "
                             f"got {train_samples}")
        if noise == "latent" and (int(noise_dim) != noise_dim or noise_dim < 1):
            raise ValueError(f"noise_dim must be an integer >= 1, got {noise_dim}")
        # the sizes the base class builds the operator with; set before it does so
        self.state_inputs = 1 if noise == "channels" else 0
        self.extra_cond = int(noise_dim) if noise == "latent" else 0
        super().__init__(operator, n_channels=n_channels, n_dims=n_dims, n_params=n_params, history=history,
                         has_mask=has_mask, periodic=periodic, residual=residual, residual_scale=residual_scale)
        self.noise, self.noise_dim, self.train_samples = noise, int(noise_dim), int(train_samples)
        self.init_report: dict[str, list[str]] | None = None
        if init_from is not None:
            loaded, skipped = load_matching_operator_weights(self.operator, init_from)
            self.init_report = {"loaded": loaded, "skipped": skipped}

    # -- one member ---------------------------------------------------------------------------------
    def draw_noise(self, prev: Tensor, mask: Tensor | None, generator: torch.Generator | None = None) -> Tensor:
        """Standard normal noise for a batch: ``(B, noise_dim)`` (latent) or ``(B, C, *S)``
        (channels, zero in solid cells). Drawn where ``generator`` lives, so a CPU-seeded
        sample is the same on any device; None uses the global RNG."""
        B = prev.shape[0]
        shape = (B, self.noise_dim) if self.noise == "latent" else (B, *prev.shape[2:])
        where = prev.device if generator is None else generator.device
        z = torch.randn(shape, generator=generator, device=where, dtype=prev.dtype).to(prev.device)
        if self.noise == "channels" and mask is not None:
            z = z * mask.unsqueeze(1).to(z.dtype)
        return z

    def sample(self, prev: Tensor, cond: Tensor | None, mask: Tensor | None, noise: Tensor) -> Tensor:
        """One operator call: a sample in the operator's output space ``(B, C, *S)`` (solid
        cells zero) for history ``prev (B, h, C, *S)`` and ``noise`` from :meth:`draw_noise`."""
        B = prev.shape[0]
        if self.noise == "latent":
            x = self.inputs(prev, mask)
            parts = ([] if cond is None or self.n_params == 0 else [cond]) + [noise.to(prev.dtype)]
            c = torch.cat(parts, dim=1)
        else:
            x = self.inputs(prev, mask, noise)
            c = self.cond(cond, batch=B)
        y = self.operator(x, c)
        return y if mask is None else y * mask.unsqueeze(1).to(y.dtype)

    # -- the stepper contract -------------------------------------------------------------------------
    def loss(self, prev: Tensor, target: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Fair CRPS of ``train_samples`` samples per input (one batched operator call, noise
        from the global RNG), averaged over fluid cells and channels."""
        m, B = self.train_samples, prev.shape[0]
        rep = lambda t: None if t is None else t.repeat(m, *([1] * (t.ndim - 1)))  # noqa: E731
        prev_m, mask_m = rep(prev), rep(mask)
        y = self.sample(prev_m, rep(cond), mask_m, self.draw_noise(prev_m, mask_m))
        samples = y.view(m, B, *y.shape[1:])  # sample s of input b is row s * B + b
        want = self.target_of(prev, target)
        if mask is not None:
            want = want * mask.unsqueeze(1).to(want.dtype)
        return self.masked_mean(crps_cells(samples, want), mask)

    def step(self, prev: Tensor, cond: Tensor | None = None, mask: Tensor | None = None, *,
             generator: torch.Generator | None = None) -> Tensor:
        """One member's next state ``(B, C, *S)``: fresh noise from ``generator``, one operator call."""
        y = self.sample(prev, cond, mask, self.draw_noise(prev, mask, generator))
        return self.state_of(prev, y, mask)
