"""Reports from run folders: figures (``plots``), tables, the T sweep, and the Markdown/HTML document.

The names below are imported on first use (PEP 562): the `report` command's parser, and
``spiketandem report --help``, need neither matplotlib nor torch."""
from __future__ import annotations

from ..lazy import lazy_exports
from typing import TYPE_CHECKING

# public name -> the submodule that defines it
_EXPORTS = {
    **dict.fromkeys(("plot_bars", "plot_layer_rates", "plot_learning_curve", "plot_learning_curves",
                     "plot_ops_by_layer", "plot_raster", "plot_rate_histograms", "plot_T_sweep"), "plots"),
    **dict.fromkeys(("SWEEP_T", "sweep_rows", "write_T_sweep"), "sweep"),
    **dict.fromkeys(("build_report", "load_run_data"), "build"),
    "Document": "document",
    **dict.fromkeys(("accuracy_table", "markdown_table"), "tables"),
}
__all__ = ["plot_learning_curve", "plot_learning_curves", "plot_T_sweep", "plot_layer_rates", "plot_rate_histograms",
           "plot_raster", "plot_ops_by_layer", "plot_bars", "accuracy_table", "markdown_table", "write_T_sweep",
           "sweep_rows", "SWEEP_T", "build_report", "load_run_data", "Document"]

if TYPE_CHECKING:
    from .build import build_report, load_run_data
    from .document import Document
    from .plots import (plot_bars, plot_layer_rates, plot_learning_curve, plot_learning_curves, plot_ops_by_layer,
                        plot_raster, plot_rate_histograms, plot_T_sweep)
    from .sweep import SWEEP_T, sweep_rows, write_T_sweep
    from .tables import accuracy_table, markdown_table


__getattr__ = lazy_exports(__name__, _EXPORTS)
