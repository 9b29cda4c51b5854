"""Hidden files, macOS AppleDouble ``._*`` files, ``.DS_Store`` and ``__MACOSX/`` never abort a decode."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest
from data_builders import save_image, sorted_by_label, write_image_tree
from test_data_formats import assert_matches

from spiketandem.data import load_dataset
from spiketandem.data.files import is_junk

APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "  # the AppleDouble magic, then no image at all


@pytest.mark.parametrize("name, junk", [("._0001.png", True), (".DS_Store", True), ("__MACOSX", True),
                                        (".hidden", True), ("Thumbs.db", True), ("0001.png", False),
                                        ("n01443537", False), ("_underscore", False)])
def test_what_counts_as_junk(name, junk):
    assert is_junk(name) is junk


def _litter_tree(root, raw):
    """AppleDouble twins of every image, .DS_Store files, a hidden class-like folder, and __MACOSX/."""
    for image in [p for p in root.rglob("*.png")]:
        (image.parent / f"._{image.name}").write_bytes(APPLEDOUBLE)
        (image.parent / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    save_image(root / "train" / ".thumbnails" / "0000.png", raw.train_x[0])  # a hidden folder is no class
    (root / "__MACOSX" / "train" / raw.classes[0]).mkdir(parents=True)
    (root / "__MACOSX" / "train" / raw.classes[0] / "._0000.png").write_bytes(APPLEDOUBLE)
    (root / "train" / "__MACOSX").mkdir()
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


def test_image_folder_with_macos_litter(tmp_path, cache_dir, cifar_image_tree):
    root = tmp_path / "tree"
    write_image_tree(root, cifar_image_tree)
    _litter_tree(root, cifar_image_tree)
    data = load_dataset("imagefolder", root, cache_dir=cache_dir)
    assert data.classes == cifar_image_tree.classes  # no ".thumbnails", no "__MACOSX" class
    want_x, want_y = sorted_by_label(cifar_image_tree.train_x, cifar_image_tree.train_y)
    np.testing.assert_array_equal(data.train_x.numpy(), want_x)
    np.testing.assert_array_equal(data.train_y.numpy(), want_y)


def test_zip_archive_made_by_macos_archive_utility(tmp_path, cache_dir, cifar_image_tree):
    """macOS's Archive Utility adds __MACOSX/<path>/._<name> for every file, and .DS_Store files."""
    build = tmp_path / "build" / "cifar10-jpeg"
    write_image_tree(build, cifar_image_tree)
    archive = tmp_path / "cifar10.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(build.rglob("*.png")):
            arcname = f"cifar10-jpeg/{path.relative_to(build).as_posix()}"
            zf.write(path, arcname)
            zf.writestr(f"__MACOSX/{arcname.rsplit('/', 1)[0]}/._{path.name}", APPLEDOUBLE)
            zf.writestr(f"{arcname.rsplit('/', 1)[0]}/._{path.name}", APPLEDOUBLE)
        zf.writestr("cifar10-jpeg/.DS_Store", b"\x00\x00\x00\x01Bud1")
    data = load_dataset("cifar10", archive, cache_dir=cache_dir)
    assert_matches(data, cifar_image_tree)


def test_event_recordings_skip_appledouble_files(tmp_path):
    pytest.importorskip("tonic", reason="tonic parses the AEDAT 2.0 container")
    from event_builders import write_aedat2_dvs128
    from spiketandem.data.events import load_event_dataset
    from spiketandem.data.formats.cifar import CIFAR10_CLASSES

    root = tmp_path / "CIFAR10DVS"
    for k, cls in enumerate(CIFAR10_CLASSES):
        for i in range(2):
            write_aedat2_dvs128(root / cls / f"cifar10_{cls}_{i}.aedat", [k, k], [i, i], [0, 10], [1, 0])
            (root / cls / f"._cifar10_{cls}_{i}.aedat").write_bytes(APPLEDOUBLE)
        (root / cls / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    data = load_event_dataset("cifar10-dvs", tmp_path, T=1, cache_dir=tmp_path / "cache")
    assert len(data.train_y) == 10 and len(data.test_y) == 10  # 2 recordings per class, not 4
    assert int(data.train_x.sum()) == 20
