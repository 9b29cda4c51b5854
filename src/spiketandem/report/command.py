"""The `spiketandem report` command (listed in ``cli.COMMANDS``)."""
from __future__ import annotations

import json
from pathlib import Path


def register(p) -> None:
    """The arguments of `spiketandem report` (its parser, made by ``cli.build_parser``)."""
    p.description = ("Write report.md and report.html (figures as PNGs alongside; the HTML embeds them) from run "
                     "folders: a comparison table across runs, learning curves, accuracy and SynOps ratio vs T, the "
                     "accuracy-vs-SynOps front of several runs, "
                     "operations per layer, firing rates, rate histograms and a spike raster. Reads only the run "
                     "files (no model is loaded); `spiketandem eval RUN_DIR` adds the activity record to older runs.")
    p.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="run folders written by train, teacher or demo")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/report for one run, ./report for "
                   "several)")
    p.add_argument("--title", help="report title")
    p.add_argument("--json", action="store_true", help="print {markdown, html} paths as one JSON object")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> None:
    from .build import build_report
    if args.out:
        out = Path(args.out)
    else:
        out = Path(args.run_dirs[0]) / "report" if len(args.run_dirs) == 1 else Path("report")
    md, page = build_report(args.run_dirs, out, title=args.title)
    if args.json:
        print(json.dumps({"markdown": str(md), "html": str(page)}))
    else:
        print(f"report: {md}\n        {page}")
