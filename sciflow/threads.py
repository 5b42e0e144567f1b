"""How many CPU threads torch uses: a default that does not oversubscribe a shared machine.

torch starts with one intra-op thread per physical core. When other processes keep those cores
busy, its threads wait for each other at every parallel region and small-tensor training slows
down many times over (on a loaded 2-core machine, about 20x against one thread). The rule:

    threads = max(1, min(torch's default, cores // processes, idle cores // processes))

where ``cores`` are the CPUs this process may run on, ``processes`` the training processes on this
machine (DDP ranks) and ``idle cores`` = ``cores`` minus the 1-minute load average. An explicit
request (``--threads``, the ``threads:`` config key, or ``OMP_NUM_THREADS``) always wins.
"""

from __future__ import annotations

import math
import os

import torch

# torch's own default (one thread per physical core), read before anything changes it
_TORCH_DEFAULT = torch.get_num_threads()


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_average() -> float:
    """The 1-minute load average (0 where the OS does not report one)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def torch_default_threads() -> int:
    """torch's own default thread count (one per physical core), as it was at start-up."""
    return _TORCH_DEFAULT


def default_threads(processes: int = 1, *, cores: int | None = None, load: float | None = None,
                    torch_default: int | None = None) -> int:
    """The default intra-op thread count for one of ``processes`` training processes (see module doc)."""
    processes = max(1, int(processes))
    cores = usable_cores() if cores is None else max(1, int(cores))
    load = load_average() if load is None else max(0.0, float(load))
    torch_default = _TORCH_DEFAULT if torch_default is None else max(1, int(torch_default))
    idle = max(0, cores - math.ceil(load - 0.5))  # a core counts as busy from a load of 0.5 on
    return max(1, min(torch_default, cores // processes, idle // processes))


def configure_threads(requested: int | None = None, processes: int = 1) -> tuple[int, str]:
    """Set torch's intra-op threads and say why: ``requested`` if given, else ``OMP_NUM_THREADS``
    if set, else :func:`default_threads`. Returns ``(threads, reason)``."""
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        n, why = int(requested), "as requested"
    elif os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        n, why = max(1, int(os.environ["OMP_NUM_THREADS"])), "from OMP_NUM_THREADS"
    else:
        cores, load = usable_cores(), load_average()
        n = default_threads(processes, cores=cores, load=load)
        why = (f"default for {cores} cores at load {load:.1f}"
               + (f", {processes} processes" if processes > 1 else "") + "; --threads N to override")
    torch.set_num_threads(n)
    return n, why


__all__ = ["configure_threads", "default_threads", "load_average", "torch_default_threads", "usable_cores"]
