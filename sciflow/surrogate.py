"""The Surrogate: a LightningModule tying a stepper, the data's normalisation, an optimiser, an
EMA of the weights and validation metrics together, with self-describing checkpoints.

States enter and leave in physical units; inside, channels are normalised with the training
split's per-channel mean and std (solid cells set to zero), parameters with their mean and std.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciflow.data.datamodule import ONE_STEP, ROLLOUT
from sciflow.data.reader import field_groups
from sciflow.metrics.spatial import grouped_nmse
from sciflow.rollout import rollout
from sciflow.steppers import Stepper, build_stepper
from sciflow.surrogate_base import NonFiniteLossError, SurrogateBase


def rank_seed(seed: int, rank: int) -> int:
    """The global seed of DDP rank ``rank`` in a run seeded with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1, np.uint32)[0])


class Surrogate(SurrogateBase):
    """Train and run a stepper around an operator on one dataset of grids (EMA, optimiser and
    checkpoints: :class:`~sciflow.surrogate_base.SurrogateBase`).

    Args:
        operator: operator spec ``{"class_path": "fno", "init_args": {...}}`` (hyperparameters only).
        stepper: stepper spec (default deterministic with residual targets).
        lr, weight_decay: AdamW settings.
        warmup_steps: linear warm-up before the cosine decay (to ``lr * min_lr_ratio``).
        ema_decay: decay of the exponential moving average of the weights used for evaluation
            (None: no EMA).
        data_spec: data-derived sizes and statistics; injected from the datamodule's ``spec``.
    """

    def __init__(
        self,
        operator: dict[str, Any],
        stepper: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.01,
        ema_decay: float | None = None,
        data_spec: dict[str, Any] | None = None,
    ):
        super().__init__()
        if data_spec is None:
            raise ValueError(
                "Surrogate needs data_spec (sizes and normalisation of the data); it is injected from "
                "SciflowData.spec by the CLI, or pass datamodule.spec yourself"
            )
        self.save_hyperparameters()
        spec = data_spec
        stats = spec["stats"]
        C, P, n_dims = len(spec["channels"]), len(spec["params"]), len(spec["spatial_shape"])
        view = (1, C) + (1,) * n_dims
        f32 = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
        self.register_buffer("mean", f32(stats["mean"]).view(view))
        self.register_buffer("std", f32(stats["std"]).view(view))
        self.register_buffer("params_mean", f32(stats["params_mean"]).view(1, P))
        self.register_buffer("params_std", f32(stats["params_std"]).view(1, P))
        residual_scale = (f32(stats["std_delta"]) / f32(stats["std"])).tolist()
        self.stepper: Stepper = build_stepper(
            stepper, operator=operator, n_channels=C, n_dims=n_dims, n_params=P,
            history=int(spec["history"]), has_mask=bool(spec["has_mask"]),
            periodic=bool(spec.get("periodic", False)), residual_scale=residual_scale,
        )
        self.fields = field_groups(list(spec["channels"]), list(spec.get("spatial_dims", [])))
        self.init_ema()

    # -- normalisation ----------------------------------------------------------------------------
    def normalize(self, u: Tensor, mask: Tensor | None = None) -> Tensor:
        """Physical ``(B, [h,] C, *S)`` -> normalised, solid cells zero."""
        mean, std = self._stats_like(u)
        z = (u - mean) / std
        return z if mask is None else z * self._mask_like(mask, z)

    def denormalize(self, z: Tensor, mask: Tensor | None = None) -> Tensor:
        mean, std = self._stats_like(z)
        u = z * std + mean
        return u if mask is None else u * self._mask_like(mask, u)

    def normalize_params(self, params: Tensor) -> Tensor:
        """``(B, P)`` physical parameters -> normalised."""
        return (params - self.params_mean) / self.params_std

    def _stats_like(self, u: Tensor) -> tuple[Tensor, Tensor]:
        extra = u.ndim - self.mean.ndim  # a history axis before the channels
        shape = self.mean.shape if extra == 0 else (1,) * (1 + extra) + self.mean.shape[1:]
        return self.mean.view(shape), self.std.view(shape)

    @staticmethod
    def _mask_like(mask: Tensor, u: Tensor) -> Tensor:
        m = mask.to(u.dtype)
        while m.ndim < u.ndim:
            m = m.unsqueeze(1)
        return m

    def field_nmse(self, pred: Tensor, truth: Tensor, mask: Tensor | None) -> Tensor:
        """NMSE (``MSE / mean(truth^2)`` over fluid cells) of each stored field, vector components
        pooled: ``(B, C, *S) -> (B, F)`` float32. Fields are scored separately because they carry
        different units (velocity in m/s, pressure in Pa); pooled, the largest would decide."""
        return grouped_nmse(pred, truth, list(self.fields.values()), mask).float()

    # -- inference ----------------------------------------------------------------------------------
    @property
    def stochastic(self) -> bool:
        """Whether a step draws random numbers (else every sample of this model is the same)."""
        return bool(self.inference_stepper.stochastic)

    @torch.no_grad()
    def predict_next(self, history: Tensor, params: Tensor, mask: Tensor | None = None, *,
                     generator: torch.Generator | None = None,
                     project: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """One model step in physical units: ``history (B, h, C, *S)``, ``params (B, P)`` ->
        ``(B, C, *S)``.

        ``project`` (physical states ``(B, C, *S)`` -> projected, float64) is applied inside a
        generative stepper's sampler (:meth:`~sciflow.steppers.generative.Generative.step`);
        the normalisation around it is done in float64, so the only inexactness left is the
        float32 state the sampler carries."""
        z = self.normalize(history, mask)
        stepper = self.inference_stepper
        extra = {}
        if project is not None:
            if not getattr(stepper, "projects_in_sampler", False):
                raise ValueError(
                    f"{type(stepper).__name__} cannot project inside its sampler; project its output "
                    f"instead (a post-hoc projection: method 'hardc' or 'probconserv')"
                )
            mean, std = self.mean.double(), self.std.double()

            def in_normalised(state: Tensor) -> Tensor:
                u = project(state.double() * std + mean)
                out = ((u - mean) / std).to(state.dtype)
                return out if mask is None else out * self._mask_like(mask, out)

            extra["project"] = in_normalised
        out = stepper.step(z, self.normalize_params(params), mask, generator=generator, **extra)
        return self.denormalize(out, mask)

    # -- training ------------------------------------------------------------------------------------
    def _batch(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        mask = batch["mask"] if self.hparams.data_spec["has_mask"] else None
        prev = self.normalize(batch["input"], mask)
        target = self.normalize(batch["target"], mask)
        return prev, target, self.normalize_params(batch["params"]), mask

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        prev, target, cond, mask = self._batch(batch)
        loss = self.stepper.loss(prev, target[:, 0], cond, mask)
        self.check_loss(loss, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=prev.shape[0])
        return loss

    def setup(self, stage: str) -> None:
        # Every DDP rank starts from the same seed (seed_everything), so without this the ranks
        # would draw the same flow times, refinement levels and noise, and more devices would add
        # no noise diversity. Ranks > 0 re-seed the global RNG from (seed, rank) after the model is
        # built (weights stay identical: DDP broadcasts rank 0's) and before training starts;
        # rank 0 keeps its stream, so a single-process run is unchanged. Data order is not
        # affected: the distributed sampler has its own seed.
        if stage == "fit" and self.trainer is not None and self.trainer.world_size > 1:
            rank = self.trainer.global_rank
            if rank > 0:
                torch.manual_seed(rank_seed(torch.initial_seed(), rank))

    # -- evaluation ---------------------------------------------------------------------------------
    def _evaluate(self, batch: Mapping[str, Any], batch_idx: int, stage: str) -> None:
        """One-step metrics and/or rollout metrics of an evaluation batch.

        The batch says what it is for (``batch["task"]``, from :class:`~sciflow.data.datamodule.SciflowData`):
        ``"one_step"`` windows give the one-step NMSE, loss and copy-the-input baseline; ``"rollout"``
        windows are rolled out ``K = target.shape[1]`` steps by :func:`sciflow.rollout.rollout` and
        give the mean and last-step rollout NMSE. An untagged batch gets the one-step metrics, and
        the rollout ones too when its horizon is longer than one step.

        Evaluation draws its own seeded random numbers and leaves the global generators as they
        were, so validating never changes what training draws next.
        """
        tasks = set(batch.get("task") or ())
        horizon = batch["target"].shape[1]
        one_step = not tasks or ONE_STEP in tasks
        roll = ROLLOUT in tasks or (not tasks and horizon > 1)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=self.device.type):
            torch.manual_seed(batch_idx)
            if one_step:
                self._one_step_metrics(batch, stage)
            if roll:
                self._rollout_metrics(batch, stage)

    def _one_step_metrics(self, batch: Mapping[str, Any], stage: str) -> None:
        mask = batch["mask"] if self.hparams.data_spec["has_mask"] else None
        hist, target, params = batch["input"], batch["target"], batch["params"]
        B = hist.shape[0]
        log = dict(batch_size=B, add_dataloader_idx=False, sync_dist=True)
        prev, tgt, cond, _ = self._batch(batch)
        loss = self.inference_stepper.loss(prev, tgt[:, 0], cond, mask)
        self.log(f"{stage}/loss", loss, **log)
        pred = self.predict_next(hist, params, mask)
        model_err = self.field_nmse(pred, target[:, 0], mask)  # (B, F)
        copy_err = self.field_nmse(hist[:, -1], target[:, 0], mask)
        self.log(f"{stage}/nmse", model_err.mean(), prog_bar=True, **log)
        self.log(f"{stage}/nmse_copy", copy_err.mean(), **log)
        if len(self.fields) > 1:
            for f, name in enumerate(self.fields):
                self.log(f"{stage}/nmse_{name}", model_err[:, f].mean(), **log)
                self.log(f"{stage}/nmse_copy_{name}", copy_err[:, f].mean(), **log)

    def _rollout_metrics(self, batch: Mapping[str, Any], stage: str) -> None:
        mask = batch["mask"] if self.hparams.data_spec["has_mask"] else None
        hist, target, params = batch["input"], batch["target"], batch["params"]
        # only NaN/Inf stop a member (blowup=inf): the error of a diverging rollout is part of the score
        stream = rollout([self], hist, params, target.shape[1], mask=mask, seed=0, blowup=math.inf)
        errs = torch.stack(
            [self.field_nmse(s.members[0], target[:, s.index - 1], mask).mean(1) for s in stream], 1
        ).float()  # (B, K)
        log = dict(batch_size=hist.shape[0], add_dataloader_idx=False, sync_dist=True)
        self.log(f"{stage}/rollout_nmse", errs.mean(), **log)
        self.log(f"{stage}/rollout_nmse_last", errs[:, -1].mean(), **log)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, batch_idx, "test")


__all__ = ["NonFiniteLossError", "Surrogate"]
