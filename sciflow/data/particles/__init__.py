"""Particle datasets: LagrangeBench's on-disk layout, lazy reading, windows, statistics, checks.

On disk (``docs/particle-format.md``): a dataset folder with ``train.h5``, ``valid.h5``,
``test.h5`` (one group per trajectory, ``"00000"``, ``"00001"``, ..., each holding
``position (T, N, D)`` float32 and ``particle_type (N,)`` int) and ``metadata.json``
(LagrangeBench's keys plus sciflow's: parameter names, declared forcing, provenance). Code in a
data folder (LagrangeBench's ``force.py``) is reported and never run; forcing is declared as data.

The particle sample contract
----------------------------

Frames are in LagrangeBench's order ``(T, N, D)``: time, particle, coordinate. Units are the
dataset's (metres, seconds); a model step is ``time_step`` stored frames of ``frame_dt`` seconds.

- **Trajectory** (``ParticleTrajectories[i]``): ``position (T, N, D)`` float32 (walls included),
  ``particle_type (N,)`` int64 (0 fluid, 1 solid wall, 2 moving wall, 3 rigid body: the ids of
  LagrangeBench; ``metadata["kinematic_particle_types"]`` lists those whose positions are
  prescribed), ``params (P,)`` float32 (named by ``metadata["parameter_names"]``), ``traj``.
  ``N`` may differ between trajectories, ``T`` between splits.
- **Window** (``ParticleWindows[j]``): ``position (h + 1, N, D)``, the positions that give ``h``
  input velocities, ``position[-1]`` being the current frame; ``target (k, N, D)``, the next ``k``
  positions (``k = 1`` for training); ``particle_type (N,)``; ``params (P,)``; ``traj``, ``t0``.
- **Batch** (``collate_particles``): samples are concatenated along the particle axis, graph
  style: ``position (h + 1, sum N, D)``, ``target (k, sum N, D)``, ``particle_type (sum N,)``,
  ``batch (sum N,)`` (sample index of each particle), ``n_particles (B,)``, ``params (B, P)``.
- **Kinematics** in frame units (GNS): velocity ``v_t = x_t - x_{t-1}``, acceleration
  ``a_t = x_{t+1} - 2 x_t + x_{t-1}``, displacements as minimum images on periodic axes
  (``Box.displacement``); a model predicts ``a_t`` and steps ``v_{t+1} = v_t + a_t``,
  ``x_{t+1} = wrap(x_t + v_{t+1})``. Kinematic particles keep their stored positions.
- **Statistics** (``ParticleStats``): ``vel_mean/std``, ``acc_mean/std`` per dimension over the
  dynamic particles of the train split, in those frame units (of ``time_step`` frames).
- **Graph**: built on the fly from positions with ``spec["radius"]`` (LagrangeBench's
  ``default_connectivity_radius``), minimum images across periodic axes.
- **Spec** (``ParticleData.spec``): ``kind = "particles"``, ``dim``, ``particle_types``,
  ``kinematic_types``, ``params``, ``bounds``, ``fluid_bounds``, ``periodic``, ``radius``, ``dx``,
  ``external_force`` (the declared law; ``body_force(law, x)`` evaluates it), ``num_particles_max``,
  ``history``, ``time_step``, ``frame_dt``, ``dt`` (seconds per model step), ``stats``.
"""

from __future__ import annotations

from sciflow.data.particles.assemble import (
    assemble_dataset,
    finalize_metadata,
    write_particle_dataset,
)
from sciflow.data.particles.box import Box
from sciflow.data.particles.check import (
    ParticleCheck,
    check_particle_path,
    is_particle_path,
    particle_summary,
)
from sciflow.data.particles.forcing import FORCE_LAWS, body_force, validate_force
from sciflow.data.particles.format import ParticleCase, group_name, write_split
from sciflow.data.particles.metadata import (
    FLUID,
    METADATA_FILE,
    MOVING_WALL,
    RIGID_BODY,
    SOLID_WALL,
    ParticleFormatError,
    read_metadata,
    validate_metadata,
    write_metadata,
)
from sciflow.data.particles.reader import ForeignCodeWarning, ParticleFile
from sciflow.data.particles.stats import (
    ParticleStats,
    compute_particle_stats,
    load_or_compute_particle_stats,
)
from sciflow.data.particles.trajectories import (
    ParticleTrajectories,
    ParticleWindows,
    collate_particles,
)


def __getattr__(name: str):
    # the DataModule pulls in Lightning; solvers that only write particle files should not pay for it
    if name == "ParticleData":
        from sciflow.data.particles.datamodule import ParticleData

        return ParticleData
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FLUID", "FORCE_LAWS", "METADATA_FILE", "MOVING_WALL", "RIGID_BODY", "SOLID_WALL", "Box",
    "ForeignCodeWarning", "ParticleCase", "ParticleCheck", "ParticleData", "ParticleFile",
    "ParticleFormatError", "ParticleStats", "ParticleTrajectories", "ParticleWindows",
    "assemble_dataset", "body_force", "check_particle_path", "collate_particles",
    "compute_particle_stats", "finalize_metadata", "group_name", "is_particle_path",
    "load_or_compute_particle_stats", "particle_summary", "read_metadata", "validate_force",
    "validate_metadata", "write_metadata", "write_particle_dataset", "write_split",
]
