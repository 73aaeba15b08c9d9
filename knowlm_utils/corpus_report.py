"""Reading a built corpus back: per-source/per-rule tables, length plots, and measuring the
cleaning stage against a manifest of planted noise (recall and precision per rule).

Used by notebook 01 and by ``knowlm corpus evaluate``; kept apart from :mod:`corpus` so the
build path does not import pandas or matplotlib.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .fileio import read_json, read_jsonl


def load_stats(corpus_dir: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(corpus_dir) / "stats.json")


def accounting_table(stats: dict[str, Any]) -> pd.DataFrame:
    """One row per source: records = kept + filtered + duplicates + skipped, then per-rule counts."""
    rows = []
    for name, s in stats["sources"].items():
        row = {"source": name, "records": s["records"], "kept": s["kept"], "filtered": s["filtered"],
               "duplicates": s["duplicates"], "skipped": s["skipped"]}
        row.update({f"rule:{r}": s["by_rule"].get(r, 0) for r in stats["rules"] + ["exact_duplicate", "near_duplicate"]})
        row.update({f"skip:{r}": s["by_skip"].get(r, 0) for r in stats["skip_reasons"]})
        row["MB_in"] = round(s["chars_in"] / 1e6, 3)
        row["MB_kept"] = round(s["chars_kept"] / 1e6, 3)
        rows.append(row)
    df = pd.DataFrame(rows).set_index("source")
    df.loc["TOTAL"] = df.sum(numeric_only=True)
    df = df.loc[:, (df != 0).any(axis=0) | df.columns.isin(["records", "kept", "filtered", "duplicates", "skipped"])]
    return df


def plot_length_histograms(stats: dict[str, Any], axes=None):
    """Document-length distributions (log10 characters) per source, before and after cleaning."""
    import matplotlib.pyplot as plt

    names = list(stats["sources"])
    if axes is None:
        _, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.8), sharey=False, squeeze=False)
        axes = axes[0]
    edges = np.array(stats["length_bins_log10"] + [stats["length_bins_log10"][-1] + 0.1])
    for ax, name in zip(axes, names):
        s = stats["sources"][name]
        ax.stairs(s["hist_before"], edges, label="before", fill=True, alpha=0.35)
        ax.stairs(s["hist_after"], edges, label="after", linewidth=1.5)
        used = np.nonzero(np.array(s["hist_before"]))[0]
        if used.size:
            ax.set_xlim(edges[max(used[0] - 2, 0)], edges[min(used[-1] + 3, len(edges) - 1)])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("log10(characters)")
    axes[0].set_ylabel("documents")
    axes[0].legend(fontsize=8)
    return axes


def load_manifest(path: str | os.PathLike) -> list[dict]:
    rows = read_jsonl(Path(path))
    for i, row in enumerate(rows, 1):
        for key in ("file", "line", "expect"):
            if key not in row:
                raise ValueError(f"{path}:{i}: manifest entry lacks {key!r}")
    return rows


def outcomes(corpus_dir: str | os.PathLike) -> dict[tuple[str, int], str]:
    """(file name, line) → rule or skip reason, for every record that did not survive."""
    corpus_dir = Path(corpus_dir)
    out = {(Path(r["file"]).name, r["line"]): r["rule"] for r in read_jsonl(corpus_dir / "removed.jsonl")}
    out.update({(Path(r["file"]).name, r["line"]): r["reason"] for r in read_jsonl(corpus_dir / "skipped.jsonl")})
    return out


def evaluate_against_manifest(corpus_dir: str | os.PathLike, manifest_path: str | os.PathLike) -> pd.DataFrame:
    """Per expected rule: planted, caught (removed by that rule), recall, and precision
    (of everything that rule removed, the share that was planted for it). Only manifest lines
    inside the part of each file that was read count (so smoke runs are measured fairly)."""
    stats = load_stats(corpus_dir)
    lines_read = {Path(f).name: n for s in stats["sources"].values() for f, n in s["lines_read"].items()}
    got = outcomes(corpus_dir)
    planted = [m for m in load_manifest(manifest_path) if m["line"] <= lines_read.get(Path(m["file"]).name, 0)]
    planted_key = {(Path(m["file"]).name, m["line"]): m["expect"] for m in planted}
    removed_by = Counter(got.values())
    caught, n_planted, other = Counter(), Counter(), Counter()
    for key, expect in planted_key.items():
        n_planted[expect] += 1
        if got.get(key) == expect:
            caught[expect] += 1
        elif key in got:
            other[expect] += 1
    clean_removed = Counter(rule for key, rule in got.items() if key not in planted_key)
    rows = []
    for rule in sorted(set(n_planted) | set(removed_by)):
        tp, p, r = caught[rule], n_planted[rule], removed_by[rule]
        rows.append({"rule": rule, "planted": p, "caught": tp, "removed_by_other_rule": other[rule],
                     "kept_by_mistake": p - tp - other[rule], "removed_total": r,
                     "clean_docs_removed": clean_removed[rule],
                     "recall": round(tp / p, 4) if p else float("nan"),
                     "precision": round(tp / r, 4) if r else float("nan")})
    df = pd.DataFrame(rows).set_index("rule")
    tot_p, tot_tp = sum(n_planted.values()), sum(caught.values())
    tot_removed = sum(removed_by.values())
    df.loc["ALL"] = {"planted": tot_p, "caught": tot_tp, "removed_by_other_rule": sum(other.values()),
                     "kept_by_mistake": tot_p - tot_tp - sum(other.values()), "removed_total": tot_removed,
                     "clean_docs_removed": sum(clean_removed.values()),
                     "recall": round(tot_tp / tot_p, 4) if tot_p else float("nan"),
                     "precision": round(tot_tp / tot_removed, 4) if tot_removed else float("nan")}
    return df
