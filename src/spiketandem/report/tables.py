"""Text tables: the console accuracy table and Markdown tables for reports."""
from __future__ import annotations

import re


def accuracy_table(teacher_acc: float | None, acc_by_T: dict) -> str:
    """A plain-text table: teacher vs student accuracy per time window."""
    lines = [f"{'model':<10}{'T':>6}{'accuracy':>12}{'gap':>10}", "-" * 38]
    if teacher_acc is not None:
        lines.append(f"{'teacher':<10}{'-':>6}{100 * teacher_acc:>11.2f}%{'':>10}")
    for T, acc in sorted(acc_by_T.items(), key=lambda kv: int(kv[0])):
        gap = f"{100 * (acc - teacher_acc):+.2f}" if teacher_acc is not None else ""
        lines.append(f"{'student':<10}{int(T):>6}{100 * acc:>11.2f}%{gap:>10}")
    return "\n".join(lines)


_CELL_SPECIAL = re.compile(r"([\\`*\[\]<>|])")


def _cell(value) -> str:
    """A value as table-cell text that renders as itself: no link, no HTML, no broken column."""
    text = "–" if value is None or value == "" else str(value).replace("\n", " ")
    return _CELL_SPECIAL.sub(r"\\\1", text)


def markdown_table(header: list[str], rows: list[list], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` is one of l/r/c per column (default: l then r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(_cell(h) if h else "" for h in header) + " |",
             "| " + " | ".join(rule[a] for a in align) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(value, digits: int = 2) -> str | None:
    return None if value is None else f"{100 * value:.{digits}f}%"


def num(value, fmt: str = ".3g") -> str | None:
    return None if value is None else format(value, fmt)


def si(value) -> str | None:
    """1234567 -> '1.23 M'."""
    if value is None:
        return None
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {suffix}"
    return f"{value:.3g}"


def synops_convention(summary: dict) -> str | None:
    """The SynOps convention of a run summary's ratios ("exact" or "standard", metrics/synops.py); None for
    a run without SynOps (an ANN).  Summaries written before the choice existed counted exact."""
    if not summary.get("acc_by_T"):
        return None
    return summary.get("synops_convention") or "exact"


def synops_column(summaries: list[dict], header: str = "SynOps ratio", fmt: str = ".3g") -> tuple[str, list]:
    """A table column of the summaries' ``synops_ratio`` that names its convention: in the header where
    every run with SynOps shares one ("SynOps ratio (exact)"), else beside each value ("0.25 (standard)");
    a run without SynOps (an ANN: MACs against MACs) shows its ratio plainly."""
    conventions = [synops_convention(s) for s in summaries]
    shared = {c for c in conventions if c is not None}
    one = shared.pop() if len(shared) == 1 else None
    cells = [None if s.get("synops_ratio") is None
             else num(s["synops_ratio"], fmt) + ("" if one or c is None else f" ({c})")
             for s, c in zip(summaries, conventions)]
    return (f"{header} ({one})" if one else header), cells
