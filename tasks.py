"""invoke tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

One --board on the line serves every task on it: `invoke flash train --board
nucleo_f746zg` flashes and trains the Nucleo, and without --board both use the emulated
board (mps2_an500). $TINYTRAIN_BOARD sets a default.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

import invoke
from invoke import Context, Task

from pytools import emulator
from pytools.boards import HOST, Board
from pytools.build.builder import FirmwareImage, build_firmware
from pytools.connect import open_link, resolve_board
from pytools.console import board_summary, frame_line, log_line
from pytools.errors import USER_ERRORS, ToolError
from pytools.paths import BUILD, ROOT

# One meaning per short flag in every task: only these options have one (invoke would otherwise
# give each option the first free letter of its name, task by task: -b was --budget in plan,
# -p --split in train and --port elsewhere). tests/test_tasks.py holds every task to it.
SHORT_FLAGS = {
    "board": "b",
    "dataset": "d",
    "epochs": "e",
    "lr": "l",
    "model": "m",
    "out": "o",
    "port": "p",
    "scheme": "s",
}


class OneMeaningTask(Task):
    """A task whose short flags come from SHORT_FLAGS alone."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)  # auto_shortflags is off
        flag = SHORT_FLAGS.get(name)
        if flag and flag not in taken_names and flag not in opts["names"]:
            opts["names"].append(flag)
        return opts


def task(*args: Any, **kwargs: Any) -> Any:
    """invoke's @task, with the short flags of SHORT_FLAGS (and no others)."""
    kwargs.setdefault("klass", OneMeaningTask)
    kwargs.setdefault("auto_shortflags", False)
    if len(args) == 1 and callable(args[0]) and not isinstance(args[0], Task):
        return invoke.task(**kwargs)(args[0])
    return invoke.task(*args, **kwargs)


def _datasets_help() -> str:
    """The data sets --dataset takes, from the registry (and the user's own files once the
    loaders for them, datasets/files.py, are there)."""
    import importlib.util

    import datasets

    text = "a built-in data set: " + ", ".join(datasets.names())
    if importlib.util.find_spec("datasets.files") is not None:
        text += (
            "; or your own data: a .npz or .csv file, a folder of class folders of images, module:function"
        )
    return text


def _splits_help() -> str:
    """Each built-in data set's splits, its default first (the registry's SPLITS)."""
    import datasets

    per = "; ".join(f"{n}: {', '.join(datasets.module(n).SPLITS)}" for n in datasets.names())
    return f"how the data set is split (default: its first): {per}"


BOARD_HELP = "board name (boards/*.toml); default: the one given elsewhere on the line, else mps2_an500"
PORT_HELP = "serial port or pyserial URL (default: the emulator's socket, or the ST-LINK port)"


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Prints a ToolError's or DataError's message (it says what to do) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


def _build(board: Board) -> FirmwareImage:
    t0 = time.monotonic()
    image = build_firmware(board)
    print(f"built {board.name} firmware {image.build_id} in {time.monotonic() - t0:.1f} s: {image.elf}")
    print("memory use (from the linker's --print-memory-usage):")
    for r in image.regions.values():
        print(f"  {r.name:<6} {r.used:>9,} of {r.size:>9,} bytes  {r.percent:5.1f} %")
    return image


@task
def setup(c: Context) -> None:
    """Install what is missing (Debian packages, .venv); the same as ./setup.sh."""
    c.run(f"{ROOT}/setup.sh", pty=False)


@task(help={"board": BOARD_HELP})
@friendly
def build(c: Context, board: str | None = None) -> None:
    """Build the firmware for a board and print its flash and RAM use."""
    _build(resolve_board(board))


@task(help={"board": BOARD_HELP, "tool": "real boards: pio, st-flash or openocd (default: first found)"})
@friendly
def flash(c: Context, board: str | None = None, tool: str | None = None) -> None:
    """Build and load the firmware: start the emulated board, or program a real one."""
    b = resolve_board(board)
    if b.is_emulated and "train" in sys.argv[1:]:
        # The firmware to run is the training firmware, which embeds the plan `train` compiles:
        # `train` (re)starts the emulated board with it. Starting a plain one here would be wasted.
        print(f"flash: `train` will start the emulated board {b.name} with its training firmware")
        return
    image = _build(b)
    if b.is_emulated:
        emu = emulator.start(b, image.elf)
        print(f"emulated board {b.name} running: pid {emu.pid}, serial {emu.url}, log {emu.log}")
        print("  stop it with `invoke stop`; timing figures are QEMU instruction counts (-icount shift=0)")
    else:
        from pytools.flashing import flash_hardware

        used = flash_hardware(b, image, tool)
        print(f"flashed {b.name} with {used}")


