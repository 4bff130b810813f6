"""A user's own data files (datasets/files/): real data written the way users write theirs
(HAPT windows as CSV, Fashion-MNIST as PNG folders, sklearn digits as .npz, a hook), read
back and checked against the original arrays exactly; and every bad file refused with a
one-line error naming the file and the sample, having changed nothing.

The models' input quantization comes from the committed backbones (models/*.tflite).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import datasets
from datasets import DataError, digits, fashion_mnist, hapt
from datasets.files import UserData, is_path_spec, load
from pytools.model.tflite_import import import_tflite

ROOT = Path(__file__).resolve().parents[1]


def _model(name: str) -> dict:
    """The committed model's input as load() takes it: shape, outputs, type, quantization."""
    g = import_tflite((ROOT / "models" / f"{name}.tflite").read_bytes(), name)
    t, out = g.tensor(g.inputs[0]), g.tensor(g.outputs[0])
    return {
        "input_shape": tuple(t.shape[1:]),
        "classes": int(np.prod(out.shape)),
        "input_dtype": t.dtype,
        "input_scale": float(t.quant.scale[0]),
        "input_zero_point": int(t.quant.zero_point[0]),
    }


@pytest.fixture(scope="module")
def fashion_model() -> dict:
    return _model("fashion_mbv2")


@pytest.fixture(scope="module")
def hapt_model() -> dict:
    return _model("hapt_cnn1d")


