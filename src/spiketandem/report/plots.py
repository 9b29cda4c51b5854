"""The report's figures, each a PNG written atomically.  Every function takes plain data (lists and
dicts read from run folders), so figures can be redrawn without the models."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator, PercentFormatter  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]
_UMASK = os.umask(0)
os.umask(_UMASK)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; a figure is for everyone who can read the folder
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _T_axis(ax, Ts) -> None:
    """log2 axis with a tick at every window that was measured."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(Ts)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(t) for t in sorted(Ts)])
    ax.set_xlabel("time window T (steps)")


def _short(name: str, width: int = 18) -> str:
    name = str(name)
    return _plain(name if len(name) <= width else "…" + name[-(width - 1):])


def _plain(text) -> str:
    """Text drawn as itself: a ``$`` in a run or layer name must not start matplotlib's mathtext."""
    return str(text).replace("$", r"\$")


# ---- one colour per run ---------------------------------------------------------------------------

def run_colors(labels) -> dict[str, str]:
    """A stable run -> colour mapping: the i-th run (in report order) gets the i-th colour of the cycle.
    A report computes it once over all its runs and passes it (or one run's colour) to every figure, so
    a run has the same colour in each of them."""
    return {label: COLORS[i % len(COLORS)] for i, label in enumerate(dict.fromkeys(labels))}


def _colors_for(labels, colors: dict | None) -> dict[str, str]:
    mapping = run_colors(labels)
    return {**mapping, **{k: v for k, v in (colors or {}).items() if k in mapping}}


# ---- accuracy axes: chance level, zoom and resolution -------------------------------------------

CHANCE_STYLE = dict(color="0.45", ls="-.", lw=1.0)


def chance_level(num_classes) -> float | None:
    """1 / num_classes (the accuracy of guessing), None when the class count is unknown."""
    try:
        n = int(num_classes)
    except (TypeError, ValueError):
        return None
    return 1.0 / n if n > 1 else None


def resolution_points(test_size) -> float | None:
    """Percentage points one test image is worth: 100 / test-set size (None if unknown)."""
    try:
        n = int(test_size)
    except (TypeError, ValueError):
        return None
    return 100.0 / n if n > 0 else None


def _accuracy_axis(ax, chance: float | None = None, test_size: int | None = None, axis: str = "y") -> str:
    """Clamp an accuracy axis (in %) to [0, 100], draw the chance line where it is in view, and note
    under the plot where the axis is zoomed (it does not start at 0), where the chance level lies when
    out of view, and what one test image is worth in points.  Returns the note (empty: none needed)."""
    get, set_, line = ((ax.get_ylim, ax.set_ylim, ax.axhline) if axis == "y" else
                       (ax.get_xlim, ax.set_xlim, ax.axvline))
    low, high = get()
    low, high = max(low, 0.0), min(high, 100.5)
    set_(low, high)
    notes = []
    if low > 1.0:
        notes.append(f"{axis} axis starts at {low:.3g}%, not 0")
    if chance is not None:
        if low <= 100 * chance <= high:
            line(100 * chance, **CHANCE_STYLE, label=f"chance {100 * chance:.3g}%")
        else:
            notes.append(f"chance {100 * chance:.3g}% is below it")
    points = resolution_points(test_size)
    if points is not None:
        notes.append(f"1 test image = {points:.2g} points")
    note = "; ".join(notes)
    if note:  # under the x label, small: the axes keep their size
        ax.annotate(note, xy=(0.5, 0), xycoords=ax.xaxis.label, xytext=(0, -3), textcoords="offset points",
                    ha="center", va="top", fontsize=7.5, color="0.3")
    return note


# ---- training -----------------------------------------------------------------------------------

def _points(rows: list[dict], key: str) -> list[tuple]:
    """(epoch, value) of the rows that hold a number under ``key`` (a run without test data has none)."""
    return [(r["epoch"], r[key]) for r in rows
            if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]