@task(help={"board": BOARD_HELP})
@friendly
def stop(c: Context, board: str | None = None) -> None:
    """Stop the emulated board (by its QEMU pid)."""
    b = resolve_board(board)
    if not b.is_emulated:
        raise ToolError(f"{b.name} is a real board: there is nothing to stop")
    print(f"stopped {b.name}" if emulator.stop(b.name) else f"{b.name} was not running")


@task(help={"board": BOARD_HELP, "port": PORT_HELP})
@friendly
def info(c: Context, board: str | None = None, port: str | None = None) -> None:
    """Connect, handshake and print the board's limits, memory use and link statistics."""
    b = resolve_board(board)
    with open_link(b, port, on_log=lambda f, e: print(log_line(e))) as link:
        print(board_summary(b, link.board, link.info()))


@task(help={"board": BOARD_HELP, "port": PORT_HELP, "count": "pings to send", "size": "payload bytes"})
@friendly
def ping(
    c: Context, board: str | None = None, port: str | None = None, count: int = 10, size: int = 64
) -> None:
    """Round-trip PINGs over the link and print their latency."""
    b = resolve_board(board)
    with open_link(b, port) as link:
        rtts = [link.ping(bytes(i % 256 for i in range(size))) for _ in range(count)]
    rtts.sort()
    print(
        f"{count} pings of {size} bytes: min {rtts[0] * 1e3:.1f} ms, "
        f"median {rtts[len(rtts) // 2] * 1e3:.1f} ms, max {rtts[-1] * 1e3:.1f} ms"
    )


@task(
    help={
        "board": BOARD_HELP,
        "port": PORT_HELP,
        "seconds": "stop after this long (default: until Ctrl-C)",
        "frames": "also show every frame, not only logs and faults",
        "session": "follow a running `invoke train` session from its folder (a path, or 'latest')",
    }
)
@friendly
def monitor(
    c: Context,
    board: str | None = None,
    port: str | None = None,
    seconds: float = 0,
    frames: bool = False,
    session: str = "",
) -> None:
    """Decoded serial console: timestamped firmware logs, faults and (with --frames) frames.

    With --session DIR (or --session latest): a running `invoke train` session, live from its
    folder (the training process owns the serial port): step, loss, running accuracy, samples per
    second, stack high-water and peak SRAM, the firmware's log lines and each epoch's result."""
    from pytools.link.client import BoardFaulted

    if session:
        from pathlib import Path

        from pytools.console import follow_session
        from pytools.session import latest_session

        folder = latest_session() if session == "latest" else Path(session)
        if not (folder / "config.json").exists() and not (folder / "steps.jsonl").exists():
            raise ToolError(f"{folder} is not a session folder (no config.json)")
        follow_session(folder, seconds)
        return
    b = resolve_board(board)
    show = (lambda d, item: print(frame_line(d, item))) if frames else None
    with open_link(
        b, port, on_log=None if frames else (lambda f, e: print(log_line(e))), on_frame=show
    ) as link:
        print(f"connected to {link.board['board']} (build {link.board['build_id']}); Ctrl-C to stop")
        deadline = time.monotonic() + seconds if seconds else float("inf")
        try:
            while time.monotonic() < deadline:
                link.poll(min(0.5, max(0.0, deadline - time.monotonic())))
        except BoardFaulted as e:
            print(f"FAULT: {e.report['text']}")
            raise ToolError("the board faulted and halted; see the report above") from e


