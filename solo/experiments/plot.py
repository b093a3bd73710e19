"""Trainable parameters vs BLEU (Tables 2-3): our runs beside the paper's printed points."""

from __future__ import annotations

import io


def params_vs_bleu_png(points: list[dict], title: str, smoke: bool) -> bytes:
    """PNG bytes of a log-x scatter. Each point: label, paper_params, paper_bleu, and optionally
    our_params, our_bleu, our_std (absent when the run is missing)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: CI and clusters have no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    px = [p["paper_params"] for p in points]
    py = [p["paper_bleu"] for p in points]
    ax.scatter(px, py, marker="s", color="tab:gray", label="paper (printed)")
    ours = [p for p in points if p.get("our_bleu") is not None]
    if ours:
        ax.errorbar(
            [p["our_params"] for p in ours], [p["our_bleu"] for p in ours],
            yerr=[p.get("our_std") or 0.0 for p in ours], fmt="o", color="tab:blue",
            capsize=3, label="ours (mean ± std over seeds)" + (" — SMOKE, not results" if smoke else ""),
        )
    for p in points:
        ax.annotate(p["label"], (p["paper_params"], p["paper_bleu"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points", color="tab:gray")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("BLEU (%)")
    ax.set_title(("SMOKE RUN — " if smoke else "") + title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    # No Software/date metadata, so the same numbers give byte-identical PNGs.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
