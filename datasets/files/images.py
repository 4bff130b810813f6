"""A folder of images, one sub-folder per class (the class name is the sub-folder's name).

    my_images/cat/*.png, my_images/dog/*.jpg            the tool splits them
    my_images/train/cat/..., my_images/test/cat/...     the user's own split (val/ or
                                                        validation/ may stand for test/)

Classes are the sub-folders' names, sorted, so the label map does not depend on the order
a file system lists them in. Images anywhere below a class folder count (sorted by path);
hidden files are skipped, other non-image files are skipped with a note. Each image is
turned upright by its EXIF orientation (phones store it so), converted to grey ("L",
ITU-R 601-2 luma) or RGB as the model's channel count asks, resized to the model's height
and width (bilinear) when it differs. Its pixels 0..255 become real values on the scale
the model's input covers (PIXELS; checks.ModelInput.pixels chooses from its quantization):
pixel / 255 in [0, 1] as the built-in image data sets, pixel / 127.5 - 1 in [-1, 1], or
the pixel values themselves; a note says which.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from datasets import DataError
from datasets.files.arrays import one_line
from datasets.files.raw import Raw, RawPart

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MODES = {1: "L", 3: "RGB"}
ORIENTATION = 0x0112  # the EXIF tag
Progress = Callable[[int, int], None]  # (images done, images in all)
PIXELS = {  # how pixels 0..255 become real values, for a model trained on that range
    "unit": "pixel / 255 in [0, 1]",
    "signed": "pixel / 127.5 - 1 in [-1, 1]",
    "raw": "the pixel values 0 .. 255",
}


def real_pixels(x: np.ndarray, pixels: str) -> np.ndarray:
    """uint8 pixels as float32 reals on the model's scale (PIXELS)."""
    if pixels == "unit":
        return x.astype(np.float32) / 255.0  # as fashion_mnist.load, to the bit
    if pixels == "signed":
        return x.astype(np.float32) / 127.5 - 1.0
    return x.astype(np.float32)


TRAIN_FOLDER = "train"
HELD_OUT_FOLDERS = ("test", "val", "validation")  # the first present is held out


def _pillow() -> tuple[Any, Any]:
    """PIL's Image and ImageOps modules, imported only when a folder is read."""
    try:
        from PIL import Image, ImageOps
    except ImportError as e:
        raise DataError(
            f"reading image folders needs Pillow, which is not installed ({e}): run ./setup.sh "
            "(it installs requirements.txt)"
        ) from e
    return Image, ImageOps


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _class_folders(root: Path) -> list[Path]:
    entries = _visible(root)
    folders = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file() and p.suffix.lower() in EXTENSIONS]
    if not folders:
        what = f"{len(loose)} images but no class sub-folders" if loose else "no class sub-folders"
        raise DataError(
            f"{root}: holds {what}: put each class's images in a sub-folder named after the "
            f"class ({root}/cat/1.png, {root}/dog/1.png, ...)"
        )
    if loose:
        raise DataError(
            f"{root}: holds images outside the class sub-folders (e.g. {loose[0].name}): move "
            "each into the sub-folder of its class"
        )
    return folders


def _image(path: Path, data: bytes, shape: tuple[int, int, int], counts: dict[str, int]) -> np.ndarray:
    """One image (the file's bytes) as uint8 [H, W, C] for the model; counts what was done to it."""
    image_mod, image_ops = _pillow()
    height, width, channels = shape
    try:
        with image_mod.open(io.BytesIO(data)) as im:
            w, h = im.size
            if im.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8):  # stored on its side
                w, h = h, w
            # a JPEG decodes straight to a smaller size (1/2 .. 1/8) when it is much bigger
            # than the model's input: a phone photo decodes ~10x faster, then is resized below
            im.draft(MODES[channels], (max(width, height), max(width, height)))
            im = image_ops.exif_transpose(im)  # loads the pixels: a truncated file fails here
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                raise DataError(
                    f"{path}: a {im.mode} ({'16' if 'I;16' in im.mode else '32'}-bit) image: export "
                    "8-bit grey or RGB PNG/JPEG"
                )
            if im.mode != MODES[channels]:
                key = f"{im.mode} to {MODES[channels]}"
                counts[key] = counts.get(key, 0) + 1
                im = im.convert(MODES[channels])
            if (w, h) != (width, height):
                key = f"resized from {w}x{h}"
                counts[key] = counts.get(key, 0) + 1
            if im.size != (width, height):
                im = im.resize((width, height), image_mod.Resampling.BILINEAR)
            pixels = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, image_mod.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({one_line(e)}): re-export it or delete it") from e
    return pixels.reshape(height, width, channels)


def _images_of(folder: Path, notes_skipped: list[Path]) -> list[Path]:
    found = []
    for p in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in p.relative_to(folder).parts) or not p.is_file():
            continue
        (found if p.suffix.lower() in EXTENSIONS else notes_skipped).append(p)
    return found


