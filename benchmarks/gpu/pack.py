#!/usr/bin/env python3
"""Put together what a GPU-machine run of `benchmarks/gpu/check.py` needs, and check it fits.

    python benchmarks/gpu/pack.py            # fills benchmarks/gpu/carry/, prints the sizes, exit 1 if too big

The device machine gets a copy of the working tree (tracked files and untracked files git does not
ignore) plus the ignored paths named in its call's ``carry``, 64 MiB in all; it has its own PyTorch
and Triton and no network.  So ``benchmarks/gpu/carry/`` (ignored through ``.git/info/exclude``, which
this script adds to) gets:

* ``cifar10-jpeg.tar.gz``: the CIFAR-10 JPEG archive from ``../shared/data`` (its md5 checked), for
  ``bench time-to-accuracy``;
* ``wheels/``: the pure-Python wheels the device image lacks (``WHEELS``: SpikingJelly and what it
  imports, snnTorch), fetched with ``pip download`` for CPython 3.12, for ``bench neuron``'s peers;
* ``MANIFEST.txt``: every carried file with its size and md5.

Then it adds up the tree and the carry folder and compares the total with the limit.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CARRY = REPO / "benchmarks" / "gpu" / "carry"
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
LIMIT_MIB = 64.0
# not in the device image (see the device notes' package list); pure Python, so one wheel fits every platform
WHEELS = ("spikingjelly==2.0.0", "loguru==0.7.3", "snntorch==1.0.0")
PIP_TARGET = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
              "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64"]


def known_md5(name: str) -> str | None:
    """The md5 spiketandem knows for an archive of that name (an image dataset's ``DatasetSpec.archive_md5``,
    declared by its reader under data/formats/), if any."""
    sys.path.insert(0, str(REPO / "src"))
    try:
        from spiketandem.data.registry import DATASETS
        known = {archive: digest for entry in DATASETS.values() if entry.kind == "image"
                 for archive, digest in entry.spec().archive_md5}
    finally:
        sys.path.pop(0)
    return known.get(name)


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_files(repo: Path) -> list[Path]:
    """The files that travel with the working tree: tracked, and untracked but not ignored."""
    out = []
    for extra in ([], ["--others", "--exclude-standard"]):
        listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", *extra], capture_output=True, check=True)
        out += [repo / p for p in listed.stdout.decode().split("\0") if p]
    shared = repo / "shared"   # a shared/ inside the checkout travels too
    if shared.is_dir():
        out += [p for p in shared.rglob("*") if p.is_file()]
    return out


def size_of(paths) -> int:
    total = 0
    for p in paths:
        try:
            if not p.is_symlink():
                total += p.stat().st_size
        except OSError:   # deleted but still tracked: nothing travels
            pass
    return total


def folder_bytes(folder: Path) -> int:
    return size_of(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def check_size(sizes: dict, limit_mib: float) -> tuple[bool, str]:
    """(fits, report): ``sizes`` maps a label to bytes; the total must be at most ``limit_mib`` MiB."""
    total = sum(sizes.values())
    lines = [f"  {label:<48} {n / 2**20:9.2f} MiB" for label, n in sizes.items()]
    lines.append(f"  {'total':<48} {total / 2**20:9.2f} MiB (limit {limit_mib:g} MiB)")
    fits = total <= limit_mib * 2**20
    lines.append(f"fits: {limit_mib * 2**20 - total:,.0f} bytes to spare" if fits else
                 f"TOO BIG by {total - limit_mib * 2**20:,.0f} bytes: carry less (drop wheels, or ignore big files)")
    return fits, "\n".join(lines)


def exclude_carry(repo: Path, carry: Path) -> None:
    """Make git ignore the carry folder (so it travels only when named in carry), if it is in the repo."""
    try:
        rel = carry.resolve().relative_to(repo.resolve())
    except ValueError:
        return
    path = subprocess.run(["git", "-C", str(repo), "rev-parse", "--git-path", "info/exclude"], capture_output=True,
                          text=True, check=True).stdout.strip()
    exclude = (repo / path) if not os.path.isabs(path) else Path(path)
    line = f"/{rel.as_posix()}/"
    lines = exclude.read_text().splitlines() if exclude.is_file() else []
    if line not in lines:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with open(exclude, "a") as f:
            f.write(("\n" if lines and lines[-1] else "") + line + "\n")


def fetch_wheels(dest: Path, specs) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        name, version = spec.split("==")
        if any(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl")):
            continue
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *PIP_TARGET, "-d", str(dest),
                        spec], check=True)


def pack(carry: Path, archive: Path | None, wheels: bool) -> None:
    carry.mkdir(parents=True, exist_ok=True)
    if archive is not None:
        if not archive.is_file():
            raise SystemExit(f"pack: no archive at {archive} (see ../shared/data/README.md), or pass --no-archive")
        expected = known_md5(archive.name)
        got = md5(archive)
        if expected is not None and got != expected:
            raise SystemExit(f"pack: {archive} has md5 {got}, expected {expected}: a damaged copy")
        target = carry / archive.name
        if not target.is_file() or target.stat().st_size != archive.stat().st_size or md5(target) != got:
            shutil.copyfile(archive, target)
    if wheels:
        fetch_wheels(carry / "wheels", WHEELS)
    manifest = [f"{p.relative_to(carry).as_posix()}  {p.stat().st_size}  {md5(p)}"
                for p in sorted(carry.rglob("*")) if p.is_file() and p.name != "MANIFEST.txt"]
    (carry / "MANIFEST.txt").write_text("\n".join(manifest) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, default=REPO, help="the checkout whose working tree travels")
    p.add_argument("--carry", type=Path, default=CARRY, help="folder to fill (named in the device call's carry)")
    p.add_argument("--archive", type=Path, default=ARCHIVE, help="the CIFAR-10 JPEG archive to carry")
    p.add_argument("--no-archive", action="store_true", help="carry no dataset")
    p.add_argument("--no-wheels", action="store_true", help="fetch no wheels (no network; bench neuron then "
                                                             "runs without its peers)")
    p.add_argument("--check-only", action="store_true", help="add up the sizes only; change nothing")
    p.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help="the device call's limit on what travels")
    args = p.parse_args(argv)
    if not args.check_only:
        exclude_carry(args.repo, args.carry)
        pack(args.carry, None if args.no_archive else args.archive, not args.no_wheels)
    carry_in_tree = args.carry.resolve().is_relative_to(args.repo.resolve())
    tree = [f for f in git_files(args.repo)
            if not (carry_in_tree and f.resolve().is_relative_to(args.carry.resolve()))]
    sizes = {f"working tree ({len(tree)} files)": size_of(tree)}
    for f in sorted(args.carry.rglob("*")) if args.carry.is_dir() else []:
        if f.is_file():
            sizes[f"carry: {f.relative_to(args.carry).as_posix()}"] = f.stat().st_size
    fits, report = check_size(sizes, args.limit_mib)
    print(f"what travels to the device machine (carry {args.carry}):\n{report}")
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
