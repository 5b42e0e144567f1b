"""Bad files on the training path (``SciflowData`` -> loaders) raise sciflow's own errors that name
the file, the key and the shapes, before or while the first batches are read."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

from sciflow.data.datamodule import SciflowData
from sciflow.data.errors import DataError, DataFormatError, DataNotFoundError, DataValueError


def _all_batches(dm: SciflowData) -> None:
    """What fit / validate / test read: the spec, then every batch of every loader."""
    _ = dm.spec
    dm.setup(None)
    for loader in [dm.train_dataloader(), *dm.val_dataloader(), *dm.test_dataloader()]:
        for _batch in loader:
            pass


def _train_file(card, k: int = 0):
    return sorted((card.parent / "data" / "train").glob("*.hdf5"))[k]


def test_wrong_spatial_shape_names_file_key_and_shapes(synthetic_card):
    bad = _train_file(synthetic_card, 2)
    with h5py.File(bad, "r+") as f:
        attrs = dict(f["t0_fields/pressure"].attrs)
        del f["t0_fields/pressure"]
        ds = f["t0_fields"].create_dataset("pressure", data=np.zeros((1, 12, 16, 15), np.float32))
        ds.attrs.update(attrs)
    with pytest.raises(DataFormatError) as e:
        _all_batches(SciflowData(card=str(synthetic_card), batch_size=4))
    msg = str(e.value)
    assert str(bad) in msg and "t0_fields/pressure" in msg
    assert "(1, 12, 16, 16)" in msg and "(1, 12, 16, 15)" in msg


def test_a_whole_file_on_another_grid_names_both_files(synthetic_card, tmp_path):
    from tests.synthetic import make_dataset

    other = make_dataset(tmp_path / "other", shape=(8, 8), n=(1, 0, 0))
    src = _train_file(other)
    dst = synthetic_card.parent / "data" / "train" / "zz_other.hdf5"
    dst.write_bytes(src.read_bytes())
    with pytest.raises(DataFormatError, match=r"zz_other\.hdf5: spatial shape \(8, 8\) differ"):
        _all_batches(SciflowData(card=str(synthetic_card), batch_size=4))


def test_missing_folder_and_file_removed_during_training(synthetic_card):
    # a file that vanishes after the dataset was opened names itself at the next read
    dm = SciflowData(card=str(synthetic_card), batch_size=4)
    dm.setup("fit")
    gone = _train_file(synthetic_card, 1)
    for wf in dm.train_set.traj.files:
        wf.close()
    gone.unlink()
    with pytest.raises(DataNotFoundError, match=rf"{gone.name}: no such file"):
        for _batch in dm.train_dataloader():
            pass
    with pytest.raises(FileNotFoundError):  # also the built-in type, for `except FileNotFoundError`
        dm.train_set.traj.files[1].read(0)
    # an empty split folder
    for p in (synthetic_card.parent / "data" / "valid").glob("*.hdf5"):
        p.unlink()
    with pytest.raises(DataNotFoundError, match=r"no files in .*valid"):
        _all_batches(SciflowData(card=str(synthetic_card), batch_size=4))


@pytest.mark.parametrize("keep", [0.98, 0.6, 0.1])
def test_truncated_file_names_itself(synthetic_card, keep):
    bad = _train_file(synthetic_card, 3)
    raw = bad.read_bytes()
    bad.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(DataFormatError) as e:
        _all_batches(SciflowData(card=str(synthetic_card), batch_size=4))
    assert str(bad) in str(e.value)


def test_every_data_error_is_a_value_error():
    for cls in (DataFormatError, DataNotFoundError, DataValueError):
        assert issubclass(cls, DataError) and issubclass(cls, ValueError)


def test_mixed_dt_is_refused_with_both_files(synthetic_card):
    bad = _train_file(synthetic_card, 4)
    with h5py.File(bad, "r+") as f:
        f.attrs["dt"] = 0.05
        f["dimensions/time"][...] = np.arange(12) * 0.05
    with pytest.raises(DataValueError) as e:
        _ = SciflowData(card=str(synthetic_card)).spec
    msg = str(e.value)
    assert bad.name in msg and _train_file(synthetic_card, 0).name in msg
    assert "0.05" in msg and "0.1" in msg
    # a valid split at another dt than train is refused too
    with h5py.File(bad, "r+") as f:
        f.attrs["dt"] = 0.1
        f["dimensions/time"][...] = np.arange(12) * 0.1
    valid = sorted((synthetic_card.parent / "data" / "valid").glob("*.hdf5"))[0]
    with h5py.File(valid, "r+") as f:
        f.attrs["dt"] = 0.2
        f["dimensions/time"][...] = np.arange(12) * 0.2
    dm = SciflowData(card=str(synthetic_card))
    with pytest.raises(DataValueError, match=rf"{valid.name} has dt = 0.2"):
        dm.setup("fit")


def test_nan_refused_then_stats_recomputed_after_the_fix(synthetic_card):
    """The user trial: fit on a file with NaN, fix the file, fit again."""
    root = synthetic_card.parent
    bad = _train_file(synthetic_card, 1)
    with h5py.File(bad, "r+") as f:
        good = f["t1_fields/velocity"][0, 5, 3, 4, 1]
        f["t1_fields/velocity"][0, 5, 3, 4, 1] = np.nan
    with pytest.raises(DataValueError) as e:
        _ = SciflowData(card=str(synthetic_card)).spec
    msg = str(e.value)
    assert str(bad) in msg and "'velocity_y'" in msg and "frame 5" in msg and "trajectory 0" in msg
    assert not (root / "stats.yaml").exists()  # nothing NaN was cached
    # the handles were closed on the way out: HDF5 would refuse to open the file for writing
    with h5py.File(bad, "r+") as f:
        f["t1_fields/velocity"][0, 5, 3, 4, 1] = good
    spec = SciflowData(card=str(synthetic_card)).spec
    assert np.isfinite(spec["stats"]["std"]).all()
    assert (root / "stats.yaml").is_file()


def test_cached_nan_stats_from_an_older_version_are_recomputed(synthetic_card):
    root = synthetic_card.parent
    first = SciflowData(card=str(synthetic_card)).spec["stats"]
    doc = yaml.safe_load((root / "stats.yaml").read_text())
    doc["sciflow"]["std"][0] = float("nan")
    del doc["source_key"]  # what a file written before the content key looks like
    (root / "stats.yaml").write_text(yaml.safe_dump(doc))
    assert SciflowData(card=str(synthetic_card)).spec["stats"] == first


def test_a_flipped_bit_in_field_data_is_an_error_not_other_numbers(synthetic_card):
    """Field chunks carry fletcher32 checksums: damage reads as an error naming file and key."""
    from sciflow.data.check import check_file
    from sciflow.data.reader import WellFile

    bad = _train_file(synthetic_card, 0)
    with h5py.File(bad, "r") as f:
        info = f["t0_fields/pressure"].id.get_chunk_info(5)  # frame 5 of trajectory 0
    raw = bytearray(bad.read_bytes())
    raw[info.byte_offset + 17] ^= 0x10
    bad.write_bytes(bytes(raw))
    wf = WellFile(bad)  # the metadata is intact
    wf.read(0, 0, 5)  # frames before the damage read fine
    with pytest.raises(DataFormatError, match=rf"{bad.name}: cannot read t0_fields/pressure, trajectory 0"):
        wf.read(0)
    assert any("cannot read the file to the end" in str(i) for i in check_file(bad))
