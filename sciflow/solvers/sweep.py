"""Generate a dataset from its card: simulate every case of a sweep and write its files.

Resumable: each output file is written atomically, so a file that exists is finished; a rerun
simulates only the missing ones (and removes the temporary files a killed run left). Parallel over files with a process pool, with a progress bar.

Grid cards (``kind: grid``) write Well-layout files, ``<root>/data/<split>/<case>.hdf5``.
Particle cards (``kind: particles``) write one part file per case,
``<root>/cases/<split>/<case>.h5`` (a one-trajectory split file in LagrangeBench's layout), and
then gather the parts into ``<root>/{train,valid,test}.h5`` with ``metadata.json``
(:func:`sciflow.data.particles.assemble_dataset`); the parts stay, so a grown sweep simulates
only its new cases. A file that cannot be written
(full disk, read-only folder) stops the run with :class:`~sciflow.data.errors.DataWriteError`; every
file finished before it is kept.

Sharded: ``shard=(i, n)`` simulates only the files whose place in the plan is ``i`` modulo
``n``, so n processes or machines (a SLURM array) split one sweep with no overlap and no
coordination; :func:`merge` then checks that every file of the plan exists and, for particle
cards, gathers the parts (grid readers see the union of the shards' files as they are).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

import sciflow
from sciflow.data.card import SPLITS, CaseSpec, DatasetCard
from sciflow.data.errors import CardError
from sciflow.data.format import TMP_SUFFIX, remove_debris, write_cases
from sciflow.data.particles.assemble import assemble_dataset
from sciflow.data.particles.format import write_split
from sciflow.solvers import PROBLEMS, get_problem


@dataclass(frozen=True)
class FileJob:
    """One output file: its path and the cases (same split) it holds."""

    path: Path
    cases: tuple[CaseSpec, ...]


class CaseFailed(RuntimeError):
    """A case of a sweep could not be simulated; the message names the card, case and file."""


class SweepIncomplete(RuntimeError):
    """Files of a sweep's plan are missing at merge time; the message names them and their shard."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``: shard ``i`` (0-based, as SLURM array and rank ids) of ``n``."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"shard {text!r}: expected I/N with integers, e.g. 0/4") from None
    check_shard((i, n))
    return i, n


def check_shard(shard: tuple[int, int]) -> None:
    """Raise a ValueError naming the shard unless ``0 <= i < n``."""
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: needs N >= 1 and 0 <= I < N (shards are numbered 0..N-1)")


def shard_jobs(jobs: Sequence[FileJob], shard: tuple[int, int] | None) -> list[FileJob]:
    """The jobs of one shard: every n-th file of the plan from the i-th (round robin keeps shards
    within one file of each other in size; the plan's order depends only on the card and the
    selection, so every shard computes the same split on its own)."""
    if shard is None:
        return list(jobs)
    check_shard(shard)
    i, n = shard
    return list(jobs[i::n])


def plan(
    card: DatasetCard,
    subset: str = "all",
    n: int | None = None,
    root: str | os.PathLike | None = None,
) -> list[FileJob]:
    """The files a sweep writes: ``<root>/data/<split>/<case or chunk>.hdf5`` (grid cards) or
    ``<root>/cases/<split>/<case>.h5`` (particle cards, one case per file)."""
    particles = card.kind == "particles"
    data = card.data_dir(root) / ("cases" if particles else "data")
    cases = card.cases(subset, n)
    per_file = 1 if particles else max(1, card.trajectories_per_file)
    suffix = ".h5" if particles else ".hdf5"
    jobs = []
    for split in SPLITS:
        for sub in dict.fromkeys(c.subset for c in cases):
            group = sorted(
                (c for c in cases if c.split == split and c.subset == sub), key=lambda c: c.case_id
            )
            if per_file == 1:
                jobs += [FileJob(data / split / f"{c.case_id}{suffix}", (c,)) for c in group]
            else:
                for k in range(0, len(group), per_file):
                    chunk = tuple(group[k : k + per_file])
                    jobs.append(
                        FileJob(data / split / f"{chunk[0].case_id}_x{len(chunk)}.hdf5", chunk)
                    )
    return jobs


