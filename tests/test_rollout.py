"""The rollout engine: shapes, seeding, flat memory, blow-up stopping, the projection hook."""

from __future__ import annotations

import gc
import tracemalloc
import warnings

import pytest
import torch

from sciflow.data.datamodule import SciflowData
from sciflow.rollout import BlowupWarning, Step, blowup_limit, member_seed, member_table, rollout
from sciflow.steppers.deterministic import Deterministic
from sciflow.surrogate import Surrogate
from tests.synthetic import make_dataset

TINY_FNO = {"class_path": "fno", "init_args": {"width": 8, "modes": 4, "n_layers": 1}}


class NoisyStepper(Deterministic):
    """Deterministic step plus seeded Gaussian noise: the smallest stochastic stepper."""

    stochastic = True

    def __init__(self, operator, *, noise: float = 0.1, **sizes):
        super().__init__(operator, **sizes)
        self.noise = noise

    def step(self, prev, cond=None, mask=None, *, generator=None):
        out = super().step(prev, cond, mask)
        z = torch.randn(out.shape, generator=generator, device=out.device, dtype=out.dtype)
        out = out + self.noise * z
        return out if mask is None else out * mask.unsqueeze(1).to(out.dtype)


class ScaledCopy(Surrogate):
    """``next = gain * params[:, 0] * last``: a model whose growth per step is known exactly."""

    gain = 1.0

    def predict_next(self, history, params, mask=None, *, generator=None):
        factor = self.gain * params[:, 0]
        return history[:, -1] * factor.view(-1, *([1] * (history.ndim - 2)))


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    card = make_dataset(tmp_path_factory.mktemp("rollout") / "synthetic", n=(2, 1, 1))
    return SciflowData(str(card)).spec


def _fno(spec, stepper=None, seed=0):
    torch.manual_seed(seed)
    return Surrogate(TINY_FNO, stepper=stepper, data_spec=spec)


def _scaled(spec, gain):
    m = ScaledCopy(TINY_FNO, data_spec=spec)
    m.gain = gain
    return m


