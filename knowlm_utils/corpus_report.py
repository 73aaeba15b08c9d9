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
        row["Mchars_in"] = round(s["chars_in"] / 1e6, 3)      # millions of characters (not bytes)
        row["Mchars_kept"] = round(s["chars_kept"] / 1e6, 3)
        rows.append(row)
    df = pd.DataFrame(rows).set_index("source")
    df.loc["TOTAL"] = df.sum(numeric_only=True)
    df = df.loc[:, (df != 0).any(axis=0) | df.columns.isin(["records", "kept", "filtered", "duplicates", "skipped"])]
    return df


def plot_length_histograms(stats: dict[str, Any], axes=None):
    """Document lengths (log10 characters) per source: documents kept (blue) and removed by a rule
    or as a duplicate (red, drawn narrower in front), on a log count axis so that a bin holding a
    single document is as visible as one holding a hundred."""
    import matplotlib.pyplot as plt

    names = list(stats["sources"])
    if axes is None:
        _, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.9), sharey=True, squeeze=False)
        axes = axes[0]
    left = np.array(stats["length_bins_log10"], float)
    width = float(left[1] - left[0]) if len(left) > 1 else 0.1
    for ax, name in zip(axes, names):
        s = stats["sources"][name]
        before, after = np.array(s["hist_before"]), np.array(s["hist_after"])
        removed = before - after
        ax.bar(left, np.where(after > 0, after, np.nan), width, align="edge", color="tab:blue", alpha=0.45,
               label="kept")
        ax.bar(left + 0.2 * width, np.where(removed > 0, removed, np.nan), 0.6 * width, align="edge",
               color="tab:red", label="removed")
        used = np.nonzero(before)[0]
        if used.size:
            ax.set_xlim(left[max(used[0] - 2, 0)], left[min(used[-1] + 3, len(left) - 1)] + width)
        ax.set_yscale("log")
        ax.set_ylim(0.7, max(2.0, before.max() * 1.6))
        ax.set_title(f"{name} ({int(removed.sum())} of {int(before.sum())} removed)", fontsize=9)
        ax.set_xlabel("log10(characters)")
    axes[0].set_ylabel("documents (log scale)")
    axes[0].legend(fontsize=8, loc="upper left")
    return axes


def plot_rule_outcomes(report: pd.DataFrame, ax=None):
    """What happened to the planted lines of each rule (a table of
    :func:`evaluate_against_manifest`): caught by their rule (green), removed by another rule
    (orange), kept by mistake (red); to the left of zero, the clean documents the rule removed
    (false alarms, grey). All-green bars and nothing left of zero mean recall and precision 1."""
    import matplotlib.pyplot as plt

    rows = report.drop("ALL", errors="ignore")
    rows = rows[(rows["planted"] > 0) | (rows["clean_docs_removed"] > 0)].iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.2))
    y = np.arange(len(rows))
    caught, other, missed = rows["caught"], rows["removed_by_other_rule"], rows["kept_by_mistake"]
    ax.barh(y, caught, color="tab:green", label="caught by its rule")
    ax.barh(y, other, left=caught, color="tab:orange", label="removed by another rule")
    ax.barh(y, missed, left=caught + other, color="tab:red", label="kept by mistake")
    ax.barh(y, -rows["clean_docs_removed"], color="grey", hatch="//", label="clean documents removed")
    ax.axvline(0, color="black", lw=0.8)
    right = float((caught + other + missed).max()) if len(rows) else 1.0
    ax.set_xlim(-max(float(rows["clean_docs_removed"].max()) if len(rows) else 0.0, 0.08 * right) * 1.1, right * 1.05)
    ax.set_yticks(y, rows.index)
    ax.set_xlabel("planted lines (right of 0) · false alarms (left of 0)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


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
