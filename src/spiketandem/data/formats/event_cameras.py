"""The event-camera releases: N-MNIST, DVS128 Gesture (tonic's conversion; the published release is read by
``events.py``'s gesture-release layout) and CIFAR10-DVS, each an ``EventDatasetSpec`` with its file reader."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..aedat import read_aedat2_dvs128
from ..events import EventDatasetSpec, need_tonic
from .cifar import CIFAR10_CLASSES

_EVENT = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])


def read_nmnist(path: Path):
    """An N-MNIST ``.bin`` recording (read by tonic)."""
    ev = need_tonic().io.read_mnist_file(str(path), dtype=_EVENT)
    return ev["x"], ev["y"], ev["t"], ev["p"]


def read_gesture_npy(path: Path):
    """tonic's DVS Gesture conversion: float columns x, y, p, t (ms)."""
    raw = np.load(path)
    return raw[:, 0], raw[:, 1], np.rint(raw[:, 3] * 1000), raw[:, 2]


def read_cifar10_dvs(path: Path):
    """A CIFAR10-DVS AEDAT 2.0 DVS128 recording (``aedat.py``)."""
    need_tonic()
    return read_aedat2_dvs128(path)


SPECS = {s.name: s for s in (
    EventDatasetSpec("nmnist", (34, 34), tuple(str(d) for d in range(10)), ("NMNIST", "nmnist", "N-MNIST"),
                     ("Train", "Test"), ".bin",
                     "download N-MNIST (https://www.garrickorchard.com/datasets/n-mnist, or tonic.datasets.NMNIST"
                     "(save_to=DIR)), unzip Train.zip and Test.zip, and pass data_dir=DIR (the folder holding "
                     "Train/ and Test/, or its parent holding NMNIST/)", read_nmnist),
    EventDatasetSpec("dvs-gesture", (128, 128), tuple(str(c) for c in range(11)),
                     ("DVSGesture", "DvsGesture", "dvs-gesture"), ("ibmGestureTrain", "ibmGestureTest"), ".npy",
                     "unpack the original release (IBM's DvsGesture.tar.gz, https://research.ibm.com/interactive/"
                     "dvsgesture/) into DIR, giving DIR/DvsGesture/ with the userNN_<lighting>.aedat recordings, their "
                     "_labels.csv files, trials_to_train.txt and trials_to_test.txt; or run "
                     "tonic.datasets.DVSGesture(save_to=DIR) once for both splits (it converts the recordings to "
                     ".npy); then pass data_dir=DIR", read_gesture_npy, layout="label-files",
                     extra_layouts=("gesture-release",)),
    EventDatasetSpec("cifar10-dvs", (128, 128), CIFAR10_CLASSES, ("CIFAR10DVS", "CIFAR10-DVS", "cifar10-dvs"),
                     ("", ""), ".aedat",
                     "download the CIFAR10-DVS release (Li et al. 2017, https://figshare.com/articles/dataset/"
                     "CIFAR10-DVS_New/4724671: airplane.zip ... truck.zip), unzip each into DIR/<class>/ (AEDAT 2.0 "
                     "*.aedat files) and pass data_dir=DIR. (tonic's CIFAR10DVS download holds .aedat4 conversions, "
                     "which are not read here.)", read_cifar10_dvs, layout="unsplit"),
)}
