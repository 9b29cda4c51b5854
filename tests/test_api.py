"""The Python API is the CLI's training loop (``train.fit``) on the caller's own data: same seed, same
data -> identical weights; sequential LTL and PTL follow their lifecycle; students round-trip through
their own file."""
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from spiketandem import api, load_student
from spiketandem.config import make_config
from spiketandem.data.feeding import evaluation_batches
from spiketandem.errors import SpiketandemError
from spiketandem.models import build_model
from spiketandem.teachers import load_teacher
from spiketandem.workflow import prepare, train_student
from spiketandem.runs import RunFolder

SMALL = dict(dataset="digits", arch="digits-cnn", n_train=256, n_test=128, batch_size=64, device="cpu",
             progress=False)

CASES = {  # rule -> settings of both paths
    "ltl-offline": dict(T=4, epochs=2),
    "ltl-offline-sequential": dict(rule="ltl-offline", T=4, epochs=2, schedule="sequential"),
    "ltl-online": dict(T=4, epochs=2, online_warmup_steps=1),
    "ptl": dict(T=2, epochs=3, neuron="if"),  # PTL converts one of digits-cnn's 3 layers per epoch at least
    "stbp": dict(T=4, epochs=2),
}


def _cli_and_api(tmp_path, digits_teacher, case):
    fields = dict(CASES[case])
    rule = fields.pop("rule", case)
    cfg = make_config({**SMALL, "rule": rule, "eval_T": [fields["T"]], **fields,
                       "teacher": digits_teacher if rule != "stbp" else None})
    train_student(cfg, RunFolder(tmp_path / "cli"), log=lambda *a, **k: None)
    cli_state = torch.load(tmp_path / "cli" / "student.pt", weights_only=True)["state"]["model"]
    _, data, info, _ = prepare(cfg)
    teacher = load_teacher(digits_teacher, info)[0] if rule != "stbp" else None
    student = api.train(rule, data, teacher=teacher, arch="digits-cnn" if rule == "stbp" else None,
                        batch_size=64, **fields)
    return cli_state, student.state_dict()


@pytest.mark.parametrize("case", sorted(CASES))
def test_api_trains_exactly_as_the_cli(tmp_path, digits_teacher, case):
    cli_state, api_state = _cli_and_api(tmp_path, digits_teacher, case)
    assert cli_state.keys() == api_state.keys()
    for key, value in cli_state.items():
        assert torch.equal(value, api_state[key]), key


def _digits_tensors(n_train=400):
    _, data, _, _ = prepare(make_config({**SMALL, "n_train": n_train, "n_test": 200}))
    cfg = make_config(SMALL)
    train = torch.cat([x for x, _ in evaluation_batches(data, cfg, "cpu", split="train")])
    test = torch.cat([x for x, _ in evaluation_batches(data, cfg, "cpu")])
    return train, data.train_y.clone(), test, data.test_y.clone()


def test_sequential_ltl_through_the_api_trains_every_layer_in_its_stage(digits_teacher):
    """One stage per layer (3 epochs for digits-cnn's 3 neuron layers): each layer's own weights must
    move away from the converted start (the old API numbered epochs from 1 and never trained layer 1)."""
    train_x, train_y, _, _ = _digits_tensors()
    teacher = load_teacher(digits_teacher)[0]
    start = api.train("ltl-offline", train_x, train_y, teacher=teacher, T=4, epochs=0).state_dict()
    rows = []
    student = api.train("ltl-offline", train_x, train_y, teacher=teacher, T=4, epochs=3, schedule="sequential",
                        history=rows)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    final = student.state_dict()
    assert len(student.layers) == 3
    for layer in student.layers:
        owned = [k for k in final if any(k.startswith(f"graph_module.{m}.") for m in layer.modules)
                 and final[k].is_floating_point() and "neurons." not in k]
        assert owned, layer.name
        assert any(not torch.equal(final[k], start[k]) for k in owned), f"layer {layer.name} never trained"


