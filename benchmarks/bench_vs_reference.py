"""Training-step speed of our softmax models next to the public reference implementations' design.

What is compared. One Adam training step (forward, MSE loss, backward, `optimizer.step()`) at
batch 64, float32, on in-context linear regression (x ~ N(0, I_d), w ~ N(0, I_d), y = x·w,
d = 20, k = 41 points), for two shapes, each the default of a public reference:

* **Garg shape** (Garg et al. 2022, `dtsip/in-context-learning`): width 256, 12 layers, 8 heads,
  loss = MSE over all k prefixes.
  - ours: `icgd.models.GPT(size="standard")`;
  - reference: a HuggingFace `transformers.GPT2Model` backbone built from
    `GPT2Config(n_positions=2k, n_embd, n_layer, n_head, resid/embd/attn pdrop 0, use_cache=False)`
    and fed `inputs_embeds` from a Linear read-in of the interleaved tokens
    `x_1, [y_1, 0…0], x_2, …`, with a Linear read-out at every token of which the x tokens are
    kept. `GPT2Model` carries a token-embedding table `wte` (50257 × n_embd) that continuous
    inputs never use; it is kept, as the reference keeps it (it costs memory, no compute: it never
    gets a gradient, so Adam skips it).
* **Looped shape** (Yang et al. 2024, `Leiay/looped_transformer`): one block of width 256 and
  8 heads, looped b = 30 times with input injection `z ← f(z + e)`, the first b − T = 15 loops
  under `torch.no_grad()`, loss = mean over the last T = 15 loops of the MSE.
  - ours: `icgd.models.LoopedTransformer` (1 block, 30 loops, window 15);
  - reference "HF": the same `GPT2Model` backbone with `n_layer=1`, called once per loop (so the
    positions are added and `ln_f` applied inside every loop);
  - reference "nanoGPT": Yang et al.'s repository does not use HuggingFace; its backbone is a
    nanoGPT-style `GPT2Model` (no `wte`, 2k + 1 positions, fused-QKV attention through
    `scaled_dot_product_attention`, tanh-approximate GELU written out elementwise, `ln_f` inside
    the backbone). We rebuild that design here too, so both readings of "the reference" are timed.

Why. We compare our models side by side with the references, so a step must do only the work the
model needs: no unused parameters, no `.item()` or other host sync inside the step. The timed step
here is the bare model step for every model; the references' training scripts add bookkeeping on
top (Garg: `loss.item()` per step; Yang: a per-parameter gradient norm with one `.item()` per
parameter), which is left out so that the architectures are what is compared.

How. Every model gets the same batch at each step. Steps of the models of one shape are
interleaved (the order rotates each step), so machine load falls on all of them alike; after
`--warmup` untimed steps each, the median over `--steps` timed steps is reported. The parameter
columns give our count, the reference's count, and how many reference parameters received no
gradient (unused: `wte`).

Usage: python benchmarks/bench_vs_reference.py [--threads 2] [--steps 4] [--warmup 1]
       [--batch 64] [--ref-attn sdpa|eager] [--shapes garg looped] [--device cpu|cuda]
       [--json PATH]
Needs `transformers` (not a dependency of icgd: `pip install transformers`); without it the script
says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icgd.models import GPT, GPTConfig, LoopedConfig, LoopedTransformer

D, POINTS = 20, 41
N_EMBD, N_HEAD, N_LAYER = 256, 8, 12
LOOPS, WINDOW = 30, 15


# --------------------------------------------------------------------------------------------
# Reference-style models (written for this benchmark from the references' published design)
# --------------------------------------------------------------------------------------------


def interleave_tokens(X: Tensor, y: Tensor) -> Tensor:
    """The references' prompt: `x_1, [y_1, 0…0], x_2, …`; X (B, k, d), y (B, k) → (B, 2k, d)."""
    B, k, d = X.shape
    y_wide = torch.cat([y.view(B, k, 1), X.new_zeros(B, k, d - 1)], dim=2)  # (B, k, d)
    return torch.stack([X, y_wide], dim=2).view(B, 2 * k, d)  # (B, 2k, d)


def hf_gpt2_backbone(n_layer: int, attn: str) -> nn.Module:
    """A `transformers.GPT2Model` configured as in Garg et al. (no dropout, no KV cache)."""
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(
        n_positions=2 * POINTS,
        n_embd=N_EMBD,
        n_layer=n_layer,
        n_head=N_HEAD,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        use_cache=False,
    )
    config._attn_implementation = attn
    return GPT2Model(config)


