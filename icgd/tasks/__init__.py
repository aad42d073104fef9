"""Samplers of in-context problems. Each works on whole batches and takes a `torch.Generator`."""

from icgd.tasks.decision_lists import (
    DecisionLists,
    DecisionListsConfig,
    one_hot,
)
from icgd.tasks.function_classes import (
    Curriculum,
    CurriculumConfig,
    FunctionClass,
    FunctionClassBatch,
    FunctionClassConfig,
    ScheduleConfig,
    ShiftConfig,
    evaluate_function,
    orthogonal_queries,
    skewed_spectrum,
)
from icgd.tasks.linear_regression import (
    AHN_EIGENVALUES,
    LinearRegression,
    LinearRegressionBatch,
    LinearRegressionConfig,
    ahn_spectrum,
    haar_orthogonal,
)
from icgd.tasks.point_clouds import (
    PointClouds,
    PointCloudsConfig,
    sorted_targets,
    sorting_grid,
    sorting_problem,
    sorting_ranks,
)

__all__ = [
    "AHN_EIGENVALUES",
    "Curriculum",
    "CurriculumConfig",
    "DecisionLists",
    "DecisionListsConfig",
    "FunctionClass",
    "FunctionClassBatch",
    "FunctionClassConfig",
    "LinearRegression",
    "LinearRegressionBatch",
    "LinearRegressionConfig",
    "PointClouds",
    "PointCloudsConfig",
    "ScheduleConfig",
    "ShiftConfig",
    "ahn_spectrum",
    "evaluate_function",
    "haar_orthogonal",
    "one_hot",
    "orthogonal_queries",
    "skewed_spectrum",
    "sorted_targets",
    "sorting_grid",
    "sorting_problem",
    "sorting_ranks",
]
