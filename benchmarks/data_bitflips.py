"""What a damaged file turns into: single-bit flips at random offsets of one Well file, each file
then checked (``check_file``) and read to the end (``WellFile``) in a child process with a time
limit, for the format sciflow writes (HDF5 1.10 object headers with checksums, fletcher32 on every
field chunk) and for the older one (HDF5's earliest format, no checksums).

Outcomes: ``unchanged`` (the flip hit unused bytes: same values), ``error`` (a sciflow error naming
the file), ``silent`` (read without an error but with other values: the case checksums exist
for), ``crash`` (the child died) and ``hang`` (the child ran past the limit).

    python -m benchmarks.data_bitflips --flips 200      # writes results + README table
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

import sciflow.data.format as fmt
from benchmarks._report import markdown_table, save_json, update_readme

CHILD = """
import sys
from sciflow.data.check import check_file
from sciflow.data.errors import DataError
from sciflow.data.reader import WellFile
issues = check_file(sys.argv[1])
try:
    wf = WellFile(sys.argv[1])
    print("OK", len(issues), repr(float(sum(wf.read(b).astype("float64").sum() for b in range(wf.n_trajectories)))))
except DataError:
    print("ERR", len(issues))
"""
FORMATS = {"sciflow (v110 headers + fletcher32)": (("v110", "latest"), True),
           "earliest format, no checksums": (None, False)}


def write_file(path: Path, libver, fletcher32: bool) -> None:
    """Two trajectories of pressure and velocity on 4 x 3, 5 frames, with a parameter and dt."""
    fmt.LIBVER, fmt.FLETCHER32 = libver, fletcher32
    rng = np.random.default_rng(0)
    fmt.write_well(path, dataset_name="flips", time=np.arange(5.0), coords={"x": np.arange(4.0), "y": np.arange(3.0)},
                   t0_fields={"p": rng.normal(size=(2, 5, 4, 3))},
                   t1_fields={"velocity": rng.normal(size=(2, 5, 4, 3, 2))},
                   params={"a": np.array([1.0, 2.0])}, attrs={"dt": 1.0})


def classify(path: Path, reference: str, timeout: float) -> str:
    try:
        res = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "hang"
    if res.returncode != 0:
        return "crash"
    out = res.stdout.split()
    if out[0] == "ERR":
        return "error"
    return "unchanged" if out[2] == reference else ("error" if out[1] != "0" else "silent")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (libver, f32) in FORMATS.items():
            src = Path(tmp) / "clean.hdf5"
            write_file(src, libver, f32)
            raw = src.read_bytes()
            reference = subprocess.run([sys.executable, "-c", CHILD, str(src)], capture_output=True,
                                       text=True, check=True).stdout.split()[2]
            rng = np.random.default_rng(args.seed)
            counts: Counter = Counter()
            for _ in range(args.flips):
                damaged = bytearray(raw)
                damaged[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
                path = Path(tmp) / "damaged.hdf5"
                path.write_bytes(bytes(damaged))
                counts[classify(path, reference, args.timeout)] += 1
            results[name] = {"bytes": len(raw), **{k: counts.get(k, 0) for k in
                                                    ("unchanged", "error", "silent", "crash", "hang")}}
            print(name, results[name], flush=True)
    save_json("data_bitflips", {"flips": args.flips, "seed": args.seed, "results": results})
    rows = [[n, r["bytes"], r["unchanged"], r["error"], r["silent"], r["crash"], r["hang"]] for n, r in results.items()]
    update_readme("data_bitflips", f"""
### Damaged files: single-bit flips ({args.flips} per format, seed {args.seed})

`python -m benchmarks.data_bitflips --flips {args.flips}` -> `results/data_bitflips.json`

{markdown_table(["format", "file bytes", "unchanged", "error naming the file", "silent (other values)", "crash", "hang"], rows)}

A flip in unused bytes changes nothing; with checksums every other flip is reported as an error,
without them some are read as other numbers.
""")


if __name__ == "__main__":
    main()
