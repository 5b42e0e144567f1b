"""Boundary conditions of the MAC solver: one condition per side, ghost cells, face roles.

A side is a :class:`Wall` (no-slip, optional tangential speed: the cavity lid), an
:class:`Inflow` (prescribed normal speed profile), an :class:`Outflow` (p = 0, convective normal
velocity, zero-gradient tangential velocity) or :class:`Periodic` (paired with the opposite side).

Every velocity face is one of: *fixed* (a prescribed value: walls, inflow, faces touching a solid
cell), *free* (advanced by the momentum equation and corrected by the pressure: interior fluid
faces, outflow faces, the master face of a periodic pair) or *slave* (the duplicate face of a
periodic pair, a copy of its master). The velocity state is one flat vector ``q`` holding
``u.ravel()`` then ``v.ravel()`` (x-first), which :class:`FaceRoles` indexes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sciflow.solvers.ns2d_grid import StaggeredGrid

SIDES = ("left", "right", "bottom", "top")


@dataclass(frozen=True)
class Wall:
    """No-slip wall; ``speed`` is its tangential velocity along +x (bottom/top) or +y (left/right)."""

    speed: float = 0.0


@dataclass(frozen=True)
class Inflow:
    """Prescribed normal speed *into* the domain, a constant or a function of the coordinate along
    the side; the tangential velocity is zero. Each boundary face gets the profile's mean over
    its span (Simpson's rule, exact up to cubics), so the inflow volume is the profile's integral.

    ``span = (lo, hi)`` limits the inflow to that interval of the side's coordinate (a partial
    inlet, e.g. the dam's lower 0.1 m); elsewhere the side is a no-slip wall. A face cut by an
    end of the span gets the covered fraction of its mean speed, so the inflow volume is exact."""

    profile: float | Callable[[np.ndarray], np.ndarray]
    span: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.span is not None:
            lo, hi = (float(x) for x in self.span)
            if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
                raise ValueError(
                    f"inflow span must be two finite numbers lo < hi, got {self.span!r}"
                )

    def _eval(self, s: np.ndarray) -> np.ndarray:
        out = np.asarray(self.profile(s), dtype=np.float64)  # type: ignore[operator]
        if out.shape != s.shape:
            raise ValueError(f"inflow profile returned shape {out.shape}, expected {s.shape}")
        return out

    def speeds(self, s: np.ndarray, h: float = 0.0) -> np.ndarray:
        """Mean inflow speed over faces of width ``h`` centred at ``s: (n,)`` -> ``(n,)``
        (``h = 0``: point values)."""
        s = np.asarray(s, dtype=np.float64)
        if callable(self.profile):
            out = self._eval(s)
            if h > 0.0:
                out = (self._eval(s - 0.5 * h) + 4.0 * out + self._eval(s + 0.5 * h)) / 6.0
        else:
            out = np.full(s.shape, float(self.profile))
        if not np.isfinite(out).all():
            raise ValueError("inflow profile holds NaN/Inf values")
        if self.span is not None:
            lo, hi = self.span
            if h > 0.0:
                cover = np.clip(np.minimum(s + 0.5 * h, hi) - np.maximum(s - 0.5 * h, lo), 0.0, h)
                out = out * (cover / h)
            else:
                out = np.where((s >= lo) & (s <= hi), out, 0.0)
        return out


@dataclass(frozen=True)
class Outflow:
    """Open side: pressure 0, normal velocity convected out at the mean outflow speed
    (du/dt + c du/dn = 0, then corrected by the pressure like any free face), tangential
    velocity of zero normal gradient. Vortices leave without reflection; in steady flow the
    outflow faces see no pressure gradient, so p = 0 is reached at the last cell centres.

    ``backflow_total_pressure``: on faces where fluid enters (flow reversal), hold the total
    pressure ``p + rho |u|^2 / 2`` at 0 instead of the static pressure: fluid drawn in from a
    still ambient accelerates by lowering its pressure (Bernoulli), so a reversal cannot bring
    kinetic energy in for free. With ``p = 0`` alone, an inflowing jet draws energy through the
    side and can run away (the classic backflow instability of open boundaries; the dam's air
    did). Off by default: the tube and cylinder outlets were validated without it.
    """

    backflow_total_pressure: bool = False


@dataclass(frozen=True)
class Periodic:
    """Periodic side; the opposite side must be periodic too."""


SideBC = Wall | Inflow | Outflow | Periodic


@dataclass(frozen=True)
class Boundaries:
    """The condition on each side of the box."""

    left: SideBC
    right: SideBC
    bottom: SideBC
    top: SideBC

    def __post_init__(self) -> None:
        for side in SIDES:
            bc = getattr(self, side)
            if not isinstance(bc, Wall | Inflow | Outflow | Periodic):
                raise ValueError(f"boundary {side!r}: unknown condition {bc!r}")
        for a, b in (("left", "right"), ("bottom", "top")):
            if isinstance(getattr(self, a), Periodic) != isinstance(getattr(self, b), Periodic):
                raise ValueError(f"boundaries: {a!r} and {b!r} must both be periodic or neither")

    @property
    def periodic_x(self) -> bool:
        return isinstance(self.left, Periodic)

    @property
    def periodic_y(self) -> bool:
        return isinstance(self.bottom, Periodic)

    def items(self) -> list[tuple[str, SideBC]]:
        return [(side, getattr(self, side)) for side in SIDES]

    def has_outflow(self) -> bool:
        return any(isinstance(bc, Outflow) for _, bc in self.items())


# ---------------------------------------------------------------------------------------------
# Ghost cells. Arrays are padded by two layers on every side (interior at [2:-2, 2:-2]). The
# helpers below fill the ghosts along axis 0 of a (possibly transposed) view, so that one code
# path serves both axes.


def _fill_normal(P: np.ndarray, lo: SideBC, hi: SideBC, cols: slice) -> None:
    """Ghosts along axis 0 for the velocity component normal to the lo/hi sides (faces 0..n)."""
    n = P.shape[0] - 5  # faces 0..n live at rows 2..n+2
    if isinstance(lo, Periodic):
        # face n duplicates face 0, so faces -1, -2 are faces n-1, n-2; likewise at the top end
        P[0:2, cols] = P[n : n + 2, cols]
        P[n + 3 : n + 5, cols] = P[3:5, cols]
        return
    # wall/inflow: odd reflection about the prescribed face value (linear extrapolation);
    # outflow: zero gradient
    if isinstance(lo, Outflow):
        P[1, cols] = P[2, cols]
        P[0, cols] = P[2, cols]
    else:
        P[1, cols] = 2.0 * P[2, cols] - P[3, cols]
        P[0, cols] = 2.0 * P[2, cols] - P[4, cols]
    if isinstance(hi, Outflow):
        P[-2, cols] = P[-3, cols]
        P[-1, cols] = P[-3, cols]
    else:
        P[-2, cols] = 2.0 * P[-3, cols] - P[-4, cols]
        P[-1, cols] = 2.0 * P[-3, cols] - P[-5, cols]


def _tangential_speed(bc: SideBC) -> float:
    return float(bc.speed) if isinstance(bc, Wall) else 0.0


def _fill_tangential(P: np.ndarray, lo: SideBC, hi: SideBC) -> None:
    """Ghosts along axis 0 for the velocity component tangential to the lo/hi sides (cells 0..m-1)."""
    m = P.shape[0] - 4
    if isinstance(lo, Periodic):
        P[0:2] = P[m : m + 2]
        P[m + 2 : m + 4] = P[2:4]
        return
    # no-slip (wall, inflow): odd reflection about the side's tangential speed, which puts that
    # speed exactly on the side; outflow: zero gradient
    if isinstance(lo, Outflow):
        P[1] = P[2]
        P[0] = P[2]
    else:
        s = _tangential_speed(lo)
        P[1] = 2.0 * s - P[2]
        P[0] = 2.0 * s - P[3]
    if isinstance(hi, Outflow):
        P[-2] = P[-3]
        P[-1] = P[-3]
    else:
        s = _tangential_speed(hi)
        P[-2] = 2.0 * s - P[-3]
        P[-1] = 2.0 * s - P[-4]


def pad_u(u: np.ndarray, bcs: Boundaries, out: np.ndarray | None = None) -> np.ndarray:
    """``u: (nx + 1, ny)`` -> ``(nx + 5, ny + 4)`` with two ghost layers filled from ``bcs``."""
    P = np.empty((u.shape[0] + 4, u.shape[1] + 4)) if out is None else out
    P[2:-2, 2:-2] = u
    _fill_normal(P, bcs.left, bcs.right, slice(2, -2))
    _fill_tangential(P.T, bcs.bottom, bcs.top)
    return P


def pad_v(v: np.ndarray, bcs: Boundaries, out: np.ndarray | None = None) -> np.ndarray:
    """``v: (nx, ny + 1)`` -> ``(nx + 4, ny + 5)`` with two ghost layers filled from ``bcs``."""
    P = np.empty((v.shape[0] + 4, v.shape[1] + 4)) if out is None else out
    P[2:-2, 2:-2] = v
    _fill_normal(P.T, bcs.bottom, bcs.top, slice(2, -2))
    _fill_tangential(P, bcs.left, bcs.right)
    return P


# ---------------------------------------------------------------------------------------------
# Face roles


@dataclass(frozen=True)
class OutflowSide:
    """Free faces on an outflow side, the interior faces next to them and the outward sign."""

    faces: np.ndarray  # indices into q
    inner: np.ndarray  # indices into q, one face inwards
    sign: float  # +1 when the outward normal points along +x/+y
    h: float  # spacing normal to the side
    # (n, 2) indices into q: the two tangential faces of the cell inside each face
    tangential: np.ndarray
    total_pressure: bool  # Outflow.backflow_total_pressure


@dataclass(frozen=True)
class FaceRoles:
    """Which entries of the flat velocity vector ``q`` are fixed, free or periodic copies.

    Attributes:
        nu: number of u entries, ``(nx + 1) * ny``; v follows.
        fixed, fixed_values: prescribed entries and their values.
        free: entries advanced by the momentum equation.
        slave, master: periodic duplicates and the entries they copy.
        outflow: one :class:`OutflowSide` per outflow side.
        solid_wall_u, solid_wall_v: ``(nx + 1, ny)`` / ``(nx, ny + 1)``: how many tangential
            neighbours of each face lie inside a solid (no-slip is then imposed halfway between).
    """

    nu: int
    nq: int
    fixed: np.ndarray
    fixed_values: np.ndarray
    free: np.ndarray
    slave: np.ndarray
    master: np.ndarray
    outflow: tuple[OutflowSide, ...]
    solid_wall_u: np.ndarray
    solid_wall_v: np.ndarray


def _solid_wall_count(solid: np.ndarray, periodic: bool) -> np.ndarray:
    """For the faces normal to axis 0 of ``solid: (n, m)``, count neighbours along axis 1 that are
    faces between two solid cells; returns ``(n + 1, m)``."""
    mode = "wrap" if periodic else "edge"
    S = np.pad(solid, ((1, 1), (0, 0)), mode=mode)
    inside = S[:-1] & S[1:]  # (n + 1, m): both cells next to the face are solid
    count = np.zeros(inside.shape)
    count[:, 1:] += inside[:, :-1]
    count[:, :-1] += inside[:, 1:]
    return count


def face_roles(grid: StaggeredGrid, bcs: Boundaries, solid: np.ndarray | None = None) -> FaceRoles:
    """Classify every velocity face of ``grid`` under ``bcs`` and the solid cells ``solid: (nx, ny)``."""
    nx, ny = grid.shape
    solid = np.zeros((nx, ny), bool) if solid is None else np.asarray(solid, dtype=bool)
    if solid.shape != (nx, ny):
        raise ValueError(f"solid mask: expected shape {(nx, ny)}, found {solid.shape}")
    if solid.all():
        raise ValueError("solid mask covers every cell: no fluid left")
    nu = (nx + 1) * ny
    nq = nu + nx * (ny + 1)
    # role codes: 0 free, 1 fixed, 2 slave
    role_u = np.zeros((nx + 1, ny), np.int8)
    role_v = np.zeros((nx, ny + 1), np.int8)
    val_u = np.zeros((nx + 1, ny))
    val_v = np.zeros((nx, ny + 1))
    outflow: list[OutflowSide] = []
    iu = np.arange(nu).reshape(nx + 1, ny)
    iv = nu + np.arange(nx * (ny + 1)).reshape(nx, ny + 1)

    def pairs(a: np.ndarray) -> np.ndarray:  # (n + 1,) -> (n, 2): the two ends of each cell
        return np.stack([a[:-1], a[1:]], axis=1)

    # sides: (bc, role row, value row, coordinate along the side, its spacing, inward sign,
    # faces, faces one inwards, outward sign, normal spacing, the tangential faces of the cell
    # inside each face as (n, 2) index pairs)
    sides = [
        (bcs.left, role_u[0], val_u[0], grid.yc, grid.hy, +1.0, iu[0], iu[1], -1.0, grid.hx,
         pairs(iv[0])),
        (bcs.right, role_u[-1], val_u[-1], grid.yc, grid.hy, -1.0, iu[-1], iu[-2], +1.0, grid.hx,
         pairs(iv[-1])),
        (bcs.bottom, role_v[:, 0], val_v[:, 0], grid.xc, grid.hx, +1.0, iv[:, 0], iv[:, 1], -1.0,
         grid.hy, pairs(iu[:, 0])),
        (bcs.top, role_v[:, -1], val_v[:, -1], grid.xc, grid.hx, -1.0, iv[:, -1], iv[:, -2], +1.0,
         grid.hy, pairs(iu[:, -1])),
    ]  # fmt: skip
    for bc, role, val, s, hs, inward, faces, inner, outward, h, tan in sides:
        if isinstance(bc, Wall):
            role[:] = 1
        elif isinstance(bc, Inflow):
            role[:] = 1
            val[:] = inward * bc.speeds(s, hs)
        elif isinstance(bc, Outflow):
            outflow.append(
                OutflowSide(faces.copy(), inner.copy(), outward, h, tan, bc.backflow_total_pressure)
            )
    if bcs.periodic_x:
        role_u[-1] = 2
    if bcs.periodic_y:
        role_v[:, -1] = 2

    # faces touching a solid cell are no-slip walls
    touch_u = np.zeros((nx + 1, ny), bool)
    touch_u[:-1] |= solid
    touch_u[1:] |= solid
    touch_v = np.zeros((nx, ny + 1), bool)
    touch_v[:, :-1] |= solid
    touch_v[:, 1:] |= solid
    for role, val, touch in ((role_u, val_u, touch_u), (role_v, val_v, touch_v)):
        hit = touch & (role != 2)
        role[hit] = 1
        val[hit] = 0.0
    if bcs.periodic_x:  # a solid touching the periodic seam fixes both copies
        role_u[0][touch_u[-1]] = 1
    if bcs.periodic_y:
        role_v[:, 0][touch_v[:, -1]] = 1
    role = np.concatenate([role_u.ravel(), role_v.ravel()])
    # an obstacle touching an outflow side turns those faces into walls
    kept = []
    for o in outflow:
        keep = role[o.faces] == 0
        kept.append(
            OutflowSide(
                o.faces[keep], o.inner[keep], o.sign, o.h, o.tangential[keep], o.total_pressure
            )
        )
    outflow = kept
    value = np.concatenate([val_u.ravel(), val_v.ravel()])
    slave = np.flatnonzero(role == 2)
    master = np.concatenate([iu[0][role_u[-1] == 2], iv[:, 0][role_v[:, -1] == 2]])
    return FaceRoles(
        nu=nu,
        nq=nq,
        fixed=np.flatnonzero(role == 1),
        fixed_values=value[role == 1],
        free=np.flatnonzero(role == 0),
        slave=slave,
        master=master,
        outflow=tuple(outflow),
        solid_wall_u=_solid_wall_count(solid, bcs.periodic_x),
        solid_wall_v=_solid_wall_count(solid.T, bcs.periodic_y).T,
    )


__all__ = [
    "SIDES",
    "Boundaries",
    "FaceRoles",
    "Inflow",
    "Outflow",
    "OutflowSide",
    "Periodic",
    "SideBC",
    "Wall",
    "face_roles",
    "pad_u",
    "pad_v",
]
