"""Faults injected into data generation and import, run as a user runs them: `sciflow data ...` in a
separate process that is SIGKILLed at random points, limited to a small file size (a full disk),
or denied writing into its output folder.

What must hold: a rerun finishes the job with files equal (array for array) to an uninterrupted
run's; no partial file is ever found under a final name; the errors are one clear message naming
the file, without a traceback; nothing written before the fault is lost.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from sciflow.data.check import check_file

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "fhn_pdebench_32.h5"
N_CASES = 8

pytestmark = pytest.mark.slow  # several short subprocesses


def _ks_card(folder: Path) -> Path:
    """The KS card, shrunk to 8 cases of 12 frames, one case per file (about 0.5 s per case)."""
    card = yaml.safe_load((REPO / "datasets" / "ks.yaml").read_text())
    card["frames"] = {"train": 12, "valid": 12, "test": 12}
    card["subsets"]["sines"]["cases"] = N_CASES
    card["trajectories_per_file"] = 1
    card["path"] = "ksdata"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ks.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _generate_cmd(card: Path) -> list[str]:
    return [sys.executable, "-m", "sciflow.cli", "data", "generate", "ks", "--card", str(card),
            "--cases", str(N_CASES)]


# The slow-writer child: the library's own code, except that the finished in-memory image reaches
# the disk in small pieces with pauses, so that a SIGKILL can land in the middle of a write.
SLOW_WRITER = """
import io, os, sys, time
import h5py
import sciflow.data.format as F

def write_hdf5(path, fill, estimate=0):
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        fill(f)
    data = buf.getbuffer()
    with open(path, "wb") as out:
        for k in range(0, len(data), 4096):
            out.write(data[k:k + 4096]); out.flush(); time.sleep(0.02)

F.write_hdf5 = write_hdf5
from sciflow.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _arrays(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _final_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted((root / "data").rglob("*.hdf5"))}


def _assert_same(files: dict[str, Path], reference: dict[str, Path]) -> None:
    """Every finished file is complete and equal, dataset for dataset, to the reference run's."""
    for name, p in files.items():
        assert name in reference, f"unexpected file {name}"
        assert check_file(p) == [], f"{name} is not a complete file"
        mine, ref = _arrays(p), _arrays(reference[name])
        assert sorted(mine) == sorted(ref), name
        for key in ref:
            np.testing.assert_array_equal(mine[key], ref[key], err_msg=f"{name}: {key}")


def _wait_for_tmp(folder: Path, timeout: float, proc: subprocess.Popen) -> bool:
    """Wait until the writer has put some bytes into a new temporary file under ``folder`` (one of
    an earlier killed run does not count)."""
    old = set(folder.rglob(".*.tmp"))
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        for p in set(folder.rglob(".*.tmp")) - old:
            try:
                if p.stat().st_size > 0:
                    return True
            except FileNotFoundError:
                pass
        time.sleep(0.01)
    return False


def test_sigkill_during_generation_resumes_to_the_same_files(tmp_path):
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    ref_card, card = _ks_card(ref_dir), _ks_card(run_dir)
    t0 = time.monotonic()
    subprocess.run(_generate_cmd(ref_card), cwd=ref_dir, env=_env(), check=True, capture_output=True)
    full = time.monotonic() - t0
    reference = _final_files(ref_dir / "ksdata")
    assert len(reference) == N_CASES

    rng = np.random.default_rng(7)
    interrupted = 0
    # two kills in the middle of writing a file, then four at random moments; a random kill lands
    # within the first half of what is left to do, so work always remains for the final run
    for k in range(6):
        if k < 2:
            proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, *_generate_cmd(card)[3:]], cwd=run_dir,
                                    env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert _wait_for_tmp(run_dir / "ksdata", 60, proc), "the writer never started a file"
        else:
            proc = subprocess.Popen(_generate_cmd(card), cwd=run_dir, env=_env(),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            left = N_CASES - len(_final_files(run_dir / "ksdata"))
            time.sleep(float(rng.uniform(0.2, 0.5)) * full * left / N_CASES)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        interrupted += alive
        done = _final_files(run_dir / "ksdata")
        _assert_same(done, reference)  # no partial file under a final name, ever
        if k < 2:
            debris = list((run_dir / "ksdata").rglob(".*.tmp"))
            assert debris, "the kill during a write left no temporary file (nothing was tested)"
    assert interrupted == 6, "every kill must land while the run is going"
    assert len(_final_files(run_dir / "ksdata")) < N_CASES

    res = subprocess.run(_generate_cmd(card), cwd=run_dir, env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    final = _final_files(run_dir / "ksdata")
    assert sorted(final) == sorted(reference)
    _assert_same(final, reference)
    assert not list((run_dir / "ksdata").rglob(".*.tmp"))  # the killed writers' debris is gone
    # finished files carry the usual permissions, not mkstemp's private 0600
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in final.values())


def _limited(max_bytes: int):
    def setup() -> None:
        # a file-size limit behaves like a full disk for this process: writes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return setup


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {n: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()) for n, p in _final_files(root).items()}


