"""What a CPU hour buys for training: tokens/s of SmolLM2-135M passes on this machine.

For the CPU recipe of the default model: forward without gradients (teacher-free
scoring, cached activations), and a full training step (forward, backward, AdamW)
with every layer trained or only the top layers, in float32 and under
``torch.autocast("cpu", dtype=torch.bfloat16)``. Batches of real shape (16
sequences of 128 tokens by default), a few warm-up steps, then the median of the
timed ones. The table's last column says what an hour of that pass processes.

    python bench/train_cpu.py [--model build/models/smollm2-sr3] [--batch 16] [--seq 128]
                              [--steps 4] [--top 10] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "build" / "models" / "smollm2-sr3")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--top", type=int, default=10, help="layers trained in the 'top' rows")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtypes", default="fp32,bf16", help="fp32, bf16 (autocast) or both")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # rows as they come
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.model / "config.json").is_file():
        sys.stderr.write(f"{args.model} has no HF model: run `make models`\n")
        return 2
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.config.use_cache = False
    layers = model.model.layers
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(100, model.config.vocab_size - 100, (args.batch, args.seq), generator=gen)
    tokens = args.batch * args.seq
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"bf16 kernels: {torch.backends.mkldnn.is_available()}, batch {args.batch}x{args.seq}"
    )

    def timed(step: object) -> float:
        for _ in range(args.warmup):
            step()  # type: ignore[operator]
        times = []
        for _ in range(args.steps):
            t = time.perf_counter()
            step()  # type: ignore[operator]
            times.append(time.perf_counter() - t)
        return tokens / statistics.median(times)

    rows = []
    print(f"{'pass':<48} {'dtype':<6} {'tok/s':>7} {'tokens per hour':>16}")

    def row(name: str, bf16: bool, tps: float) -> None:
        rows.append((name, bf16, tps))
        print(f"{name:<48} {'bf16' if bf16 else 'fp32':<6} {tps:>7.0f} {tps * 3600:>16,.0f}")

    for bf16 in [d.strip() == "bf16" for d in args.dtypes.split(",") if d.strip()]:
        # bf16 autocast, or a context that does nothing (fp32)
        cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

        def forward(cast: torch.autocast = cast) -> None:
            with torch.no_grad(), cast:
                model.model(input_ids=ids)

        row("forward, no grad", bf16, timed(forward))
        for top in (len(layers), args.top):
            for i, layer in enumerate(layers):
                layer.requires_grad_(i >= len(layers) - top)
            model.model.embed_tokens.requires_grad_(top == len(layers))
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=1e-5)

            def train_step(cast: torch.autocast = cast, opt: torch.optim.AdamW = opt) -> None:
                with cast:
                    h = model.model(input_ids=ids).last_hidden_state
                loss = h.float()[:, -1].pow(2).mean()
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            what = "all layers" if top == len(layers) else f"top {top} of {len(layers)} layers"
            row(f"forward+backward+AdamW, {what}", bf16, timed(train_step))
    return 0


if __name__ == "__main__":
    sys.exit(main())
