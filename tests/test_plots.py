"""Plots of rollout datasets: they produce real PNGs for 2D and 1D data and reject bad requests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from sciflow.plots import (
    default_plot_steps,
    plot_calibration,
    plot_error_curves,
    plot_fields,
    plot_spacetime,
)
from sciflow.results import RolloutCollector
from sciflow.rollout import Step

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _dataset(S=(12, 10), M=1, steps=4, with_mask=True):
    g = torch.Generator().manual_seed(0)
    coords = {d: np.linspace(0, 1, n) for d, n in zip("xy", S)}
    grid = torch.meshgrid(*[torch.from_numpy(c).float() for c in coords.values()], indexing="ij")
    base = torch.sin(2 * torch.pi * grid[0]) + (grid[1] if len(S) == 2 else 0)
    truth = torch.stack([base * (1 - 0.1 * k) for k in range(steps + 1)])  # (T, *S)
    truth = (
        torch.stack([truth, 0.5 * truth], 1).unsqueeze(0).repeat(2, 1, 1, *([1] * len(S)))
    )  # (B, T, C, *S)
    mask = None
    if with_mask and len(S) == 2:
        mask = np.ones((2, *S), bool)
        mask[:, 3:6, 4:7] = False
    col = RolloutCollector(
        truth[:, 0],
        steps=steps,
        dt=0.25,
        channels=["u", "p"],
        coords=coords,
        n_members=M,
        truth=truth,
        mask=mask,
    )
    for k in range(1, steps + 1):
        noise = 0.05 * k * torch.randn(M, *truth[:, k].shape, generator=g)
        members = truth[:, k].unsqueeze(0) + noise
        if mask is not None:
            members = members * torch.from_numpy(mask).unsqueeze(1)
        col.update(Step(k, 0.25 * k, members, torch.ones(M, 2, dtype=torch.bool)))
    return col.dataset()


def _check_png(path, min_width):
    assert path.is_file() and path.stat().st_size > 5_000
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = imread(path)
    assert img.shape[1] >= min_width
    assert img[..., :3].std() > 0.05  # not a blank canvas
    assert [
        p.name for p in path.parent.iterdir() if p.name.startswith(".")
    ] == []  # no temp file left


@pytest.mark.parametrize("M", [1, 3])
def test_fields_2d(tmp_path, M):
    ds = _dataset(M=M)
    path = plot_fields(ds, [1, 4], "p", trajectory=1, path=tmp_path / "f.png")
    assert path == tmp_path / "f.png"
    # columns: truth, prediction, error (+ std for ensembles)
    _check_png(path, min_width=int(3.2 * (3 + (M > 1)) * 100 * 0.9))


def test_error_curves(tmp_path):
    _check_png(plot_error_curves(_dataset(M=1), path=tmp_path / "e1.png"), 700)
    _check_png(plot_error_curves(_dataset(M=3), path=tmp_path / "e3.png"), 700)


def test_calibration(tmp_path):
    # spread and skill, CRPS, reliability diagram, rank histogram
    _check_png(plot_calibration(_dataset(M=3), path=tmp_path / "c.png"), 1400)
    with pytest.raises(ValueError, match="lacks"):
        plot_calibration(_dataset(M=1), path=tmp_path / "c1.png")


def test_field_tick_labels_do_not_overlap(tmp_path):
    """Cell centres of a 1 cm box (the cavity's): at most a few short tick labels per panel axis
    (matplotlib's defaults gave 0.0000 0.0025 ... 0.0100, which ran into each other)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    centres = (np.arange(64) + 0.5) / 64 * 0.01
    ds = _dataset(S=(64, 64), M=1).assign_coords(x=centres, y=centres)
    path = plot_fields(ds, [1, 2], 0, path=tmp_path / "f.png")
    _check_png(path, 900)
    # re-draw the same figure and measure its tick labels
    import sciflow.plots as plots

    captured = {}
    real_save = plots._save

    def keep(fig, p):
        captured["fig"] = fig
        return real_save(fig, p)

    plots._save = keep
    try:
        plot_fields(ds, [1, 2], 0, path=tmp_path / "g.png")
    finally:
        plots._save = real_save
    fig = captured["fig"]
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    for ax in fig.axes[:-3]:  # the panels, not the colour bars
        lo, hi = sorted(ax.get_xlim())
        labels = [t for t in ax.get_xticklabels() if t.get_text() and lo <= t.get_position()[0] <= hi]
        assert 2 <= len(labels) <= 5
        boxes = [t.get_window_extent(renderer) for t in labels]
        for a, b in zip(boxes, boxes[1:]):  # at least a space's width between labels
            assert a.x1 + 5 < b.x0, f"tick labels run together: {[t.get_text() for t in labels]}"


def test_one_dimensional(tmp_path):
    ds = _dataset(S=(16,), M=2)
    _check_png(plot_fields(ds, None, 0, path=tmp_path / "lines.png"), 600)
    _check_png(plot_spacetime(ds, "u", path=tmp_path / "st.png"), 900)
    _check_png(plot_error_curves(ds, path=tmp_path / "e.png"), 700)


def test_default_steps():
    assert default_plot_steps(10) == [1, 4, 7, 10]
    assert default_plot_steps(2) == [1, 2]
    assert default_plot_steps(0) == [0]


def test_bad_requests(tmp_path):
    ds = _dataset(steps=2)
    with pytest.raises(ValueError, match="channel 'w' not in"):
        plot_fields(ds, [1], "w", path=tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"outside the rollout's steps 0..2"):
        plot_fields(ds, [3], 0, path=tmp_path / "a.png")
    with pytest.raises(ValueError, match="trajectory position 5"):
        plot_fields(ds, [1], 0, trajectory=5, path=tmp_path / "a.png")
    with pytest.raises(ValueError, match="needs 1D"):
        plot_spacetime(ds, 0, path=tmp_path / "a.png")
    with pytest.raises(ValueError, match="no scores"):
        plot_error_curves(ds.drop_vars(["nmse", "correlation"]), path=tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []
