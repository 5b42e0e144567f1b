"""Metrics: pure functions of tensors (no model, no Lightning).

Deterministic predictions and truth are ``(B, C, *S)``, ensembles ``(M, B, C, *S)``, masks
``(B, *S)`` or ``(*S)`` bool. Each function reduces over space (and channels unless asked not
to) and returns per-sample float64 values, so a rollout can stream one step at a time and
callers average as they like. Particle rollouts ``(T, N, D)`` have their own scores, defined as
LagrangeBench's (:mod:`sciflow.metrics.particles`, :mod:`sciflow.metrics.sinkhorn`).
"""

from sciflow.metrics.conservation import (
    cell_average_weights,
    conservation_error,
    integral,
    trapezoid_weights,
)
from sciflow.metrics.particles import (
    ensemble_spread,
    horizon_means,
    kinetic_energy,
    kinetic_energy_error,
    position_mse,
    rollout_scores,
    sinkhorn_over_rollout,
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
from sciflow.metrics.sinkhorn import sinkhorn_divergence
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
    "ensemble_spread",
    "gaussian_interval_coverage",
    "gaussian_nll",
    "gaussian_reliability_curve",
    "grouped_nmse",
    "high_correlation_time",
    "horizon_means",
    "integral",
    "interval_coverage",
    "kinetic_energy",
    "kinetic_energy_error",
    "mae",
    "masked_mean",
    "mse",
    "nmse",
    "nrmse",
    "pearson_correlation",
    "pit_cdf",
    "rank_histogram",
    "position_mse",
    "reliability_curve",
    "rollout_scores",
    "sample_decorrelation",
    "sinkhorn_divergence",
    "sinkhorn_over_rollout",
    "spectrum_error",
    "spread_skill_ratio",
    "spread_skill_terms",
    "trapezoid_weights",
    "truth_ranks",
    "vrmse",
    "wavenumber_bands",
]