def _assert_clean_error(res: subprocess.CompletedProcess, *texts: str) -> None:
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    assert "error:" in res.stderr and "--debug" in res.stderr
    for text in texts:
        assert text in res.stderr, (text, res.stderr)


def test_full_disk_during_generation_and_import(tmp_path):
    # generation: three cases fit, then the disk is "full" for the next file
    card = _ks_card(tmp_path / "gen")
    cmd = _generate_cmd(card)
    cmd[cmd.index("--cases") + 1] = "3"
    subprocess.run(cmd, cwd=tmp_path / "gen", env=_env(), check=True, capture_output=True)
    before = _snapshot(tmp_path / "gen" / "ksdata")
    assert len(before) == 3
    res = subprocess.run(_generate_cmd(card), cwd=tmp_path / "gen", env=_env(), capture_output=True, text=True,
                         preexec_fn=_limited(8192))
    _assert_clean_error(res, "could not be written", "File too large", ".hdf5")
    assert _snapshot(tmp_path / "gen" / "ksdata") == before  # nothing written before was touched
    assert not list((tmp_path / "gen").rglob(".*.tmp"))  # and nothing half-written is left
    res = subprocess.run(_generate_cmd(card), cwd=tmp_path / "gen", env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert len(_final_files(tmp_path / "gen" / "ksdata")) == N_CASES

    # import: one output file is missing, and the disk is full when it is written again
    out = tmp_path / "imp"
    imp = [sys.executable, "-m", "sciflow.cli", "data", "import", "pdebench", str(FIXTURE), "--out", str(out),
           "--trajectories-per-file", "1"]
    subprocess.run(imp, env=_env(), check=True, capture_output=True)
    files = _final_files(out)
    victim = sorted(files)[1]
    files[victim].unlink()
    before = _snapshot(out)
    res = subprocess.run(imp, env=_env(), capture_output=True, text=True, preexec_fn=_limited(8192))
    _assert_clean_error(res, "could not be written", "File too large", Path(victim).name)
    assert _snapshot(out) == before and not list(out.rglob(".*.tmp"))
    assert subprocess.run(imp, env=_env(), capture_output=True).returncode == 0
    assert sorted(_final_files(out)) == sorted(files)


def _without_override():
    """For root, who writes anywhere: the child drops the capabilities that bypass file permissions
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so that a read-only folder is read-only to it too."""
    if os.geteuid() != 0:
        return None

    def setup() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    return setup


def test_read_only_output_folder_during_generation_and_import(tmp_path):
    card = _ks_card(tmp_path / "gen")
    cmd = _generate_cmd(card)
    cmd[cmd.index("--cases") + 1] = "3"
    subprocess.run(cmd, cwd=tmp_path / "gen", env=_env(), check=True, capture_output=True)
    root = tmp_path / "gen" / "ksdata"
    out = tmp_path / "imp"
    imp = [sys.executable, "-m", "sciflow.cli", "data", "import", "pdebench", str(FIXTURE), "--out", str(out),
           "--trajectories-per-file", "1"]
    subprocess.run(imp, env=_env(), check=True, capture_output=True)
    victim = sorted(_final_files(out))[1]
    _final_files(out)[victim].unlink()
    folders = [root / "data" / s for s in ("train", "valid", "test")] + [out / "data" / s for s in ("train", "valid", "test")]
    before_gen, before_imp = _snapshot(root), _snapshot(out)
    for d in folders:
        d.chmod(0o555)
    probe = subprocess.run([sys.executable, "-c", f"open({str(folders[0] / 'probe')!r}, 'w')"],
                           capture_output=True, preexec_fn=_without_override())
    if probe.returncode == 0:
        for d in folders:
            d.chmod(0o755)
        pytest.skip("this process can write into a read-only folder (root without a way to drop that)")
    try:
        res = subprocess.run(_generate_cmd(card), cwd=tmp_path / "gen", env=_env(), capture_output=True, text=True,
                             preexec_fn=_without_override())
        _assert_clean_error(res, "cannot write in", "Permission denied", str(root / "data"))
        res = subprocess.run(imp, env=_env(), capture_output=True, text=True, preexec_fn=_without_override())
        _assert_clean_error(res, "cannot write in", "Permission denied", Path(victim).name)
    finally:
        for d in folders:
            d.chmod(0o755)
    assert _snapshot(root) == before_gen and _snapshot(out) == before_imp
    assert not list(tmp_path.rglob(".*.tmp"))
