"""`invoke fleet --partition` on a user's own data set (pytools/fleet/partition.py): by a CSV
column or an .npz array of group ids (each client one group's samples, the loader's own split
kept), and Dirichlet over labels; each client's share as partition.json lists it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import datasets
from datasets import hapt
from pytools.errors import ToolError
from pytools.fleet import partition as partitions
from pytools.fleet.client import FleetSettings, client_inputs
from pytools.paths import ROOT
from pytools.session.inputs import model_inputs

MODEL = str(ROOT / "models" / "hapt_cnn1d.tflite")
USERS = ("user21", "user22", "user23")


def hapt_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HAPT users 21-23's fine-tuning windows, shuffled together (a user's file need not be
    sorted): flat windows (768 values), activities, the user of each row."""
    xs, ys, us = [], [], []
    for u in USERS:
        part = datasets.load_split("hapt", u).finetune
        xs.append(part.x.reshape(len(part), -1))
        ys.append(part.y)
        us.append(np.full(len(part), u))
    x, y, g = np.concatenate(xs), np.concatenate(ys), np.concatenate(us)
    order = np.random.default_rng(0).permutation(len(y))
    return x[order], y[order], g[order]


def write_csv(path: Path, x: np.ndarray, y: np.ndarray, g: np.ndarray) -> Path:
    """Activity names first, then the user column, then the 768 values (the group column sits
    between label and features: it must be taken out, not read as a feature)."""
    names = [f"{c}@{t}" for t in range(hapt.WINDOW) for c in hapt.COLUMNS]
    lines = ["activity,user," + ",".join(names)]
    lines += [
        f"{hapt.ACTIVITIES[c]},{u}," + ",".join(f"{v:.9g}" for v in row)
        for row, c, u in zip(x, y, g, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def settings(folder: Path, dataset: str, partition: str, boards: int, **kw) -> FleetSettings:
    return FleetSettings(
        fleet_id="t",
        folder=str(folder),
        board="host",
        dataset=dataset,
        split=None,
        partition=partition,
        boards=boards,
        scheme="hapt_cnn1d-hapt-64KB",
        lr=0.01,
        model=MODEL,
        seed=0,
        held_out=None,
        rounds=1,
        rounding="stochastic",
        **kw,
    )


def check_clients_own_their_groups(
    folder: Path, s: FleetSettings, x: np.ndarray, g: np.ndarray, n_groups: int
) -> None:
    """Client k holds exactly the k-th group's samples (fine-tuning and held-out together), as
    the model's int8 inputs; no sample of another group."""
    names = partitions.client_groups(folder, s.boards)
    assert names == sorted(set(g.tolist()))[: s.boards] and len(set(g.tolist())) == n_groups
    for k, name in enumerate(names):
        inp = client_inputs(s, k, link=False)
        mine = np.flatnonzero(g == name)
        want = sorted(r.tobytes() for r in model_inputs(inp.graph, x[mine]).reshape(len(mine), -1))
        got = sorted(r.tobytes() for p in (inp.x_train, inp.x_held) for r in p.reshape(len(p), -1))
        assert got == want, name
        assert len(inp.y_train) and len(inp.y_held)


def test_a_csv_column_partition_gives_each_client_one_users_recordings(tmp_path) -> None:
    x, y, g = hapt_rows()
    f = write_csv(tmp_path / "walks.csv", x, y, g)
    folder = tmp_path / "fleet"
    folder.mkdir()
    part = partitions.parse("column:user", str(f), None)
    data = partitions.prepare_groups(folder, str(f), part)
    assert Path(data).parent == folder and "user" not in Path(data).read_text().splitlines()[0].split(",")
    s = settings(folder, data, "column:user", 3, label_column="activity")
    check_clients_own_their_groups(folder, s, x, g, 3)
    shares = [partitions.share(k, *_ys(s, k), n) for k, n in enumerate(partitions.client_groups(folder, 3))]
    path = partitions.write_shares(folder, part, shares)
    listed = __import__("json").loads(path.read_text())
    assert listed["partition"] == "column:user"
    assert [c["group"] for c in listed["clients"]] == list(USERS)
    assert [c["finetune"] + c["held_out"] for c in listed["clients"]] == [int(np.sum(g == u)) for u in USERS]
    # Fewer boards than groups: the first groups; more: refused, naming the groups.
    assert partitions.client_groups(folder, 2) == ["user21", "user22"]
    with pytest.raises(ToolError, match=r"3 groups \(user21, user22, user23\), not 4"):
        partitions.client_groups(folder, 4)


def _ys(s: FleetSettings, k: int) -> tuple[np.ndarray, np.ndarray]:
    inp = client_inputs(s, k, link=False)
    return inp.y_train, inp.y_held


def test_an_npz_group_array_partitions_and_dirichlet_deals_a_users_file(tmp_path) -> None:
    x, y, g = hapt_rows()
    f = tmp_path / "walks.npz"
    np.savez(f, x=x.reshape(len(x), 1, 128, 6), y=y, device=g)
    folder = tmp_path / "fleet"
    folder.mkdir()
    part = partitions.parse("column:device", str(f), None)
    assert partitions.prepare_groups(folder, str(f), part) == str(f)
    s = settings(folder, str(f), "column:device", 3)
    check_clients_own_their_groups(folder, s, x, g, 3)
    # Dirichlet over labels on the same file: every sample in exactly one client, seeded.
    d = tmp_path / "dir"
    d.mkdir()
    s = settings(d, str(f), "dirichlet:0.3", 3)
    inps = [client_inputs(s, k, link=False) for k in range(3)]
    got = sorted(r.tobytes() for i in inps for p in (i.x_train, i.x_held) for r in p.reshape(len(p), -1))
    want = sorted(r.tobytes() for r in model_inputs(inps[0].graph, x).reshape(len(x), -1))
    assert got == want
    mixes = np.array([np.bincount(i.y_train, minlength=6) / len(i.y_train) for i in inps])
    assert np.abs(mixes - mixes.mean(axis=0)).max() > 0.1  # non-IID label mixes


def test_column_partition_refusals(tmp_path) -> None:
    x, y, g = hapt_rows()
    f = write_csv(tmp_path / "walks.csv", x[:40], y[:40], g[:40])
    folder = tmp_path / "fleet"
    folder.mkdir()
    with pytest.raises(ToolError, match=r"no column 'site' in its header row \(activity, user, "):
        partitions.prepare_groups(folder, str(f), partitions.parse("column:site", str(f), None))
    with pytest.raises(ToolError, match="not one; use dirichlet"):
        partitions.parse("column:user", "hapt", None)
    with pytest.raises(ToolError, match="column:NAME: give the CSV column"):
        partitions.parse("column:", str(f), None)
    n = tmp_path / "w.npz"
    np.savez(n, x=x[:40].reshape(40, 1, 128, 6), y=y[:40], user=g[:30])
    with pytest.raises(ToolError, match=r"no array 'site' .* its arrays: user, x, y"):
        partitions.prepare_groups(folder, str(n), partitions.parse("column:site", str(n), None))
    with pytest.raises(ToolError, match=r"shape \[30\]: one id per sample \(40\)"):
        partitions.prepare_groups(folder, str(n), partitions.parse("column:user", str(n), None))


def test_the_column_partition_reads_the_csv_as_the_loader_does(tmp_path) -> None:
    """A byte-order mark and spaces around header cells are the loader's to drop, so the group
    column is found; a file that is not UTF-8 is refused as the loader refuses it (no silent
    rewrite that would merge 'café' and 'cafè')."""
    rows = ["f1 , user , label", "0.5,u1,café", "0.25,u2,cafè"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode() + b"\n")
    folder = tmp_path / "fleet"
    folder.mkdir()
    data = partitions.prepare_groups(folder, str(bom), partitions.parse("column:user", str(bom), None))
    assert Path(data).read_text().splitlines() == ["f1,label", "0.5,café", "0.25,cafè"]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("\n".join(rows).encode("latin-1") + b"\n")
    with pytest.raises(ToolError, match=r"not UTF-8 text .* save the CSV as UTF-8"):
        partitions.prepare_groups(folder, str(latin), partitions.parse("column:user", str(latin), None))
