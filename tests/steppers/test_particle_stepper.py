"""The particle stepper: kinematics, the noise-corrected target, walls, bad input, training."""

import math

import pytest
import torch
from torch import nn

from sciflow.steppers.particle import ParticleStepper

STATS = {"vel_mean": [0.01, -0.02], "vel_std": [0.003, 0.004], "acc_mean": [0.0, -1e-4],
         "acc_std": [2e-4, 3e-4], "params_mean": [1.0], "params_std": [0.5]}
GNS = {"class_path": "gns", "init_args": {"width": 16, "message_passing_steps": 2}}


def stepper(periodic=(False, False), noise_std=3e-4, history=3, **kw):
    args = dict(dim=2, history=history, n_params=1, bounds=[[0.0, 1.0], [0.0, 1.0]], periodic=list(periodic),
                radius=0.1, dx=0.07, stats=STATS, noise_std=noise_std)
    return ParticleStepper(GNS, **{**args, **kw})


class Zero(nn.Module):
    """An operator that predicts normalised acceleration 0 (the data's mean acceleration)."""

    def forward(self, position, velocity, particle_type, batch, cond=None):
        return torch.zeros_like(position)


def ballistic(n=40, frames=5, seed=0):
    """Particles in uniform motion plus a constant acceleration: ``(frames, n, 2)``."""
    g = torch.Generator().manual_seed(seed)
    x0 = 0.3 + 0.4 * torch.rand(n, 2, generator=g)
    v = 0.01 * torch.randn(n, 2, generator=g)
    a = torch.tensor([0.0, -1e-4])
    t = torch.arange(frames, dtype=torch.float32)[:, None, None]
    return x0 + v * t + 0.5 * a * t * (t - 1)


def test_normalisation_folds_the_noise():
    s = stepper(noise_std=3e-4)
    assert torch.allclose(s.vel_std, torch.tensor([math.hypot(0.003, 3e-4), math.hypot(0.004, 3e-4)]))
    assert torch.allclose(s.acc_std, torch.tensor([math.hypot(2e-4, 3e-4), math.hypot(3e-4, 3e-4)]))
    assert torch.allclose(stepper(noise_std=0.0).acc_std, torch.tensor([2e-4, 3e-4]))


def test_random_walk_noise_statistics():
    s = stepper(noise_std=1e-3, history=5)
    pos = torch.zeros(6, 20000, 2)
    types = torch.zeros(20000, dtype=torch.long)
    types[:100] = 1  # walls
    n = s.random_walk_noise(pos, s.dynamic(types), torch.Generator().manual_seed(0))
    assert torch.equal(n[0], torch.zeros(20000, 2))  # the oldest frame is not moved
    assert torch.equal(n[:, :100], torch.zeros(6, 100, 2))  # kinematic particles get none
    v = n[1:, 100:] - n[:-1, 100:]
    # the velocity noise is a random walk: step k has variance k / h * noise_std^2
    for k in range(5):
        assert abs(v[k].std().item() - 1e-3 * math.sqrt((k + 1) / 5)) < 3e-5


def test_noise_corrected_target_recovers_the_true_velocity():
    s = stepper(noise_std=2e-3)  # large noise so that an uncorrected target would be far off
    x = ballistic(frames=5)  # history 3 -> 4 input frames and the target
    types = torch.zeros(40, dtype=torch.long)
    n = s.random_walk_noise(x[:4], s.dynamic(types), torch.Generator().manual_seed(1))
    noisy, target = x[:4] + n, x[4] + n[-1]
    a = s.target_acceleration(noisy, target)
    assert torch.allclose(a, s.target_acceleration(x[:4], x[4]) - (n[-1] - n[-2]), atol=1e-6)
    # semi-implicit Euler from the noisy inputs with the corrected target: the true velocity, and
    # the next position carries the last input frame's noise only
    v_next = (noisy[-1] - noisy[-2]) + a
    assert torch.allclose(v_next, x[4] - x[3], atol=1e-6)
    assert torch.allclose(noisy[-1] + v_next, x[4] + n[-1], atol=1e-6)
    # and the loss scores exactly that target (a zero operator's loss is the target's mean square)
    s.operator = Zero()
    loss = s.loss(x[:4], x[4], types, torch.zeros(40, dtype=torch.long), torch.ones(1, 1),
                  generator=torch.Generator().manual_seed(1))
    expect = (((a - s.acc_mean) / s.acc_std) ** 2).mean()
    assert torch.allclose(loss, expect, rtol=1e-5)


