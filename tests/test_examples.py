"""The examples in examples/ run end to end on tiny data (what a user copies must work)."""
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(name: str, argv: list[str]):
    old = sys.argv
    sys.argv = [str(EXAMPLES / name), *argv]
    try:
        return runpy.run_path(str(EXAMPLES / name), run_name="example")["main"](argv)
    finally:
        sys.argv = old


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("examples") / "student.nir"
    student = _run("quickstart.py", ["--tiny", "--out", str(out)])
    return student, out


def test_quickstart_trains_evaluates_and_exports(exported):
    student, out = exported
    assert out.is_file() and len(student.layers) == 2


def test_quickstart_student_beats_chance(exported):
    from spiketandem import api
    student, _ = exported
    quick = runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="example")
    _, _, test_x, test_y = quick["digits"](250)  # the example's own held-out split
    assert api.accuracy(student, test_x, test_y, T=8) > 0.3  # 10 classes: chance is 0.1


def test_nir_in_norse_matches_reference(exported):
    _, out = exported
    norse_counts, ref_counts = _run("nir_in_norse.py", [str(out), "--T", "6"])
    assert norse_counts and {k: float(v) for k, v in norse_counts.items()} == \
        {k: float(v.sum()) for k, v in ref_counts.items()}
