"""Reports from run folders: figures (``plots``), tables, the T sweep, and the Markdown/HTML document."""
from __future__ import annotations

from .plots import (plot_bars, plot_layer_rates, plot_learning_curve, plot_learning_curves, plot_ops_by_layer,
                    plot_raster, plot_rate_histograms, plot_T_sweep)
from .sweep import SWEEP_T, sweep_rows, write_T_sweep
from .build import build_report, load_run_data
from .document import Document
from .tables import accuracy_table, markdown_table

__all__ = ["plot_learning_curve", "plot_learning_curves", "plot_T_sweep", "plot_layer_rates", "plot_rate_histograms",
           "plot_raster", "plot_ops_by_layer", "plot_bars", "accuracy_table", "markdown_table", "write_T_sweep",
           "sweep_rows", "SWEEP_T", "build_report", "load_run_data", "Document"]