class HFReference(nn.Module):
    """Read-in Linear(d, n_embd) → `GPT2Model(inputs_embeds=…)` → read-out Linear(n_embd, 1).

    `forward(X, y)` → predictions (B, k) at the x tokens (Garg shape).
    `looped_loss(X, y, b, T)`: the backbone (n_layer = 1) applied b times as `z ← f(z + e)`, the
    first b − T loops under no_grad, MSE averaged over the last T loops (looped shape).
    """

    def __init__(self, n_layer: int, attn: str) -> None:
        super().__init__()
        self.read_in = nn.Linear(D, N_EMBD)
        self.backbone = hf_gpt2_backbone(n_layer, attn)
        self.read_out = nn.Linear(N_EMBD, 1)

    def f(self, h: Tensor) -> Tensor:
        """Backbone on embeddings (B, 2k, n_embd) → last hidden state (B, 2k, n_embd)."""
        return self.backbone(inputs_embeds=h).last_hidden_state

    def predict(self, h: Tensor) -> Tensor:
        """Read out every token, keep the x tokens: (B, 2k, n_embd) → (B, k)."""
        return self.read_out(h)[:, ::2, 0]

    def forward(self, X: Tensor, y: Tensor) -> Tensor:
        """Predictions (B, k) from X (B, k, d), y (B, k): one pass through the backbone."""
        return self.predict(self.f(self.read_in(interleave_tokens(X, y))))

    def looped_loss(self, X: Tensor, y: Tensor, b: int, T: int) -> Tensor:
        """Scalar loss of the looped shape (see the class docstring)."""
        e = self.read_in(interleave_tokens(X, y))  # (B, 2k, n_embd)
        z = torch.zeros_like(e)
        predictions = []
        for t in range(b):
            if t < b - T:
                with torch.no_grad():
                    z = self.f(z + e)
            else:
                z = self.f(z + e)
                predictions.append(self.predict(z))  # (B, k)
        return (torch.stack(predictions) - y).square().mean()  # over (T, B, k)


