"""What every surrogate shares, whatever its data: the EMA of the weights, the optimiser and its
schedule, the non-finite loss guard and self-describing checkpoints that load with
``torch.load(weights_only=True)`` and carry what an exact resume needs (:mod:`sciflow.checkpoints`).

A surrogate is a LightningModule around one stepper (``self.stepper``). The kind of data it
was built for is ``data_spec["kind"]`` (``grid`` when absent): grids are
:class:`sciflow.surrogate.Surrogate`, particle clouds
:class:`sciflow.particle_surrogate.ParticleSurrogate`. :func:`load_surrogate` rebuilds either
from a checkpoint.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

import sciflow
from sciflow.checkpoints import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    read_checkpoint,
    restore_rng_state,
    rng_state,
)
from sciflow.registry import import_path

# data kind -> surrogate class (lazy, so that a grid user never imports the graph code)
SURROGATES: dict[str, str] = {
    "grid": "sciflow.surrogate:Surrogate",
    "particles": "sciflow.particle_surrogate:ParticleSurrogate",
}


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the step."""


def spec_kind(data_spec: dict[str, Any] | None) -> str:
    """The data kind of a data spec (``grid`` unless it says otherwise)."""
    return str((data_spec or {}).get("kind", "grid"))


class SurrogateBase(L.LightningModule):
    """EMA, optimisation and checkpoints around ``self.stepper`` (set by the subclass before
    :meth:`init_ema`). Subclasses call ``save_hyperparameters()`` in their ``__init__`` and
    read ``lr``, ``weight_decay``, ``warmup_steps``, ``min_lr_ratio``, ``ema_decay`` and
    ``data_spec`` from ``self.hparams``."""

    stepper: nn.Module
    ema: nn.Module | None

    def init_ema(self) -> None:
        """Keep an exponential moving average of the stepper's weights when ``ema_decay`` is set."""
        self.ema = None
        if self.hparams.get("ema_decay") is not None:
            self.ema = copy.deepcopy(self.stepper).requires_grad_(False)

    @property
    def inference_stepper(self) -> nn.Module:
        """The EMA weights when kept, else the trained ones."""
        return self.ema if self.ema is not None else self.stepper

    #: steps between the checks of the training loss on an accelerator, where reading the loss on
    #: the host would wait for the device every step; on the CPU every step is checked (no cost).
    #: The error names the first bad step either way.
    nonfinite_check_every: int | None = None

    def check_loss(self, loss: Tensor, batch_idx: int) -> None:
        """Stop training with :class:`NonFiniteLossError` naming the first step whose loss was
        NaN/Inf. The test runs on the device and its result is read every
        :attr:`nonfinite_check_every` steps (and before a checkpoint is written), so training does
        not wait for the device each step."""
        every = self.nonfinite_check_every or (1 if loss.device.type == "cpu" else 100)
        pending = self.__dict__.setdefault("_loss_checks", [])  # ((step, epoch, batch), bad flag on the device)
        pending.append(((self.global_step, self.current_epoch, batch_idx), ~torch.isfinite(loss.detach())))
        if len(pending) >= every:
            self.flush_loss_checks()

    def flush_loss_checks(self) -> None:
        """Read the pending loss checks (one host sync) and raise if a loss was not finite."""
        pending = self.__dict__.get("_loss_checks")
        if not pending:
            return
        steps, flags = zip(*pending)
        pending.clear()
        bad = torch.stack(flags)
        if bool(bad.any()):
            step, epoch, batch_idx = steps[int(bad.int().argmax())]  # the first bad one
            raise NonFiniteLossError(
                f"training loss is not finite (NaN/Inf) at global step {step} "
                f"(epoch {epoch}, batch {batch_idx}); lower the learning rate, check the "
                f"data with `sciflow data check`, or enable gradient clipping"
            )

    def on_train_epoch_end(self) -> None:
        self.flush_loss_checks()

    def on_train_end(self) -> None:
        self.flush_loss_checks()

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # The EMA moves inside the optimiser step, not in on_train_batch_end: checkpoint callbacks run
        # before the module's on_train_batch_end, so a checkpoint written there would hold this step's
        # weights with the previous step's average, and a run resumed from it would drift.
        self._update_ema(self.global_step + 1)  # global_step counts this step only after the hook

    def _update_ema(self, step: int) -> None:
        if self.ema is None:
            return
        decay = float(self.hparams.ema_decay)
        # the average starts from the first weights; warm it up so early checkpoints are useful
        decay = min(decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.stepper.parameters()):
                e.lerp_(p.detach(), 1 - decay)
            for e, b in zip(self.ema.buffers(), self.stepper.buffers()):
                e.copy_(b)

    def configure_optimizers(self) -> Any:
        """AdamW with a linear warm-up and a cosine decay to ``lr * min_lr_ratio``."""
        hp = self.hparams
        opt = torch.optim.AdamW(self.stepper.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warm = min(hp.warmup_steps, total - 1)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / (warm + 1)
            progress = min(1.0, (step - warm) / max(1, total - warm))
            return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # weights trained on a NaN loss must not replace a good checkpoint
        self.flush_loss_checks()
        spec = self.hparams.data_spec
        checkpoint["sciflow"] = {
            "format": CHECKPOINT_FORMAT,
            "version": sciflow.__version__,
            "kind": spec_kind(spec),
            "card": spec.get("card"),
            "card_hash": spec.get("card_hash"),
            "threads": torch.get_num_threads(),
        }
        # the generators' state, so that a run resumed from here draws what this one would have
        checkpoint["rng"] = rng_state()
        # neuraloperator modules may put Python objects in the state dict; they must not reach disk
        sd = checkpoint["state_dict"]
        for key in [k for k in sd if k.endswith("_metadata")]:
            del sd[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng" in checkpoint:
            restore_rng_state(checkpoint["rng"])

    @staticmethod
    def constructor_args(ckpt: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor arguments a checkpoint stores, ready for ``cls(**args)``: internal
        ``_``-keys dropped, and any warm start (``init_from``) removed, since the saved weights
        replace it and its file need not exist any more."""
        hp = {k: v for k, v in dict(ckpt["hyper_parameters"]).items() if not k.startswith("_")}
        stepper = hp.get("stepper")
        if isinstance(stepper, dict) and "init_from" in (stepper.get("init_args") or {}):
            hp["stepper"] = {**stepper, "init_args": {k: v for k, v in stepper["init_args"].items() if k != "init_from"}}
        return hp

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SurrogateBase:
        """Load a checkpoint safely (``torch.load(weights_only=True)``) and rebuild the model from
        the constructor arguments stored in it; a file that is missing, corrupt, carries pickled
        code or is not sciflow's raises :class:`~sciflow.checkpoints.CheckpointError`. Called on
        the base class, the surrogate class is chosen by the data kind the checkpoint was trained
        on; called on a subclass, a checkpoint of another kind is refused."""
        ckpt = read_checkpoint(path, map_location=map_location)
        hp = cls.constructor_args(ckpt)
        kind = spec_kind(hp.get("data_spec"))
        if kind not in SURROGATES:
            raise CheckpointError(f"{path}: data kind {kind!r} has no surrogate; known kinds {sorted(SURROGATES)}")
        target = import_path(SURROGATES[kind])
        if cls is not SurrogateBase and not issubclass(target, cls):
            raise CheckpointError(f"{path}: a {kind} checkpoint ({target.__name__}); load it with "
                                  f"{target.__name__}.load or sciflow.surrogate_base.load_surrogate, not "
                                  f"{cls.__name__}.load")
        model = target(**hp)
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
        bad_unexpected = [k for k in unexpected if not k.endswith("_metadata")]
        if missing or bad_unexpected:
            raise CheckpointError(
                f"{path}: state dict does not match the model: missing {missing}, unexpected {bad_unexpected}"
            )
        model.eval()
        return model


def load_surrogate(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SurrogateBase:
    """Load any sciflow checkpoint, grid or particle (see :meth:`SurrogateBase.load`)."""
    return SurrogateBase.load(path, map_location)


__all__ = ["SURROGATES", "NonFiniteLossError", "SurrogateBase", "load_surrogate", "spec_kind"]
