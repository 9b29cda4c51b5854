"""Loading a model file never executes code (DESIGN.md section 4: "Files are data").

A crafted pickle is planted as every kind of model file spiketandem reads (student.pt, teacher.pt,
checkpoint.pt, RUN/teacher/*.pt, a --teacher FILE), whole or hidden under one extra key of an
otherwise valid file, and every command that loads one is run on it: each must refuse the file
with one clear line naming it, and the payload's marker file must never appear.
"""
import importlib.util
import pickle
import shutil

import pytest
import torch

import spiketandem
from spiketandem.cli import main
from spiketandem.errors import SpiketandemError
from spiketandem.teachers import load_teacher
from spiketandem.workflow import load_run
from spiketandem.runs import MODEL_FORMAT, TEACHER_FORMAT, safe_load

SMALL = ["--dataset", "digits", "--arch", "digits-mlp", "--n-train", "200", "--n-test", "100", "--quiet",
         "--device", "cpu"]
TRAIN = ["train", *SMALL, "--epochs", "1", "--teacher-epochs", "1", "--T", "2", "--eval-T", "2"]
HAS_NIR = importlib.util.find_spec("nir") is not None


class Payload:
    """Unpickling this runs ``exec``, which creates ``marker``: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny digits run (LTL student + its teacher in RUN/teacher/), trained once for this module."""
    run = tmp_path_factory.mktemp("security") / "run"
    assert main([*TRAIN, "--out", str(run)]) == 0
    return run


@pytest.fixture
def run(trained_run, tmp_path):
    """A fresh copy of the trained run, for a test to poison."""
    return shutil.copytree(trained_run, tmp_path / "run")


def plant(target, how, marker, like=None):
    """Write a code-running pickle to ``target``: the payload alone (``whole``; ``pickle``: a bare
    pickle, not torch's format), or hidden under one extra key of the valid file ``like`` (``hidden``:
    torch's zip format; ``hidden-legacy``: its legacy one)."""
    if how in ("whole", "pickle"):
        if how == "whole":
            torch.save(Payload(marker), target)
        else:
            target.write_bytes(pickle.dumps(Payload(marker)))
        return
    obj = torch.load(like or target, weights_only=True)
    obj["extra"] = Payload(marker)
    torch.save(obj, target, _use_new_zipfile_serialization=(how == "hidden"))


def EVAL(R, T):
    return ["eval", str(R), "--quiet", "--device", "cpu"]


def NOISE(R, T):
    return ["noise", str(R), "--kind", "mismatch", "--levels", "0.1", "--calibrate-epochs", "0", "--quiet",
            "--device", "cpu"]


def EXPORT(R, T):
    return ["export", str(R), str(T / "student.nir")]


def RESUME(R, T):
    return [*TRAIN, "--epochs", "2", "--out", str(R), "--resume"]


COMPARE = ["compare", *SMALL, "--rules", "ltl-offline", "--sweep", "none", "--epochs", "1", "--T", "2"]

# every command path that loads a model file: the file to poison (R/: in the run folder, T/: in a
# scratch folder), the command's arguments, and a file to remove first (so that the path is taken)
CASES = [
    pytest.param("R/student.pt", EVAL, None, id="eval-student"),
    pytest.param("R/teacher.pt", EVAL, None, id="eval-teacher"),
    pytest.param("R/student.pt", NOISE, None, id="noise-student"),
    pytest.param("R/teacher.pt", NOISE, None, id="noise-teacher"),
    pytest.param("R/student.pt", EXPORT, None, id="export-student"),
    pytest.param("R/teacher.pt", EXPORT, None, id="export-teacher"),
    pytest.param("R/checkpoint.pt", RESUME, None, id="resume-checkpoint"),
    pytest.param("R/teacher/teacher.pt", RESUME, None, id="resume-teacher"),
    # without RUN/teacher/teacher.pt, resuming resumes the teacher's own training from its checkpoint
    pytest.param("R/teacher/checkpoint.pt", RESUME, "R/teacher/teacher.pt", id="resume-teacher-checkpoint"),
    pytest.param("R/teacher/checkpoint.pt", lambda R, T: ["teacher", *SMALL, "--epochs", "2", "--out",
                                                         str(R / "teacher"), "--resume"], None, id="teacher-resume"),
    pytest.param("T/given.pt", lambda R, T: [*TRAIN, "--teacher", str(T / "given.pt"), "--out", str(T / "new")],
                 None, id="train-teacher-file"),
    pytest.param("T/given.pt", lambda R, T: [*COMPARE, "--teacher", str(T / "given.pt"), "--out", str(T / "cmp")],
                 None, id="compare-teacher-file"),
    pytest.param("T/cmp/teacher/teacher.pt", lambda R, T: [*COMPARE, "--out", str(T / "cmp")], None,
                 id="compare-own-teacher"),
]