def test_step_is_semi_implicit_euler_and_keeps_walls():
    s = stepper(noise_std=0.0)
    s.operator = Zero()  # acceleration = the data's mean acceleration
    x = ballistic(frames=5)
    types = torch.zeros(40, dtype=torch.long)
    types[:5] = 1
    nxt = s.step(x[:4], types, torch.zeros(40, dtype=torch.long), torch.ones(1, 1))
    expect = x[3] + (x[3] - x[2]) + s.acc_mean
    assert torch.allclose(nxt[5:], expect[5:], atol=1e-6)
    assert torch.equal(nxt[:5], x[3, :5])  # walls stay
    prescribed = torch.full((40, 2), 0.5)
    nxt = s.step(x[:4], types, torch.zeros(40, dtype=torch.long), torch.ones(1, 1), kinematic=prescribed)
    assert torch.equal(nxt[:5], prescribed[:5])


def test_walls_hold_particles_and_periodic_axes_wrap():
    s = stepper(noise_std=0.0, periodic=(True, False), fluid_bounds=[[0.0, 1.0], [0.1, 0.9]])
    s.operator = Zero()
    # particle 0 runs right (across the periodic face) and down into the wall; particle 1 rises
    x = torch.tensor([[[0.90, 0.25], [0.5, 0.50]], [[0.93, 0.20], [0.5, 0.55]],
                      [[0.96, 0.15], [0.5, 0.60]], [[0.99, 0.11], [0.5, 0.65]]])
    nxt = s.step(x, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), torch.ones(1, 1))
    assert nxt[0, 1].item() == pytest.approx(0.1)  # held at the wall's inner face (0.11 - 0.04 < 0.1)
    assert nxt[0, 0].item() == pytest.approx(0.02, abs=1e-6)  # 0.99 + 0.03 wraps to 0.02
    assert nxt[1].tolist() == pytest.approx([0.5, 0.7 - 1e-4], abs=1e-6)


def test_bad_input_is_named():
    s = stepper()
    x = ballistic(frames=5)
    types, batch, p = torch.zeros(40, dtype=torch.long), torch.zeros(40, dtype=torch.long), torch.ones(1, 1)
    bad = x.clone()
    bad[2, 7, 1] = 1.5
    with pytest.raises(ValueError, match=r"particle 7 at frame 2 is outside the bounds: coordinate 1 = 1\.5, bounds \[0, 1\]"):
        s.step(bad[:4], types, batch, p)
    bad[2, 7, 1] = float("nan")
    with pytest.raises(ValueError, match="particle 7 at frame 2 is not finite"):
        s.loss(bad[:4], bad[4], types, batch, p)
    with pytest.raises(ValueError, match=r"\(frames, N, D=2\)"):
        s.step(torch.rand(4, 40, 3), types, batch, p)
    with pytest.raises(ValueError, match="history \\+ 1 = 4 frames"):
        s.step(x[:3], types, batch, p)
    with pytest.raises(ValueError, match=r"params must be \(B, P=1\)"):
        s.step(x[:4], types, batch, None)
    stats = {k: v for k, v in STATS.items() if k != "acc_std"}
    with pytest.raises(ValueError, match=r"statistics \['acc_std'\] missing"):
        stepper(stats=stats)
    with pytest.raises(ValueError, match="'vel_std' has 3 values, expected 2"):
        stepper(stats={**STATS, "vel_std": [1, 2, 3]})


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    # particles slowed by drag, a = -0.3 v, integrated like the stepper does
    x = [0.3 + 0.4 * torch.rand(60, 2)]
    v = 0.01 * torch.randn(60, 2)
    for _ in range(4):
        v = v - 0.3 * v
        x.append(x[-1] + v)
    x = torch.stack(x)
    acc = x[2:] - 2 * x[1:-1] + x[:-2]
    vel = x[1:] - x[:-1]
    stats = {"vel_mean": vel.mean((0, 1)).tolist(), "vel_std": vel.std((0, 1)).tolist(),
             "acc_mean": acc.mean((0, 1)).tolist(), "acc_std": acc.std((0, 1)).tolist(),
             "params_mean": [1.0], "params_std": [0.5]}
    s = stepper(noise_std=1e-5, stats=stats)
    opt = torch.optim.Adam(s.parameters(), lr=3e-3)
    types, batch, p = torch.zeros(60, dtype=torch.long), torch.zeros(60, dtype=torch.long), torch.ones(1, 1)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        loss = s.loss(x[:4], x[4], types, batch, p, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.2 * sum(losses[:5]) / 5