def plot_learning_curve(rows: list[dict], path: Path, teacher_acc: float | None = None, title: str = "",
                        color: str | None = None, chance: float | None = None, test_size: int | None = None) -> None:
    """Test and train accuracy per epoch (and the training loss), with the teacher's accuracy as a line.

    ``color``: the run's colour (all its lines, told apart by style); ``chance``: 1/classes, drawn (or
    noted) on the accuracy axis; ``test_size``: images in the test set, for the axis note."""
    if not rows:
        return
    color = color or COLORS[0]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for key, style, alpha, label in (("test_acc", "o-", 1.0, "test"), ("train_acc", "s--", 0.55, "train (running)")):
        pts = _points(rows, key)
        if pts:
            ax_acc.plot([e for e, _ in pts], [100 * v for _, v in pts], style, color=color, alpha=alpha, label=label)
    if teacher_acc is not None:
        ax_acc.axhline(100 * teacher_acc, color="k", ls=":", label=f"teacher {100 * teacher_acc:.2f}%")
    _accuracy_axis(ax_acc, chance, test_size)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(fontsize=8)
    for key, label, style in (("train_loss", "total", "o-"), ("ce", "cross-entropy", "^--"),
                              ("local", "local (sum of layers)", "v:")):
        pts = _points(rows, key)
        if pts:
            ax_loss.plot([e for e, _ in pts], [v for _, v in pts], style, ms=4 if key != "train_loss" else 6,
                         color=color, alpha=1.0 if key == "train_loss" else 0.75, label=label)
    losses = [r[k] for r in rows for k in ("train_loss", "ce", "local") if isinstance(r.get(k), (int, float))]
    wide = bool(losses) and min(losses) > 0 and max(losses) / min(losses) > 10  # log scale only where it spans decades
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss" + (" (log scale)" if wide else ""),
                yscale="log" if wide else "linear")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)
    for ax in (ax_acc, ax_loss):
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(_plain(title))
    _save(fig, path)


def plot_learning_curves(curves: dict[str, list[dict]], path: Path, teacher_acc: float | None = None,
                         title: str = "test accuracy per epoch", colors: dict[str, str] | None = None,
                         chance: float | None = None, test_size: int | None = None) -> None:
    """Several runs' test accuracy per epoch on one axis (the LTL paper's Fig. 3); ``colors`` maps a
    run to its colour (default ``run_colors`` in the given order).  Rows with a ``test_acc_std`` (a mean
    over seeds) get a band of one standard deviation."""
    colors = _colors_for(curves, colors)
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for label, rows in curves.items():
        pts = _points(rows or [], "test_acc")
        if pts:
            ax.plot([e for e, _ in pts], [100 * v for _, v in pts], "o-", ms=3, color=colors[label],
                    label=_plain(label))
        band = [(r["epoch"], r["test_acc"], r["test_acc_std"]) for r in rows or []
                if r.get("test_acc") is not None and r.get("test_acc_std") is not None]
        if band:
            ax.fill_between([e for e, _, _ in band], [100 * (v - sd) for _, v, sd in band],
                            [100 * (v + sd) for _, v, sd in band], color=colors[label], alpha=0.2, lw=0)
    if teacher_acc is not None:
        ax.axhline(100 * teacher_acc, color="k", ls=":", label=f"teacher {100 * teacher_acc:.2f}%")
    _accuracy_axis(ax, chance, test_size)
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=_plain(title))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


# ---- accuracy and operations vs T ---------------------------------------------------------------

