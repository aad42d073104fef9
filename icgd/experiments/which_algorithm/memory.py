"""The peak-memory estimate of `which-algorithm` (`WhichAlgorithm.memory`), from the config's sizes.

Models are trained and evaluated one at a time (one per depth and σ), so the parts are those of
the largest model, `max(depths)`; the held-out prompts and the float64 baselines of one σ are kept
while its models train. The parts are summed, an upper bound of the peak within a small factor.
"""

from __future__ import annotations

from icgd.experiments.api import MemoryEstimate
from icgd.experiments.common.causal import block_activation_bytes, gpt_parameter_count
from icgd.experiments.which_algorithm.config import WhichAlgorithmConfig

FIELDS = (
    "d",
    "n_max",
    "depths",
    "lambda_grid",
    "model.n_heads",
    "model.size",
    "model.n_embd",
    "train.batch_size",
    "train.eval_batch_size",
    "test_batch_size",
    "tune_batch_size",
    "ilwd_batch_size",
    "ilwd_probes",
    "eval_chunk",
)


def memory_estimate(config: WhichAlgorithmConfig) -> MemoryEstimate:
    """Peak bytes, `s` = 4 (float32) or 8 (float64) bytes a number for the models, 8 for the
    baselines; n = n_max, G = the λ grid's size, L = max(depths), m = ILWD probes, B_t / B_u /
    B_i = test / tune / ILWD prompts, c = `eval_chunk`; a padded prompt has P = (d+1)(n+1)
    numbers.

    - held-out prompts: `(B_t + B_u + B_i)·(n+1)(d+1)·(s + 8)` (sampled, then in float64);
    - baselines (float64): ridge on every prefix and every λ of the grid, per prompt and λ
      ≈ `3n² + 4d² + 2n` numbers (its Cholesky factors of K_s, A and D_S with their right-hand
      sides, its predictions and squared errors), on the B_t test prompts and on the ILWD
      prompts repeated d times (`linear_weights`), plus 3-NN's (B_t, n, n) distances, sort
      values and indices (`4·B_t·n²`) (measured at the default sizes: 530 + 280 MiB, 800 + 280
      with the causal families' per-k queries; this formula 1550);
    - training batch: `_training_bytes` (`train.batch_size` prompts through L layers / blocks,
      activations kept for the backward pass, with the model and optimiser state);
    - evaluation batch: the held-out `train.eval_batch_size` prompts (≈ 3 copies);
    - model predictions: one model call of c prompts (`_prediction_bytes`: × n prefixes for
      lsa / softmax, the B_i·m·n probe sequences for gpt / looped) and ILWD's fit: probes
      expanded to (B_i, n, m, d) and their float64 pseudo-inverse (≈ 4 copies).
    """
    s = 8 if config.dtype == "float64" else 4
    d, n, m = config.d, config.context, config.probes
    G = len(config.grid)
    prompts = config.test_batch_size + config.tune_batch_size + config.ilwd_batch_size
    ridge = (
        G * (config.test_batch_size + config.ilwd_batch_size * d) * (3 * n * n + 4 * d * d + 2 * n)
    )
    knn = 4 * config.test_batch_size * n * n
    ilwd = config.ilwd_batch_size * n * m * d * (4 * 8 + 2 * s)
    return MemoryEstimate(
        parts={
            "held-out prompts": prompts * (n + 1) * (d + 1) * (s + 8),
            "baselines": (ridge + knn) * 8,
            "training batch": _training_bytes(config, config.train.batch_size, s),
            "evaluation batch": config.train.eval_batch_size * 3 * (n + 1) * (d + 1) * s,
            "model predictions": _prediction_bytes(config, s) + ilwd,
        },
        fields=FIELDS,
    )


def _layer_numbers(config: WhichAlgorithmConfig) -> int:
    """Numbers one lsa / softmax layer keeps for the backward pass, per prompt: its input and
    output (2P), for lsa the moment products `Z Zᵀ` of its H heads ((H+2)(d+1)²), for softmax
    each head's scores and pattern (2H(n+1)²) and value update (H·P)."""
    d, n = config.d, config.context
    P, H = (d + 1) * (n + 1), config.model.resolved()["n_heads"]
    if config.model.kind == "softmax":
        return 2 * P + 2 * H * (n + 1) ** 2 + H * P
    return 2 * P + (H + 2) * (d + 1) ** 2


def _causal_sizes(config: WhichAlgorithmConfig) -> tuple[int, int, int, int]:
    """(tokens T, width C, heads h, blocks with kept activations) of the gpt / looped model at
    the largest depth: T = 2(n+1) interleaved tokens; a looped model keeps the last
    `loss_loops` loops' blocks (the earlier loops run without gradient) and the read-in."""
    spec, depth = config.model, max(config.resolved_depths)
    values = spec.resolved()
    kept = depth if spec.kind == "gpt" else spec.loss_loops(depth) * values["n_blocks"]
    return 2 * (config.context + 1), values["n_embd"], values["n_heads"], kept + 1


def _training_bytes(config: WhichAlgorithmConfig, batch: int, s: int) -> int:
    """One training step of the largest model on `batch` prompts: lsa / softmax
    `batch·s·(4P + 2L·layer)` (the sampled points, the padded prompt, every layer's activations
    and their gradients); gpt / looped `(kept blocks)·block_activation_bytes(batch, T, C, h)`
    plus the sequences, and 4× the parameters (weights, gradients, Adam's two moments)."""
    d, n = config.d, config.context
    if not config.model.causal:
        L = max(config.resolved_depths)
        return batch * s * (4 * (d + 1) * (n + 1) + 2 * L * _layer_numbers(config))
    T, C, h, kept = _causal_sizes(config)
    blocks = config.model.resolved().get("n_blocks", max(config.resolved_depths))
    weights = 4 * gpt_parameter_count(d, n + 1, C, blocks) * s
    return kept * block_activation_bytes(batch, T, C, h, s) + 2 * batch * T * d * s + weights


def _prediction_bytes(config: WhichAlgorithmConfig, s: int) -> int:
    """One evaluation call without gradient: lsa / softmax, c prompts × n prefixes, padded
    (`prefix_prompts`: the (c, n, n, d+1) masked points and the (c·n, P) prompts, ≈ 3 copies)
    through one layer at a time (its input, output and intermediates ≈ 2 × `_layer_numbers`,
    measured: 280 MiB at the default sizes, this formula 210); gpt / looped, the B_i·m·n probe
    sequences of n+1 points built at once (`CausalPrefixes.predict_probes`: sequences, labels
    and their copies ≈ 3 × (n+1)(d+1) numbers each) and one block on c of them (measured at the
    default sizes: 490 / 750 MiB for gpt / looped, this formula 540)."""
    d, n, c = config.d, config.context, config.eval_chunk
    if not config.model.causal:
        P = (d + 1) * (n + 1)
        return c * n * (n * (d + 1) + 3 * P + 2 * _layer_numbers(config)) * s
    T, C, h, _ = _causal_sizes(config)
    sequences = config.ilwd_batch_size * config.probes * n
    return sequences * 3 * (n + 1) * (d + 1) * s + block_activation_bytes(c, T, C, h, s)
