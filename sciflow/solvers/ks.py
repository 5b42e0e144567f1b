"""Kuramoto-Sivashinsky equation on a periodic domain, pseudo-spectral in space, ETDRK4 in time.

    u_t + u u_x + u_xx + nu u_xxxx = 0,    x in [0, L), periodic.

Set-up of PDE-Refiner (Lippe et al. 2023): 256 points, L around 64, frames 0.2 s apart, initial
condition a sum of 10 sines ``A_j sin(2 pi l_j x / L + phi_j)`` with ``A_j ~ U(-0.5, 0.5)``,
``phi_j ~ U(0, 2 pi)`` and integer ``l_j`` in {1, 2}: ``l_j`` counts whole periods over the
domain, so the wavelength is ``L / l_j`` (the convention of the generator the paper used).

In Fourier space, with ``k = 2 pi j / L`` and ``v = FFT(u)``, the equation is
``v_t = (k^2 - nu k^4) v - (i k / 2) FFT(u^2)``: the stiff linear part is integrated exactly by
ETDRK4 (Cox & Matthews 2002) whose phi functions are evaluated by the contour-integral average
of Kassam & Trefethen (2005), which avoids the cancellation of the textbook formulas near
``h k^2 ~ 0``. The nonlinear term is taken in conservative form and 2/3-dealiased, so the
``k = 0`` coefficient (the spatial mean, the conserved quantity) never changes at all: its drift
is pure FFT round-off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sciflow.data.case import BoundarySpec, Case

# Physical time integrated and discarded before frame 0. The sum-of-sines start is a smooth
# long-wave state far from the chaotic attractor: over 128 trajectories (L = 57.6..70.4) the
# mean energy mean(u^2) sits at ~30 % of its stationary level for the first 20 s and stays
# within 2 % of it only from ~60 s on. Without a warm-up the first frames of every trajectory
# would come from that transient. (The Radau-based generator of Brandstetter et al. 2022 likewise
# keeps only the last frames of a longer integration.) 80 s costs ~400 extra frames of compute.
DEFAULT_WARMUP = 80.0
# Largest internal step: 0.02 s, 10 sub-steps per 0.2 s frame. On the attractor it stays within
# ~1e-7 (relative) of a 16x finer step after 4 s, about float32 storage precision.
DEFAULT_DT_MAX = 0.02


def ks_initial_condition(
    x: np.ndarray,
    L: float,
    rng: np.random.Generator,
    *,
    n_waves: int = 10,
    max_periods: int = 2,
    amplitude: float = 0.5,
) -> np.ndarray:
    """Sum of ``n_waves`` random sines on ``x: (N,)``; returns ``u0: (N,)``.

    Each wave is ``A sin(2 pi l x / L + phi)`` with ``A ~ U(-amplitude, amplitude)``,
    ``phi ~ U(0, 2 pi)`` and ``l`` an integer in ``1..max_periods`` (periods over the domain).
    Draws amplitudes, then phases, then periods from ``rng``, so a seed fixes the sample.
    """
    A = rng.uniform(-amplitude, amplitude, n_waves)
    phi = rng.uniform(0.0, 2.0 * np.pi, n_waves)
    periods = rng.integers(1, max_periods + 1, n_waves)
    return np.sum(A * np.sin(2.0 * np.pi * periods * x[:, None] / L + phi), axis=-1)


@dataclass(frozen=True)
class ETDRK4Coefficients:
    """Per-mode ETDRK4 factors for ``v_t = lin * v + N(v)`` and step ``h``; each ``(..., K)``."""

    E: np.ndarray  # exp(h lin)
    E2: np.ndarray  # exp(h lin / 2)
    Q: np.ndarray  # h phi_1(h lin / 2) / 2, the half-step factor
    f1: np.ndarray
    f2: np.ndarray
    f3: np.ndarray


def etdrk4_coefficients(lin: np.ndarray, h: float, n_contour: int = 32) -> ETDRK4Coefficients:
    """ETDRK4 factors for real linear rates ``lin: (..., K)`` by Kassam-Trefethen contour means.

    Each phi-type function f(z) is replaced by the mean of f over ``n_contour`` points on the
    upper half of the unit circle centred at ``z = h lin``; for real ``z`` the real part of that
    mean equals the full-circle mean, which by the mean-value property is f(z) to round-off.
    """
    lin = np.asarray(lin, dtype=np.float64)
    roots = np.exp(1j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
    z = h * lin[..., None] + roots  # (..., K, n_contour)
    ez = np.exp(z)
    ez2 = np.exp(z / 2)

    def mean(f: np.ndarray) -> np.ndarray:
        return h * np.real(np.mean(f, axis=-1))

    return ETDRK4Coefficients(
        E=np.exp(h * lin),
        E2=np.exp(h * lin / 2),
        Q=mean((ez2 - 1) / z),
        f1=mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3),
        f2=mean((2 + z + ez * (z - 2)) / z**3),
        f3=mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3),
    )


def integrate_ks(
    u0: np.ndarray,
    L: float | np.ndarray,
    *,
    frames: int,
    frame_dt: float = 0.2,
    nu: float = 1.0,
    dt_max: float = DEFAULT_DT_MAX,
    warmup: float = 0.0,
    nonlinear: bool = True,
    dealias: bool = True,
    n_contour: int = 32,
) -> tuple[np.ndarray, dict]:
    """Integrate a batch of KS states; ``u0: (B, N)``, ``L``: scalar or ``(B,)``.

    Returns ``u: (B, frames, N)`` float64, frame 0 taken after ``warmup`` seconds, frames
    ``frame_dt`` apart, and a dict of diagnostics (internal step, sub-steps per frame, warm-up
    actually integrated, per-trajectory max drift of the spatial mean ``(B,)``).
    ``nonlinear=False`` integrates the linear part alone (for closed-form checks).
    """
    u0 = np.asarray(u0, dtype=np.float64)
    if u0.ndim != 2:
        raise ValueError(f"u0: expected shape (B, N), found {u0.shape}")
    B, N = u0.shape
    L_arr = np.broadcast_to(np.asarray(L, dtype=np.float64), (B,)).copy()
    _check_positive("L", L_arr)
    _check_positive("nu", np.asarray([nu], dtype=np.float64))
    _check_positive("frame_dt", np.asarray([frame_dt], dtype=np.float64))
    _check_positive("dt_max", np.asarray([dt_max], dtype=np.float64))
    if not (math.isfinite(warmup) and warmup >= 0):
        raise ValueError(f"warmup must be finite and >= 0, got {warmup}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")

    substeps = max(1, math.ceil(frame_dt / dt_max - 1e-9))
    h = frame_dt / substeps
    warm_steps = round(warmup / h)

    j = np.arange(N // 2 + 1)
    k = 2.0 * np.pi * j[None, :] / L_arr[:, None]  # (B, K)
    lin = k**2 - nu * k**4
    # 3 j < N keeps every aliased quadratic product out of the retained modes (2/3 rule); the
    # Nyquist mode has no odd derivative on a real grid, so it is always dropped.
    keep = (3 * j < N) if dealias else (j < N / 2)
    g = np.where(keep, -0.5j * k, 0.0) if nonlinear else np.zeros_like(k, dtype=complex)
    c = etdrk4_coefficients(lin, h, n_contour)

    def nonlin(v: np.ndarray) -> np.ndarray:
        return g * np.fft.rfft(np.fft.irfft(v, n=N) ** 2)

    def step(v: np.ndarray) -> np.ndarray:
        Nv = nonlin(v)
        a = c.E2 * v + c.Q * Nv
        Na = nonlin(a)
        b = c.E2 * v + c.Q * Na
        Nb = nonlin(b)
        cc = c.E2 * a + c.Q * (2 * Nb - Nv)
        Nc = nonlin(cc)
        return c.E * v + Nv * c.f1 + 2 * (Na + Nb) * c.f2 + Nc * c.f3

    v = np.fft.rfft(u0)
    for _ in range(warm_steps):
        v = step(v)
    out = np.empty((B, frames, N))
    out[:, 0] = np.fft.irfft(v, n=N)
    for f in range(1, frames):
        for _ in range(substeps):
            v = step(v)
        out[:, f] = np.fft.irfft(v, n=N)
    if not np.all(np.isfinite(out)):
        bad = sorted({int(b) for b in np.nonzero(~np.isfinite(out))[0]})
        raise FloatingPointError(f"KS integration blew up for batch entries {bad}")

    mean0 = u0.mean(axis=-1)
    info = {
        "internal_dt": h,
        "substeps_per_frame": substeps,
        "warmup_seconds": warm_steps * h,
        "max_mean_drift": np.max(np.abs(out.mean(axis=-1) - mean0[:, None]), axis=1),
    }
    return out, info


def _check_positive(name: str, values: np.ndarray) -> None:
    bad = values[~(np.isfinite(values) & (values > 0))]
    if bad.size:
        raise ValueError(f"{name} must be finite and > 0, got {bad.tolist()}")


class KS:
    """The Kuramoto-Sivashinsky problem (``name = "ks"``, parameter vector ``[L]``).

    ``nu`` is fixed per problem instance (1 in PDE-Refiner). ``warmup`` seconds are integrated
    and discarded before frame 0 (see ``DEFAULT_WARMUP``); ``dt_max`` bounds the ETDRK4 step.
    """

    name = "ks"
    param_names = ["L"]

    def __init__(
        self,
        nu: float = 1.0,
        warmup: float = DEFAULT_WARMUP,
        dt_max: float = DEFAULT_DT_MAX,
    ) -> None:
        _check_positive("nu", np.asarray([nu], dtype=np.float64))
        self.nu = float(nu)
        self.warmup = float(warmup)
        self.dt_max = float(dt_max)

    def _validate(self, params: dict[str, float], grid: tuple[int, ...]) -> tuple[float, int]:
        extra = sorted(set(params) - set(self.param_names))
        if extra or "L" not in params:
            raise ValueError(f"KS params must be exactly {self.param_names}, got {sorted(params)}")
        try:
            L = float(params["L"])
        except (TypeError, ValueError):
            raise ValueError(f"param 'L' must be a number, got {params['L']!r}") from None
        if not (math.isfinite(L) and L > 0):
            raise ValueError(f"param 'L' must be finite and > 0, got {L}")
        if len(grid) != 1 or int(grid[0]) < 8:
            raise ValueError(f"KS grid must be (N,) with N >= 8, got {grid}")
        return L, int(grid[0])

    def simulate(
        self,
        params: dict[str, float],
        *,
        grid: tuple[int, ...] = (256,),
        frames: int,
        frame_dt: float = 0.2,
        seed: int = 0,
    ) -> Case:
        """One trajectory: ``Case`` with ``u: (frames, N)``, ``x: (N,)`` and ``time: (frames,)``."""
        return self.simulate_batch(
            [params], seeds=[seed], grid=grid, frames=frames, frame_dt=frame_dt
        )[0]

    def simulate_batch(
        self,
        params: Sequence[dict[str, float]],
        *,
        seeds: Sequence[int],
        grid: tuple[int, ...] = (256,),
        frames: int,
        frame_dt: float = 0.2,
    ) -> list[Case]:
        """Several trajectories integrated together (vectorised); one ``Case`` per entry.

        ``params[i]`` and ``seeds[i]`` describe case ``i``; each case equals the one
        ``simulate(params[i], seed=seeds[i])`` returns, up to FFT round-off. The attribute
        ``wall_seconds`` of each case is its share (total / number of cases) of the batch time.
        """
        if len(params) != len(seeds):
            raise ValueError(f"got {len(params)} params but {len(seeds)} seeds")
        if not params:
            return []
        checked = [self._validate(p, grid) for p in params]
        N = checked[0][1]
        Ls = np.array([L for L, _ in checked])
        u0 = np.stack(
            [
                ks_initial_condition(np.arange(N) * L / N, L, np.random.default_rng(seed))
                for L, seed in zip(Ls, seeds)
            ]
        )
        start = time.perf_counter()
        u, info = integrate_ks(
            u0,
            Ls,
            frames=frames,
            frame_dt=frame_dt,
            nu=self.nu,
            dt_max=self.dt_max,
            warmup=self.warmup,
        )
        wall = (time.perf_counter() - start) / len(params)
        t = np.arange(frames) * frame_dt
        cases = []
        for i, (L, seed) in enumerate(zip(Ls, seeds)):
            mask = np.zeros(N, dtype=bool)
            mask[[0, -1]] = True
            case = Case(
                scalar_fields={"u": u[i]},
                vector_fields={},
                time=t.copy(),
                coords={"x": np.arange(N) * L / N},
                params={"L": float(L)},
                boundaries=[
                    BoundarySpec("x_periodic", "periodic", ["x"], mask, associated_fields=["u"])
                ],
                attrs={
                    "solver": "sciflow.solvers.ks",
                    "equation": "u_t + u u_x + u_xx + nu u_xxxx = 0",
                    "scheme": "Fourier pseudo-spectral + ETDRK4 (Kassam-Trefethen contour phi)",
                    "dealiasing": "2/3 rule on u^2",
                    "nu": self.nu,
                    "internal_dt": info["internal_dt"],
                    "substeps_per_frame": info["substeps_per_frame"],
                    "warmup_seconds": info["warmup_seconds"],
                    "initial_condition": "sum of 10 sines, A~U(-0.5,0.5), periods 1..2 over L",
                    "seed": int(seed),
                    "wall_seconds": wall,
                    "max_mean_drift": float(info["max_mean_drift"][i]),
                    "conserved": "spatial mean of u",
                },
            )
            case.validate()
            cases.append(case)
        return cases