class NanoBlock(nn.Module):
    """nanoGPT-style pre-LN block: fused QKV + causal SDPA, MLP with tanh-approximate GELU."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(N_EMBD)
        self.c_attn = nn.Linear(N_EMBD, 3 * N_EMBD)
        self.attn_proj = nn.Linear(N_EMBD, N_EMBD)
        self.ln_2 = nn.LayerNorm(N_EMBD)
        self.c_fc = nn.Linear(N_EMBD, 4 * N_EMBD)
        self.mlp_proj = nn.Linear(4 * N_EMBD, N_EMBD)

    @staticmethod
    def gelu_tanh(x: Tensor) -> Tensor:
        """GELU, tanh approximation, as separate elementwise ops (the reference's cost)."""
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, C) → (B, T, C)."""
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)  # 3 × (B, T, C)
        q, k, v = (t.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hd)
        x = x + self.attn_proj(a.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(self.gelu_tanh(self.c_fc(self.ln_2(x))))


class NanoGPTLoopedReference(nn.Module):
    """Yang et al.'s looped model design: read-in, a 1-block nanoGPT-style backbone (positions
    added and `ln_f` applied inside each call, 2k + 1 position rows), read-out of every token."""

    def __init__(self) -> None:
        super().__init__()
        self.read_in = nn.Linear(D, N_EMBD)
        self.wpe = nn.Embedding(2 * POINTS + 1, N_EMBD)
        self.block = NanoBlock()
        self.ln_f = nn.LayerNorm(N_EMBD)
        self.read_out = nn.Linear(N_EMBD, 1)

    def f(self, h: Tensor) -> Tensor:
        """One loop body: positions, the block, ln_f; (B, 2k, n_embd) → (B, 2k, n_embd)."""
        positions = torch.arange(h.shape[1], device=h.device)
        return self.ln_f(self.block(h + self.wpe(positions)))

    def looped_loss(self, X: Tensor, y: Tensor, b: int, T: int) -> Tensor:
        """`z ← f(z + e)` b times, the first b − T under no_grad; MSE over the last T loops."""
        e = self.read_in(interleave_tokens(X, y))  # (B, 2k, n_embd)
        z = torch.zeros_like(e)
        predictions = []
        for t in range(b):
            if t < b - T:
                with torch.no_grad():
                    z = self.f(z + e)
            else:
                z = self.f(z + e)
                predictions.append(self.read_out(z)[:, ::2, 0])  # (B, k)
        return (torch.stack(predictions) - y).square().mean()  # over (T, B, k)


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

Batch = tuple[Tensor, Tensor]


class Contender:
    """A model with its Adam optimizer and loss; `step(batch)` does one full training step."""

    def __init__(
        self, name: str, model: nn.Module, loss: Callable[[nn.Module, Batch], Tensor]
    ) -> None:
        self.name, self.model, self.loss = name, model, loss
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        self.times: list[float] = []  # wall seconds of the timed steps

    def step(self, batch: Batch) -> None:
        """zero_grad → forward + loss → backward → Adam; no host sync."""
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(self.model, batch).backward()
        self.optimizer.step()

    def n_params(self) -> int:
        """All parameters of the model, used or not."""
        return sum(p.numel() for p in self.model.parameters())

    def n_unused(self) -> int:
        """Parameters that got no gradient in the last step (call after a step)."""
        return sum(p.numel() for p in self.model.parameters() if p.grad is None)

    def unused_names(self) -> list[str]:
        """Names of the parameters that got no gradient in the last step."""
        return [n for n, p in self.model.named_parameters() if p.grad is None]


def sync(device: str) -> None:
    """Wait for queued GPU work (timing only; a no-op on CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def race(contenders: list[Contender], batches: list[Batch], warmup: int, device: str) -> None:
    """Run every contender on every batch, rotating the order each step; time steps ≥ warmup."""
    for i, batch in enumerate(batches):
        r = i % len(contenders)
        for c in contenders[r:] + contenders[:r]:
            sync(device)
            start = time.perf_counter()
            c.step(batch)
            sync(device)
            if i >= warmup:
                c.times.append(time.perf_counter() - start)


def make_batches(n: int, batch: int, device: str, seed: int = 0) -> list[Batch]:
    """n batches of in-context linear regression: X (B, k, d), y = X w (B, k)."""
    g = torch.Generator(device=device).manual_seed(seed)
    out = []
    for _ in range(n):
        X = torch.randn(batch, POINTS, D, generator=g, device=device)  # (B, k, d)
        w = torch.randn(batch, D, 1, generator=g, device=device)  # (B, d, 1)
        out.append((X, (X @ w).squeeze(-1)))  # (B, k)
    return out


def mse_all_prefixes(model: nn.Module, batch: Batch) -> Tensor:
    """Garg et al.'s loss: mean over (B, k) of the squared error of every prefix's prediction."""
    X, y = batch
    return (model(X, y) - y).square().mean()


def looped_ours(model: nn.Module, batch: Batch) -> Tensor:
    """Yang et al.'s loss on our `LoopedTransformer` (LOOPS loops, gradient through WINDOW)."""
    return model.loss_over_last_loops(*batch, n_loops=LOOPS, last=WINDOW)


def looped_reference(model: nn.Module, batch: Batch) -> Tensor:
    """The same loss on a reference-style looped model."""
    return model.looped_loss(*batch, b=LOOPS, T=WINDOW)


def garg_contenders(attn: str, device: str) -> list[Contender]:
    """Garg shape: [ours GPT standard, HF GPT2Model reference], loss = MSE over all prefixes."""
    torch.manual_seed(0)  # the HF / nn default inits draw from the global RNG
    ours = GPT(GPTConfig(d_in=D, max_points=POINTS, size="standard"), device=device)
    reference = HFReference(N_LAYER, attn).to(device)
    return [
        Contender("ours GPT", ours, mse_all_prefixes),
        Contender(f"ref HF GPT2Model ({attn})", reference, mse_all_prefixes),
    ]


def looped_contenders(attn: str, device: str) -> list[Contender]:
    """Looped shape: [ours, HF-backbone reference, nanoGPT-style reference], loss over the last
    WINDOW of LOOPS loops."""
    torch.manual_seed(0)
    config = LoopedConfig(
        d_in=D, max_points=POINTS, n_embd=N_EMBD, n_head=N_HEAD, n_loops=LOOPS, grad_last=WINDOW
    )
    return [
        Contender("ours LoopedTransformer", LoopedTransformer(config, device=device), looped_ours),
        Contender(f"ref HF GPT2Model ({attn})", HFReference(1, attn).to(device), looped_reference),
        Contender(
            "ref nanoGPT-style (Yang repo)", NanoGPTLoopedReference().to(device), looped_reference
        ),
    ]


SHAPES = {
    "garg": ("Garg 256/12/8", garg_contenders),
    "looped": ("looped 1x30, last 15", looped_contenders),
}
"""--shapes key → (table label, builder of [ours, reference, …])."""


@dataclass
class Row:
    """One line of the table: a reference against ours at one shape."""

    shape: str
    reference: str
    ours_ms: float
    ref_ms: float
    ratio: float  # reference time / our time (> 1: ours is faster)
    ours_steps_per_s: float
    ref_steps_per_s: float
    ours_params: int
    ref_params: int
    ref_unused_params: int
    ref_unused_names: list[str]
    ours_unused_params: int


def summarise(shape: str, contenders: list[Contender]) -> list[Row]:
    """One `Row` per reference of a shape (contenders[0] is ours), from the median times."""
    ours, refs = contenders[0], contenders[1:]
    ours_s = statistics.median(ours.times)
    rows = []
    for ref in refs:
        ref_s = statistics.median(ref.times)
        rows.append(
            Row(
                shape=shape,
                reference=ref.name,
                ours_ms=ours_s * 1e3,
                ref_ms=ref_s * 1e3,
                ratio=ref_s / ours_s,
                ours_steps_per_s=1 / ours_s,
                ref_steps_per_s=1 / ref_s,
                ours_params=ours.n_params(),
                ref_params=ref.n_params(),
                ref_unused_params=ref.n_unused(),
                ref_unused_names=ref.unused_names(),
                ours_unused_params=ours.n_unused(),
            )
        )
    return rows


def print_table(rows: list[Row], header: str) -> None:
    """The comparison table, then which parameters went without gradient."""
    print(header)
    print(
        f"{'shape':<22}{'reference':<32}{'ours ms':>9}{'ref ms':>9}{'ref/ours':>9}"
        f"{'ours st/s':>10}{'ref st/s':>9}{'ours params':>13}{'ref params':>12}{'ref unused':>12}"
    )
    for r in rows:
        print(
            f"{r.shape:<22}{r.reference:<32}{r.ours_ms:9.0f}{r.ref_ms:9.0f}{r.ratio:9.2f}"
            f"{r.ours_steps_per_s:10.3f}{r.ref_steps_per_s:9.3f}{r.ours_params:13,}"
            f"{r.ref_params:12,}{r.ref_unused_params:12,}"
        )
    unused = sorted({n for r in rows for n in r.ref_unused_names})
    ours_unused = sum(r.ours_unused_params for r in rows)
    print(f"reference parameters without gradient: {', '.join(unused) or 'none'}")
    print(f"our parameters without gradient: {ours_unused}")


def main() -> int:
    """Parse flags, time both shapes, print the table (and write --json); returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--ref-attn",
        default="sdpa",
        choices=["sdpa", "eager"],
        help="attention of the HF backbone: sdpa (today's default) or eager (transformers<4.36, "
        "as pinned by Garg et al.)",
    )
    parser.add_argument("--shapes", nargs="+", default=["garg", "looped"], choices=list(SHAPES))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    try:
        import transformers
    except ImportError:
        print(
            "bench_vs_reference: skipped, needs HuggingFace transformers (pip install transformers)"
        )
        return 0

    torch.set_num_threads(args.threads)
    batches = make_batches(args.warmup + args.steps, args.batch, args.device)
    rows: list[Row] = []
    for key in dict.fromkeys(args.shapes):
        shape, build = SHAPES[key]
        contenders = build(args.ref_attn, args.device)
        race(contenders, batches, args.warmup, args.device)
        rows += summarise(shape, contenders)

    header = (
        f"one Adam training step, median of {args.steps} (after {args.warmup} warm-up), "
        f"device={args.device} threads={torch.get_num_threads()} batch={args.batch} d={D} "
        f"points={POINTS} fp32; torch {torch.__version__}, transformers {transformers.__version__}"
    )
    print_table(rows, header)
    if args.json is not None:
        meta = {
            "device": args.device,
            "threads": torch.get_num_threads(),
            "batch": args.batch,
            "d": D,
            "points": POINTS,
            "steps": args.steps,
            "warmup": args.warmup,
            "ref_attn": args.ref_attn,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
        args.json.write_text(json.dumps({**meta, "rows": [asdict(r) for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
