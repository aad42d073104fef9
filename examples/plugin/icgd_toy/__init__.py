"""`icgd_toy`: a small icgd plugin (see README.md).

In-context estimation of a mean: a prompt is n samples x_i ~ N(μ, σ²) of a mean μ ~ N(0, τ²) drawn
afresh for every prompt; a one-parameter model μ̂ = w·x̄ is trained to predict μ, and the learned w
is compared with the Bayes posterior-mean weight n τ²/(n τ² + σ²).

Modules: `task` (the sampler), `model` (the model), `baseline` (the Bayes posterior mean),
`experiment` (`toy-mean`: config, run, claims, figures, memory, presets). Each is registered with
icgd through an entry point in `pyproject.toml`, so nothing here imports icgd's registries.
"""
