"""Samplers of in-context problems. Each works on whole batches and takes a `torch.Generator`."""

from icgd.tasks.linear_regression import (
    LinearRegression,
    LinearRegressionBatch,
    LinearRegressionConfig,
    haar_orthogonal,
)

__all__ = [
    "LinearRegression",
    "LinearRegressionBatch",
    "LinearRegressionConfig",
    "haar_orthogonal",
]
