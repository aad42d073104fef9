"""Samplers of in-context problems. Each works on whole batches and takes a `torch.Generator`."""

from icgd.tasks.linear_regression import (
    AHN_EIGENVALUES,
    LinearRegression,
    LinearRegressionBatch,
    LinearRegressionConfig,
    ahn_spectrum,
    haar_orthogonal,
)

__all__ = [
    "AHN_EIGENVALUES",
    "LinearRegression",
    "LinearRegressionBatch",
    "LinearRegressionConfig",
    "ahn_spectrum",
    "haar_orthogonal",
]
