"""``knowlm weights``: release and recover weights, merge LoRA adapters, export GGUF (stage 09).

    knowlm weights make-diff RAW TUNED OUT [--dtype fp16] [--no-exact]        diff = tuned − raw (KnowLM)
    knowlm weights recover RAW DIFF OUT [--dtype fp16|fp32] [--expect-sum X]   tuned = raw + diff, verified
    knowlm weights merge-lora BASE ADAPTER [ADAPTER ...] OUT [--verify-logits]  LoRA merged, vocabulary resized
    knowlm weights export-gguf MODEL OUT.gguf [--dtype f16|f32]                llama.cpp's format, read back
    knowlm weights verify DIR                                                  tensors against knowlm-release.json
    knowlm weights manifest DIR OUT.json                                       tensor hashes of any model folder

Every command streams one tensor (large ones in blocks of rows) at a time, reads safetensors and
legacy ``pytorch_model-*.bin`` (``torch.load(weights_only=True)``), writes sharded safetensors
atomically and resumes an interrupted run. Bad input — a wrong base, a corrupted file,
mismatched names, shapes, dtypes or vocabularies — stops with one line naming the tensor.
"""

from __future__ import annotations

import argparse


def _add_common(p: argparse.ArgumentParser, shards: bool = True) -> None:
    if shards:
        p.add_argument("--max-shard-size", default="2GB", help="largest output shard (default 2GB; e.g. 500MB, 10GB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output knowlm did not write")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _make_diff(a) -> int:
    from .diff import make_diff

    print(make_diff(a.raw, a.tuned, a.out, dtype=a.dtype, exact=a.exact, max_shard_size=a.max_shard_size,
                    overwrite=a.overwrite, progress=a.progress).summary())
    return 0


def _recover(a) -> int:
    from .diff import recover

    print(recover(a.raw, a.diff, a.out, dtype=a.dtype, expect_sum=a.expect_sum, sum_atol=a.sum_atol,
                  max_shard_size=a.max_shard_size, overwrite=a.overwrite, progress=a.progress).summary())
    return 0


def _merge(a) -> int:
    from .merge import merge_lora

    r = merge_lora(a.base, a.adapters, a.out, dtype=a.dtype, check_tokenizer=a.check_tokenizer,
                   verify_logits=a.verify_logits, max_shard_size=a.max_shard_size, overwrite=a.overwrite,
                   progress=a.progress)
    print(r.summary())
    if a.gguf:
        from .gguf_export import export_gguf

        print(export_gguf(r.out, a.gguf, dtype=a.gguf_dtype, overwrite=a.overwrite, progress=a.progress).summary())
    return 0


def _gguf(a) -> int:
    from .gguf_export import export_gguf

    print(export_gguf(a.model, a.out, dtype=a.dtype, verify=a.verify, overwrite=a.overwrite, progress=a.progress).summary())
    return 0


def _verify(a) -> int:
    from .manifest import verify_model

    print(verify_model(a.dir, a.manifest, progress=a.progress).summary())
    return 0


def _manifest(a) -> int:
    from .manifest import make_manifest

    man = make_manifest(a.dir, a.out, progress=a.progress)
    print(f"wrote {a.out}: {len(man['tensors'])} tensor hashes of {a.dir} (sum of all weights {man['total_sum']:.4f})")
    return 0


def add_cli(subparsers) -> None:
    """``knowlm weights make-diff|recover|merge-lora|export-gguf|verify|manifest``."""
    p = subparsers.add_parser("weights", help="stage 09: weight diffs (make/recover), LoRA merge, GGUF export",
                              description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    sub = p.add_subparsers(dest="weights_cmd", required=True, metavar="SUBCOMMAND")

    m = sub.add_parser("make-diff", help="write diff = tuned − raw with a manifest of every tuned tensor's SHA-256")
    m.add_argument("raw", help="the base model folder (e.g. LLaMA converted to Hugging Face)")
    m.add_argument("tuned", help="the trained model folder")
    m.add_argument("out", help="output folder for the diff")
    m.add_argument("--dtype", default=None, help="diff dtype: fp32, fp16 or bf16 (default: the tuned model's)")
    m.add_argument("--no-exact", dest="exact", action="store_false",
                   help="do not store fixups for elements where raw + diff ≠ tuned (KnowLM's plain diff)")
    _add_common(m)
    m.set_defaults(func=_make_diff)

    r = sub.add_parser("recover", help="write tuned = raw + diff, verifying every tensor against the diff's manifest")
    r.add_argument("raw", help="the base model folder the diff was made from")
    r.add_argument("diff", help="the diff folder (ours, or KnowLM's pytorch_model-*.bin diff)")
    r.add_argument("out", help="output folder for the recovered model")
    r.add_argument("--dtype", default=None, help="output dtype: fp32, fp16 or bf16 (default: the diff's)")
    r.add_argument("--expect-sum", type=float, default=None,
                   help="KnowLM's check: the recovered weights must sum to this constant")
    r.add_argument("--sum-atol", type=float, default=1e-2, help="tolerance of --expect-sum (default 0.01)")
    _add_common(r)
    r.set_defaults(func=_recover)

    g = sub.add_parser("merge-lora", help="merge LoRA adapter(s) into a base model, shard by shard")
    g.add_argument("base", help="the base model folder")
    g.add_argument("adapters", nargs="+", metavar="ADAPTER", help="PEFT LoRA adapter folder(s), merged in this order")
    g.add_argument("out", help="output folder for the merged model")
    g.add_argument("--dtype", default=None, help="merged dtype: fp32, fp16 or bf16 (default: the base's)")
    g.add_argument("--verify-logits", action="store_true",
                   help="then compare the merged model's logits with base + adapter (loads both models whole)")
    g.add_argument("--no-tokenizer-check", dest="check_tokenizer", action="store_false",
                   help="allow a tokenizer smaller or larger than the merged vocabulary")
    g.add_argument("--gguf", default=None, metavar="FILE", help="also export the merged model to this GGUF file")
    g.add_argument("--gguf-dtype", choices=("f16", "f32"), default="f16", help="GGUF weights dtype (default f16)")
    _add_common(g)
    g.set_defaults(func=_merge)

    e = sub.add_parser("export-gguf", help="write a LLaMA model folder as GGUF and read it back to check every tensor")
    e.add_argument("model", help="model folder (safetensors or pytorch_model*.bin)")
    e.add_argument("out", help="the .gguf file to write")
    e.add_argument("--dtype", choices=("f16", "f32"), default="f16", help="2-D weights dtype (default f16)")
    e.add_argument("--no-verify", dest="verify", action="store_false", help="do not read the file back")
    _add_common(e, shards=False)
    e.set_defaults(func=_gguf)

    v = sub.add_parser("verify", help="hash every tensor of DIR and compare with its knowlm-release.json")
    v.add_argument("dir", help="a folder written by knowlm weights (or any model folder with --manifest)")
    v.add_argument("--manifest", default=None, help="manifest file to check against (default DIR/knowlm-release.json)")
    v.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    v.set_defaults(func=_verify)

    h = sub.add_parser("manifest", help="write the tensor hashes (canonical SHA-256) of any model folder")
    h.add_argument("dir", help="model folder (safetensors or pytorch_model*.bin)")
    h.add_argument("out", help="manifest JSON file to write")
    h.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    h.set_defaults(func=_manifest)


__all__ = ["add_cli"]