def _in(spec, run, scratch):
    return (run if spec.startswith("R/") else scratch) / spec[2:]


@pytest.mark.parametrize("how", ["whole", "hidden", "hidden-legacy", "pickle"])
@pytest.mark.parametrize("spec,command,absent", CASES)
def test_a_code_running_file_is_refused_and_never_executed(run, tmp_path, capsys, spec, command, absent, how):
    marker, scratch = tmp_path / "MARKER", tmp_path / "scratch"
    target = _in(spec, run, scratch)
    target.parent.mkdir(parents=True, exist_ok=True)
    plant(target, how, marker, like=target if target.exists() else run / "teacher.pt")  # scratch files: teachers
    if absent:
        _in(absent, run, scratch).unlink()
    args = command(run, scratch)
    capsys.readouterr()

    code = main(args)

    err = capsys.readouterr().err
    assert not marker.exists(), "the planted pickle ran its code"
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("spiketandem: error:")]
    assert len(errors) == 1 and err.strip() == errors[0], err
    if args[0] != "export" or HAS_NIR:  # without nir, export may stop before it loads anything
        assert str(target) in errors[0], err
        # a bare pickle is not even torch's format: torch's reader stops at its framing, before any global
        assert ("refused" in errors[0] and "would run code" in errors[0] and "re-create the file" in errors[0]
                or how == "pickle" and "not a spiketandem file" in errors[0]), err


def _load_student(run):
    if not hasattr(spiketandem, "load_student"):
        pytest.skip("this version has no spiketandem.load_student")
    return spiketandem.load_student(run / "student.pt")


# the Python API's loaders: (id, the file to poison, the call)
LOADERS = [
    ("load_run-student", "student.pt", lambda run: load_run(run, device="cpu")),
    ("load_run-teacher", "teacher.pt", lambda run: load_run(run, device="cpu")),
    ("load_teacher-file", "teacher.pt", lambda run: load_teacher(run / "teacher.pt")),
    ("load_teacher-folder", "teacher.pt", lambda run: load_teacher(run)),
    ("load_student", "student.pt", _load_student),
]


@pytest.mark.parametrize("how", ["whole", "hidden"])
@pytest.mark.parametrize("name,call", [c[1:] for c in LOADERS], ids=[c[0] for c in LOADERS])
def test_the_python_loaders_refuse_a_code_running_file(run, tmp_path, name, call, how):
    marker = tmp_path / "MARKER"
    plant(run / name, how, marker)
    with pytest.raises(SpiketandemError, match=f"{name} was refused: it holds objects that would run code"):
        call(run)
    assert not marker.exists()


def test_report_reads_no_model_file(run, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    for path in run.rglob("*.pt"):
        plant(path, "hidden", marker)
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    assert not marker.exists()


def test_the_payload_does_run_code_under_a_full_pickle_load(tmp_path):
    """The check above is not vacuous: the very same file runs its code when fully unpickled."""
    marker = tmp_path / "MARKER"
    torch.save({"format": MODEL_FORMAT, "extra": Payload(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_a_file_of_the_wrong_kind_gets_one_clear_line(run, capsys):
    shutil.copyfile(run / "teacher.pt", run / "student.pt")
    assert main(["eval", str(run), "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "student.pt" in err and TEACHER_FORMAT in err and MODEL_FORMAT in err, err


def test_a_student_given_as_teacher_gets_one_clear_line(run, tmp_path, capsys):
    assert main([*TRAIN, "--teacher", str(run / "student.pt"), "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "student.pt" in err and "not a " + TEACHER_FORMAT in err, err


def test_a_file_without_a_format_is_named(run, capsys):
    torch.save({"weight": torch.zeros(2)}, run / "student.pt")
    assert main(["eval", str(run), "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "student.pt" in err and "no 'format' key" in err, err


def test_the_projects_own_files_load_weights_only(run, capsys):
    """What spiketandem writes needs nothing beyond weights_only: every file loads, eval and resume work."""
    for path in run.rglob("*.pt"):
        assert isinstance(torch.load(path, weights_only=True)["format"], str), path
    assert safe_load(run / "student.pt", "trained model", expected_format=MODEL_FORMAT)["rule"] == "ltl-offline"
    assert main(["eval", str(run), "--quiet", "--device", "cpu"]) == 0
    assert main([*TRAIN, "--epochs", "2", "--out", str(run), "--resume"]) == 0
    assert "error" not in capsys.readouterr().err
