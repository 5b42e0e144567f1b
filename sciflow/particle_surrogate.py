"""The particle Surrogate: a particle stepper (GNS kinematics around a graph operator) trained and
validated on particle windows, with the EMA, optimiser and checkpoints every surrogate shares.

Batches are :func:`sciflow.data.particles.collate_particles` batches (samples concatenated along
the particle axis). Positions enter and leave in the data's units; the stepper normalises
velocities and accelerations with the particle statistics of ``data_spec["stats"]`` (folded with
the training noise) and the parameters with their means and stds.

Validation and test log, on the one-step windows: the noise-free loss, the one-step position MSE
``{stage}/mse1`` and that of constant-velocity extrapolation ``{stage}/mse1_cv`` (the particle
analogue of copying the input); on the rollout windows: the position MSE over the rollout
``{stage}/rollout_mse``, its last step and ``{stage}/mse5|10|20`` where the rollout is that long
(rolled out by :func:`sciflow.particle_rollout.rollout_particles`).
Errors are averaged per sample, then over samples (LagrangeBench's order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from sciflow.metrics.particles import HORIZONS
from sciflow.particle_rollout import rollout_particles
from sciflow.steppers.particle import ParticleStepper
from sciflow.surrogate_base import SurrogateBase


class ParticleSurrogate(SurrogateBase):
    """Train and run a particle operator on one particle dataset.

    Args:
        operator: particle operator spec ``{"class_path": "gns", "init_args": {...}}``.
        noise_std: random-walk training noise on input positions (data units; GNS: 3e-4).
        lr, weight_decay, warmup_steps, min_lr_ratio, ema_decay: as for the grid Surrogate.
        data_spec: injected from :attr:`sciflow.data.particles.ParticleData.spec`.
    """

    def __init__(
        self,
        operator: dict[str, Any],
        noise_std: float = 3e-4,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.01,
        ema_decay: float | None = None,
        data_spec: dict[str, Any] | None = None,
    ):
        super().__init__()
        if data_spec is None:
            raise ValueError("ParticleSurrogate needs data_spec (geometry and statistics of the particle data); "
                             "it is injected from ParticleData.spec by the CLI, or pass datamodule.spec yourself")
        if data_spec.get("kind") != "particles":
            raise ValueError(f"ParticleSurrogate: data_spec is of kind {data_spec.get('kind', 'grid')!r}, expected "
                             f"'particles' (use sciflow.surrogate.Surrogate for grids)")
        missing = [k for k in ("dim", "history", "params", "bounds", "periodic", "radius", "dx", "stats")
                   if k not in data_spec]
        if missing:
            raise ValueError(f"ParticleSurrogate: data_spec lacks {missing}")
        self.save_hyperparameters()
        spec = data_spec
        self.stepper = ParticleStepper(
            operator, dim=int(spec["dim"]), history=int(spec["history"]), n_params=len(spec["params"]),
            bounds=spec["bounds"], periodic=spec["periodic"], radius=float(spec["radius"]), dx=float(spec["dx"]),
            stats=spec["stats"], kinematic_types=spec.get("kinematic_types", (1, 2)),
            fluid_bounds=spec.get("fluid_bounds"), noise_std=noise_std)
        self.init_ema()

    # -- inference ---------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_next(self, position: Tensor, particle_type: Tensor, batch: Tensor, params: Tensor | None,
                     kinematic: Tensor | None = None) -> Tensor:
        """Next positions ``(N, D)`` from ``position (h + 1, N, D)`` (see
        :meth:`sciflow.steppers.particle.ParticleStepper.step`)."""
        return self.inference_stepper.step(position, particle_type, batch, params, kinematic)

    # -- training ----------------------------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.stepper.loss(batch["position"], batch["target"][0], batch["particle_type"], batch["batch"],
                                 batch["params"])
        self.check_loss(loss, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=int(batch["params"].shape[0]))
        return loss

    # -- evaluation --------------------------------------------------------------------------------
    def per_sample_mse(self, pred: Tensor, truth: Tensor, batch: Tensor, n_samples: int) -> Tensor:
        """Position MSE (minimum images) of each sample ``(B,)`` from ``(N, D)`` clouds; ``batch (N,)``."""
        sq = self.stepper.domain.displacement(pred.double(), truth.double()).pow(2).mean(dim=-1)
        return scatter(sq, batch, dim=0, dim_size=n_samples, reduce="mean")

    def _evaluate(self, batch: Mapping[str, Tensor], dataloader_idx: int, stage: str) -> None:
        pos, target, types, owner, params = (batch["position"], batch["target"], batch["particle_type"],
                                             batch["batch"], batch["params"])
        B = int(params.shape[0])
        log = dict(batch_size=B, add_dataloader_idx=False, sync_dist=True)
        if dataloader_idx == 0:
            loss = self.inference_stepper.loss(pos, target[0], types, owner, params, noise=False)
            self.log(f"{stage}/loss", loss, **log)
            pred = self.predict_next(pos, types, owner, params, kinematic=target[0])
            err = self.per_sample_mse(pred, target[0], owner, B)
            cv = pos[-1] + self.stepper.domain.displacement(pos[-1], pos[-2])  # constant velocity
            err_cv = self.per_sample_mse(cv, target[0], owner, B)
            self.log(f"{stage}/mse1", err.mean().float(), prog_bar=True, **log)
            self.log(f"{stage}/mse1_cv", err_cv.mean().float(), **log)
        else:
            # through the rollout engine; only NaN/Inf stop it (a diverging rollout's error is its score)
            stream = rollout_particles([self], pos, types, params, target.shape[0], batch=owner, kinematic=target,
                                       blowup=math.inf)
            e = torch.stack([self.per_sample_mse(s.members[0], target[s.index - 1], owner, B) for s in stream],
                            1).float()  # (B, K)
            self.log(f"{stage}/rollout_mse", e.mean(), prog_bar=True, **log)
            self.log(f"{stage}/rollout_mse_last", e[:, -1].mean(), **log)
            for h in HORIZONS:
                if h <= e.shape[1]:
                    self.log(f"{stage}/mse{h}", e[:, :h].mean(), **log)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, dataloader_idx, "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, dataloader_idx, "test")


__all__ = ["ParticleSurrogate"]