def plot_T_sweep(acc: dict[str, dict], ratio: dict[str, dict], path: Path, teacher_acc: float | None = None,
                 energy: dict[str, dict] | None = None, title: str = "", colors: dict[str, str] | None = None,
                 chance: float | None = None, test_size: int | None = None, convention: str | None = None,
                 acc_std: dict[str, dict] | None = None) -> None:
    """Two panels (the LTL paper's Fig. 2): (a) accuracy vs T, (b) SynOps ratio vs T.

    ``acc`` and ``ratio`` map a series label to {T: value}; ``acc_std`` (optional) to {T: the accuracy's
    standard deviation over seeds}, drawn as error bars; ``energy`` (optional) to {T: energy ratio},
    drawn dashed in panel (b); ``colors`` a series to its colour (default ``run_colors``); ``convention``
    the SynOps convention every ratio uses, named in panel (b)'s title (None: the series labels say it)."""
    colors = _colors_for(list(acc) + list(ratio), colors)
    fig, (ax_a, ax_r) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    Ts = set()
    for label, values in acc.items():
        pts = sorted((int(T), v) for T, v in values.items() if v is not None)
        if pts:
            Ts |= {t for t, _ in pts}
            spread = (acc_std or {}).get(label, {})
            errors = [100 * (spread.get(str(t)) or 0.0) for t, _ in pts] if any(spread.values()) else None
            ax_a.errorbar([t for t, _ in pts], [100 * v for _, v in pts], yerr=errors, fmt="o-", capsize=3,
                          color=colors[label], label=_plain(label))
    if teacher_acc is not None:
        ax_a.axhline(100 * teacher_acc, color="k", ls=":", label=f"ANN teacher {100 * teacher_acc:.2f}%")
    _accuracy_axis(ax_a, chance, test_size)  # accuracy lives in [0, 100]
    ax_a.set(ylabel="test accuracy (%)", title="(a) accuracy vs time window")
    ax_a.grid(alpha=0.3)
    ax_a.legend(fontsize=8)
    annotate = sum(1 for values in ratio.values() if values) == 1  # value labels only where they cannot collide
    for label, values in ratio.items():
        pts = sorted((int(T), v) for T, v in values.items() if v is not None)
        if not pts:
            continue
        Ts |= {t for t, _ in pts}
        color = colors[label]
        e = sorted((int(T), v) for T, v in (energy or {}).get(label, {}).items() if v is not None)
        ax_r.plot([t for t, _ in pts], [v for _, v in pts], "o-", color=color,
                  label=_plain(f"{label}: operations" if e else label))
        for t, v in pts if annotate else []:
            ax_r.annotate(f"{v:.2f}x", (t, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7,
                          color=color)
        if e:
            ax_r.plot([t for t, _ in e], [v for _, v in e], "s--", color=color, alpha=0.6,
                      label=_plain(f"{label}: energy"))
    ax_r.axhline(1.0, color="k", ls=":", label="ANN teacher (MACs = 1)")
    named = f" ({convention})" if convention else ""
    ax_r.set(ylabel="student / teacher", title=f"(b) SynOps ratio{named} vs time window")
    ax_r.set_ylim(0, ax_r.get_ylim()[1] * 1.12)  # room for the value labels
    ax_r.grid(alpha=0.3)
    ax_r.legend(fontsize=8)
    if Ts:
        for ax in (ax_a, ax_r):
            _T_axis(ax, Ts)
    if title:
        fig.suptitle(_plain(title))
    _save(fig, path)


# ---- per-layer activity ---------------------------------------------------------------------------

def plot_layer_rates(layers: dict[str, dict], path: Path, T: int | None = None, title: str = "",
                     color: str | None = None) -> None:
    """Per neuron layer (network order, top to bottom; named as the caller keys them, the report uses
    the teacher module path): mean firing rate and fraction of silent neurons, in the run's colour."""
    color = color or COLORS[0]
    names = list(layers)
    if not names:
        return
    y = list(range(len(names)))
    fig, (ax_r, ax_s) = plt.subplots(1, 2, figsize=(10, 0.45 * len(names) + 1.6), sharey=True, layout="constrained")
    rates = [layers[n]["rate"] for n in names]
    silent = [layers[n]["silent"] for n in names]
    ax_r.barh(y, rates, color=color)
    for yi, r in zip(y, rates):
        ax_r.text(r, yi, f" {r:.3f}", va="center", fontsize=8)
    ax_r.set(xlabel="spikes per neuron per time step", title="mean firing rate")
    ax_r.set_xlim(0, max(rates + [1e-3]) * 1.25)
    ax_s.barh(y, [100 * s for s in silent], color=color, alpha=0.45, hatch="//", edgecolor=color)
    for yi, s in zip(y, silent):
        ax_s.text(100 * s, yi, f" {100 * s:.1f}%", va="center", fontsize=8)
    ax_s.set(xlabel="neurons silent for the whole window (%)", title="silent neurons", xlim=(0, 110))
    ax_r.set_yticks(y, [_short(n, 28) for n in names])
    ax_r.invert_yaxis()
    ax_r.set_ylabel("teacher module\n(input side at top)")
    for ax in (ax_r, ax_s):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(_plain(title) or (f"firing per layer (T = {T})" if T else "firing per layer"))
    _save(fig, path)


def plot_rate_histograms(histograms: dict[str, list], path: Path, title: str = "", color: str | None = None) -> None:
    """Small multiples, one per layer: fraction of (sample, neuron) pairs per spike count in the window."""
    color = color or COLORS[0]
    names = list(histograms)
    if not names:
        return
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, names):
        h = histograms[name]
        T = len(h) - 1
        ax.bar([k / T for k in range(T + 1)], h, width=0.8 / T, color=color)
        ax.set_yscale("log")
        ax.set_ylim(max(min([v for v in h if v > 0] + [1.0]) / 2, 1e-6), 1.5)
        ax.set_title(_short(name, 28), fontsize=9)
        ax.set_xlabel("firing rate (spikes / T)", fontsize=8)
        ax.set_ylabel("fraction of neurons", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(_plain(title) or "firing-rate histograms (all evaluated samples)")
    _save(fig, path)


def plot_raster(raster: dict[str, dict], path: Path, title: str = "", color: str | None = None) -> None:
    """Spike raster of one sample: one band per layer (input side at top), one row per shown neuron, all
    in the run's colour (the bands are told apart by their labels and separators)."""
    if not raster:
        return
    color = color or COLORS[0]
    rows = sum(max(1, len(band["times"])) for band in raster.values())
    fig, ax = plt.subplots(figsize=(8, min(14.0, 0.035 * rows + 0.25 * len(raster) + 1.6)), layout="constrained")
    offset, ticks, labels, T = 0, [], [], 1
    for i, (name, band) in enumerate(raster.items()):
        T = max(T, band["T"])
        times = band["times"]
        xs = [t + 1 for row in times for t in row]
        ys = [offset + j for j, row in enumerate(times) for _ in row]
        ax.scatter(xs, ys, marker="s", s=6, color=color, linewidths=0)
        height = max(1, len(times))
        ticks.append(offset + height / 2)
        labels.append(f"{_short(name, 24)}\n{len(times)} shown of {band['active']} active\n({band['neurons']} neurons)")
        offset += height + 4
        if i < len(raster) - 1:
            ax.axhline(offset - 2.5, color="0.75", lw=0.8)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_ylim(offset - 3, -1)
    ax.set_xlim(0.5, T + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("time step")
    ax.grid(axis="x", alpha=0.2)
    ax.set_title(_plain(title) or "spike raster of one test image (per layer: random neurons among those that fired)")
    if not any(band["times"] for band in raster.values()):
        ax.text(0.5, 0.5, "no neuron fired", transform=ax.transAxes, ha="center")
    _save(fig, path)


def plot_ops_by_layer(ops: dict[str, dict], path: Path, T: int | None = None, title: str = "",
                      color: str | None = None, convention: str | None = None) -> None:
    """Per conv/linear layer (by module path): student SynOps (counted in ``convention``, named in the
    legend) and MACs vs teacher MACs, per inference (log scale); the student's bars in the run's colour
    (MACs hatched), the teacher's grey."""
    color = color or COLORS[0]
    names = list(ops)
    if not names:
        return
    y = list(range(len(names)))
    h = 0.27
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.6), layout="constrained")
    series = (("teacher_macs", "teacher MACs", dict(color="0.55")),
              ("synops", "student SynOps (AC" + (f", {convention})" if convention else ")"), dict(color=color)),
              ("macs", "student MACs (analog input)", dict(color=color, alpha=0.45, hatch="//", edgecolor=color)))
    for k, (key, label, style) in enumerate(series):
        vals = [max(ops[n].get(key) or 0, 0) for n in names]
        if any(vals):
            ax.barh([yi + (k - 1) * h for yi in y], [v if v > 0 else float("nan") for v in vals], height=h,
                    label=label, **style)
    for yi, n in zip(y, names):
        if ops[n].get("ratio") is not None:
            ax.text(1.01, yi, f"{ops[n]['ratio']:.2f}x", va="center", fontsize=8, transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ax.set_yticks(y, [_short(n, 28) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("operations per inference (log scale); right: student / teacher")
    ax.set_title(_plain(title) or (f"operations per layer (T = {T})" if T else "operations per layer"))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def plot_bars(values: dict[str, float], path: Path, xlabel: str, title: str, reference: float | None = None,
              reference_label: str = "", percent: bool = False, colors: dict[str, str] | None = None,
              chance: float | None = None, test_size: int | None = None) -> None:
    """One horizontal bar per run (comparison across runs), each in its run's colour; with ``percent``
    (an accuracy) the axis is zoomed, and says so, with the chance level and one image's worth."""
    names = list(values)
    if not names:
        return
    colors = _colors_for(names, colors)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.4), layout="constrained")
    vals = [values[n] if values[n] is not None else float("nan") for n in names]
    shown = [100 * v for v in vals] if percent else vals
    ax.barh(range(len(names)), shown, color=[colors[n] for n in names])
    for i, v in enumerate(shown):
        if v == v:
            ax.text(v, i, f" {v:.2f}{'%' if percent else ''}", va="center", fontsize=8,
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=0.5))
    if reference is not None:
        ax.axvline(100 * reference if percent else reference, color="k", ls=":", label=reference_label)
    ax.set_yticks(range(len(names)), [_short(n, 30) for n in names])
    ax.invert_yaxis()
    if percent:
        ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
        finite = [v for v in shown if v == v]
        ax.set_xlim(min(finite + [100]) * 0.9 if finite else 0, 101)
        _accuracy_axis(ax, chance, test_size, axis="x")
    ax.set(xlabel=xlabel, title=_plain(title))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def plot_front(points: list[dict], path: Path, teacher_acc: float | None = None, title: str = "",
               colors: dict[str, str] | None = None, chance: float | None = None, test_size: int | None = None,
               convention: str | None = None) -> None:
    """The accuracy-vs-operations front: one point per run (``points``: dicts with ``method``, ``acc``,
    ``synops_ratio`` and a short ``label`` such as "T=4" or "T=4, p=0.5"), one colour per method, each
    method's points joined in order of operations (error bars: a point's ``acc_std`` over seeds, where
    given); the teacher at (1, its accuracy) and as a dotted line.
    ``convention``: the SynOps convention of every point's ratio, named on the x axis."""
    methods = list(dict.fromkeys(p["method"] for p in points))
    colors = _colors_for(methods, colors)
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for method in methods:
        pts = sorted((p for p in points if p["method"] == method and p.get("synops_ratio") is not None
                      and p.get("acc") is not None), key=lambda p: p["synops_ratio"])
        if not pts:
            continue
        errors = [100 * (p.get("acc_std") or 0.0) for p in pts] if any(p.get("acc_std") for p in pts) else None
        ax.errorbar([p["synops_ratio"] for p in pts], [100 * p["acc"] for p in pts], yerr=errors, fmt="o-",
                    capsize=3, color=colors[method], label=_plain(method))
        for p in pts:
            ax.annotate(_plain(p.get("label", "")), (p["synops_ratio"], 100 * p["acc"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7, color=colors[method])
    if teacher_acc is not None:
        ax.axhline(100 * teacher_acc, color="k", ls=":", label=f"ANN teacher {100 * teacher_acc:.2f}%")
        ax.plot([1.0], [100 * teacher_acc], "k*", markersize=10)
    ax.set_xlim(left=0)
    ax.set(xlabel="SynOps / teacher MACs (per sample" + (f", {convention})" if convention else ")"),
           ylabel="test accuracy (%)",
           title=_plain(title or "accuracy vs operations"))
    _accuracy_axis(ax, chance, test_size)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
