#!/usr/bin/env python
"""Time and peak memory of ``make-diff``, ``recover`` and ``merge-lora`` against the way KnowLM's
``weight_diff.py`` (and PEFT's ``merge_and_unload``) do it, on LLaMA-shaped fp32 models, in one run.

For each size (``--sizes``, billions of parameters; default ≈0.5 B then ≈1 B, i.e. 2 GB and 4 GB
of fp32) the benchmark writes, into a temporary folder it deletes at the end:

* ``raw`` — a LLaMA-shaped model (vocabulary 32,000, random weights) in 3 safetensors shards;
* ``tuned`` — ``raw + N(0, 1e-3)`` (what training leaves), 3 shards;
* ``adapter`` — a PEFT LoRA adapter (r 16 on all attention and MLP projections).

Then, each operation in a fresh subprocess (so peak RSS — the child's ``VmHWM`` — is the
operation's own), the page cache warmed with the inputs first and flushed (``sync``) between runs:

* **make-diff** — baseline: ``from_pretrained`` raw and tuned, ``tuned.add_(-raw)`` over the state
  dicts, ``save_pretrained``; ours: :func:`knowlm_utils.release.make_diff`.
* **recover** — baseline: ``from_pretrained`` raw and diff, ``diff.add_(raw)``, ``save_pretrained``
  (KnowLM's recover); ours: :func:`knowlm_utils.release.recover` of our diff (every tensor verified).
* **merge-lora** — baseline: ``from_pretrained`` base, ``PeftModel.from_pretrained``,
  ``merge_and_unload``, ``save_pretrained``; ours: :func:`knowlm_utils.release.merge_lora`.

Every pair of outputs is compared tensor by tensor, bit for bit (and the recovered model with
``tuned``). ``time`` is the operation (after imports); ours includes the ``fsync`` of every file
it writes, the baseline's ``save_pretrained`` does not sync, so ``+sync`` adds the time its data
took to reach the disk. Targets: our peak RSS ≤ 25 % of the baseline's and flat as the model
doubles; our time ≤ the baseline's.

Usage: python benchmarks/bench_release.py [--sizes 0.5 1] [--dir /tmp] [--ops make-diff recover merge-lora]
       [--keep] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name: (hidden, intermediate, layers, heads) with vocabulary 32000 — LLaMA's proportions
SHAPES = {0.5: (1536, 4096, 14, 12), 1.0: (2048, 5504, 17, 16), 0.1: (768, 2048, 6, 6)}
VOCAB = 32000
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# ------------------------------------------------------------------------ synthetic models ----


def llama_specs(h: int, i: int, layers: int) -> list[tuple[str, tuple[int, ...]]]:
    specs = [("model.embed_tokens.weight", (VOCAB, h))]
    for n in range(layers):
        p = f"model.layers.{n}."
        specs += [(p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (h, h)),
                  (p + "self_attn.v_proj.weight", (h, h)), (p + "self_attn.o_proj.weight", (h, h)),
                  (p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h)),
                  (p + "mlp.down_proj.weight", (h, i)), (p + "input_layernorm.weight", (h,)),
                  (p + "post_attention_layernorm.weight", (h,))]
    return specs + [("model.norm.weight", (h,)), ("lm_head.weight", (VOCAB, h))]


def write_models(folder: Path, size: float) -> dict[str, object]:
    """raw, tuned (= raw + noise) and a LoRA adapter, each shard generated and written in turn."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    h, i, layers, heads = SHAPES[size]
    specs = llama_specs(h, i, layers)
    n_params = sum(int(torch.Size(s).numel()) for _, s in specs)
    per_shard = -(-n_params * 4 // 3)  # 3 shards of about equal size, in the model's order
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[], [], []]
    done = 0
    for name, shape in specs:
        groups[min(2, done // per_shard)].append((name, shape))
        done += int(torch.Size(shape).numel()) * 4
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=h, intermediate_size=i, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=2048,
                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    g = torch.Generator().manual_seed(0)
    for kind in ("raw", "tuned"):
        (folder / kind).mkdir(parents=True)
        cfg.save_pretrained(folder / kind)
    wmap = {}
    for k, group in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        raw, tuned = {}, {}
        for name, shape in group:
            t = torch.ones(shape) if name.endswith("norm.weight") else torch.randn(shape, generator=g) * 0.02
            raw[name] = t
            tuned[name] = t + torch.randn(shape, generator=g) * 1e-3
            wmap[name] = fname
        save_file(raw, folder / "raw" / fname, metadata={"format": "pt"})
        save_file(tuned, folder / "tuned" / fname, metadata={"format": "pt"})
        del raw, tuned
    index = {"metadata": {"total_size": n_params * 4}, "weight_map": wmap}
    for kind in ("raw", "tuned"):
        (folder / kind / "model.safetensors.index.json").write_text(json.dumps(index))
    ad = folder / "adapter"
    ad.mkdir()
    lora = {}
    for name, shape in specs:
        module = name[:-len(".weight")]
        if module.split(".")[-1] in LORA_TARGETS:
            out_f, in_f = shape
            lora[f"base_model.model.{module}.lora_A.weight"] = torch.randn(16, in_f, generator=g) * 0.01
            lora[f"base_model.model.{module}.lora_B.weight"] = torch.randn(out_f, 16, generator=g) * 0.01
    save_file(lora, ad / "adapter_model.safetensors", metadata={"format": "pt"})
    (ad / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
        "target_modules": list(LORA_TARGETS), "bias": "none", "fan_in_fan_out": False, "modules_to_save": None,
        "base_model_name_or_path": str(folder / "raw"), "inference_mode": True}))
    return {"params": n_params, "shards": len(groups), "bytes": n_params * 4}


