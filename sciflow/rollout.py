"""The rollout engine: an ensemble of surrogates stepped autoregressively, one step at a time.

``rollout`` is a generator. Members are models x samples, where a deterministic model (one
whose stepper draws no random numbers) contributes one member whatever ``samples`` says: its
samples would be copies, and copies scored as independent members make every ensemble score
wrong. Each stochastic model runs its ``samples`` copies of the batch through the operator
together, as one batch of ``samples * B``; the members of a step are stacked model-major
(:func:`member_table` lists which member comes from which model and sample). Only the last ``h``
frames of each member are kept, so memory does not grow with the number of steps: consumers
(metrics, the results collector) take what they need from each yielded :class:`Step`. Models are
put in eval mode for the rollout (dropout off, normalisation statistics frozen) and given back in
the mode they came in.

Blow-up handling is per member and batch element: a state with a NaN/Inf, or larger than
``blowup`` times the initial condition's largest magnitude (per channel), is stopped and reads
NaN from then on, while the others go on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from sciflow.compile import is_compiled
from sciflow.ensemble_batch import batch_members

if TYPE_CHECKING:
    from sciflow.surrogate import Surrogate

Projection = Callable[[Tensor, int], Tensor]


class BlowupWarning(RuntimeWarning):
    """Some ensemble members left the plausible range and were stopped."""


@dataclass
class Step:
    """One model step of a rollout.

    Attributes:
        index: model step ``k = 1..steps``.
        time: ``k * dt`` in seconds.
        members: ``(M, B, C, *S)`` states in physical units, model-major; member ``m`` comes
            from model and sample ``member_table(models, samples)[m]``.
            float32, or the dtype of the ``project`` hook's output.
        alive: ``(M, B)`` bool; False once a member blew up (its values are NaN from then on).
    """

    index: int
    time: float
    members: Tensor
    alive: Tensor


def member_seed(seed: int, model: int) -> int:
    """The generator seed of ``model`` in an ensemble rolled out with ``seed``.

    Derived with numpy's ``SeedSequence`` so that models get independent, reproducible streams.
    """
    return int(np.random.SeedSequence([int(seed), int(model)]).generate_state(1, np.uint64)[0] >> 1)


def member_table(models: Sequence[Surrogate], samples: int) -> list[tuple[int, int]]:
    """``(model, sample)`` of each ensemble member, in the order of :attr:`Step.members`: a
    stochastic model gives ``samples`` members, a deterministic one (``model.stochastic`` False)
    one."""
    return [
        (i, s)
        for i, m in enumerate(models)
        for s in range(samples if bool(getattr(m, "stochastic", True)) else 1)
    ]


def _spec(model: Surrogate) -> dict:
    try:
        return dict(model.hparams["data_spec"])
    except (AttributeError, KeyError, TypeError):
        raise TypeError(
            f"rollout: {type(model).__name__} has no hparams.data_spec; pass Surrogate models"
        ) from None


def _device(model: Surrogate) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def blowup_limit(initial: Tensor, factor: float, floor: Tensor | None = None) -> Tensor:
    """Per-channel magnitude beyond which a state counts as blown up: ``(C,)``.

    ``factor`` times the largest ``|initial|`` of each channel over batch, history and space
    (``initial: (B, h, C, *S)``). A channel that is zero at the start (a fluid at rest) would
    stop every member at once, so ``floor: (C,)`` (a typical magnitude, e.g. ``|mean| + std``
    of the training data) is used where it is larger.
    """
    C = initial.shape[2]
    scale = initial.detach().abs().transpose(0, 2).reshape(C, -1).amax(dim=1)
    if floor is not None:
        scale = torch.maximum(scale, floor.to(scale))
    return factor * scale


def _typical_magnitude(model: Surrogate, C: int) -> Tensor | None:
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    if not isinstance(mean, Tensor) or not isinstance(std, Tensor) or mean.numel() != C:
        return None
    return (mean.abs() + std).reshape(C).float()


def rollout(
    models: Sequence[Surrogate],
    initial: Tensor,
    params: Tensor,
    steps: int,
    *,
    samples: int = 1,
    mask: Tensor | None = None,
    seed: int = 0,
    project: Projection | None = None,
    blowup: float = 1e3,
    progress: bool = False,
    max_batch: int | None = None,
    dt: float | None = None,
    batch_models: bool | None = None,
    check_every: int | None = None,
) -> Iterator[Step]:
    """Roll an ensemble forward ``steps`` model steps and yield one :class:`Step` per step.

    Args:
        models: surrogates sharing channels and parameters (architectures may differ); each
            uses the last ``data_spec["history"]`` frames of ``initial``.
        initial: ``(B, h, C, *S)`` history frames in physical units; the last one is t = 0.
        params: ``(B, P)`` operating parameters.
        steps: number of model steps.
        samples: samples per stochastic model; a deterministic model gives one member (see
            :func:`member_table`).
        mask: ``(B, *S)`` bool fluid cells, or None.
        seed: seeds one ``torch.Generator`` per model (:func:`member_seed`); the same seed (and
            ``max_batch``) gives the same members.
        project: ``project(members (M, B, C, *S), k) -> members``, applied to each step's members
            after the blow-up check and before they are fed back (conservation projection).
            Stopped members are NaN when it sees them and are set back to NaN afterwards. The
            members it returns are yielded in its dtype (float64 keeps a law that holds to
            round-off) and fed back to the models in float32. When it has a method
            ``sampler(k, member (N,), batch (N,))`` returning a function of states
            ``(N, C, *S) -> (N, C, *S)`` (or None), that function is passed as
            ``predict_next(..., project=fn)`` for the rows of those members and batch elements,
            so that a generative stepper projects inside its sampler
            (:class:`sciflow.constraints.ConservationProjection`).
        blowup: a member stops when its state has a NaN/Inf or exceeds ``blowup`` times the
            largest ``|initial|`` of a channel (see :func:`blowup_limit`).
        progress: show a tqdm bar over steps.
        max_batch: largest batch per operator call (the ``samples * B`` copies are chunked).
        dt: seconds per model step; default the models' ``data_spec["dt"]``.
        batch_models: run models of one architecture with a noise-free stepper as one vmapped
            call (:mod:`sciflow.ensemble_batch`; the same members to float round-off); others
            always loop. None (default): batched on an accelerator, looped on the CPU, where
            the batched call was slower at the cavity FNO's size (``benchmarks/ensemble_batch.py``),
            and looped when the operators are compiled (:mod:`sciflow.compile`), which a vmapped
            call would bypass (True with compiled operators raises ValueError).
        check_every: steps between the blow-up warnings' reads of the device (default every step
            on the CPU, every 50 on an accelerator, so that the loop does not wait for the device
            each step). Members are stopped at the step they blow up either way; the warning
            names that step.

    Yields:
        ``Step(index=k, time=k * dt, members (M, B, C, *S), alive (M, B))`` for ``k = 1..steps``.
    """
    if not models:
        raise ValueError("rollout: no models given")
    if samples < 1:
        raise ValueError(f"rollout: samples must be >= 1, got {samples}")
    if steps < 0:
        raise ValueError(f"rollout: steps must be >= 0, got {steps}")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"rollout: max_batch must be >= 1, got {max_batch}")
    specs = [_spec(m) for m in models]
    histories = [int(s.get("history", 1)) for s in specs]
    C, P = len(specs[0]["channels"]), len(specs[0]["params"])
    n_dims = len(specs[0]["spatial_shape"])
    if initial.ndim != 3 + n_dims or initial.shape[2] != C:
        raise ValueError(
            f"rollout: initial must be (B, h, C={C}, *S) with {n_dims} spatial axes, got {tuple(initial.shape)}"
        )
    B, h = initial.shape[:2]
    if h < max(histories):
        raise ValueError(
            f"rollout: initial has {h} history frames but a model needs {max(histories)}"
        )
    if tuple(params.shape) != (B, P):
        raise ValueError(f"rollout: params must be (B={B}, P={P}), got {tuple(params.shape)}")
    S = tuple(initial.shape[3:])
    if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != (B, *S)):
        raise ValueError(
            f"rollout: mask must be bool (B, *S) = {(B, *S)}, got {mask.dtype} {tuple(mask.shape)}"
        )
    if dt is None:
        dts = {float(s.get("dt", 1.0)) for s in specs}
        if len(dts) > 1:
            raise ValueError(f"rollout: models disagree on dt (seconds per step): {sorted(dts)}")
        dt = dts.pop()

    device = _device(models[0])
    initial = initial.to(device=device, dtype=torch.float32)
    params = params.to(device=device, dtype=torch.float32)
    mask = None if mask is None else mask.to(device)
    limit = blowup_limit(initial, blowup, _typical_magnitude(models[0], C)).view(
        1, 1, C, *([1] * n_dims)
    )
    generators = [
        torch.Generator(device=_device(m)).manual_seed(member_seed(seed, i))
        for i, m in enumerate(models)
    ]
    table = member_table(models, samples)
    counts = [sum(1 for i, _ in table if i == j) for j in range(len(models))]
    # per model: (n_j * B, h_m, C, *S), row s * B + b
    windows = [
        initial[:, h - hm :].repeat(n, *([1] * (initial.ndim - 1)))
        for hm, n in zip(histories, counts)
    ]
    # parameters and mask repeated like each model's window rows
    conds = [
        (
            params.repeat(n, 1),
            None if mask is None else mask.repeat(n, *([1] * n_dims)),
        )
        for n in counts
    ]
    M = len(table)
    alive = torch.ones(M, B, dtype=torch.bool, device=device)
    modes = [m.training for m in models]

    bar = tqdm(range(1, steps + 1), desc="rollout", unit="step", disable=not progress)
    try:
        for m in models:
            m.eval()
        batched = None
        if (use_batching(models, batch_models, device) and getattr(project, "sampler", None) is None
                and len(set(histories)) == 1 and len(set(counts)) == 1):
            batched = batch_members(models)  # after eval(): the batched call copies the mode
        # step at which each member stopped (-1: alive); read on the host only every `every` steps
        stopped_at = torch.full((M, B), -1, dtype=torch.long, device=device)
        reported = torch.zeros(M, B, dtype=torch.bool, device=device)
        every = check_every or (1 if device.type == "cpu" else 50)
        for k in bar:
            members, new_alive = _advance(
                models, windows, generators, conds, alive, limit, k, counts, max_batch, project, batched,
            )
            stopped_at = torch.where(alive & ~new_alive, k, stopped_at)
            alive = new_alive
            if k % every == 0 or k == steps:
                reported = _warn_blowups(stopped_at, reported, table, limit, dt)
            yield Step(index=k, time=k * dt, members=members, alive=alive.clone())
    finally:
        bar.close()
        for m, mode in zip(models, modes):
            m.train(mode)


def use_batching(models: Sequence[Surrogate], batch_models: bool | None, device: torch.device) -> bool:
    """Whether same-architecture members may run as one vmapped call (``rollout``'s ``batch_models``).

    None: on an accelerator, unless the operators are compiled. A vmapped call runs the stacked
    weights through an eager copy of the network, so compiled operators would silently run eager;
    they loop instead, each member through its compiled code. True with compiled operators raises.
    """
    compiled = any(is_compiled(m) for m in models)
    if batch_models and compiled:
        raise ValueError("rollout: batch_models=True would run the compiled operators eager (a vmapped call "
                         "bypasses torch.compile); pass batch_models=None or False with compiled models")
    if batch_models is None:
        return device.type != "cpu" and not compiled
    return bool(batch_models)


def _warn_blowups(stopped_at: Tensor, reported: Tensor, table, limit: Tensor, dt: float) -> Tensor:
    """Warn (:class:`BlowupWarning`) about the members that stopped since the last call, each with
    its step, and return the updated ``reported (M, B)`` mask. This is the rollout's one read of
    the device on the host, done every few steps rather than every step."""
    new = (stopped_at >= 0) & ~reported
    if not bool(new.any()):
        return reported
    pairs = torch.nonzero(new).tolist()
    steps = stopped_at[new].tolist()
    shown = ", ".join(
        f"member {m} (model {table[m][0]}, sample {table[m][1]}) of batch element {b} at step {k} "
        f"(t = {k * dt:.6g} s)"
        for (m, b), k in list(zip(pairs, steps))[:10]
    )
    more = f" and {len(pairs) - 10} more" if len(pairs) > 10 else ""
    first = min(steps)
    warnings.warn(
        f"rollout: blew up at step {first} (t = {first * dt:.6g} s), stopped: {shown}{more} "
        f"(NaN/Inf or beyond the blow-up limit {limit.flatten().tolist()})",
        BlowupWarning,
        stacklevel=3,
    )
    return reported | new


def _batched_outputs(batched, windows, params, mask, max_batch, samples) -> list[Tensor]:
    """Every model's next states in one vmapped call per chunk: ``K`` tensors ``(samples, B, C, *S)``
    (``samples``: the members per model, the same for all)."""
    N = windows[0].shape[0]
    chunk = N if max_batch is None else max_batch
    stacked = torch.stack(windows)  # (K, samples * B, h, C, *S)
    nxt = torch.cat([
        batched(stacked[:, a : a + chunk], params[a : a + chunk], None if mask is None else mask[a : a + chunk])
        for a in range(0, N, chunk)
    ], dim=1).float()
    return list(nxt.reshape(len(windows) * samples, N // samples, *nxt.shape[2:]).split(samples))


@torch.no_grad()
def _advance(
    models, windows, generators, conds, alive, limit, k, counts, max_batch, project, batched=None,
) -> tuple[Tensor, Tensor]:
    """One step of every member; updates ``windows`` in place (list items) and returns
    ``(members (M, B, C, *S), alive (M, B))``. Kept out of the generator body so that no-grad
    mode never leaks to the consumer across a ``yield``."""
    B = alive.shape[1]
    sampler = getattr(project, "sampler", None)
    outs = [] if batched is None else _batched_outputs(batched, windows, *conds[0], max_batch, counts[0])
    offsets = [sum(counts[:i]) for i in range(len(counts))]  # first member of each model
    looped = zip(models, windows, generators, counts, conds) if batched is None else ()
    for i, (model, window, gen, n, (p, msk)) in enumerate(looped):
        N = window.shape[0]
        chunk = N if max_batch is None else max_batch
        dev = gen.device
        parts = []
        for a in range(0, N, chunk):
            extra = {}
            if sampler is not None:
                rows = torch.arange(a, min(a + chunk, N))  # row = sample * B + batch element
                fn = sampler(k, offsets[i] + rows // B, rows % B)
                if fn is not None:
                    extra["project"] = fn
            parts.append(model.predict_next(
                window[a : a + chunk].to(dev),
                p[a : a + chunk].to(dev),
                None if msk is None else msk[a : a + chunk].to(dev),
                generator=gen,
                **extra,
            ))
        nxt = torch.cat(parts).to(device=alive.device, dtype=torch.float32)
        outs.append(nxt.reshape(n, B, *nxt.shape[1:]))
    members = torch.cat(outs)  # (M, B, C, *S)

    bad = ~torch.isfinite(members) | (members.abs() > limit)
    dims = tuple(range(2, members.ndim))
    alive = alive & ~bad.any(dim=dims)  # stays on the device: the warning is deferred (_warn_blowups)
    dead_view = (~alive).view(*alive.shape, *([1] * (members.ndim - 2)))
    members = members.masked_fill(dead_view, float("nan"))
    if project is not None:
        projected = project(members, k)
        if not isinstance(projected, Tensor) or projected.shape != members.shape:
            raise ValueError(
                f"rollout: project returned {getattr(projected, 'shape', type(projected))}, expected the "
                f"members' shape {tuple(members.shape)}"
            )
        # kept in the projection's dtype: a float64 law that holds to round-off would not in float32
        members = projected.masked_fill(dead_view, float("nan"))

    # feed back: stopped members carry zeros (finite) so they cannot disturb batched operators
    fed = members.masked_fill(dead_view, 0.0)
    first = 0
    for i, n in enumerate(counts):
        new = fed[first : first + n].reshape(n * B, 1, *members.shape[2:])
        new = new.to(windows[i].dtype)
        windows[i] = torch.cat([windows[i][:, 1:], new], dim=1)
        first += n
    return members, alive


__all__ = [
    "BlowupWarning",
    "Projection",
    "Step",
    "blowup_limit",
    "member_seed",
    "member_table",
    "rollout",
]