@task(
    help={
        "model": "an int8 .tflite model",
        "board": BOARD_HELP,
        "out": "where to write the compiled plan (default: build/models/<model>-<board>.plan)",
    }
)
@friendly
def convert(c: Context, model: str, board: str | None = None, out: str | None = None) -> None:
    """Compile a .tflite for a board: memory report (arena, weights, SRAM/flash totals); refuses a misfit."""
    from pathlib import Path

    from pytools.model.pipeline import check_fits, convert, memory_report

    b = resolve_board(board)
    conv = convert(Path(model), b)
    print(memory_report(conv))
    check_fits(conv)
    dest = Path(out) if out else BUILD / "models" / f"{conv.name}-{b.name}.plan"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(conv.compiled.blob)
    print(f"plan: {dest} ({len(conv.compiled.blob):,} bytes); firmware with the model: {conv.image.elf}")


@task(
    help={
        "model": "an int8 .tflite model (a classifier ending in SOFTMAX)",
        "scheme": "a scheme file (schemes/*.toml) or inline: bias=22,-1=1,-3=0.25",
        "board": BOARD_HELP,
        "out": "where to write the training plan (default: build/models/<model>-<board>.train.plan)",
    }
)
@friendly
def compile(c: Context, model: str, scheme: str, board: str | None = None, out: str | None = None) -> None:
    """Compile a training step: memory report by category; refuses a plan that does not fit."""
    from pathlib import Path

    from pytools.train.compile_train import check_fits, load_and_compile, report
    from pytools.train.scheme import load_scheme

    b = resolve_board(board)
    ct = load_and_compile(Path(model), load_scheme(scheme), b)
    print(report(ct))
    check_fits(ct)
    dest = Path(out) if out else BUILD / "models" / f"{ct.name}-{b.name}.train.plan"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(ct.compiled.blob)
    print(f"training plan: {dest} ({len(ct.compiled.blob):,} bytes); firmware: {ct.image.elf}")


@task(
    help={
        "model": "an int8 .tflite model",
        "inputs": ".npy with one input per row (or a single input)",
        "out": ".npy to write, one output row per input row, in the model's output type",
        "board": "host (the host twin), or a board name; " + BOARD_HELP,
        "port": PORT_HELP,
    }
)
@friendly
def infer(
    c: Context, model: str, inputs: str, out: str, board: str | None = None, port: str | None = None
) -> None:
    """Run a model on the host twin (--board host) or on a board, row by row."""
    from pathlib import Path

    from pytools.model.inference import run_inference

    run_inference(Path(model), Path(inputs), Path(out), board, port)


@task(
    help={
        "board": "host (the bit-exact host twin, at this machine's speed: tune lr, epochs and scheme "
        "before spending board time), or a " + BOARD_HELP,
        "dataset": _datasets_help() + " (default: digits)",
        "scheme": "a scheme file in schemes/ (e.g. head_only) or inline (bias=3,-1=1,-2=0.5)",
        "epochs": "passes over the fine-tuning split (default: about 1,000 steps, 1 to 5 passes)",
        "lr": "learning rate (SGD with QAS, in real-valued units); default: a short sweep on the host "
        "twin picks it (printed, and kept in config.json)",
        "lr-schedule": "linear (decays the lr to 0 over the session's steps; the default) or constant",
        "split": _splits_help(),
        "model": "a pretrained int8 .tflite classifier (default: the data set's own: digits_cnn, built "
        "once, or the backbone in models/ for hapt and fashion_mnist)",
        "out": "session folder (default: sessions/<time>-<board>-<dataset>/)",
        "limit": "train on at most this many samples per epoch",
        "port": PORT_HELP,
        "seed": "sample order",
        "held-out": "evaluate on at most this many held-out samples (default: all)",
        "resume": "carry on the session in --out (default: the latest) on the board it ran on, after "
        "its host process died or the board was reset (it goes back to its last checkpoint): each "
        "sample is still trained exactly once",
        "save": "save the trained state to the board's flash, with checkpoints during the session "
        "(default on; --no-save: the flash is never written)",
        "save-every": "a checkpoint (SAVE to flash) every N steps; default: at each epoch's end; 0: only at "
        "the end. After a reset, --resume trains again the steps since the last one",
    }
)
@friendly
def train(
    c: Context,
    board: str | None = None,
    dataset: str = "digits",
    scheme: str = "",
    epochs: int = 0,
    lr: float = -1.0,
    lr_schedule: str = "linear",
    split: str = "",
    model: str = "",
    out: str = "",
    limit: int = 0,
    port: str | None = None,
    seed: int = 0,
    resume: bool = False,
    held_out: int = 0,
    save: bool = True,
    save_every: str = "",
) -> None:
    """Stream a data set to the board and train on it there: progress, held-out accuracy, a session folder."""
    from pathlib import Path

    from pytools.session import DEFAULT_SCHEME, run_training_session

    try:
        every = int(save_every) if save_every.strip() else None  # "": at each epoch's end
    except ValueError:
        msg = f"--save-every takes a number of steps (0: only at the end), not {save_every!r}"
        raise ToolError(msg) from None

    if lr == -1.0:
        lr_given: float | None = None  # not given: a sweep on the host twin picks it
    elif lr < 0:
        raise ToolError(f"--lr must be a number >= 0, got {lr}")
    else:
        lr_given = lr
    run_training_session(
        board if board == HOST else resolve_board(board).name,
        dataset=dataset,
        scheme=scheme or DEFAULT_SCHEME,
        epochs=epochs or None,  # 0: not given
        lr=lr_given,
        lr_schedule=lr_schedule,
        split=split or None,
        port=port,
        out_dir=Path(out) if out else None,
        model=Path(model) if model else None,
        seed=seed,
        limit=limit or None,
        resume=resume,
        held_out=held_out or None,
        save=save,
        save_every=every,
    )  # prints its progress, its summary and where the session folder is