def test_ptl_through_the_api_trains_on_the_callers_images_and_advances(digits_teacher):
    """Labels permuted (class c -> 9 - c): a student trained on digits' own labels would score ~0 here."""
    train_x, train_y, test_x, test_y = _digits_tensors(n_train=600)
    teacher = load_teacher(digits_teacher)[0]
    flipped, flipped_test = 9 - train_y, 9 - test_y
    rows = []
    student = api.train("ptl", train_x, flipped, test=test_x, test_labels=flipped_test, teacher=teacher,
                        neuron="if", T=4, epochs=6, history=rows, ptl_patience=1)
    assert [r["stage"] for r in rows][0] == 1 and max(r["stage"] for r in rows) == 3  # stages advanced
    assert api.accuracy(student, test_x, flipped_test, T=4) > 0.5   # learned the caller's labels
    assert api.accuracy(student, test_x, test_y, T=4) < 0.2         # not digits' own


def test_api_takes_datasets_and_loaders(digits_teacher):
    train_x, train_y, test_x, test_y = _digits_tensors()
    teacher = load_teacher(digits_teacher)[0]
    rows = []
    dataset = TensorDataset(train_x, train_y)
    student = api.train_ltl(teacher, dataset, test=(test_x, test_y), T=4, epochs=1, history=rows)
    assert rows[0]["test_acc"] > 0.8
    loader = DataLoader(dataset, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    student = api.train_ltl(teacher, loader, T=4, epochs=1, augment=True)
    assert api.accuracy(student, test_x, test_y, T=4) > 0.8
    with pytest.raises(SpiketandemError, match="without labels"):
        api.train_ltl(teacher, train_x, T=4)
    with pytest.raises(SpiketandemError, match="--tet-lambda.*applies to rule"):
        api.train_ltl(teacher, train_x, train_y, T=4, tet_lambda=0.1)


def test_evaluation_takes_what_training_takes(digits_teacher):
    """accuracy, predict and synops_ratio on a Dataset, an (images, labels) pair and a DataLoader give what
    they give on the tensors."""
    train_x, train_y, test_x, test_y = _digits_tensors()
    teacher = load_teacher(digits_teacher)[0]
    student = api.train_ltl(teacher, train_x[:256], train_y[:256], T=4, epochs=1)
    dataset = TensorDataset(test_x, test_y)
    loader = DataLoader(dataset, batch_size=50)
    expected = api.accuracy(student, test_x, test_y, T=4)
    assert expected == int((api.predict(student, test_x, 4).argmax(1) == test_y).sum()) / len(test_y)
    for data in (dataset, (test_x, test_y), loader):
        assert api.accuracy(student, data, T=4) == expected
        assert torch.equal(api.predict(student, data, 4).argmax(1), api.predict(student, test_x, 4).argmax(1))
    assert api.accuracy(teacher, dataset) == api.accuracy(teacher, test_x, test_y)
    ratio = api.synops_ratio(student, teacher, test_x[:256], 4)
    assert api.synops_ratio(student, teacher, dataset, 4) == pytest.approx(ratio, rel=1e-6)
    with pytest.raises(SpiketandemError, match="without labels"):
        api.accuracy(student, test_x, T=4)


def test_student_round_trips_through_its_own_file_in_a_fresh_process(tmp_path, digits_teacher):
    """A CLI run folder's student, rebuilt with no teacher file anywhere, gives identical outputs."""
    cfg = make_config({**SMALL, "T": 4, "eval_T": [4], "epochs": 1, "teacher": digits_teacher})
    train_student(cfg, RunFolder(tmp_path / "run"), log=lambda *a, **k: None)
    (tmp_path / "run" / "teacher.pt").unlink()
    _, data, _, _ = prepare(cfg)
    x = next(iter(evaluation_batches(data, cfg, "cpu")))[0][:16]
    torch.save(x, tmp_path / "x.pt")
    here = load_student(tmp_path / "run")(x, 4)
    code = ("import sys, torch; from spiketandem import load_student; "
            "s = load_student(sys.argv[1]); x = torch.load(sys.argv[2], weights_only=True); "
            "torch.save(s(x, 4), sys.argv[3])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run"), str(tmp_path / "x.pt"),
                          str(tmp_path / "y.pt")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert torch.equal(torch.load(tmp_path / "y.pt", weights_only=True), here)


def test_api_student_saves_and_loads(tmp_path, digits_teacher):
    train_x, train_y, test_x, _ = _digits_tensors()
    teacher = load_teacher(digits_teacher)[0]
    student = api.train_ltl(teacher, train_x, train_y, T=4, epochs=1)
    path = api.save_student(student, tmp_path / "student.pt")
    with pytest.raises(SpiketandemError, match="teacher class of your own"):
        load_student(path)
    for wrong in (build_model("digits-mlp", 10, 1, 8), build_model("digits-cnn", 10, 3, 8)):
        with pytest.raises(SpiketandemError, match=r"^the teacher given does not fit the trained model .*1-channel "
                           r"8x8 images and 10 classes .*pass an instance of the class the student was trained from"):
            load_student(path, teacher=wrong)
    again = load_student(path, teacher=build_model("digits-cnn", 10, 1, 8))  # any weights: the student holds its own
    assert torch.equal(again(test_x[:8], 4), student(test_x[:8], 4))
    stbp = api.train("stbp", train_x, train_y, arch="digits-cnn", T=4, epochs=1)
    assert torch.equal(load_student(api.save_student(stbp, tmp_path / "stbp.pt"))(test_x[:8], 4),
                       stbp(test_x[:8], 4))


def test_api_run_folder_holds_what_a_cli_run_folder_holds(tmp_path, digits_teacher):
    """The same run through both doors writes the same files (but the teacher record, which a user's module
    has not), the same settings (the optimizer's values that ran, never null) and the same summary."""
    cfg = make_config({**SMALL, "rule": "ltl-offline", "T": 4, "epochs": 1, "eval_T": [4], "teacher": digits_teacher})
    cli = train_student(cfg, RunFolder(tmp_path / "cli"), log=lambda *a, **k: None)
    _, data, info, _ = prepare(cfg)
    teacher = load_teacher(digits_teacher, info)[0]
    api.train("ltl-offline", data, teacher=teacher, T=4, epochs=1, batch_size=64, out=tmp_path / "api")
    files = {folder: {p.name for p in (tmp_path / folder).iterdir()} for folder in ("cli", "api")}
    assert files["cli"] - files["api"] == {"teacher.pt"} and files["api"] <= files["cli"]
    cli_run, api_run = RunFolder(tmp_path / "cli"), RunFolder(tmp_path / "api")
    cli_cfg, api_cfg = cli_run.read_config(), api_run.read_config()
    for key in ("optimizer", "lr", "weight_decay", "lr_schedule", "T", "neuron", "reset", "seed"):
        assert api_cfg[key] == cli_cfg[key] is not None, key
    assert api_cfg["provenance"]["entry"] == "spiketandem.api.train"
    assert {"git_commit", "torch", "started", "seed"} <= set(api_cfg["provenance"])
    summary = api_run.read_json("summary.json")
    assert set(cli) - set(summary) == set() or set(cli) - set(summary) == {"memory_planned_bytes"}
    for key in ("student_acc", "acc_by_T", "synops_ratio", "test_samples", "num_classes"):
        assert summary[key] == cli[key], key
    # the CLI reports its teacher record's accuracy (the full test set); the API measures it on the test data given
    assert summary["teacher_acc"] == api.accuracy(teacher, data)


def test_api_run_folder_without_test_data_records_training_only(tmp_path, digits_teacher):
    train_x, train_y, _, _ = _digits_tensors(200)
    teacher = load_teacher(digits_teacher)[0]
    api.train("ltl-offline", train_x, train_y, teacher=teacher, T=2, epochs=1, out=tmp_path / "run")
    summary = RunFolder(tmp_path / "run").read_json("summary.json")
    assert summary["student_acc"] is None and summary["teacher_acc"] is None and summary["test_samples"] == 0
    assert summary["epochs"] == 1 and summary["train_seconds"] > 0


def test_api_refuses_an_out_folder_holding_a_run_before_any_work(tmp_path, digits_teacher):
    train_x, train_y, _, _ = _digits_tensors(200)
    teacher = load_teacher(digits_teacher)[0]
    api.train("ltl-offline", train_x, train_y, teacher=teacher, T=2, epochs=1, out=tmp_path / "run")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()}
    with pytest.raises(SpiketandemError, match=r"holds a run already.*another out="):
        api.train("ltl-offline", train_x, train_y, teacher=teacher, T=2, epochs=1, out=tmp_path / "run")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()} == before
