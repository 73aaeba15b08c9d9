#!/usr/bin/env python
"""How many training steps a LLaMA of the course's shape needs before it copies from its context.

Issue 11's extraction needs *copying*: a name seen once in the sentence must be written again in
the answer. A transformer copies an arbitrary span with an induction circuit (a previous-token
head plus a head that looks up "the token after the last occurrence of the current token"). This
benchmark trains a fresh model on pure synthetic copy data and prints, in one run, the loss on the
repeated half against steps for two versions of the task:

* ``fixed``: every row is ``x x`` with ``len(x) = 32`` — a head that attends 31 positions back
  solves it, no induction circuit needed;
* ``variable``: a random span of 8–32 tokens repeated at a random place in random tokens — only
  content-based lookup (induction) solves it, as in extraction.

Loss starts at ln(vocab) (uniform guessing) and falls towards 0 once the model copies. The
ratio of the two losses at each step shows how much harder real copying is to learn than a
positional shortcut. Usage:

    python benchmarks/bench_copy_formation.py [--vocab 64] [--steps 600] [--batch 32] \\
        [--hidden 256 --layers 4]          # the cpu-tiny shape (configs/pretrain/cpu-tiny.yaml)
    python benchmarks/bench_copy_formation.py --variable-only --steps 3700   # when copying forms (≈30 min)
"""

from __future__ import annotations

import argparse
import math
import time


def batch(kind: str, vocab: int, span: int, rows: int, gen):
    import torch

    ids = torch.randint(0, vocab, (rows, 2 * span), generator=gen)
    labels = torch.full_like(ids, -100)
    for b in range(rows):
        n = span if kind == "fixed" else int(torch.randint(8, span + 1, (), generator=gen))
        s = 0 if kind == "fixed" else int(torch.randint(0, 2 * span - 2 * n + 1, (), generator=gen))
        ids[b, s + n:s + 2 * n] = ids[b, s:s + n]
        labels[b, s + n + 1:s + 2 * n] = ids[b, s + n + 1:s + 2 * n]  # the first copied token is unpredictable
    return ids, labels


def train(kind: str, args, report=None) -> list[tuple[int, float]]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                      num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=2 * args.span, tie_word_embeddings=args.tie_embeddings)
    model = LlamaForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    curve, window = [], []
    for step in range(1, args.steps + 1):
        ids, labels = batch(kind, args.vocab, args.span, args.batch, gen)
        loss = model(ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        window.append(loss.item())
        if step % args.every == 0:
            curve.append((step, sum(window) / len(window)))
            if report is not None:
                report(*curve[-1])
            window = []
    return curve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab", type=int, default=64, help="token alphabet of the random spans")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--span", type=int, default=32, help="longest repeated span (row length = 2 x span)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--every", type=int, default=100, help="report the mean loss of each block of steps")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tie-embeddings", action="store_true",
                   help="share the input embedding and the output head (LLaMA does not; copying a token then needs "
                        "no token-by-token identity map from input to output)")
    p.add_argument("--variable-only", action="store_true",
                   help="train only the variable-offset task and print its curve (to find when copying forms: "
                        "≈3,000 steps at the defaults)")
    args = p.parse_args()

    import torch

    from knowlm_utils.course import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.variable_only:
        print(f"h {args.hidden}, {args.layers} layers, alphabet {args.vocab} (uniform loss {math.log(args.vocab):.2f}), "
              f"batch {args.batch} x {2 * args.span} tokens, lr {args.lr}, tied embeddings {args.tie_embeddings}: "
              f"variable-offset loss", flush=True)
        train("variable", args, report=lambda step, loss: print(f"{step - args.every + 1:>5}-{step:<5} {loss:>8.3f}",
                                                                 flush=True))
        print(f"measured in {time.perf_counter() - t0:.0f} s")
        return
    fixed, variable = train("fixed", args), train("variable", args)
    print(f"h {args.hidden}, {args.layers} layers, alphabet {args.vocab} (uniform loss {math.log(args.vocab):.2f}), "
          f"batch {args.batch} x {2 * args.span} tokens, lr {args.lr}")
    print(f"{'steps':>9} {'fixed-offset loss':>18} {'variable-offset loss':>21} {'variable / fixed':>17}")
    for (step, a), (_, b) in zip(fixed, variable):
        print(f"{step - args.every + 1:>4}-{step:<4} {a:>18.3f} {b:>21.3f} {b / max(a, 1e-9):>16.1f}x")
    print(f"measured in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