@task(
    help={
        "board": "host (every client on its own host twin: fast) or a "
        + BOARD_HELP
        + "; emulated boards are "
        "started by their clients, real ones need --port",
        "boards": "clients, one board each (default 4)",
        "dataset": _datasets_help() + " (default: hapt)",
        "split": _splits_help(),
        "partition": "users (HAPT users 21-30 as clients, the default for hapt), dirichlet:ALPHA (labels "
        "dealt by a seeded Dirichlet draw; the default for other data sets, ALPHA 0.5) or iid",
        "rounds": "FedAvg rounds (default 3); each round trains every client's samples once",
        "scheme": "the sparse update (default for hapt: schemes/hapt_cnn1d-hapt-64KB)",
        "lr": "learning rate, the same on every board (it is compiled into the plan); default 0.01",
        "model": "a pretrained int8 .tflite classifier (default: the data set's own)",
        "rounding": "requantization of the average: stochastic (deterministic stochastic rounding, as the "
        "boards' own updates; default) or nearest (half to even)",
        "min-clients": "a round goes on with this many replies (default: half the boards)",
        "round-timeout": "seconds a round waits for a client (default 120 on the twin, 900 on boards)",
        "held-out": "score each client on at most this many of its held-out samples (default: all)",
        "port": "real boards: one serial port per client, comma-separated",
        "seed": "sample orders, partitions and the stochastic rounding",
        "out": "fleet folder (default: sessions/fleet-<time>/)",
    }
)
@friendly
def fleet(
    c: Context,
    board: str | None = None,
    boards: int = 4,
    dataset: str = "hapt",
    split: str = "",
    partition: str = "",
    rounds: int = 3,
    scheme: str = "",
    lr: float = 0.01,
    model: str = "",
    rounding: str = "stochastic",
    min_clients: int = 0,
    round_timeout: float = 0.0,
    held_out: int = 0,
    port: str | None = None,
    seed: int = 0,
    out: str = "",
) -> None:
    """Fleet learning on Flower: each board trains its sparse slice on its own data; FedAvg of the slices."""
    from pathlib import Path

    from pytools.fleet.runtime import run_fleet

    run_fleet(
        board if board == HOST else resolve_board(board).name,
        dataset=dataset,
        split=split or None,
        boards=boards,
        rounds=rounds,
        partition=partition,
        scheme=scheme,
        lr=lr,
        model=model or None,
        seed=seed,
        held_out=held_out or None,
        rounding=rounding,
        min_clients=min_clients or None,
        round_timeout=round_timeout or None,
        out=Path(out) if out else None,
        ports=[p.strip() for p in port.split(",")] if port else None,
    )


