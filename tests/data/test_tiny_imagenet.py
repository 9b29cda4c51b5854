"""Tiny ImageNet: exactly the classes of wnids.txt, with their official indices, whatever else lies in train/."""
from __future__ import annotations

import shutil
import warnings
import zipfile

import numpy as np
import pytest
from data_builders import save_image, smooth_images
from test_data_formats import assert_matches

from spiketandem.data import DatasetFormatError, load_dataset


def _extra_folder(root, name, rng):
    """A folder in train/ that wnids.txt does not list (as in some public copies), with images."""
    for i, x in enumerate(smooth_images(rng, 2, 3, 64)):
        save_image(root / "train" / name / "images" / f"{name}_{i}.JPEG", x)


def test_extra_train_folders_are_ignored_with_one_warning(tiny_imagenet_dir, cache_dir):
    root, raw = tiny_imagenet_dir
    rng = np.random.default_rng(11)
    _extra_folder(root, "n00", rng)          # sorts first: counting it would shift every official index
    _extra_folder(root, "n04-extra", rng)
    with pytest.warns(UserWarning) as record:
        data = load_dataset("tiny-imagenet", root, cache_dir=cache_dir)
    ours = [w for w in record if "wnids.txt" in str(w.message)]
    assert len(ours) == 1
    message = str(ours[0].message)
    assert "n00" in message and "n04-extra" in message and "2 folders" in message
    assert data.num_classes == 3 and data.classes == ["salamander", "goldfish", "bullfrog"]
    assert_matches(data, raw, atol=2.0)  # the official indices: line i of wnids.txt is class i


def test_classes_follow_wnids_order(tiny_imagenet_dir, cache_dir):
    root, _ = tiny_imagenet_dir
    data = load_dataset("tiny-imagenet", root, cache_dir=cache_dir)
    assert data.train_y.tolist() == [0, 0, 1, 1, 2, 2]   # n02, n01, n03 as listed, not sorted
    assert data.test_y.tolist() == [2, 1, 0]             # val: n03, n01, n02


def test_wnids_class_without_a_folder_is_refused(tiny_imagenet_dir, cache_dir):
    root, _ = tiny_imagenet_dir
    shutil.rmtree(root / "train" / "n03")
    (root / "val" / "val_annotations.txt").write_text("val_1.JPEG\tn01\t0\t0\t63\t63\n")
    with pytest.raises(DatasetFormatError) as info:
        load_dataset("tiny-imagenet", root, cache_dir=cache_dir)
    message = str(info.value)
    assert "no folder for 1 of the 3 classes" in message and "n03" in message and "incomplete" in message


def _litter(root):
    """What macOS and hidden-file tools leave in a tree: none of it is a class or an image."""
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    for wnid in ("n01", "n02"):
        (root / "train" / wnid / "images" / f"._{wnid}_0.JPEG").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (root / "val" / "images" / "._val_0.JPEG").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (root / "train" / "__MACOSX").mkdir()
    (root / "train" / ".cache" / "images").mkdir(parents=True)


def test_macos_litter_is_skipped_without_warning(tiny_imagenet_dir, cache_dir):
    root, raw = tiny_imagenet_dir
    _litter(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # __MACOSX/ and .cache/ are not "extra class folders"
        data = load_dataset("tiny-imagenet", root, cache_dir=cache_dir)
    assert_matches(data, raw, atol=2.0)


def test_zip_made_on_a_mac(tiny_imagenet_dir, tmp_path, cache_dir):
    root, raw = tiny_imagenet_dir
    _litter(root)
    archive = tmp_path / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                arcname = f"tiny-imagenet-200/{path.relative_to(root).as_posix()}"
                zf.write(path, arcname)
                zf.writestr(f"__MACOSX/{arcname.rsplit('/', 1)[0]}/._{path.name}", b"\x00\x05\x16\x07AppleDouble")
    data = load_dataset("tiny-imagenet", archive, cache_dir=cache_dir)
    assert_matches(data, raw, atol=2.0)