def run_job(card: DatasetCard, job: FileJob) -> tuple[Path, float]:
    """Simulate the cases of one job and write its file; returns (path, seconds per case)."""
    problem = get_problem(card.problem)
    if card.kind == "particles":
        return _run_particle_job(card, job, problem)
    start = time.perf_counter()
    split = job.cases[0].split
    kwargs = {
        "grid": tuple(card.grid),
        "frames": card.frames_for(split),
        "frame_dt": float(card.dt),
    }
    if len(job.cases) > 1 and hasattr(problem, "simulate_batch"):
        # problems that vectorise over trajectories (KS) simulate a file's cases together
        results = problem.simulate_batch(
            [c.params for c in job.cases], seeds=[c.seed for c in job.cases], **kwargs
        )
    else:
        results = []
        for c in job.cases:
            try:
                results.append(problem.simulate(c.params, seed=c.seed, **kwargs))
            except (FloatingPointError, ValueError, RuntimeError) as err:
                raise CaseFailed(
                    f"card {card.name!r}, case {c.case_id} ({job.path.name}), params {c.params}: {err}"
                ) from err
    for c, case in zip(job.cases, results):
        case.attrs.update(case_id=c.case_id, subset=c.subset, split=c.split, seed=c.seed)
    elapsed = time.perf_counter() - start
    write_cases(
        job.path,
        results,
        dataset_name=card.name,
        attrs={
            "dt": float(card.dt),
            "generator": _generator(card),
            "conservation": card.conservation,
        },
    )
    return job.path, elapsed / len(job.cases)


def _generator(card: DatasetCard) -> dict[str, str]:
    return {"problem": card.problem, "card": card.name, "card_hash": card.hash,
            "sciflow_version": sciflow.__version__}


def _run_particle_job(card: DatasetCard, job: FileJob, problem: object) -> tuple[Path, float]:
    """Simulate one particle case and write it as a one-trajectory part file."""
    (c,) = job.cases
    start = time.perf_counter()
    try:
        case = problem.simulate(c.params, frames=card.frames_for(c.split), frame_dt=float(card.dt),
                                seed=c.seed, **card.solver)
    except (FloatingPointError, ValueError, RuntimeError) as err:
        raise CaseFailed(f"card {card.name!r}, case {c.case_id} ({job.path.name}), params {c.params}: {err}") from err
    case.attrs.update(case_id=c.case_id, subset=c.subset, split=c.split, seed=c.seed)
    write_split(job.path, [case], parameter_names=card.params, dataset_name=card.name,
                attrs={"generator": _generator(card)})
    return job.path, time.perf_counter() - start


def _assemble_particles(card: DatasetCard, jobs: list[FileJob], root: str | os.PathLike | None,
                        progress: bool) -> None:
    """Gather the finished part files of the plan into the split files and metadata.json."""
    parts = {s: [j.path for j in jobs if j.cases[0].split == s and j.path.exists()] for s in SPLITS}
    if not parts["train"]:
        return  # nothing to normalise with yet; the parts stay for a rerun
    assemble_dataset(card.data_dir(root), parts,
                     {"parameter_names": list(card.params), "sciflow": _generator(card)},
                     dataset_name=card.name, progress=progress)


