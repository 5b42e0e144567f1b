"""The compile option (torch.compile of the operators) and the checks that no longer read the
device every step: compiled and eager agree, checkpoints do not change, deferred checks still
name the exact step."""

from __future__ import annotations

import copy
import shutil
import warnings

import lightning as L
import pytest
import torch

from sciflow.compile import CompileError, compile_mode, compile_model, is_compiled
from sciflow.data.datamodule import SciflowData
from sciflow.rollout import BlowupWarning, rollout, use_batching
from sciflow.surrogate import NonFiniteLossError, Surrogate
from tests.callbacks import PoisonLoss
from tests.synthetic import make_dataset
from tests.test_rollout import ScaledCopy

TINY_FNO = {"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 2}}
needs_cxx = pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                               reason="inductor on the CPU needs a C++ compiler")


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("compile") / "synthetic", n=(2, 1, 1))


@pytest.fixture(scope="module")
def spec(card):
    return SciflowData(str(card)).spec


def _batch(spec, B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    h, C = int(spec["history"]), len(spec["channels"])
    S = tuple(spec["spatial_shape"])
    x = torch.randn(B, h, C, *S, generator=g)
    p = torch.randn(B, len(spec["params"]), generator=g)
    return x, p


def test_compile_mode_values():
    assert compile_mode(None) is None and compile_mode(False) is None and compile_mode("off") is None
    assert compile_mode(True) == "default" and compile_mode("default") == "default"
    assert compile_mode("Max-Autotune") == "max-autotune"
    with pytest.raises(CompileError, match="'fast' is not a mode"):
        compile_mode("fast")


def test_compile_needs_a_stepper():
    with pytest.raises(CompileError, match="Linear holds no stepper"):
        compile_model(torch.nn.Linear(2, 2), "default")


@needs_cxx
def test_compiled_inductor_agrees_with_eager_and_keeps_the_state_dict(spec, tmp_path):
    torch.manual_seed(0)
    eager = Surrogate(TINY_FNO, ema_decay=0.9, data_spec=spec).eval()
    compiled = Surrogate(TINY_FNO, ema_decay=0.9, data_spec=spec).eval()
    compiled.load_state_dict(eager.state_dict())
    keys = list(compiled.state_dict())
    compile_model(compiled, "default")
    assert is_compiled(compiled) and not is_compiled(eager)
    assert list(compiled.state_dict()) == keys, "compiling must not rename parameters"
    x, p = _batch(spec)
    torch.testing.assert_close(compiled.predict_next(x, p), eager.predict_next(x, p), rtol=1e-4, atol=1e-5)
    # a second batch size recompiles (or runs dynamic) and still agrees
    x2, p2 = _batch(spec, B=2, seed=2)
    torch.testing.assert_close(compiled.predict_next(x2, p2), eager.predict_next(x2, p2), rtol=1e-4, atol=1e-5)
    # the training loss and its gradients agree too
    compiled.train(), eager.train()
    z, c = compiled.normalize(x), compiled.normalize_params(p)
    target = z[:, -1] * 0.9
    losses, grads = [], []
    for m in (compiled, eager):
        m.zero_grad()
        loss = m.stepper.loss(z, target, c)
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([q.grad.flatten() for q in m.stepper.parameters()]))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-5)


def test_compiled_rollout_agrees_with_eager_without_a_cxx_compiler(spec):
    """``aot_eager`` traces the operator through dynamo and AOT autograd without generating code:
    it checks that the operator compiles in one piece of Python semantics, on any machine."""
    torch.manual_seed(0)
    eager = Surrogate(TINY_FNO, data_spec=spec)
    compiled = Surrogate(TINY_FNO, data_spec=spec)
    compiled.load_state_dict(eager.state_dict())
    compile_model(compiled, "default", backend="aot_eager")
    x, p = _batch(spec, B=2)
    a = [s.members for s in rollout([eager], x, p, 3)]
    b = [s.members for s in rollout([compiled], x, p, 3)]
    for u, v in zip(a, b):
        torch.testing.assert_close(v, u, rtol=1e-5, atol=1e-6)


def test_deferred_loss_check_names_the_first_bad_step(card):
    dm = SciflowData(str(card), batch_size=1)
    model = Surrogate(TINY_FNO, data_spec=dm.spec)
    model.nonfinite_check_every = 4  # as on an accelerator: read every 4 steps
    trainer = L.Trainer(max_epochs=10, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[PoisonLoss(step=2)])
    with pytest.raises(NonFiniteLossError, match="global step 2 "):
        trainer.fit(model, dm)
    # read in the 4th training step of the window (steps 0-3), before its optimiser step
    assert trainer.global_step == 3