def _listing(
    root: Path, classes: list[str], required: bool, notes: list[str]
) -> tuple[list[Path], list[int]]:
    """The image files under root/<class> for each class, and their labels; `required`: an
    empty class is an error."""
    skipped: list[Path] = []
    paths, labels = [], []
    for k, name in enumerate(classes):
        folder = root / name
        found = _images_of(folder, skipped) if folder.is_dir() else []
        if required and not found:
            raise DataError(
                f"{folder}: no images in this class folder ({', '.join(EXTENSIONS)}): add the "
                "class's images or remove the folder"
            )
        paths += found
        labels += [k] * len(found)
    if skipped:
        kinds = sorted({p.suffix or p.name for p in skipped})
        notes.append(f"{root}: skipped {len(skipped)} files that are not images ({', '.join(kinds[:6])})")
    return paths, labels


def _decode(
    root: Path,
    parts: list[tuple[Path, list[Path], list[int]]],
    shape: tuple[int, int, int],
    pixels: str,
    progress: Progress | None,
) -> tuple[list[RawPart], str, list[str]]:
    """Every listed image decoded (progress reported per image): one RawPart per (folder,
    paths, labels), the digest of the files' names and bytes, and notes."""
    digest, counts = hashlib.sha256(), {}
    total, done = sum(len(paths) for _, paths, _ in parts), 0
    out = []
    for folder, paths, labels in parts:
        x = np.empty((len(paths), *shape), dtype=np.uint8)
        for i, p in enumerate(paths):
            data = p.read_bytes()
            digest.update(str(p.relative_to(root)).encode() + b"\0" + data)
            x[i] = _image(p, data, shape, counts)
            done += 1
            if progress is not None:
                progress(done, total)
        rel = [str(p.relative_to(folder)) for p in paths]

        def where(i: int, rel: list[str] = rel) -> str:
            return f"image {rel[i]}"

        y = np.asarray(labels, dtype=np.int64)
        out.append(RawPart(real_pixels(x, pixels), y, "the images", "the class folders", where=where))
    notes = []
    for what, n in sorted(counts.items()):
        extra = ""
        if what.startswith("resized"):
            w, h = (int(v) for v in what.split()[-1].split("x"))
            if abs(w / h - shape[1] / shape[0]) > 0.01 * shape[1] / shape[0]:
                extra = " (aspect ratio not kept: stretched)"
        notes.append(f"{root}: {n} images {what} to {shape[1]}x{shape[0]}{extra}")
    return out, digest.hexdigest(), notes


def read(root: Path, shape: tuple[int, int, int], pixels: str, progress: Progress | None = None) -> Raw:
    """The folder's images for a model taking [H, W, C] = `shape` (C: 1 grey, 3 RGB), its
    pixels as real values by `pixels` (a key of PIXELS); progress(done, total) per image."""
    if shape[2] not in MODES:
        raise DataError(
            f"{root}: the model takes {shape[2]} channels; image folders give 1 (grey) or 3 (RGB): "
            "for other inputs use an .npz or a hook"
        )
    notes = [f"{root}: pixels become {PIXELS[pixels]} (the range the model's input covers)"]
    folders = _class_folders(root)
    by_name = {f.name: f for f in folders}
    held_name = next((n for n in HELD_OUT_FOLDERS if n in by_name), None)
    if (
        TRAIN_FOLDER in by_name
        and held_name is not None
        and set(by_name) <= {TRAIN_FOLDER, *HELD_OUT_FOLDERS}
        and all(any(p.is_dir() for p in _visible(f)) for f in folders)
    ):
        train_dir, test_dir = by_name[TRAIN_FOLDER], by_name[held_name]
        for other in sorted(set(by_name) - {TRAIN_FOLDER, held_name}):
            notes.append(f"{root}/{other}: not used (train/ is trained on, {held_name}/ held out)")
        train_classes = [f.name for f in _class_folders(train_dir)]
        test_classes = [f.name for f in _class_folders(test_dir)]
        classes = sorted(set(train_classes) | set(test_classes))
        listed = [
            (train_dir, *_listing(train_dir, classes, True, notes)),
            (test_dir, *_listing(test_dir, classes, False, notes)),
        ]
        (train, test), digest, decoded = _decode(root, listed, shape, pixels, progress)
        given = f"{TRAIN_FOLDER}/ and {held_name}/ folders"
        return Raw(str(root), "images", train, test, given, tuple(classes), digest, notes + decoded)
    classes = [f.name for f in folders]
    listed = [(root, *_listing(root, classes, True, notes))]
    (part,), digest, decoded = _decode(root, listed, shape, pixels, progress)
    return Raw(str(root), "images", part, None, None, tuple(classes), digest, notes + decoded)
