"""Neighbour search at 1e4 and 1e5 particles: the k-d tree radius graph
(:func:`sciflow.nn.neighbors.radius_graph`, scipy's ``cKDTree`` with ``boxsize``) against a
brute-force all-pairs search in torch, in a periodic unit box.

Protocol: a jittered square lattice of ``N`` particles (spacing ``dx = 1 / sqrt(N)``, jitter
0.2 dx, seed 0), connectivity radius ``R = 2.5 dx`` (about 19 neighbours, GNS-like), one torch
thread. The brute force computes every minimum-image distance in row blocks (``O(N^2)`` work,
``O(block N)`` memory) and keeps the pairs within ``R``; both searches must return the same edge
set (checked). Trials alternate between the two, CPU seconds (``time.process_time``) per search,
median. At 1e5 the full brute force would cost several CPU minutes on this machine: it runs for
the first 2048 senders against all particles, its edges are checked against the k-d tree's for
those senders, and its CPU seconds are scaled by ``N / 2048`` (the work is exactly linear in the
senders), stated in the table.

    python -m benchmarks.neighbor_search          # -> results/neighbor_search.json, README section
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from benchmarks._report import markdown_table, save_json, update_readme  # noqa: E402
from sciflow.nn.neighbors import Domain, radius_graph  # noqa: E402

SIZES = (10_000, 100_000)
BLOCK = 256
FULL_BRUTE_MAX = 20_000  # above this the brute force runs on ROWS senders and its cost is scaled by N / ROWS
ROWS = 2048


def lattice(n: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    """``(positions (N, 2), dx)``: a jittered ``sqrt(N) x sqrt(N)`` lattice in the unit box."""
    side = round(n**0.5)
    dx = 1.0 / side
    g = torch.Generator().manual_seed(seed)
    ax = (torch.arange(side, dtype=torch.float64) + 0.5) * dx
    x = torch.stack(torch.meshgrid(ax, ax, indexing="ij"), -1).reshape(-1, 2)
    x = x + 0.2 * dx * (torch.rand(x.shape, generator=g, dtype=torch.float64) - 0.5)
    return x % 1.0, dx


def brute_force(x: torch.Tensor, r: float, rows_done: int | None = None) -> torch.Tensor:
    """``edge_index (2, E)`` (receiver-sorted like :func:`radius_graph`) of all pairs with a
    minimum-image distance in the unit box ``<= r``, self pairs excluded; with ``rows_done``, only
    the pairs whose sender is among the first ``rows_done`` particles."""
    rows = []
    for a in range(0, x.shape[0] if rows_done is None else rows_done, BLOCK):
        d = x[a:a + BLOCK, None, :] - x[None, :, :]  # (B, N, 2)
        d = d - torch.round(d)  # minimum image, box length 1
        i, j = torch.nonzero((d * d).sum(-1) <= r * r, as_tuple=True)
        i = i + a
        keep = i != j
        rows.append(torch.stack([i[keep], j[keep]]))
    e = torch.cat(rows, 1)  # (sender i, receiver j)
    order = torch.argsort(e[1] * x.shape[0] + e[0])
    return e[:, order]


def main() -> None:
    torch.set_num_threads(1)
    dom = Domain.from_bounds([[0.0, 1.0], [0.0, 1.0]], True)
    rows, out = [], []
    for n in SIZES:
        x, dx = lattice(n)
        r = 2.5 * dx
        trials = {"k-d tree": [], "brute force": []}
        edges = {}
        part = None if n <= FULL_BRUTE_MAX else ROWS
        for _ in range(3):
            c = time.process_time()
            edges["k-d tree"] = radius_graph(x, r, domain=dom)
            trials["k-d tree"].append(time.process_time() - c)
            c = time.process_time()
            edges["brute force"] = brute_force(x, r, part)
            trials["brute force"].append((time.process_time() - c) * (1 if part is None else x.shape[0] / part))
            print(f"N={n}: k-d tree {trials['k-d tree'][-1]:.3f} CPU s, brute force {trials['brute force'][-1]:.3f}"
                  f" CPU s{'' if part is None else ' (scaled)'}", flush=True)
        kde = edges["k-d tree"]
        if part is not None:
            kde = kde[:, kde[0] < part]
        same = torch.equal(kde, edges["brute force"])
        kd, bf = statistics.median(trials["k-d tree"]), statistics.median(trials["brute force"])
        out.append({"n": x.shape[0], "radius": r, "edges": int(edges["k-d tree"].shape[1]), "same_edges": same,
                    "brute_senders": part or x.shape[0], "kdtree_cpu_s": kd, "brute_cpu_s": bf, "trials": trials,
                    "speedup": bf / kd})
        rows.append([x.shape[0], int(edges["k-d tree"].shape[1]), kd,
                     f"{bf:.3g}" + ("" if part is None else f" (from {part} senders x N / {part})"),
                     f"{bf / kd:.0f}x", "yes" if same else "NO"])
    save_json("neighbor_search", {"sizes": out, "block": BLOCK})
    text = ("### Neighbour search: k-d tree vs brute force (`benchmarks/neighbor_search.py`)\n\n"
            "`python -m benchmarks.neighbor_search` -> `results/neighbor_search.json`. Periodic unit box, "
            "jittered lattice, R = 2.5 dx, one thread, CPU seconds per search (median of alternating "
            "trials; at 1e5 the brute force is scaled from a part of the senders, see the script). Measured on the shared 2-core machine under load: "
            "re-measure on an idle one; the ratio is the claim.\n\n"
            + markdown_table(["particles", "directed edges", "k-d tree CPU s", "brute force CPU s", "speed-up",
                              "same edge set"], rows))
    update_readme("neighbor_search", text)


if __name__ == "__main__":
    main()