# ------------------------------------------------------------------------------- children ----


IMPL = {"baseline": "in-memory", "ours": "streamed"}  # knowlm_utils.release.memory's names


def run_child(op: str, impl: str, args: dict[str, str]) -> dict[str, float]:
    """A fresh interpreter for one operation: its time and its own peak RSS
    (:func:`knowlm_utils.release.memory.measure`)."""
    from knowlm_utils.release.memory import measure

    return measure(op, IMPL[impl], args)


# ----------------------------------------------------------------------------- comparison ----


def same_tensors(a: Path, b: Path) -> tuple[bool, int]:
    """Bit-identical tensors (names, dtypes, shapes, bytes), read a block at a time."""
    import torch

    from knowlm_utils.release.tensors import ModelFiles

    with ModelFiles(a) as x, ModelFiles(b) as y:
        if set(x.names) != set(y.names):
            return False, 0
        for name in x.names:
            if x.spec(name) != y.spec(name):
                return False, 0
            for start, stop, block in x.blocks(name, 64 << 20):
                other = y.read(name, start, stop)
                if not torch.equal(block.view(torch.int32), other.view(torch.int32)):
                    return False, 0
        return True, len(x.names)


def warm(*folders: Path) -> None:
    """Read the inputs once so both implementations start from the page cache."""
    buf = bytearray(8 << 20)
    for folder in folders:
        for f in folder.rglob("*"):
            if f.is_file():
                with open(f, "rb", buffering=0) as fh:
                    while fh.readinto(buf):
                        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1.0], help=f"model sizes in B, of {sorted(SHAPES)}")
    p.add_argument("--ops", nargs="+", default=["make-diff", "recover", "merge-lora"],
                   choices=["make-diff", "recover", "merge-lora"])
    p.add_argument("--dir", default=None, help="where the temporary models go (default: the system temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the generated models")
    p.add_argument("--out", default=None, help="also write the results as JSON")
    a = p.parse_args()
    for s in a.sizes:
        if s not in SHAPES:
            p.error(f"--sizes: {s} is not one of {sorted(SHAPES)}")
    root = Path(tempfile.mkdtemp(prefix="bench-release-", dir=a.dir))
    rows = []
    try:
        for size in a.sizes:
            folder = root / f"{size}B"
            t0 = time.perf_counter()
            info = write_models(folder, size)
            print(f"\n== {size} B: {info['params'] / 1e9:.3f} B parameters, {info['bytes'] / 1e9:.2f} GB fp32, "
                  f"{info['shards']} shards (generated in {time.perf_counter() - t0:.0f} s)", flush=True)
            for op in a.ops:
                base_out, ours_out = folder / f"{op}-baseline", folder / f"{op}-ours"
                args = {"raw": str(folder / "raw"), "tuned": str(folder / "tuned"), "diff": str(folder / "diff"),
                        "adapter": str(folder / "adapter")}
                if op == "recover" and not (folder / "diff").exists():
                    run_child("make-diff", "ours", {**args, "out": str(folder / "diff")})
                res = {}
                for impl, out in (("baseline", base_out), ("ours", ours_out)):
                    os.sync()
                    warm(*(Path(args[k]) for k in (("raw", "tuned") if op == "make-diff" else
                                                   ("raw", "diff") if op == "recover" else ("raw", "adapter"))))
                    res[impl] = run_child(op, impl, {**args, "out": str(out)})
                same, n = same_tensors(base_out, ours_out)
                extra = ""
                if op == "recover":
                    same_tuned, _ = same_tensors(ours_out, folder / "tuned")
                    extra = f"; = tuned: {same_tuned}"
                if op == "make-diff" and not (folder / "diff").exists():
                    shutil.move(ours_out, folder / "diff")
                row = {"size_b": size, "params": info["params"], "op": op, "baseline": res["baseline"], "ours": res["ours"],
                       "bit_identical": same, "tensors": n}
                rows.append(row)
                b, o = res["baseline"], res["ours"]
                print(f"{op:10s} baseline {b['seconds']:6.1f} s (+sync {b['seconds_synced']:6.1f} s) "
                      f"{b['peak_rss_mb']:8.0f} MB | ours {o['seconds']:6.1f} s {o['peak_rss_mb']:6.0f} MB "
                      f"({100 * o['peak_rss_mb'] / b['peak_rss_mb']:.1f} % of the baseline's) | "
                      f"bit-identical: {same} ({n} tensors){extra}", flush=True)
                shutil.rmtree(base_out, ignore_errors=True)
                shutil.rmtree(ours_out, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("\n| size | op | baseline time (+sync) | baseline peak RSS | ours time | ours peak RSS | RSS ratio | bit-identical |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        b, o = r["baseline"], r["ours"]
        print(f"| {r['params'] / 1e9:.2f} B | {r['op']} | {b['seconds']:.1f} s ({b['seconds_synced']:.1f} s) | "
              f"{b['peak_rss_mb'] / 1024:.2f} GiB | {o['seconds']:.1f} s | {o['peak_rss_mb']:.0f} MiB | "
              f"{100 * o['peak_rss_mb'] / b['peak_rss_mb']:.1f} % | {r['bit_identical']} |")
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
