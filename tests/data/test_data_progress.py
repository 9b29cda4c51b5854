"""The first decode says what it reads and when it is done; later loads and test runs stay quiet."""
from __future__ import annotations

import logging
import re
import tarfile

import numpy as np
import pytest
from data_builders import write_image_tree

from spiketandem.data import DatasetFormatError, load_dataset
from spiketandem.data.events import load_event_dataset
from spiketandem.data.progress import Feedback


def _archive(tmp_path, raw):
    write_image_tree(tmp_path / "tree" / "cifar10-jpeg", raw)
    archive = tmp_path / "cifar10-jpeg-copy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree" / "cifar10-jpeg", arcname="cifar10-jpeg")
    return archive


def test_first_decode_names_what_it_reads(tmp_path, cache_dir, cifar_image_tree):
    archive = _archive(tmp_path, cifar_image_tree)
    lines: list[str] = []
    load_dataset("cifar10", archive, cache_dir=cache_dir, log=lines.append)
    assert len(lines) == 4, lines  # unpack start/end, decode start/end
    assert lines[0].startswith("unpacking ") and str(archive) in lines[0]
    assert "done in" in lines[1]
    assert lines[2].startswith("decoding cifar10 (image folder) from ") and str(archive) in lines[2]
    assert "cifar10-jpeg/" in lines[2] and str(cache_dir / "arrays") in lines[2]
    assert "done in" in lines[3] and "30 images" in lines[3]
    again: list[str] = []
    load_dataset("cifar10", archive, cache_dir=cache_dir, log=again.append)
    assert again == []  # read from the cache: nothing to say


def test_quiet_without_a_terminal_but_logged(cifar10_dir, cache_dir, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="spiketandem.data"):
        load_dataset("cifar10", cifar10_dir[0], cache_dir=cache_dir)
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # stderr is not a terminal here: no bar, no lines
    messages = [r.getMessage() for r in caplog.records if r.name == "spiketandem.data"]
    assert len(messages) == 2 and str(cifar10_dir[0]) in messages[0] and "6 files" in messages[1]


def test_bar_on_stderr_when_asked(cifar10_dir, cache_dir, capsys):
    load_dataset("cifar10", cifar10_dir[0], cache_dir=cache_dir, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert f"decoding cifar10 (CIFAR-10 python release) from {cifar10_dir[0]}" in err  # the start line
    assert "decoding cifar10: done in" in err


def test_a_failed_decode_says_no_done(cifar10_dir, cache_dir):
    folder, _ = cifar10_dir
    (folder / "data_batch_2").write_bytes(b"not a pickle")
    lines: list[str] = []
    with pytest.raises(DatasetFormatError):
        load_dataset("cifar10", folder, cache_dir=cache_dir, log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("decoding cifar10")


def test_event_conversion_names_its_folder(tmp_path):
    root = tmp_path / "DVSGesture"
    for split in ("ibmGestureTrain", "ibmGestureTest"):
        (root / split / "user01_led").mkdir(parents=True)
        np.save(root / split / "user01_led" / "3.npy", np.array([[5, 7, 1, 0.0], [6, 7, 0, 2.0]]))
    lines: list[str] = []
    load_event_dataset("dvs-gesture", tmp_path, T=2, cache_dir=tmp_path / "cache", log=lines.append)
    assert len(lines) == 2 and str(root) in lines[0] and "2 recordings" in lines[1]


def test_feedback_steps_count_their_unit():
    lines: list[str] = []
    feedback = Feedback(lines.append, bar=False)
    with feedback.step("reading x", "x", unit="file") as step:
        step.add(3)
        step.advance(1)
    assert lines[0] == "reading x" and re.fullmatch(r"x: done in \d+\.\d s, 1 file", lines[1]), lines
