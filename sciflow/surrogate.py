"""The Surrogate: a LightningModule tying a stepper, the data's normalisation, an optimiser, an
EMA of the weights and validation metrics together, with self-describing checkpoints.

States enter and leave in physical units; inside, channels are normalised with the training
split's per-channel mean and std (solid cells set to zero), parameters with their mean and std.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from sciflow.data.reader import field_groups
from sciflow.metrics.spatial import grouped_nmse
from sciflow.steppers import Stepper, build_stepper
from sciflow.surrogate_base import NonFiniteLossError, SurrogateBase


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
    @torch.no_grad()
    def predict_next(self, history: Tensor, params: Tensor, mask: Tensor | None = None, *,
                     generator: torch.Generator | None = None) -> Tensor:
        """One model step in physical units: ``history (B, h, C, *S)``, ``params (B, P)`` ->
        ``(B, C, *S)``."""
        z = self.normalize(history, mask)
        out = self.inference_stepper.step(z, self.normalize_params(params), mask, generator=generator)
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

    # -- evaluation ---------------------------------------------------------------------------------
    def _evaluate(self, batch: Mapping[str, Tensor], dataloader_idx: int, stage: str) -> None:
        mask = batch["mask"] if self.hparams.data_spec["has_mask"] else None
        hist, target, params = batch["input"], batch["target"], batch["params"]
        B = hist.shape[0]
        if dataloader_idx == 0:
            prev, tgt, cond, _ = self._batch(batch)
            loss = self.inference_stepper.loss(prev, tgt[:, 0], cond, mask)
            pred = self.predict_next(hist, params, mask)
            self.log(f"{stage}/loss", loss, batch_size=B, add_dataloader_idx=False, sync_dist=True)
            model_err = self.field_nmse(pred, target[:, 0], mask)  # (B, F)
            copy_err = self.field_nmse(hist[:, -1], target[:, 0], mask)
            log = dict(batch_size=B, add_dataloader_idx=False, sync_dist=True)
            self.log(f"{stage}/nmse", model_err.mean(), prog_bar=True, **log)
            self.log(f"{stage}/nmse_copy", copy_err.mean(), **log)
            if len(self.fields) > 1:
                for f, name in enumerate(self.fields):
                    self.log(f"{stage}/nmse_{name}", model_err[:, f].mean(), **log)
                    self.log(f"{stage}/nmse_copy_{name}", copy_err[:, f].mean(), **log)
        else:
            # autoregressive rollout from the window's start (deterministic stepping, seeded)
            gen = torch.Generator(device=hist.device).manual_seed(0)
            window = hist
            errs = []
            for k in range(target.shape[1]):
                nxt = self.predict_next(window, params, mask, generator=gen)
                errs.append(self.field_nmse(nxt, target[:, k], mask).mean(1))
                window = torch.cat([window[:, 1:], nxt.unsqueeze(1)], dim=1)
            errs_t = torch.stack(errs, 1).float()  # (B, K)
            self.log(f"{stage}/rollout_nmse", errs_t.mean(), batch_size=B, add_dataloader_idx=False, sync_dist=True)
            self.log(f"{stage}/rollout_nmse_last", errs_t[:, -1].mean(), batch_size=B,
                     add_dataloader_idx=False, sync_dist=True)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, dataloader_idx, "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, dataloader_idx, "test")


__all__ = ["NonFiniteLossError", "Surrogate"]