def generate(
    card: DatasetCard,
    subset: str = "all",
    n: int | None = None,
    *,
    root: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> list[Path]:
    """Generate (or finish generating) the sweep; returns every file of the plan (of the shard).

    ``workers > 1`` simulates files in parallel processes. Files that already exist are kept; a
    file found under another split folder (after the selection grew) is moved, not redone.
    ``shard=(i, n)`` does only shard i's files (:func:`shard_jobs`); particle parts are then
    gathered by :func:`merge` once every shard has finished.
    """
    if card.problem is None:
        raise CardError(f"card {card.name!r} names no 'problem': it is imported, not generated")
    if card.problem not in PROBLEMS:
        raise CardError(f"card {card.name!r}: problem {card.problem!r} is not one of {sorted(PROBLEMS)}")
    # particle cards take their resolution and step from the solver settings, not grid / dt
    for key in ("grid", "dt") if card.kind == "grid" else ():
        if not getattr(card, key):
            raise CardError(f"card {card.name!r}: key {key!r} is needed to generate data")
    jobs = shard_jobs(plan(card, subset, n, root), shard)
    if shard is None:
        for folder in {j.path.parent for j in jobs}:
            remove_debris(folder)  # temporary files of a killed run: never finished, never read
    else:  # other shards may be writing in the same folders: only this shard's own leftovers go
        for job in jobs:
            for tmp in job.path.parent.glob(f".{job.path.name}.*{TMP_SUFFIX}"):
                tmp.unlink(missing_ok=True)
    todo: list[FileJob] = []
    for job in jobs:
        if job.path.exists():
            continue
        elsewhere = [job.path.parent.parent / s / job.path.name for s in SPLITS]
        found = [p for p in elsewhere if p.exists()]
        if found:
            job.path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(found[0], job.path)
            continue
        todo.append(job)
    n_cases = sum(len(j.cases) for j in todo)
    bar = tqdm(
        total=n_cases,
        desc=f"generate {card.name}",
        unit="case",
        disable=not progress or not n_cases,
    )
    # a failing case does not stop the others: every finished file is kept, and the failures
    # are reported together at the end (a rerun retries only what is missing)
    failed: list[str] = []
    try:
        if workers <= 1:
            for job in todo:
                try:
                    run_job(card, job)
                except CaseFailed as err:
                    failed.append(str(err))
                bar.update(len(job.cases))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(run_job, card, job): job for job in todo}
                try:
                    for fut in as_completed(futures):
                        try:
                            fut.result()
                        except CaseFailed as err:
                            failed.append(str(err))
                        bar.update(len(futures[fut].cases))
                except BaseException:
                    # a write error (full disk, read-only folder) or an interrupt: start nothing new
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        bar.close()
    if card.kind == "particles" and shard is None:
        # the dataset holds every finished case, also when others failed (a rerun adds them)
        _assemble_particles(card, jobs, root, progress)
    if failed:
        raise CaseFailed(f"{len(failed)} of {n_cases} cases failed:\n" + "\n".join(failed))
    return [j.path for j in jobs]


def merge(
    card: DatasetCard,
    subset: str = "all",
    n: int | None = None,
    *,
    root: str | os.PathLike | None = None,
    shards: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """Finish a sharded sweep: check that every file of the plan exists (raise
    :class:`SweepIncomplete` naming the missing files, and their shard when ``shards`` is given),
    then gather particle parts into the split files; returns every file of the plan."""
    jobs = plan(card, subset, n, root)
    missing = [(k, j.path) for k, j in enumerate(jobs) if not j.path.exists()]
    if missing:
        def name(k: int, path: Path) -> str:
            where = f" (shard {k % shards}/{shards})" if shards else ""
            return f"{path.relative_to(card.data_dir(root))}{where}"

        listed = "\n".join(name(k, p) for k, p in missing[:10])
        more = f"\n... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise SweepIncomplete(
            f"card {card.name!r}: {len(missing)} of {len(jobs)} files of the sweep are missing in "
            f"{card.data_dir(root)}; run the shards that write them first:\n{listed}{more}"
        )
    if card.kind == "particles":
        _assemble_particles(card, jobs, root, progress)
    return [j.path for j in jobs]


__all__: Sequence[str] = ["CaseFailed", "FileJob", "SweepIncomplete", "generate", "merge",
                          "parse_shard", "plan", "run_job", "shard_jobs"]