DIGITS = {  # a small int8 model on 8x8 grey digits
    "input_shape": (8, 8, 1),
    "classes": 10,
    "input_dtype": "int8",
    "input_scale": 1 / 255,
    "input_zero_point": -128,
}


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits, float32 [n, 8, 8, 1] in [0, 1] (read once; callers do not modify)."""
    return digits.load()


def _snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file below folder: size, mtime and content digest (to show nothing changed)."""
    return {
        str(p.relative_to(folder)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha1(p.read_bytes()).hexdigest(),
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------- real data, round trips


def test_hapt_windows_as_csv(tmp_path: Path, hapt_model: dict) -> None:
    """HAPT windows as a user's CSV (a header, activity names as labels, the label column
    first): loaded back bit for bit, labels mapped by name, split seeded and stratified."""
    part = datasets.load_split("hapt", "user21").finetune
    n = len(part)
    flat = part.x.reshape(n, -1)  # (1, 128, 6) -> 768 values per row, time-major
    names = [f"{c}@{t}" for t in range(hapt.WINDOW) for c in hapt.COLUMNS]
    lines = ["activity," + ",".join(names)]
    lines += [
        f"{hapt.ACTIVITIES[y]}," + ",".join(f"{v:.9g}" for v in row)
        for row, y in zip(flat, part.y, strict=True)
    ]
    f = tmp_path / "hapt_user21.csv"
    f.write_text("\n".join(lines) + "\n")

    u = load(str(f), **hapt_model, label_column="activity", seed=3)
    assert u.format == "csv" and not u.quantized and u.classes == 6
    assert u.label_names == tuple(sorted(hapt.ACTIVITIES))
    held = np.array(u.split_info["held_out_indices"])
    fine = np.setdiff1d(np.arange(n), held)
    assert u.split_info["method"] == "stratified" and u.split_info["seed"] == 3
    # exactly the original windows and activities, in file order within each part
    for idx, p in ((fine, u.split.finetune), (held, u.split.held_out)):
        assert p.x.shape == (len(idx), 1, 128, 6) and p.x.dtype == np.float32
        assert np.array_equal(p.x, part.x[idx])
        assert [u.label_names[c] for c in p.y] == [hapt.ACTIVITIES[c] for c in part.y[idx]]
        built_in = datasets.quantize(
            part.x[idx], hapt_model["input_scale"], hapt_model["input_zero_point"], "int8"
        )
        assert np.array_equal(u.model_inputs(p), built_in)  # what the board receives
    # each class holds out round(20 %) of its windows (classes in the label map's order)
    counts = np.bincount(part.y, minlength=6)
    expected = [int(np.floor(counts[hapt.ACTIVITIES.index(a)] * 0.2 + 0.5)) for a in u.label_names]
    assert u.split_info["held_out_per_class"] == expected and sum(expected) == len(held)
    # the clip count is the model's: values beyond the int8 input range
    q = np.round(part.x / np.float32(hapt_model["input_scale"])) + hapt_model["input_zero_point"]
    clipped = int(np.count_nonzero((q < -128) | (q > 127)))
    assert any(note.startswith(f"{clipped:,} of {part.x.size:,} input values clip") for note in u.notes)
    # the same file and seed give the same split; another seed another
    again = load(str(f), **hapt_model, label_column="activity", seed=3)
    assert again.split_info == u.split_info
    assert load(str(f), **hapt_model, label_column=0, seed=4).split_info["held_out_indices"] != held.tolist()


def _write_pngs(root: Path, x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> None:
    for i in idx:
        folder = root / fashion_mnist.LABELS[y[i]].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.round(x[i, :, :, 0] * 255).astype(np.uint8)
        Image.fromarray(pixels, "L").save(folder / f"{i:05d}.png")


def test_fashion_mnist_as_png_folders(tmp_path: Path, fashion_model: dict) -> None:
    """Fashion-MNIST test images written as train/ and test/ class folders of PNGs: the same
    uint8 pixels, so the same model inputs as the built-in loader gives the same model."""
    x, y = fashion_mnist.load("test")
    train_idx = datasets.stratified(y, 12, seed=1)
    rest = np.setdiff1d(np.arange(len(y)), train_idx)
    test_idx = rest[datasets.stratified(y[rest], 4, seed=2)]
    _write_pngs(tmp_path / "train", x, y, train_idx)
    _write_pngs(tmp_path / "test", x, y, test_idx)
    (tmp_path / "train" / "Bag" / "notes.txt").write_text("taken in the shop")
    before = _snapshot(tmp_path)

    u = load(str(tmp_path), **fashion_model)
    names = tuple(sorted(n.replace("/", "-") for n in fashion_mnist.LABELS))
    assert u.format == "images" and u.label_names == names and u.classes == 10
    assert u.split_info == {
        "method": "given",
        "parts": "train/ and test/ folders",
        "finetune": 120,
        "held_out": 40,
    }
    for part, idx in ((u.split.finetune, train_idx), (u.split.held_out, test_idx)):
        # the folders are read class by class (sorted names), then file by file
        order = sorted(idx, key=lambda i: (names.index(fashion_mnist.LABELS[y[i]].replace("/", "-")), i))
        assert np.array_equal(part.x, x[order])  # pixel / 255, exactly as the built-in loader
        built_in = datasets.quantize(  # as the session quantizes a built-in data set's samples
            x[order], fashion_model["input_scale"], fashion_model["input_zero_point"], "int8"
        )
        assert np.array_equal(u.model_inputs(part), built_in)  # what the session sends the board
        assert [names[c] for c in part.y] == [fashion_mnist.LABELS[y[i]].replace("/", "-") for i in order]
    assert any("skipped 1 files that are not images (.txt)" in n for n in u.notes)
    assert any(n.startswith("0 of 125,440 input values clip") for n in u.notes)  # 160 x 784
    assert _snapshot(tmp_path) == before  # loading wrote nothing


def _order(idx: np.ndarray, y: np.ndarray, u: UserData) -> tuple[np.ndarray, np.ndarray]:
    """The original indices of a split image folder's fine-tuning and held-out samples (the
    folder is read class by class, sorted names, then by file name: the zero-padded index)."""
    names = [fashion_mnist.LABELS[c].replace("/", "-") for c in range(10)]
    order = np.array(sorted(idx, key=lambda i: (u.label_names.index(names[y[i]]), i)))
    held = np.array(u.split_info["held_out_indices"])
    return np.delete(order, held), order[held]


def test_image_folder_converts_and_resizes(tmp_path: Path) -> None:
    """Grey PNGs for an RGB model: three equal channels; bigger JPEGs for a 14x14 model:
    resized (bilinear), with a note; the tool splits a plain class-folder tree."""
    x, y = fashion_mnist.load("test")
    idx = datasets.stratified(y, 5, seed=0)
    _write_pngs(tmp_path / "png", x, y, idx)
    rgb = load(str(tmp_path / "png"), input_shape=(28, 28, 3), classes=10, input_dtype="int8",
               input_scale=1 / 255, input_zero_point=-128)  # fmt: skip
    both = np.concatenate([rgb.split.finetune.x, rgb.split.held_out.x])
    assert both.shape == (50, 28, 28, 3)
    assert np.array_equal(both[..., 0], both[..., 1]) and np.array_equal(both[..., 0], both[..., 2])
    assert any("50 images L to RGB" in n for n in rgb.notes)
    assert rgb.split_info["method"] == "stratified" and rgb.split_info["held_out_per_class"] == [1] * 10

    # the pixel scale follows the model's input range: a model on raw pixels (scale 1, zero
    # point -128, like the ResNet-8 in ../shared/models) gets pixel - 128; one on [-1, 1]
    # gets pixel / 127.5 - 1; fashion_mbv2 ([0, 1]) got pixel / 255 above
    raw_model = {**IMAGE, "input_scale": 1.0, "input_zero_point": -128}
    r = load(str(tmp_path / "png"), **raw_model)
    pixels = np.round(x * 255).astype(np.int16)
    held = r.split.held_out
    assert np.array_equal(r.model_inputs(held), (pixels[_order(idx, y, r)[1]] - 128).astype(np.int8))
    assert (
        f"{tmp_path / 'png'}: pixels become the pixel values 0 .. 255 (the range the model's input covers)"
        in r.notes
    )
    signed = load(str(tmp_path / "png"), **{**IMAGE, "input_scale": 1 / 128, "input_zero_point": 0})
    assert np.array_equal(
        signed.split.held_out.x, pixels[_order(idx, y, signed)[1]].astype(np.float32) / 127.5 - 1
    )
    assert any("pixels become pixel / 127.5 - 1 in [-1, 1]" in n for n in signed.notes)

    for i in idx[:20]:
        folder = tmp_path / "jpg" / str(y[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(x[i, :, :, 0] * 255).astype(np.uint8)).resize((56, 42)).save(
            folder / f"{i}.JPG"
        )
    small = load(str(tmp_path / "jpg"), input_shape=(1, 14, 14, 1), classes=10, input_dtype="float32",
                 input_scale=0.0, input_zero_point=0)  # fmt: skip
    assert small.split.finetune.x.shape[1:] == (1, 14, 14, 1)
    assert any(
        "images resized from 56x42 to 14x14 (aspect ratio not kept: stretched)" in n for n in small.notes
    )


def test_phone_photos_upright_and_progress(tmp_path: Path) -> None:
    """A phone's JPEG stored on its side with EXIF orientation 6 loads upright (bright top,
    dark bottom as displayed), its size as displayed in the note; progress counts images."""
    shown = np.zeros((400, 300), np.uint8)  # displayed: 300 wide, 400 high, top half white
    shown[:200] = 255
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)  # 400 x 300 on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(3):
            stored.save(tmp_path / c / f"IMG_{i}.jpg", exif=exif.tobytes(), quality=95)
    calls: list[tuple[int, int]] = []
    u = load(str(tmp_path), **IMAGE, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 6) for i in range(1, 7)]
    img = u.split.finetune.x[0, :, :, 0]
    assert img[:12].min() > 0.9 and img[16:].max() < 0.1  # upright, not on its side
    assert f"{tmp_path}: 6 images resized from 300x400 to 28x28 (aspect ratio not kept: stretched)" in u.notes


def test_digits_npz(tmp_path: Path) -> None:
    """sklearn digits as .npz: x, y split by the tool; x_train... kept; int8 inputs kept."""
    x, y = _digits()
    np.savez(tmp_path / "d.npz", x=x[:, :, :, 0].astype(np.float64), y=y)  # (n, 8, 8) floats
    u = load(str(tmp_path / "d.npz"), **DIGITS)
    assert not u.quantized and u.label_names is None and u.classes == 10
    assert len(u.split.finetune) + len(u.split.held_out) == len(y) and len(u.split.pretrain) == 0
    held = np.array(u.split_info["held_out_indices"])
    assert np.array_equal(u.split.held_out.x, x[held]) and np.array_equal(u.split.held_out.y, y[held])
    assert u.sha256 == hashlib.sha256((tmp_path / "d.npz").read_bytes()).hexdigest()
    assert not any("reshaped" in n for n in u.notes)  # (8, 8) -> (8, 8, 1) cannot be misread
    assert u.record()["split"] is u.split_info and u.record()["format"] == "npz"

    q = datasets.quantize(x, 1 / 255, -128, "int8")
    np.savez(tmp_path / "q.npz", x_train=q[:1000], y_train=y[:1000], x_test=q[1000:], y_test=y[1000:])
    v = load(str(tmp_path / "q.npz"), **DIGITS)
    assert v.quantized and v.split.finetune.x.dtype == np.int8
    assert np.array_equal(v.split.finetune.x, q[:1000]) and np.array_equal(v.split.held_out.y, y[1000:])
    assert v.split_info["method"] == "given"

    # one-hot labels (Keras style); string labels as a numpy string array
    np.savez(tmp_path / "o.npz", x=x[:200], y=np.eye(10, dtype=np.float32)[y[:200]])
    o = load(str(tmp_path / "o.npz"), **DIGITS)
    assert np.array_equal(o.split.held_out.y, y[np.array(o.split_info["held_out_indices"])])
    words = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    np.savez(tmp_path / "s.npz", x=x[:200], y=words[y[:200]])
    s = load(str(tmp_path / "s.npz"), **DIGITS)
    assert s.label_names == tuple(sorted(words))
    assert np.array_equal(
        np.array(s.label_names)[s.split.held_out.y], words[y[np.array(s.split_info["held_out_indices"])]]
    )


def test_csv_variants(tmp_path: Path) -> None:
    """What spreadsheets and pandas write: no header; pandas' default (row index column,
    numbered header); semicolons; tabs. Each reads back the same digits."""
    x, y = _digits()
    x, y = x[:100], y[:100]
    flat = [",".join(f"{v:g}" for v in row) for row in x.reshape(100, -1)]
    files = {
        "plain.csv": [f"{r},{c}" for r, c in zip(flat, y, strict=True)],
        "pandas.csv": [",".join(["", *map(str, range(64)), "label"])]
        + [f"{i},{r},{c}" for i, (r, c) in enumerate(zip(flat, y, strict=True))],
        "semicolons.csv": [f"{r.replace(',', ';')};{c}" for r, c in zip(flat, y, strict=True)],
        "tabs.tsv": ["\t".join([*(f"f{j}" for j in range(64)), "y"])]
        + [f"{r.replace(',', chr(9))}\t{c}" for r, c in zip(flat, y, strict=True)],
    }
    for name, lines in files.items():
        (tmp_path / name).write_text("\n".join(lines) + "\n")
        u = load(str(tmp_path / name), **DIGITS)
        held = np.array(u.split_info["held_out_indices"])
        assert np.array_equal(u.split.held_out.x, x[held]) and np.array_equal(u.split.held_out.y, y[held]), (
            name
        )
        assert ("row index (as pandas writes): dropped" in " ".join(u.notes)) == (name == "pandas.csv")
    # a decimal comma gets its own hint
    (tmp_path / "comma.csv").write_text("a;b;label\n0,5;1;0\n1;0,25;1\n")
    with pytest.raises(DataError, match=r"line 2, column 0 \('a'\): '0,5', not a number \(a decimal comma\?"):
        load(str(tmp_path / "comma.csv"), **{**DIGITS, "input_shape": (2,)})


def test_quantization_and_overlap_notes(tmp_path: Path) -> None:
    """Inputs on the wrong scale are named: raw 0..16 digit values for a model trained on
    [0, 1] clip; for a model whose int8 step is 1.6 they use 11 levels. Held-out samples
    identical to training ones are counted."""
    x, y = _digits()
    np.savez(tmp_path / "raw.npz", x=x * 16, y=y)
    u = load(str(tmp_path / "raw.npz"), **DIGITS)
    over_1 = int(np.count_nonzero(np.round(x * 16 * 255) - 128 > 127))
    assert over_1 > 0.01 * x.size
    assert any(
        n.startswith(f"{over_1:,} of {x.size:,}") and n.endswith("(e.g. pixels / 255)?") for n in u.notes
    )
    coarse = load(str(tmp_path / "raw.npz"), **{**DIGITS, "input_scale": 16 / 10})  # 0..16 in steps of 1.6
    assert "the inputs span only 11 of 256 quantization levels (-128 .. -118)" in " ".join(coarse.notes)

    np.savez(tmp_path / "leak.npz", x_train=x[:500], y_train=y[:500], x_test=x[450:600], y_test=y[450:600])
    leak = load(str(tmp_path / "leak.npz"), **{**DIGITS, "input_dtype": np.int8})  # a numpy type is fine too
    train_rows = {r.tobytes() for r in x[:500]}
    # 50 shared by construction, more if some digits repeat exactly
    dups = sum(r.tobytes() in train_rows for r in x[450:600])
    assert any(n.startswith(f"{dups} held-out samples are identical to training samples") for n in leak.notes)
    assert dups >= 50


def test_train_and_val_folders(tmp_path: Path) -> None:
    """train/ and val/ (a labelling tool's export): val/ is held out; a class missing from
    it is noted; a CSV whose every line ends with a delimiter loses that empty column."""
    x, y = fashion_mnist.load("test")
    _write_pngs(tmp_path / "train", x, y, datasets.stratified(y, 2, seed=0))
    _write_pngs(tmp_path / "val", x, y, datasets.stratified(y, 1, seed=1)[:8])  # classes 0-7 only
    u = load(str(tmp_path), **IMAGE)
    assert u.split_info["parts"] == "train/ and val/ folders" and len(u.split.held_out) == 8
    assert any(n.startswith("classes [") and "have no held-out samples" in n for n in u.notes)

    rows = [
        ",".join(f"{v:g}" for v in r) + f",{c},"
        for r, c in zip(_digits()[0][:30].reshape(30, -1), _digits()[1][:30], strict=True)
    ]
    (tmp_path / "trailing.csv").write_text("\n".join(rows) + "\n")
    t = load(str(tmp_path / "trailing.csv"), **DIGITS)
    assert len(t.split.finetune) + len(t.split.held_out) == 30
    assert any("the empty last column is ignored" in n for n in t.notes)


def test_fewer_classes_and_balance_notes(tmp_path: Path) -> None:
    x, y = _digits()
    keep = np.flatnonzero(y < 4)
    keep = keep[(y[keep] != 3) | (np.cumsum(y[keep] == 3) <= 10)]  # class 3: 10 samples only
    np.savez(tmp_path / "f.npz", x=x[keep], y=y[keep])
    u = load(str(tmp_path / "f.npz"), **DIGITS)
    assert u.classes == 4
    assert "data set has 4 classes, model has 10 outputs: trains on the first 4" in u.notes
    assert any(
        n.startswith(
            "heavy class imbalance in fine-tuning part: class 1 has 146 samples, class 3 only 8 (18x)"
        )
        for n in u.notes
    )


def test_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook by file path and by module name, returning a dict and a tuple; it leaves
    sys.path and sys.modules as they were."""
    x, y = _digits()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "my_front_end.py").write_text(
        "import numpy as np\nfrom pathlib import Path\nHERE = Path(__file__).parent\n"
        "def load():\n    return {'x': np.load(HERE / 'x.npy'), 'y': np.load(HERE / 'y.npy').tolist()}\n"
        "def split():\n    x, y = load()['x'], np.load(HERE / 'y.npy')\n"
        "    return x[:900], y[:900], x[900:], y[900:]\n"
    )
    path_before, modules_before = list(sys.path), set(sys.modules)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as in a user's shell: still no __pycache__
    u = load(f"{tmp_path}/my_front_end.py:load", **DIGITS)
    assert u.format == "hook" and u.sha256 is None and len(u.split.finetune) + len(u.split.held_out) == len(y)
    assert sys.path == path_before and set(sys.modules) == modules_before
    monkeypatch.chdir(tmp_path)
    v = load("my_front_end:split", **DIGITS)
    assert np.array_equal(v.split.finetune.x, x[:900]) and np.array_equal(v.split.held_out.y, y[900:])
    assert sys.path == path_before and not sys.dont_write_bytecode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_front_end.py", "x.npy", "y.npy"]
    sys.modules.pop("my_front_end", None)


def test_is_path_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in datasets.names():
        assert not is_path_spec(name)
    assert not is_path_spec("digts")  # a typo gets "unknown dataset", not "no such file"
    for spec in ("my.npz", "data/rec.CSV", "./digits", "~/x", "audio_front:load", "a/b.py:load", "/tmp"):
        assert is_path_spec(spec), spec
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recordings").mkdir()
    (tmp_path / "digits").mkdir()
    assert is_path_spec("recordings") and not is_path_spec("digits")


def test_datasets_files_does_not_import_pytools() -> None:
    for f in (ROOT / "datasets" / "files").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "pytools" for n in names), f


# ---------------------------------------------------------------- bad files


def _digits_npz(path: Path, **change: object) -> None:
    x, y = _digits()
    arrays = {"x": x[:300], "y": y[:300]}
    arrays.update(change)
    np.savez(path, **arrays)


def _csv(path: Path, text: str) -> None:
    path.write_text(text)


def _good_csv_rows(n: int = 20) -> list[str]:
    x, y = _digits()
    return [",".join(f"{v:g}" for v in x[i].reshape(-1)) + f",{y[i]}" for i in range(n)]


def _png_tree(root: Path, per_class: int = 3) -> None:
    x, y = fashion_mnist.load("test")
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in np.flatnonzero(y == c)[:per_class]:
            Image.fromarray(np.round(x[i, :, :, 0] * 255).astype(np.uint8)).save(
                root / f"class{c}" / f"{i}.png"
            )


def _nan_x() -> np.ndarray:
    x = _digits()[0][:300].copy()
    x[17, 3, 4, 0] = np.nan
    return x


def _corrupt_png(root: Path) -> None:
    _png_tree(root)
    victim = sorted((root / "class1").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:60])


def _empty_class_folder(root: Path) -> None:
    _png_tree(root)
    (root / "class3").mkdir()


IMAGE = {
    "input_shape": (28, 28, 1),
    "classes": 10,
    "input_dtype": "int8",
    "input_scale": 1 / 255,
    "input_zero_point": -128,
}

BAD: dict[str, tuple[str, Callable[[Path], None], dict, str]] = {
    # name: (file name, writer, extra load() arguments, expected message (regex))
    "wrong shape": (
        "d.npz",
        lambda p: _digits_npz(p, x=np.zeros((300, 9, 9), np.float32)),
        {},
        r"d\.npz: x: samples of shape \(9, 9\) \(81 values\), but the model takes \(8, 8, 1\) "
        r"\(64 values\): give",
    ),
    "label out of range": (
        "d.npz",
        lambda p: _digits_npz(p, y=np.r_[np.arange(10).repeat(10), 12, np.arange(199) % 10]),
        {},
        r"d\.npz: sample 100 \(x\[100\], y\[100\]\): label 12 is out of range: the model has 10 outputs "
        r"\(labels 0 \.\. 9\): relabel",
    ),
    "1-based labels": (
        "d.npz",
        lambda p: _digits_npz(p, y=_digits()[1][:300] + 1),
        {},
        r"label 10 is out of range: .* relabel your classes 0 \.\. 9 \(yours run 1 \.\. 10: subtract 1\)",
    ),
    "negative label": (
        "d.npz",
        lambda p: _digits_npz(p, y=np.r_[-1, np.arange(299) % 10]),
        {},
        r"sample 0 \(x\[0\], y\[0\]\): label -1 is out of range",
    ),
    "fractional label": (
        "d.csv",
        lambda p: _csv(p, "\n".join([*_good_csv_rows(5), _good_csv_rows(6)[5].rsplit(",", 1)[0] + ",2.5"])),
        {},
        r"d\.csv: line 6: label 2\.5 in label column 64 is not a whole number",
    ),
    "too many string classes": (
        "d.csv",
        lambda p: _csv(
            p, "\n".join(r.rsplit(",", 1)[0] + f",c{i}" for i, r in enumerate(_good_csv_rows(11)))
        ),
        {},
        r"d\.csv: 11 classes \('c0', 'c1', .*\) but the model has 10 outputs: drop classes",
    ),
    "NaN in a CSV": (
        "d.csv",
        lambda p: _csv(p, "\n".join([*_good_csv_rows(7), "nan," + _good_csv_rows(8)[7].split(",", 1)[1]])),
        {},
        r"d\.csv: line 8: column 0 is NaN \(1 samples have such values\): fill or drop",
    ),
    "NaN in an npz": (
        "d.npz",
        lambda p: _digits_npz(p, x=_nan_x()),
        {},
        r"sample 17 \(x\[17\], y\[17\]\): value 28 \(flat index\) is NaN",
    ),
    "inf in an npz": (
        "d.npz",
        lambda p: _digits_npz(p, x=np.where(np.arange(64).reshape(8, 8, 1) == 5, np.inf, _digits()[0][:300])),
        {},
        r"sample 0 \(x\[0\], y\[0\]\): value 5 \(flat index\) is inf \(300 samples",
    ),
    "empty class (labels)": (
        "d.npz",
        lambda p: _digits_npz(p, y=np.where(_digits()[1][:300] == 2, 3, _digits()[1][:300])),
        {},
        r"d\.npz: class 2 has no samples in the data \(y; classes present: 0, 1, 3, 4, .*\): "
        r"every class 0 \.\. 9 needs",
    ),
    "empty class folder": (
        "imgs",
        _empty_class_folder,
        {"kw": IMAGE},
        r"imgs/class3: no images in this class folder",
    ),
    "corrupt image": (
        "imgs",
        _corrupt_png,
        {"kw": IMAGE},
        r"imgs/class1/\d+\.png: not a readable image \(.*\): re-export it or delete it",
    ),
    "missing label column": (
        "d.csv",
        lambda p: _csv(p, "\n".join([",".join(f"px{j}" for j in range(64)) + ",digit", *_good_csv_rows(5)])),
        {"label_column": "label"},
        r"d\.csv: has no column 'label'; its columns are 'px0', 'px1', .* \.\.\.: "
        r"name the label column with --label-column",
    ),
    "label column by name without header": (
        "d.csv",
        lambda p: _csv(p, "\n".join(_good_csv_rows(5))),
        {"label_column": "label"},
        r"d\.csv: has no header row, so there is no column named 'label': give the label column's index",
    ),
    "label column index out of range": (
        "d.csv",
        lambda p: _csv(p, "\n".join(_good_csv_rows(5))),
        {"label_column": 65},
        r"d\.csv: label column 65 does not exist: rows have 65 columns",
    ),
    "non-numeric feature": (
        "d.csv",
        lambda p: _csv(
            p,
            "\n".join(
                [*_good_csv_rows(3), ",".join(["0", "0", "dark", *_good_csv_rows(4)[3].split(",")[3:]])]
            ),
        ),
        {},
        r"d\.csv: line 4, column 2: 'dark', not a number: features must be numbers",
    ),
    "empty cell": (
        "d.csv",
        lambda p: _csv(p, "\n".join([*_good_csv_rows(3), "0,," + _good_csv_rows(4)[3][4:]])),
        {},
        r"d\.csv: line 4, column 1: an empty cell: features must be numbers",
    ),
    "ragged row": (
        "d.csv",
        lambda p: _csv(p, "\n".join([*_good_csv_rows(3), "1,2,3"])),
        {},
        r"d\.csv: line 4 has 3 fields, line 1 has 65: every row needs the same columns",
    ),
    "empty label": (
        "d.csv",
        lambda p: _csv(p, "\n".join([*_good_csv_rows(3), _good_csv_rows(4)[3].rsplit(",", 1)[0] + ","])),
        {},
        r"d\.csv: line 4: the label \(column 64\) is empty",
    ),
    "empty csv": (
        "d.csv",
        lambda p: _csv(p, "\n \n"),
        {},
        r"d\.csv: the file is empty: expected one row per sample",
    ),
    "header only": ("d.csv", lambda p: _csv(p, "a,b,label\n"), {}, r"d\.csv: has a header but no data rows"),
    "empty npz": (
        "d.npz",
        lambda p: p.write_bytes(b""),
        {},
        r"d\.npz: the file is empty: save your arrays with numpy\.savez",
    ),
    "not a zip": (
        "d.npz",
        lambda p: np.save(p.with_suffix(".npy"), np.zeros(3)) or p.with_suffix(".npy").rename(p),
        {},
        r"d\.npz: not an \.npz \(a single \.npy array\)",
    ),
    "x/y lengths differ": (
        "d.npz",
        lambda p: _digits_npz(p, y=_digits()[1][:299]),
        {},
        r"d\.npz: x has 300 samples but y has 299 labels: they must pair one to one",
    ),
    "train/test lengths differ": (
        "d.npz",
        lambda p: np.savez(
            p,
            x_train=np.zeros((5, 8, 8, 1)),
            y_train=np.arange(5),
            x_test=np.zeros((4, 8, 8, 1)),
            y_test=np.arange(3),
        ),
        {},
        r"d\.npz: x_test has 4 samples but y_test has 3 labels",
    ),
    "missing keys": (
        "d.npz",
        lambda p: np.savez(p, x_train=np.zeros(3), y=np.zeros(3)),
        {},
        r"d\.npz: arrays x_train, y; it lacks x: expected x, y",
    ),
    "pickled objects": (
        "d.npz",
        lambda p: np.savez(p, x=np.zeros((3, 64)), y=np.array([1, "a", None], dtype=object)),
        {},
        r"d\.npz: holds Python objects \(pickled arrays\)",
    ),
    "uint8 for an int8 model": (
        "d.npz",
        lambda p: _digits_npz(p, x=np.zeros((300, 8, 8, 1), np.uint8)),
        {},
        r"d\.npz: x is uint8 but the model takes int8 inputs: give real values as floats",
    ),
    "text inputs": (
        "d.npz",
        lambda p: _digits_npz(p, x=np.full((300, 64), "a")),
        {},
        r"d\.npz: x holds <U1 values, not real numbers",
    ),
    "one-hot that is not": (
        "d.npz",
        lambda p: _digits_npz(p, y=np.ones((300, 10))),
        {},
        r"d\.npz: sample 0 \(x\[0\], y\[0\]\): y is 2-D \(300, 10\) but not one-hot",
    ),
    "unknown suffix": (
        "d.json",
        lambda p: p.write_text("{}"),
        {},
        r"d\.json: unknown kind of data file \('\.json'\): give an \.npz, a \.csv",
    ),
    "label column for an npz": (
        "d.npz",
        lambda p: _digits_npz(p),
        {"label_column": 0},
        r"d\.npz: a label column is chosen in CSV files only",
    ),
    "images outside class folders": (
        "imgs",
        lambda p: (
            _png_tree(p) or (p / "class0" / sorted(os.listdir(p / "class0"))[0]).rename(p / "stray.png")
        ),
        {"kw": IMAGE},
        r"imgs: holds images outside the class sub-folders \(e\.g\. stray\.png\)",
    ),
    "image folder for an IMU model": (
        "imgs",
        _png_tree,
        {"kw": {**IMAGE, "input_shape": (1, 1, 128, 6)}},
        r"imgs: the model takes 6 channels; image folders give 1 \(grey\) or 3 \(RGB\)",
    ),
    "16-bit image": (
        "imgs",
        lambda p: (
            _png_tree(p) or Image.fromarray(np.zeros((28, 28), np.uint16)).save(p / "class0" / "deep.png")
        ),
        {"kw": IMAGE},
        r"imgs/class0/deep\.png: a I;16 \(16-bit\) image: export 8-bit grey or RGB",
    ),
    "hook raises": (
        "h.py",
        lambda p: p.write_text("def load():\n    raise OSError('microphone unplugged')\n"),
        {"hook": "load"},
        r"hook .*h\.py:load: the function raised OSError: microphone unplugged",
    ),
    "hook returns a 3-tuple": (
        "h.py",
        lambda p: p.write_text("def load():\n    return 1, 2, 3\n"),
        {"hook": "load"},
        r"hook .*h\.py:load: returned a 3-tuple: return \(x, y\)",
    ),
    "hook has no such function": (
        "h.py",
        lambda p: p.write_text("def load():\n    pass\n"),
        {"hook": "lod"},
        r"hook .*h\.py:lod: module .*h\.py has no function 'lod'",
    ),
    "hook's module missing": (
        "h.py",
        lambda p: None,
        {"hook_spec": "no_such_front_end:load"},
        r"hook no_such_front_end:load: cannot import module 'no_such_front_end' .*: run from the folder",
    ),
    "hook returns ragged lists": (
        "h.py",
        lambda p: p.write_text("def load():\n    return [[1, 2], [3]], [0, 1]\n"),
        {"hook": "load"},
        r"hook .*h\.py:load: key 'x' is not an array \(.*\): give numpy arrays",
    ),
    "hook's dependency missing": (
        "needs_more.py",
        lambda p: p.write_text("import no_such_dependency_xyz\n\ndef load():\n    pass\n"),
        {"hook_spec": "needs_more:load", "chdir": True},
        r"hook needs_more:load: importing 'needs_more' failed: No module named 'no_such_dependency_xyz': "
        r"install it",
    ),
    "no such file": (
        "missing.npz",
        lambda p: None,
        {},
        r"missing\.npz: no such file or folder: give an \.npz",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_get_one_line_errors_and_nothing_changes(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, write, extra, expected = BAD[case]
    target = tmp_path / name
    write(target)
    extra = dict(extra)  # the table is shared by every case
    kw = extra.pop("kw", DIGITS)
    spec = extra.pop("hook_spec", f"{target}:{extra.pop('hook')}" if "hook" in extra else str(target))
    if extra.pop("chdir", False):
        monkeypatch.chdir(tmp_path)
    before, cwd_before, path_before = _snapshot(tmp_path), sorted(os.listdir(".")), list(sys.path)
    with pytest.raises(DataError) as e:
        load(spec, **kw, **extra)
    message = str(e.value)
    assert "\n" not in message, message
    assert re.search(expected, message), f"{case}: {message}"
    assert _snapshot(tmp_path) == before and sorted(os.listdir(".")) == cwd_before and sys.path == path_before


def test_bad_arguments() -> None:
    with pytest.raises(DataError, match=r"held_out 1\.0: the fraction of each class held out"):
        load("x.npz", **DIGITS, held_out=1.0)
    with pytest.raises(DataError, match=r"input_dtype 'int4'"):
        load("x.npz", **{**DIGITS, "input_dtype": "int4"})
