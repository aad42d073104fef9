"""Samplers of in-context problems behind one `Task` protocol (`icgd.tasks.api`). Each works on
whole batches and takes a `torch.Generator`."""

from icgd.tasks.api import Task, batch_tensors
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
from icgd.tasks.markov_reward import (
    MarkovReward,
    MarkovRewardBatch,
    MarkovRewardConfig,
    SlidingPrompts,
    msve,
    sample_trajectory,
    sliding_prompts,
    stationary_distribution,
    true_values,
    value_prompts,
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
    "MarkovReward",
    "MarkovRewardBatch",
    "MarkovRewardConfig",
    "PointClouds",
    "PointCloudsConfig",
    "ScheduleConfig",
    "ShiftConfig",
    "SlidingPrompts",
    "Task",
    "ahn_spectrum",
    "batch_tensors",
    "evaluate_function",
    "haar_orthogonal",
    "msve",
    "one_hot",
    "orthogonal_queries",
    "sample_trajectory",
    "skewed_spectrum",
    "sliding_prompts",
    "sorted_targets",
    "sorting_grid",
    "sorting_problem",
    "sorting_ranks",
    "stationary_distribution",
    "true_values",
    "value_prompts",
]
