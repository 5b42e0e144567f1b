"""Spread correction: per-lead-time factors that rescale an ensemble's members about their mean.

An ensemble trained without calibration is rarely dispersed right at every lead time (members of
a deep ensemble share part of their error, or their errors are independent and the truth sits
near their centre). The correction keeps the ensemble mean and scales each member's deviation
from it by a factor ``f_k`` per model step ``k``, fitted on a held-out split's rollout so that
the spread-skill ratio there is 1:

    x_m' = mean + f_k (x_m - mean),   f_k = sqrt(<skill^2>_k / <spread^2>_k)

with ``<.>_k`` the average over the fitting rollout's trajectories and over a window of steps
around ``k`` (a ratio of averages: far less noisy than an average of ratios with few
trajectories). It is applied to what is scored and stored, after each model step; the rollout
itself continues from the uncorrected members, so the correction changes no member's dynamics.

Fit from a rollout of the *validation* split (``sciflow rollout --split valid``), then apply it to
the test split (``sciflow rollout --spread-correction FILE``): fitting on the split you score
would be fitting on the answer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from torch import Tensor

from sciflow.data.format import atomic_path

FORMAT = "sciflow-spread-correction-v1"


class SpreadCorrectionError(ValueError):
    """A spread-correction file or fit that cannot be used; the message names the file or step."""


@dataclass(frozen=True)
class SpreadCorrection:
    """Factors ``(T + 1,)`` for model steps 0..T (step 0, the initial condition, is 1).

    Attributes:
        factors: the deviation scale per model step.
        members: ensemble size of the fitting rollout (a correction fitted at one size is only
            approximately right at another: the spread of a few members is itself noisy).
        source: what it was fitted on (file name and split), for the record.
        window: steps averaged around each step when fitting.
    """

    factors: np.ndarray
    members: int
    source: str = ""
    window: int = 1

    def __post_init__(self) -> None:
        f = np.asarray(self.factors, dtype=np.float64)
        if f.ndim != 1 or len(f) < 2:
            raise SpreadCorrectionError(f"spread correction: factors must be (T + 1,) with T >= 1, got shape {f.shape}")
        bad = np.flatnonzero(~np.isfinite(f) | (f <= 0))
        if len(bad):
            raise SpreadCorrectionError(
                f"spread correction: factor at step {int(bad[0])} is {f[bad[0]]!r}; factors must be finite and > 0")
        object.__setattr__(self, "factors", f)

    @property
    def steps(self) -> int:
        """The longest rollout (model steps) it covers."""
        return len(self.factors) - 1

    def apply(self, members: Tensor, mean: Tensor, k: int) -> Tensor:
        """Members ``(M, b, C, *S)`` rescaled about ``mean`` ``(b, C, *S)`` at model step ``k``."""
        if k > self.steps:
            raise SpreadCorrectionError(
                f"spread correction ({self.source or 'no source'}) covers {self.steps} steps; step {k} asked")
        f = float(self.factors[k])
        return members if f == 1.0 else mean + f * (members - mean)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the correction as JSON, atomically."""
        path = Path(path)
        body = {"format": FORMAT, "members": self.members, "source": self.source, "window": self.window,
                "factors": [float(v) for v in self.factors]}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(body, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpreadCorrection:
        """Read a file written by :meth:`save`; every fault names the file."""
        path = Path(path)
        try:
            body = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpreadCorrectionError(f"spread correction {path}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SpreadCorrectionError(f"spread correction {path}: not readable JSON ({err})") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise SpreadCorrectionError(f"spread correction {path}: not a {FORMAT} file")
        try:
            return cls(np.asarray(body["factors"], dtype=np.float64), int(body["members"]),
                       str(body.get("source", "")), int(body.get("window", 1)))
        except KeyError as err:
            raise SpreadCorrectionError(f"spread correction {path}: missing key {err}") from None
        except (TypeError, ValueError) as err:
            raise SpreadCorrectionError(f"spread correction {path}: {err}") from None


def fit_spread_correction(results: xr.Dataset | str | os.PathLike, window: int = 5) -> SpreadCorrection:
    """Fit factors to a scored ensemble rollout (``sciflow rollout`` results of a held-out split).

    Args:
        results: the rollout's results (needs ``spread`` and ``skill``, ``(trajectory, time)``,
            i.e. two or more members and a truth), or the path of its netCDF file.
        window: odd number of steps whose squared spread and skill are averaged around each step
            (shrinks at the ends of the horizon).

    Returns:
        The correction, ``factors[0] = 1`` and ``factors[k] = sqrt(<skill^2> / <spread^2>)``.
    """
    name = str(results) if not isinstance(results, xr.Dataset) else results.attrs.get("source", "results")
    if window < 1 or window % 2 == 0:
        raise SpreadCorrectionError(f"spread correction: window must be an odd number >= 1, got {window}")
    if isinstance(results, xr.Dataset):
        ds = results
    else:
        if not Path(results).exists():
            raise SpreadCorrectionError(f"spread correction: results file {results} does not exist")
        ds = xr.open_dataset(results)
    try:
        for v in ("spread", "skill"):
            if v not in ds:
                raise SpreadCorrectionError(
                    f"spread correction: {name} has no '{v}' (a scored rollout of two or more members is needed)")
        spread2 = np.nanmean(ds["spread"].values.astype(np.float64) ** 2, axis=0)  # (T + 1,)
        skill2 = np.nanmean(ds["skill"].values.astype(np.float64) ** 2, axis=0)
        members = int(ds.sizes.get("member", 0))
        split = ds.attrs.get("split", "")
    finally:
        if not isinstance(results, xr.Dataset):
            ds.close()
    T = len(spread2) - 1
    half = window // 2
    factors = np.ones(T + 1)
    for k in range(1, T + 1):
        lo, hi = max(1, k - half), min(T, k + half) + 1
        s2, e2 = np.nanmean(spread2[lo:hi]), np.nanmean(skill2[lo:hi])
        if not np.isfinite(s2) or s2 <= 0:
            raise SpreadCorrectionError(
                f"spread correction: {name} has no ensemble spread around step {k}; scaling cannot create spread")
        if not np.isfinite(e2):
            raise SpreadCorrectionError(f"spread correction: {name} has no skill around step {k} (no truth?)")
        factors[k] = np.sqrt(max(e2, 1e-300) / s2)
    source = f"{Path(name).name}" + (f" ({split} split)" if split else "")
    return SpreadCorrection(factors, members, source, window)


def as_correction(value: SpreadCorrection | str | os.PathLike | None) -> SpreadCorrection | None:
    """A correction, or the one in file ``value``; None stays None."""
    if value is None or isinstance(value, SpreadCorrection):
        return value
    return SpreadCorrection.load(value)


__all__ = ["SpreadCorrection", "SpreadCorrectionError", "fit_spread_correction", "as_correction"]
