"""The built-in datasets: where each is looked for, which layouts it may have, how to get it."""
from __future__ import annotations

from dataclasses import dataclass

from .layouts import CIFAR10_PICKLES, CIFAR100_PICKLES, FASHION_MNIST_IDX, IMAGE_FOLDER, TINY_IMAGENET, Layout

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and read one named dataset.

    In every data folder searched, the folder itself, then ``folder_names`` under it, then
    ``archive_names`` under it are tried, in that order."""

    name: str
    layouts: tuple[Layout, ...]
    folder_names: tuple[str, ...]
    archive_names: tuple[str, ...]
    augment: bool
    how_to_get: str
    downloadable: bool = False  # through torchvision, with download=True / --download


SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("digits", (), (), (), augment=False, how_to_get="it ships inside spiketandem"),
    DatasetSpec("cifar10", (CIFAR10_PICKLES, IMAGE_FOLDER),
                ("cifar-10-batches-py", "cifar10", "cifar-10", "cifar10-jpeg"),
                ("cifar-10-python.tar.gz", "cifar10-jpeg.tar.gz"), augment=True, downloadable=True,
                how_to_get="pass download=True (CLI: --download) to fetch it with torchvision, or point data_dir "
                           "(--data-dir) at a copy or at a .tar.gz of one"),
    DatasetSpec("cifar100", (CIFAR100_PICKLES, IMAGE_FOLDER), ("cifar-100-python", "cifar100", "cifar-100"),
                ("cifar-100-python.tar.gz",), augment=True, downloadable=True,
                how_to_get="pass download=True (CLI: --download) to fetch it with torchvision, or point data_dir "
                           "(--data-dir) at a copy or at a .tar.gz of one"),
    DatasetSpec("tiny-imagenet", (TINY_IMAGENET,), ("tiny-imagenet-200", "tiny-imagenet"),
                ("tiny-imagenet-200.zip", "tiny-imagenet-200.tar.gz"), augment=True,
                how_to_get=f"download {TINY_IMAGENET_URL} (no automatic download) and put the zip, or the "
                           "unpacked tiny-imagenet-200/ folder, in data_dir (--data-dir)"),
    DatasetSpec("fashion-mnist", (FASHION_MNIST_IDX,), ("fashion-mnist", "FashionMNIST/raw", "fashion_mnist"), (),
                augment=False, downloadable=True,
                how_to_get="on Debian/Ubuntu `apt-get install dataset-fashion-mnist` (puts it in "
                           "/usr/share/datasets/fashion-mnist/), or pass download=True (CLI: --download) to fetch "
                           "it with torchvision, or point data_dir (--data-dir) at the IDX files"),
    DatasetSpec("imagefolder", (IMAGE_FOLDER,), (), (), augment=True,
                how_to_get="pass data_dir (--data-dir) pointing at a folder with train/<class>/ and test/<class>/ "
                           "(or val/<class>/) sub-folders of equally sized images"),
)}

IMAGE_DATASETS: tuple[str, ...] = tuple(SPECS)  # every dataset a run can name: registry.DATASETS

# official release archives: a file with one of these names must have this md5
KNOWN_ARCHIVE_MD5 = {
    "cifar10-jpeg.tar.gz": "dab9011423fd02e2d44b297cac6116c4",
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
}
