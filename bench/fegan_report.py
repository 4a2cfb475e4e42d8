"""Print the Markdown tables of docs/results-fegan.md §3 from fegan_convergence.json.

Usage::

    python bench/fegan_report.py
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fegan_common import RESULTS

from flwr_gan.runtime.rundir import plot_fid_curves


def main() -> None:
    data = json.loads((RESULTS / "fegan_convergence.json").read_text())
    runs = data["runs"]
    print("| run | FID r0 | r10 | r20 | r30 | r40 | r50 | best (round) | mean of last 3 evals "
          "| kl_seen r20 | kl_seen_reference r20 | s/round | peak MB |")
    print("|---|" + "---|" * 12)
    for label, run in runs.items():
        recs = run["records"]
        fid = {int(r["round"]): r["fid"] for r in recs if r.get("fid") is not None}
        best_round = min(fid, key=fid.__getitem__)
        last3 = np.mean([fid[k] for k in sorted(fid)[-3:]])
        r20: dict[str, Any] = next((r for r in recs if r["round"] == 20), {})
        per_round = np.mean([r["wall_s"] for r in recs if r["round"] > 0])
        ref = r20.get("kl_seen_reference")
        cells = [f"{fid.get(k, float('nan')):.0f}" for k in (0, 10, 20, 30, 40, 50)]
        print(f"| {label} | " + " | ".join(cells) + f" | {fid[best_round]:.0f} ({best_round}) "
              f"| {last3:.0f} | {r20.get('kl_seen', float('nan')):.4f} | "
              f"{'-' if ref is None else f'{ref:.4f}'} | {per_round:.1f} | "
              f"{run['peak_rss_mb']:.0f} |")
    for key in ("flgan_best_fid", "flgan_best_round", "fegan_round_to_reach_flgan_best",
                "convergence_gain"):
        print(f"{key}: {data.get(key)}")
    # Per-seed gain and seed-averaged curves when the seed1 runs exist
    pairs = [("FL-GAN", "FeGAN s=1 w=1"), ("FL-GAN seed1", "FeGAN s=1 w=1 seed1")]
    curves: dict[str, list[dict[int, float]]] = {}
    for base, fe in pairs:
        if base in runs and fe in runs:
            b = {int(r["round"]): r["fid"] for r in runs[base]["records"] if r.get("fid")}
            f = {int(r["round"]): r["fid"] for r in runs[fe]["records"] if r.get("fid")}
            best_round = min(b, key=b.__getitem__)
            reach = next((k for k in sorted(f) if f[k] <= b[best_round]), None)
            gain = best_round / reach if reach else None
            print(f"{base} vs {fe}: FL-GAN best {b[best_round]:.0f} at round {best_round}; "
                  f"FeGAN reaches it at round {reach}; gain {gain}")
            curves.setdefault("FL-GAN", []).append(b)
            curves.setdefault("FeGAN (s=1, w=1)", []).append(f)
    if all(len(v) == 2 for v in curves.values()) and curves:
        mean_runs: dict[str, list[dict[str, Any]]] = {}
        for label, dicts in curves.items():
            rounds = sorted(set(dicts[0]) & set(dicts[1]))
            mean_runs[f"{label}, mean of 2 seeds"] = [
                {"round": k, "fid": float(np.mean([d[k] for d in dicts]))} for k in rounds]
        plot_fid_curves(mean_runs, RESULTS / "fegan_vs_flgan_fid_2seeds.png")
        for label, recs in mean_runs.items():
            print(label, [round(r["fid"]) for r in recs])


if __name__ == "__main__":
    main()
