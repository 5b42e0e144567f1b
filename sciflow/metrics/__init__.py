"""Metrics: pure functions of tensors (no model, no Lightning).

Deterministic predictions and truth are ``(B, C, *S)``, ensembles ``(M, B, C, *S)``, masks
``(B, *S)`` or ``(*S)`` bool. Each function reduces over space (and channels unless asked not
to) and returns per-sample float64 values, so a rollout can stream one step at a time and
callers average as they like.
"""

from sciflow.metrics.conservation import (
    cell_average_weights,
    conservation_error,
    integral,
    trapezoid_weights,
)
from sciflow.metrics.probabilistic import (
    calibration_error,
    crps_cells,
    crps_ensemble,
    crps_gaussian,
    ensemble_quantiles,
    gaussian_interval_coverage,
    gaussian_nll,
    gaussian_reliability_curve,
    interval_coverage,
    pit_cdf,
    rank_histogram,
    reliability_curve,
    spread_skill_ratio,
    spread_skill_terms,
    truth_ranks,
)
from sciflow.metrics.spatial import grouped_nmse, mae, masked_mean, mse, nmse, nrmse, vrmse
from sciflow.metrics.spectral import energy_spectrum, spectrum_error, wavenumber_bands
from sciflow.metrics.temporal import (
    DecorrelationTracker,
    decorrelation_times,
    high_correlation_time,
    pearson_correlation,
    sample_decorrelation,
)

__all__ = [
    "DecorrelationTracker",
    "calibration_error",
    "cell_average_weights",
    "conservation_error",
    "crps_cells",
    "crps_ensemble",
    "crps_gaussian",
    "decorrelation_times",
    "energy_spectrum",
    "ensemble_quantiles",
    "gaussian_interval_coverage",
    "gaussian_nll",
    "gaussian_reliability_curve",
    "grouped_nmse",
    "high_correlation_time",
    "integral",
    "interval_coverage",
    "mae",
    "masked_mean",
    "mse",
    "nmse",
    "nrmse",
    "pearson_correlation",
    "pit_cdf",
    "rank_histogram",
    "reliability_curve",
    "sample_decorrelation",
    "spectrum_error",
    "spread_skill_ratio",
    "spread_skill_terms",
    "trapezoid_weights",
    "truth_ranks",
    "vrmse",
    "wavenumber_bands",
]
