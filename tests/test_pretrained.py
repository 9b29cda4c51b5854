"""Teachers named ``pretrained:NAME``: resolved to the package's own files, in every door that takes a teacher."""
import json
import shutil
from pathlib import Path

import pytest
import torch

import spiketandem
from spiketandem import teachers
from spiketandem.cli import main
from spiketandem.errors import SpiketandemError


@pytest.fixture
def shipped(tmp_path, monkeypatch, digits_teacher):
    """A package folder of shipped teachers holding the digits teacher as ``digits-cnn-digits``."""
    folder = tmp_path / "pretrained"
    folder.mkdir()
    shutil.copyfile(digits_teacher, folder / "digits-cnn-digits.pt")
    (folder / "digits-cnn-digits.json").write_text(json.dumps({"command": "spiketandem teacher", "seed": 0}))
    monkeypatch.setattr(teachers, "PRETRAINED_FOLDER", folder)
    return folder


def test_a_shipped_name_is_its_package_file_and_other_names_stay_paths(shipped, tmp_path):
    assert teachers.pretrained_names() == ["digits-cnn-digits"]
    assert teachers.teacher_file("pretrained:digits-cnn-digits") == shipped / "digits-cnn-digits.pt"
    assert teachers.teacher_file(tmp_path / "t.pt") == tmp_path / "t.pt"
    assert teachers.teacher_file(shipped) == shipped / "teacher.pt"  # a folder names its teacher.pt
    assert teachers.pretrained_record("digits-cnn-digits")["seed"] == 0


def test_an_unknown_shipped_name_lists_the_shipped_ones(shipped):
    with pytest.raises(SpiketandemError, match="no shipped teacher is called 'resnet99'; the shipped teachers: "
                                               "pretrained:digits-cnn-digits$"):
        teachers.teacher_file("pretrained:resnet99")


def test_the_api_loads_a_shipped_teacher_as_the_file_it_names(shipped, digits_teacher):
    model, record = spiketandem.load_teacher("pretrained:digits-cnn-digits")
    same, _ = teachers.load_teacher(digits_teacher)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(model(x), same(x))
    assert record["arch"] == "digits-cnn"


def test_a_student_of_a_shipped_teacher_records_its_name_and_copies_its_file(shipped, digits_teacher, tmp_path, capsys):
    out = tmp_path / "student"
    main(["train", "--teacher", "pretrained:digits-cnn-digits", "--epochs", "1", "--T", "2", "--eval-T", "2",
          "--n-train", "256", "--quiet", "--out", str(out)])
    assert "teacher: pretrained:digits-cnn-digits" in (out / "config.yaml").read_text()
    assert (out / "teacher.pt").read_bytes() == (shipped / "digits-cnn-digits.pt").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["teacher_acc"] == torch.load(digits_teacher, weights_only=True)["accuracy"]


def test_shipping_a_teacher_run_writes_its_file_and_how_it_was_made(digits_teacher, tmp_path):
    import hashlib
    target = teachers.ship_teacher(Path(digits_teacher).parent, "digits-cnn-digits", tmp_path)
    assert target.read_bytes() == Path(digits_teacher).read_bytes()
    record = json.loads((tmp_path / "digits-cnn-digits.json").read_text())
    accuracy = torch.load(digits_teacher, weights_only=True)["accuracy"]
    assert record["test_accuracy"] == accuracy and record["arch"] == "digits-cnn" and record["seed"] == 0
    assert record["settings"]["epochs"] == 15 and record["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert record["software"]["torch"] == torch.__version__ and record["epoch_seconds_median"] > 0


SHARED_CIFAR10 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def test_the_shipped_resnet20_teacher_is_the_file_its_record_describes():
    import hashlib
    assert "resnet20-cifar10" in teachers.pretrained_names()
    record = teachers.pretrained_record("resnet20-cifar10")
    path = teachers.teacher_file("pretrained:resnet20-cifar10")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    _, meta = spiketandem.load_teacher("pretrained:resnet20-cifar10")  # weights_only, checked, finite
    assert (meta["arch"], meta["width"], meta["act_clip"], meta["dataset"]) == ("resnet20", 1.0, 2.0, "cifar10")
    assert meta["accuracy"] == record["test_accuracy"] and record["data"]["md5"] == "dab9011423fd02e2d44b297cac6116c4"
    assert record["command"].startswith("spiketandem teacher ") and record["seed"] == 0


def test_the_shipped_resnet20_teacher_scores_its_recorded_accuracy_on_cifar10():
    """The whole CIFAR-10 test set (the JPEG copy it was measured on, ../shared/data), as the run measured it."""
    from spiketandem.config import make_config
    from spiketandem.data.feeding import evaluation_batches
    from spiketandem.workflow import prepare
    record = teachers.pretrained_record("resnet20-cifar10")
    model, _ = spiketandem.load_teacher("pretrained:resnet20-cifar10")
    layout = torch.channels_last if record["settings"]["channels_last"] else torch.contiguous_format
    cfg, data, _, device = prepare(make_config({"dataset": "cifar10", "data_dir": str(SHARED_CIFAR10),
                                                "arch": "resnet20", "channels_last": record["settings"]["channels_last"]}))
    model = model.to(memory_format=layout)
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in evaluation_batches(data, cfg, device))
    assert correct / len(data.test_y) == record["test_accuracy"]