def test_deferred_blowup_warning_names_the_step(spec):
    m = ScaledCopy(TINY_FNO, data_spec=spec)
    x = torch.full((1, int(spec["history"]), len(spec["channels"]), *spec["spatial_shape"]), 2.0)
    p = torch.zeros(1, len(spec["params"]))
    p[:, 0] = 10.0  # tenfold per step: beyond 1e3 x 2 at step 4
    with pytest.warns(BlowupWarning, match=r"step 4 .*batch element 0 at step 4") as rec:
        out = list(rollout([m], x, p, 7, check_every=3))
    assert len(rec) == 1
    # stopped at step 4 although the warning was read at step 6
    assert [bool(s.alive[0, 0]) for s in out] == [True, True, True, False, False, False, False]
    assert bool(torch.isnan(out[3].members).all())


def test_fit_cli_with_compile_writes_an_eager_checkpoint(card, tmp_path):
    from sciflow.cli_train import run

    args = ["fit", "--data.card", str(card), "--data.batch_size", "2",
            "--model.operator", '{"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 1}}',
            "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
            "--checkpoint.dirpath", str(tmp_path / "ck"),
            "--compile", "fast"]
    assert run(args) == 1  # a bad mode is refused before training
    assert not (tmp_path / "ck").exists()
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        pytest.skip("inductor on the CPU needs a C++ compiler")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert run(args[:-1] + ["default"]) == 0
    loaded = Surrogate.load(tmp_path / "ck" / "last.ckpt")
    assert not is_compiled(loaded)


def test_out_of_place_spectral_conv_matches_and_stays_float32_under_autocast():
    """The spectral layer a compiled FNO runs (out of place) equals the library's and computes in
    float32 under bf16 autocast."""
    from sciflow.operators.fno import FNO, Float32SpectralConv

    torch.manual_seed(0)
    model = FNO(3, 3, 2, 2, width=8, modes=4, n_layers=1)
    conv = next(m for m in model.modules() if isinstance(m, Float32SpectralConv))
    x = torch.randn(2, 8, 12, 16)
    ref = conv(x)
    conv.out_of_place = True
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, conv(x.bfloat16().float()), rtol=1e-5, atol=1e-6)


def test_particle_surrogates_are_refused(tmp_path):
    from sciflow.data.particles.datamodule import ParticleData
    from sciflow.particle_surrogate import ParticleSurrogate
    from tests.synthetic_particles import make_particle_dataset

    dm = ParticleData(root=str(make_particle_dataset(tmp_path / "disc")), history=3, rollout_steps=4, batch_size=1)
    dm.setup("fit")
    model = ParticleSurrogate({"class_path": "gns", "init_args": {"width": 8, "message_passing_steps": 1}},
                              data_spec=dm.spec)
    with pytest.raises(CompileError, match="particle operators run eager"):
        compile_model(model, "default")
    assert compile_model(model, "off") is model


def test_compiled_ensembles_loop_instead_of_a_vmap_that_bypasses_compile(spec):
    """A vmapped ensemble call runs an eager copy of the network: compiled operators must loop."""
    from torch._dynamo.utils import counters

    models = []
    for seed in range(2):
        torch.manual_seed(seed)
        models.append(Surrogate(TINY_FNO, data_spec=spec).eval())
    x, p = _batch(spec)
    eager = [s.members for s in rollout(models, x, p, 2, batch_models=False)][-1]
    eager_models = [copy.deepcopy(m) for m in models]
    for m in models:
        compile_model(m, "default", backend="aot_eager")
    torch._dynamo.reset()
    counters.clear()
    out = [s.members for s in rollout(models, x, p, 2)][-1]
    assert counters["frames"]["ok"] >= 1  # the compiled code ran
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-6)
    # on an accelerator the default batches eager models, and loops compiled ones
    gpu = torch.device("cuda")
    assert use_batching(eager_models, None, gpu) and not use_batching(models, None, gpu)
    assert not use_batching(models, None, torch.device("cpu")) and not use_batching(models, False, gpu)
    with pytest.raises(ValueError, match="bypasses torch.compile"):
        next(iter(rollout(models, x, p, 1, batch_models=True)))
