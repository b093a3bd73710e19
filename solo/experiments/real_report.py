"""The files of `make real`: results table (md, csv), dev-loss curves and Solo's λ diagnostics (PNG)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from solo.experiments.tables import METRICS, PERCENT_METRICS

LANE_TITLES = {
    "zero-shot": "zero-shot (no fine-tuning)",
    "lora": "LoRA r=8, α=32 (q_proj, v_proj) — solo",
    "solo": "Solo Connection r=128, s=0.6 — solo",
    "peft": "LoRA r=8, α=32 — peft anchor (imports nothing from solo)",
}


def _scaled(metric: str, value: float) -> float:
    return value * 100.0 if metric in PERCENT_METRICS else value


def _train_time(result: Any) -> str:
    resumed = result.resumed_from
    return f"{result.train_seconds:.0f}" + (f" (from step {resumed}: resumed)" if resumed is not None else "")


def results_csv(results: Sequence[Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["lane", "trainable", "steps", "dev_loss_start", "dev_loss_end",
                     "train_s", "decode_s", *METRICS])
    for r in results:
        writer.writerow([r.lane, r.trainable, r.dev_curve[-1][0] if r.dev_curve else 0,
                         f"{r.dev_curve[0][1]:.4f}" if r.dev_curve else "",
                         f"{r.dev_curve[-1][1]:.4f}" if r.dev_curve else "",
                         f"{r.train_seconds:.0f}", f"{r.decode_seconds:.0f}",
                         *(f"{_scaled(m, r.scores[m]):.2f}" if m in r.scores else "" for m in METRICS)])
    return out.getvalue().encode()


def results_markdown(results: Sequence[Any], settings: Any, banner: str, *, notes: str,
                     n_train: int, n_dev: int, n_test: int, wall_seconds: float, recipe: str,
                     label_smoothing: float,
                     references: Sequence[Sequence[str]], mrs: Sequence[str],
                     images: tuple[str, str] = ("loss_curves.png", "solo_lambda.png")) -> bytes:
    lines = [
        "# SmolLM2-135M: does the chain learn on real pretrained weights?",
        "",
        f"**{banner}.**",
        "",
        f"Training: {n_train} dev-set pairs (the last {settings.holdout_mrs} dev MRs held out; dev loss on "
        f"{n_dev} of their pairs), {settings.steps} steps of batch {settings.batch_size}, linear warm-up "
        f"({settings.warmup_fraction:.0%}) and decay, label smoothing {label_smoothing:g}, CPU. Test: the first "
        f"{n_test} test MRs (the peft anchor decodes with transformers' `generate`); {recipe}. "
        f"Learning rates: LoRA {settings.lr['lora']:g}, Solo {settings.lr['solo']:g}. "
        f"Wall time, the lanes summed: {wall_seconds / 60:.1f} min.",
        "",
        "| lane | trainable | dev loss start → end | train s | decode s | " + " | ".join(METRICS) + " |",
        "|---|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for r in results:
        curve = f"{r.dev_curve[0][1]:.3f} → {r.dev_curve[-1][1]:.3f}" if r.dev_curve else ""
        cells = [f"{_scaled(m, r.scores[m]):.2f}" if m in r.scores else "" for m in METRICS]
        lines.append(f"| {LANE_TITLES.get(r.lane, r.lane)} | {r.trainable:,} | {curve} | "
                     f"{_train_time(r)} | {r.decode_seconds:.0f} | " + " | ".join(cells) + " |")
    lines += ["", "Dev-loss curves (held-out pairs, per target token, no smoothing):", ""]
    for r in results:
        if len(r.dev_curve) > 1:
            lines.append(f"- {r.lane}: " + ", ".join(f"{s}: {v:.3f}" for s, v in r.dev_curve))
    lines += ["", f"![dev loss]({images[0]})", "", f"![Solo diagnostics]({images[1]})", ""]
    lines += ["## Findings", "", notes.strip(), "", "## First test MRs", ""]
    for i, mr in enumerate(mrs[:5]):
        lines.append(f"- **MR:** {mr}")
        for r in results:
            lines.append(f"  - {r.lane}: {r.predictions[i] if i < len(r.predictions) else ''}")
        lines.append(f"  - reference: {references[i][0]}")
    return ("\n".join(lines) + "\n").encode()


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def loss_curves_png(results: Sequence[Any], banner: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for r in results:
        if len(r.dev_curve) > 1:
            ax.plot([s for s, _ in r.dev_curve], [v for _, v in r.dev_curve], marker="o", label=r.lane)
        elif r.dev_curve:
            ax.axhline(r.dev_curve[0][1], color="gray", linestyle=":", label=f"{r.lane} (untrained)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("held-out dev loss (nats / target token)")
    ax.set_title(banner, fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def diagnostics_png(records: Sequence[dict[str, float]], banner: str) -> bytes:
    """Per-connection λ and ‖λ·v‖ against the step, and the shared encoder/decoder norms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=100)
    steps = [r["step"] for r in records]
    keys = sorted({k for r in records for k in r if k.startswith("solo/D")},
                  key=lambda k: (k.rsplit("/", 1)[1], int(k.split("/")[1][1:].split("-")[0])))
    for key in keys:
        block, what = key.split("/")[1], key.rsplit("/", 1)[1]
        axis = {"lambda": axes[0], "gate_norm": axes[1]}.get(what)
        if axis is not None:
            axis.plot(steps, [r.get(key, float("nan")) for r in records], label=block, linewidth=1)
    for name in ("encoder_norm", "decoder_norm"):
        axes[2].plot(steps, [r.get(f"solo/{name}", float("nan")) for r in records], label=name)
    for axis, title in zip(axes, ("λ per connection", "‖λ·v‖ per connection", "shared encoder / decoder ‖·‖_F"), strict=True):
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("optimiser step")
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    axes[2].legend(fontsize=7)
    fig.suptitle(banner, fontsize=8)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data