@task(
    help={
        "out": "the trained model to write (.tflite)",
        "board": BOARD_HELP,
        "model": "the .tflite the board was trained from (default: the digits model of invoke train)",
        "scheme": "the scheme it was trained with (default: invoke train's)",
        "lr": "the learning rate it was trained with (part of the plan)",
        "port": PORT_HELP,
        "session": "take board, model, scheme and lr from a session folder (or 'latest'); on the "
        "emulated board, boot it from the flash the session saved, and check the export's "
        "predictions against the board's on held-out samples",
    }
)
@friendly
def pull(
    c: Context,
    out: str,
    board: str | None = None,
    model: str = "",
    scheme: str = "",
    lr: float = 0.01,
    port: str | None = None,
    session: str = "",
) -> None:
    """Read the trained weights from the board and write them into a copy of the original .tflite."""
    from pytools.export import pull as pull_trained

    for line in pull_trained(board, out, model=model, scheme=scheme, lr=lr, port=port, session=session):
        print(line)


@task(
    help={
        "model": "an int8 .tflite classifier",
        "scheme": "a scheme file or inline (bias=22,-1=1,-3=0.25)",
        "board": BOARD_HELP,
        "port": PORT_HELP,
        "out": "also write the results as Markdown to this file",
        "suite": "run the whole benchmark suite (zoo models, MobileNetV2-w0.35) and write BENCHMARKS.md",
    }
)
@friendly
def bench(
    c: Context,
    model: str = "",
    scheme: str = "",
    board: str | None = None,
    port: str | None = None,
    out: str = "",
    suite: bool = False,
) -> None:
    """Peak SRAM (measured), flash, cost per training step (forward/backward) and MACs."""
    from pathlib import Path

    from pytools.bench import run_bench, write_benchmarks

    if board == HOST:
        raise ToolError(
            "invoke bench measures a board: its peak SRAM, flash and cost per step; the host twin has "
            "none of these. Give a board (default: the emulated board), or use `invoke train --board "
            "host` to try a scheme on the twin"
        )
    b = resolve_board(board)
    if suite:
        dest = Path(out) if out else ROOT / "BENCHMARKS.md"
        write_benchmarks(dest, board_name=b.name, command=f"invoke bench --suite --board {b.name}")
        print(f"wrote {dest}")
        return
    if not model or not scheme:
        raise ToolError("give --model and --scheme (or --suite for the whole benchmark)")
    result = run_bench(Path(model), scheme, b.name, Path(out) if out else None, port=port)
    print(result["markdown"])


@task(
    help={
        "model": "a pretrained int8 .tflite classifier (default: the data set's own pretrained model)",
        "dataset": _datasets_help() + " (default: digits)",
        "budget": "peak training SRAM allowed: firmware static RAM + training arena (e.g. 64KB)",
        "out": "the scheme file to write (default: schemes/<model>-<dataset>-<budget>.toml)",
        "board": BOARD_HELP,
        "lr": "learning rate of the measuring fine-tuning runs (SGD with QAS, real units)",
        "steps": "fine-tuning steps per measured part (fixed budget)",
        "seeds": "comma-separated sample-order seeds; each part's gain is their mean",
        "split": _splits_help(),
        "adapt": "turn the samples into what the model takes: upscale28 (8x8 digits -> 28x28), "
        "watch_to_hapt (BasicMotions -> HAPT windows)",
    }
)
@friendly
def plan(
    c: Context,
    dataset: str = "digits",
    budget: str = "64KB",
    model: str = "",
    out: str = "",
    board: str | None = None,
    lr: float = 0.01,
    steps: int = 500,
    seeds: str = "0",
    split: str = "",
    adapt: str = "",
) -> None:
    """Choose a sparse-update scheme under a memory budget (contribution analysis, evolutionary search)."""
    from pathlib import Path

    from pytools.plan.run import parse_budget
    from pytools.plan.run import plan as run_plan

    if board == HOST:
        raise ToolError(
            "invoke plan fine-tunes every candidate on the host twin already; --board names the board "
            "whose memory the scheme must fit (default: the emulated board, the Nucleo's limits)"
        )
    run_plan(
        resolve_board(board),
        dataset,
        parse_budget(budget),
        model=Path(model) if model else None,
        out=Path(out) if out else None,
        lr=lr,
        steps=steps,
        seeds=tuple(int(s) for s in seeds.split(",") if s),
        split=split or None,
        adapt=adapt or None,
    )


