"""Plots and tables from run folders."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def plot_learning_curve(rows: list[dict], path: Path, teacher_acc: float | None = None, title: str = "") -> None:
    """Test and train accuracy per epoch (and the training loss), with the teacher's accuracy as a line."""
    if not rows:
        return
    epochs = [r["epoch"] for r in rows]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_acc.plot(epochs, [100 * r["test_acc"] for r in rows], "o-", label="test")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in rows], "s--", alpha=0.7, label="train")
    if teacher_acc is not None:
        ax_acc.axhline(100 * teacher_acc, color="k", ls=":", label=f"teacher {100 * teacher_acc:.2f}%")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", label="total")
    for key, label in (("ce", "cross-entropy"), ("local", "local (sum of layers)")):
        if key in rows[0]:
            ax_loss.plot(epochs, [r[key] for r in rows], ".--", label=label)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss", yscale="log")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    if title:
        fig.suptitle(title)
    _save(fig, path)


def accuracy_table(teacher_acc: float | None, acc_by_T: dict) -> str:
    """A plain-text table: teacher vs student accuracy per time window."""
    lines = [f"{'model':<10}{'T':>6}{'accuracy':>12}{'gap':>10}", "-" * 38]
    if teacher_acc is not None:
        lines.append(f"{'teacher':<10}{'-':>6}{100 * teacher_acc:>11.2f}%{'':>10}")
    for T, acc in sorted(acc_by_T.items(), key=lambda kv: int(kv[0])):
        gap = f"{100 * (acc - teacher_acc):+.2f}" if teacher_acc is not None else ""
        lines.append(f"{'student':<10}{int(T):>6}{100 * acc:>11.2f}%{gap:>10}")
    return "\n".join(lines)