def _inputs(spec, B=2, h=1, value=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    C, S = len(spec["channels"]), spec["spatial_shape"]
    x = torch.randn(B, h, C, *S, generator=g) if value is None else torch.full((B, h, C, *S), value)
    return x, torch.rand(B, len(spec["params"]), generator=g) + 0.5


NOISY = {"class_path": "tests.test_rollout.NoisyStepper", "init_args": {"noise": 0.1}}


def test_steps_shapes_time_and_members(spec):
    models = [_fno(spec, seed=0), _fno(spec, NOISY, seed=1), _fno(spec, seed=2)]
    x, p = _inputs(spec, B=2)
    out = list(rollout(models, x, p, 3, samples=2))
    assert [s.index for s in out] == [1, 2, 3]
    assert [s.time for s in out] == pytest.approx([0.1, 0.2, 0.3])
    # deterministic models contribute one member each (their samples would be copies), the
    # stochastic one its two samples: 4 members, model-major
    assert member_table(models, 2) == [(0, 0), (1, 0), (1, 1), (2, 0)]
    for s in out:
        assert isinstance(s, Step)
        assert s.members.shape == (4, 2, 3, 16, 16)
        assert s.alive.shape == (4, 2) and bool(s.alive.all())
    m = out[-1].members
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(m[i], m[j]), (i, j)
    # each member is its model's own rollout (the noisy model's members from its own generator)
    alone = list(rollout(models[2:], x, p, 3, samples=2))[-1].members
    torch.testing.assert_close(alone[0], m[3], rtol=0, atol=0)


def test_models_roll_out_in_eval_mode_and_come_back_as_they_were(spec):
    seen = []

    class ModeRecorder(ScaledCopy):
        def predict_next(self, history, params, mask=None, *, generator=None):
            seen.append(self.training)
            return history[:, -1]

    a, b = ModeRecorder(TINY_FNO, data_spec=spec), ModeRecorder(TINY_FNO, data_spec=spec)
    a.train()
    b.eval()
    x, p = _inputs(spec, B=1)
    list(rollout([a, b], x, p, 2))
    assert seen == [False] * 4
    assert a.training and not b.training


def test_members_follow_predict_next(spec):
    """Member states are exactly the model's own autoregressive steps."""
    model = _fno(spec)
    x, p = _inputs(spec, B=2)
    steps = list(rollout([model], x, p, 2))
    first = model.predict_next(x, p)
    second = model.predict_next(first.unsqueeze(1), p)
    torch.testing.assert_close(steps[0].members[0], first)
    torch.testing.assert_close(steps[1].members[0], second)


def test_history_window_slides(spec):
    """With h = 2 the model sees the last two states, the newest last."""
    seen = []

    class Recorder(ScaledCopy):
        def predict_next(self, history, params, mask=None, *, generator=None):
            seen.append(history[:, :, 0, 0, 0].clone())
            return history[:, -1] + 1

    m = Recorder(TINY_FNO, data_spec={**spec, "history": 2})
    x = torch.zeros(1, 2, 3, 16, 16)
    x[:, 0] = -1.0
    list(rollout([m], x, torch.ones(1, 2), 3))
    assert [s.flatten().tolist() for s in seen] == [[-1.0, 0.0], [0.0, 1.0], [1.0, 2.0]]


def test_stochastic_samples_differ_and_seed_reproduces(spec):
    models = [_fno(spec, NOISY, seed=0), _fno(spec, NOISY, seed=0)]  # same weights, own noise
    x, p = _inputs(spec, B=2)
    a = [s.members for s in rollout(models, x, p, 3, samples=2, seed=7)]
    b = [s.members for s in rollout(models, x, p, 3, samples=2, seed=7)]
    c = [s.members for s in rollout(models, x, p, 3, samples=2, seed=8)]
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    last = a[-1]
    for i in range(4):
        for j in range(i + 1, 4):
            assert (last[i] - last[j]).abs().max() > 1e-3, (i, j)
    assert (a[-1] - c[-1]).abs().max() > 1e-3
    assert member_seed(7, 0) != member_seed(7, 1) and member_seed(7, 0) == member_seed(7, 0)


def test_chunked_batches_match(spec):
    model = _fno(spec)
    x, p = _inputs(spec, B=3)
    whole = [s.members for s in rollout([model], x, p, 2, samples=2)]
    chunked = [s.members for s in rollout([model], x, p, 2, samples=2, max_batch=4)]
    for u, v in zip(whole, chunked):
        torch.testing.assert_close(u, v)


def _live_tensor_bytes() -> tuple[int, int]:
    gc.collect()
    ts = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    return len(ts), sum(t.numel() * t.element_size() for t in ts)


def test_memory_flat_in_steps(spec):
    """The engine keeps no growing state: after 50 and 500 consumed steps the live tensors and
    Python allocations are the same."""
    model = _scaled(spec, 1.0)
    x, p = _inputs(spec, B=2, h=1)
    p[:, 0] = 1.0
    gen = rollout([model], x, p, 600, samples=3)
    # only allocations made under sciflow's code count: threads other tests leave behind (e.g. the
    # compiler's workers) allocate meanwhile
    import os

    import sciflow

    ours = [tracemalloc.Filter(True, os.path.join(os.path.dirname(sciflow.__file__), "*"), all_frames=True)]

    def python_bytes() -> int:
        return sum(t.size for t in tracemalloc.take_snapshot().filter_traces(ours).traces)

    tracemalloc.start(30)
    try:
        for _ in range(50):
            next(gen)
        n50, bytes50 = _live_tensor_bytes()
        py50 = python_bytes()
        for _ in range(450):
            next(gen)
        n500, bytes500 = _live_tensor_bytes()
        py500 = python_bytes()
    finally:
        tracemalloc.stop()
        gen.close()
    assert n500 == n50 and bytes500 == bytes50
    assert py500 - py50 < 20_000, (py50, py500)


def test_blowup_stops_exactly_the_exploding_member(spec):
    # model 0 grows batch element 0 tenfold per step; everything else is stable or decays
    models = [_scaled(spec, 1.0), _scaled(spec, 0.1)]
    x, p = _inputs(spec, B=2, value=2.0)
    p[:, 0] = torch.tensor([10.0, 1.0])
    # limit = 1e3 * 2 (the floor |mean| + std of the synthetic data is below 2): 2 * 10^k > 2000 first at k = 4
    assert (
        float(blowup_limit(x, 1e3, models[0].mean.abs().flatten() + models[0].std.flatten()).max())
        == 2000.0
    )
    with pytest.warns(
        BlowupWarning, match=r"step 4 .*member 0 \(model 0, sample 0\) of batch element 0"
    ) as rec:
        out = list(rollout(models, x, p, 6))
    assert len(rec) == 1
    for s in out:
        dead = s.index >= 4
        assert s.alive.tolist() == [[not dead, True], [True, True]]
        assert bool(torch.isnan(s.members[0, 0]).all()) == dead
        torch.testing.assert_close(s.members[0, 1], torch.full_like(s.members[0, 1], 2.0))
        torch.testing.assert_close(s.members[1, 0], torch.full_like(s.members[1, 0], 2.0))
        torch.testing.assert_close(
            s.members[1, 1], torch.full_like(s.members[1, 1], 2.0 * 0.1**s.index)
        )
    torch.testing.assert_close(out[2].members[0, 0], torch.full_like(out[2].members[0, 0], 2000.0))


def test_nan_output_stops_member_and_does_not_spread(spec):
    class NaNOnce(ScaledCopy):
        stochastic = True  # two samples, two members

        def predict_next(self, history, params, mask=None, *, generator=None):
            out = history[:, -1].clone()
            out[1, 0, 0, 0] = float("nan")  # batch row 1: sample 0 of element 1 (B = 2)
            return out

    m = NaNOnce(TINY_FNO, data_spec=spec)
    x, p = _inputs(spec, B=2)
    with pytest.warns(BlowupWarning, match="step 1"):
        out = list(rollout([m], x, p, 3, samples=2))
    for s in out:
        assert s.alive.tolist() == [[True, False], [True, True]]
        assert bool(torch.isnan(s.members[0, 1]).all())
        assert bool(torch.isfinite(s.members[[0, 1, 1], [0, 0, 1]]).all())


def test_zero_initial_state_does_not_blow_up(spec):
    """A fluid at rest (all zeros) must not stop every member: the data's typical magnitude is the floor."""
    model = _fno(spec)
    x, p = _inputs(spec, B=1, value=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BlowupWarning)
        out = list(rollout([model], x, p, 2))
    assert bool(out[-1].alive.all())


def test_project_hook_applied_and_fed_back(spec):
    calls = []

    def zero_mean(members, k):
        calls.append(k)
        return members - members.mean(dim=(-2, -1), keepdim=True)

    model = _fno(spec)
    x, p = _inputs(spec, B=2)
    out = list(rollout([model], x, p, 3, samples=2, project=zero_mean))
    assert calls == [1, 2, 3]
    for s in out:
        assert s.members.mean(dim=(-2, -1)).abs().max() < 1e-5

    # the projected state is what the model sees next: identity model + "add one" gives initial + k
    ident = _scaled(spec, 1.0)
    p1 = torch.ones(2, 2)
    steps = list(rollout([ident], x, p1, 3, project=lambda m, k: m + 1.0))
    for s in steps:
        torch.testing.assert_close(s.members[0], x[:, -1] + s.index)


def test_project_must_keep_shape(spec):
    model = _scaled(spec, 1.0)
    x, p = _inputs(spec, B=1)
    with pytest.raises(ValueError, match="project returned"):
        next(rollout([model], x, p, 2, project=lambda m, k: m[0]))


def test_grad_mode_does_not_leak_to_consumer(spec):
    model = _fno(spec)
    x, p = _inputs(spec, B=1)
    for _ in rollout([model], x, p, 2):
        assert torch.is_grad_enabled()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"initial": torch.zeros(2, 1, 2, 16, 16)}, r"initial must be \(B, h, C=3"),
        ({"initial": torch.zeros(2, 0, 3, 16, 16)}, "history frames"),
        ({"params": torch.zeros(2, 3)}, r"params must be \(B=2, P=2\)"),
        ({"mask": torch.ones(2, 16, 16)}, "mask must be bool"),
        ({"samples": 0}, "samples must be >= 1"),
        ({"max_batch": 0}, "max_batch"),
    ],
)
def test_bad_input(spec, kwargs, match):
    x, p = _inputs(spec, B=2)
    args = {"initial": x, "params": p, **kwargs}
    with pytest.raises(ValueError, match=match):
        next(rollout([_scaled(spec, 1.0)], args.pop("initial"), args.pop("params"), 2, **args))


def test_models_must_agree_on_dt(spec):
    a, b = _scaled(spec, 1.0), ScaledCopy(TINY_FNO, data_spec={**spec, "dt": 0.2})
    x, p = _inputs(spec, B=1)
    with pytest.raises(ValueError, match="disagree on dt"):
        next(rollout([a, b], x, p, 1))


def test_progress_bar(spec, capsys):
    x, p = _inputs(spec, B=1)
    list(rollout([_scaled(spec, 1.0)], x, p, 3, progress=True))
    assert "rollout" in capsys.readouterr().err
