"""``torch.compile`` for training and rollouts: one option, ``compile``, with the same values in a
config (``compile: default``), on the command line (``sciflow fit --compile default``,
``sciflow rollout --compile default``) and in Python (:func:`compile_model`).

What is compiled is each stepper's operator (the network), in place (``nn.Module.compile``), so
parameter names, state dicts and checkpoints are the same as eager: a model trained compiled
loads eager and the other way round. The stepper around it (history stacking, residuals, the
loss, a sampler's loop) stays eager: it is a few element-wise operations, and keeping it eager
keeps data-dependent control flow (samplers, masks) out of the compiled graph.

Layers with an in-place forward that the compiler would break into pieces switch to their
out-of-place version (``out_of_place``; e.g. :class:`sciflow.operators.fno.Float32SpectralConv`,
whose library forward writes the kept modes into a zero tensor). Spectral layers stay in float32
under autocast, compiled or not.

On the CPU the compiler (inductor) builds C++ and needs a C++ compiler; without one the error
says so. Whether compiling pays depends on the model and the machine: ``benchmarks/compile.py``
measures eager against compiled training and rollout steps.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used, so that the CLI can list MODES cheaply
    import torch
    from torch import nn

#: accepted values of the option and the ``torch.compile`` mode each selects (None: eager)
MODES: dict[str, str | None] = {
    "off": None,
    "default": "default",
    "reduce-overhead": "reduce-overhead",
    "max-autotune": "max-autotune",
    "max-autotune-no-cudagraphs": "max-autotune-no-cudagraphs",
}


class CompileError(ValueError):
    """The compile option has a bad value or cannot be honoured on this machine."""


def compile_mode(value: str | bool | None) -> str | None:
    """Normalise the option: ``None``/``False``/``"off"`` -> None (eager), ``True`` ->
    ``"default"``, a name of :data:`MODES` -> itself; anything else raises :class:`CompileError`."""
    if value is None or value is False:
        return None
    if value is True:
        return "default"
    text = str(value).strip().lower()
    if text in ("false", "no", "none", "0"):
        return None
    if text in ("true", "yes", "1"):
        return "default"
    if text not in MODES:
        raise CompileError(f"compile: {value!r} is not a mode; choose one of {', '.join(MODES)}")
    return MODES[text]


def _check_toolchain(device: torch.device) -> None:
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise CompileError(
            "compile: torch.compile on the CPU builds C++ code and no C++ compiler (g++, c++ or clang++) "
            "is on PATH; install one or run eager (compile: off)"
        )


def _operators(model: nn.Module) -> list[nn.Module]:
    """The operator (network) of each stepper a surrogate holds: the trained one and its EMA."""
    from torch import nn

    out = []
    for name in ("stepper", "ema"):
        stepper = getattr(model, name, None)
        op = getattr(stepper, "operator", None) if stepper is not None else None
        if isinstance(op, nn.Module):
            out.append(op)
    if not out:
        raise CompileError(f"compile: {type(model).__name__} holds no stepper with an operator to compile")
    return out


def compile_model(model: nn.Module, mode: str | bool | None, *, backend: str = "inductor",
                  dynamic: bool | None = None, **options: Any) -> nn.Module:
    """Compile the operators of ``model`` (a surrogate) in place and return ``model``.

    ``mode``: see :func:`compile_mode` (None/off: nothing is done). ``backend``: the
    ``torch.compile`` backend (``"inductor"``; ``"aot_eager"`` traces without generating code,
    which needs no C++ compiler). ``dynamic``: passed on (None: recompile once with dynamic
    shapes when a shape changes, e.g. the last, smaller batch). Calling it twice is harmless.
    """
    import torch

    from sciflow.surrogate_base import spec_kind

    resolved = compile_mode(mode)
    if resolved is None:
        return model
    if spec_kind(dict(getattr(model, "hparams", None) or {}).get("data_spec")) == "particles":
        raise CompileError("compile: particle operators run eager (their graphs change size every step, and the "
                           "neighbour search runs on the host); use compile with grid surrogates")
    if backend == "inductor":
        device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
        _check_toolchain(device)
    for op in _operators(model):
        for module in op.modules():
            if hasattr(module, "out_of_place"):
                module.out_of_place = True
        kwargs: dict[str, Any] = {"backend": backend, "dynamic": dynamic, **options}
        if backend == "inductor":
            kwargs["mode"] = resolved
        op.compile(**kwargs)
    return model


def is_compiled(model: nn.Module) -> bool:
    """Whether :func:`compile_model` compiled the operators of ``model``."""
    try:
        return all(getattr(op, "_compiled_call_impl", None) is not None for op in _operators(model))
    except CompileError:
        return False


__all__ = ["MODES", "CompileError", "compile_mode", "compile_model", "is_compiled"]
