"""Training log: one JSON file and a PNG of the loss curves, both rewritten atomically."""

from __future__ import annotations

from pathlib import Path

from engine.files import write_atomic, write_json_atomic

LOG_NAME = "log.json"
CURVES_NAME = "loss.png"


def write_log(run_dir: Path, log: dict) -> Path:
    """`log` = {"train": [{"step", "lr", <losses>...}], "val": [{"step", <losses>...}]}."""
    path = Path(run_dir) / LOG_NAME
    return write_json_atomic(path, log)


def write_curves(run_dir: Path, log: dict, title: str = "") -> Path:
    """Every loss term of train (raw weights) and val (EMA weights) against the step (log
    scale when positive)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(run_dir) / CURVES_NAME
    keys = sorted({k for row in log["train"] + log["val"] for k in row} - {"step", "lr", "grad_norm"})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), dpi=110, squeeze=False)
    for ax, key in zip(axes[0], keys):
        for split, style in (("train", "-"), ("val", "o-")):
            rows = [r for r in log[split] if key in r]
            if rows:
                ax.plot([r["step"] for r in rows], [r[key] for r in rows], style, markersize=3,
                        label=split + (" (EMA)" if split == "val" else ""))
        values = [r[key] for split in ("train", "val") for r in log[split] if key in r]
        ax.set_yscale("log" if min(values) > 0 else "linear")
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.legend(frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        write_atomic(path, fig.savefig)
    finally:
        plt.close(fig)
    return path