@task(
    help={
        "tasks": "comma-separated task names (default: all; pytools/results.py TASKS)",
        "board": BOARD_HELP,
    }
)
@friendly
def results(c: Context, tasks: str = "", board: str | None = None) -> None:
    """Regenerate docs/RESULTS.md and docs/results/: accuracy and peak SRAM of each scheme, per task."""
    from pytools.results import OUT_MD, run_all

    _, seconds = run_all(resolve_board(board), [t for t in tasks.split(",") if t] or None)
    print(f"wrote {OUT_MD} in {seconds / 60:.1f} min")


@task(help={"models": "comma-separated .tflite files (default: ../shared/models/*.tflite)"})
@friendly
def compare_tflm(c: Context, models: str = "") -> None:
    """Our arena against TFLite Micro's (tflite-micro's own report), as a Markdown table."""
    from pathlib import Path

    from pytools.boards import load_board
    from pytools.model.compiler import compile_graph
    from pytools.model.tflite_import import import_tflite
    from pytools.model.tflm import tflm_arena_bytes
    from pytools.paths import SHARED_MODELS

    paths = [Path(p) for p in models.split(",") if p] or sorted(SHARED_MODELS.glob("*.tflite"))
    if not paths:
        raise ToolError("no models given and none in ../shared/models")
    print("| model | our arena | TFLM activations | TFLM total arena | ours / TFLM total |")
    print("|---|---|---|---|---|")
    for p in paths:
        data = p.read_bytes()
        ours = compile_graph(import_tflite(data, p.stem), load_board("mps2_an500"), p.stem).arena
        t = tflm_arena_bytes(data)
        print(
            f"| {p.stem} | {ours:,} B | {t['activations']:,} B | {t['total']:,} B | {ours / t['total']:.0%} |"
        )


@task(help={"only": "comma-separated backbone names (default: all: fashion_mbv2, hapt_cnn1d)"})
@friendly
def pretrain(c: Context, only: str = "") -> None:
    """Train the backbones on real data and write them, full int8, to models/ (a few minutes)."""
    from pytools.pretrain.backbones import BACKBONES
    from pytools.pretrain.backbones import pretrain as run_pretrain

    names = [n for n in only.split(",") if n] or list(BACKBONES)
    unknown = sorted(set(names) - set(BACKBONES))
    if unknown:
        raise ToolError(f"unknown backbone(s) {', '.join(unknown)}; known: {', '.join(BACKBONES)}")
    for info in run_pretrain(names):
        shape = "x".join(map(str, info["input_shape"]))
        print(
            f"{info['file']}: input {shape} int8, {info['classes']} classes, "
            f"{info['bytes']:,} B, {info['forward_macs']:,} MACs; held-out accuracy float "
            f"{info['float_accuracy']:.4f}, int8 {info['int8_accuracy']:.4f} ({info['held_out_samples']:,} "
            f"samples); trained in {info['train_seconds']:.0f} s"
        )
    print("wrote models/README.md")


@task(help={"k": "only tests matching this pytest -k expression", "x": "stop at the first failure"})
def test(c: Context, k: str = "", x: bool = False) -> None:
    """Run every test (Python and the C unit tests) with pytest."""
    args = ["-q"]
    if k:
        args += ["-k", f"'{k}'"]
    if x:
        args.append("-x")
    c.run(f"{sys.executable} -m pytest {' '.join(args)}", pty=False)


@task
def lint(c: Context) -> None:
    """ruff (Python) and clang-format (C) checks; `invoke fmt` fixes what they find."""
    c.run(f"{sys.executable} -m ruff check {ROOT}")
    c.run(f"{sys.executable} -m ruff format --check {ROOT}")
    c.run(f"clang-format --dry-run --Werror $(git -C {ROOT} ls-files 'firmware/*.c' 'firmware/*.h')")


@task
def fmt(c: Context) -> None:
    """Format Python (ruff) and C (clang-format) in place."""
    c.run(f"{sys.executable} -m ruff format {ROOT}")
    c.run(f"{sys.executable} -m ruff check --fix {ROOT}")
    c.run(f"clang-format -i $(git -C {ROOT} ls-files 'firmware/*.c' 'firmware/*.h')")
