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
from invoke.exceptions import ParseError

from pytools import emulator, validate
from pytools.boards import HOST, Board
from pytools.build.builder import FirmwareImage, build_firmware
from pytools.connect import open_link, resolve_board
from pytools.console import board_summary, frame_line, log_line
from pytools.errors import USER_ERRORS, ToolError
from pytools.paths import BUILD, ROOT


class _NumberArgument(invoke.Argument):
    """An int or float option: a value that is not a number is a one-line error (invoke's own
    cast would print a traceback)."""

    def set_value(self, value: Any, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except ValueError:
            what = "a whole number" if self.kind is int else "a number"
            raise ParseError(f"error: --{self.name} takes {what}, not {value!r}") from None


class _Task(invoke.Task):
    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[invoke.Argument]:
        args = super().get_arguments(ignore_unknown_help)
        for a in args:
            if a.kind in (int, float):
                a.__class__ = _NumberArgument
        return args


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


class OneMeaningTask(_Task):
    """A task whose short flags come from SHORT_FLAGS alone (and whose number options say
    what they take instead of a traceback, _Task)."""

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
LABEL_COLUMN_HELP = (
    "your own CSV's label column: its name in the header or its index from 0 (default: the last)"
)
NEW_HEAD_HELP = "replace the output layer by a new classifier with this many classes (0: keep it)"
LOSS_HELP = (
    "auto (picked from the graph, and said), ce (softmax cross-entropy, on SOFTMAX or logits), "
    "bce (binary cross-entropy, on LOGISTIC or logits), mse (regression; an autoencoder: target = input)"
)


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


DIAG_HELP = (
    "the diagnostic build: carries out the link self-tests, fault injection (DIAG_FAULT), the "
    "power-loss save and PERSIST_ERASE, which every other build refuses. Never for a board that "
    "holds trained state you want to keep"
)


def _build(board: Board, diag: bool = False) -> FirmwareImage:
    t0 = time.monotonic()
    image = build_firmware(board, diag=diag)
    what = " diagnostic (--diag)" if diag else ""
    print(f"built {board.name}{what} firmware {image.build_id} in {time.monotonic() - t0:.1f} s: {image.elf}")
    print("memory use (from the linker's --print-memory-usage):")
    for r in image.regions.values():
        print(f"  {r.name:<6} {r.used:>9,} of {r.size:>9,} bytes  {r.percent:5.1f} %")
    return image


@task
def setup(c: Context) -> None:
    """Install what is missing (Debian packages, .venv); the same as ./setup.sh."""
    _run([str(ROOT / "setup.sh")])


@task(help={"board": BOARD_HELP, "diag": DIAG_HELP})
@friendly
def build(c: Context, board: str | None = None, diag: bool = False) -> None:
    """Build the firmware for a board and print its flash and RAM use."""
    _build(resolve_board(board), diag)


@task(
    help={
        "board": BOARD_HELP,
        "tool": "real boards: pyocd, openocd, st-flash, pio-openocd or pio-st-flash (default: first found)",
        "port": PORT_HELP,
        "model": "real boards: the model whose training plan the firmware carries (default: invoke train's)",
        "scheme": "real boards: its scheme (default: invoke train's)",
        "lr": "real boards: its learning rate (default: invoke train's, 0.01)",
        "diag": DIAG_HELP,
    }
)
@friendly
def flash(
    c: Context,
    board: str | None = None,
    tool: str | None = None,
    port: str | None = None,
    model: str = "",
    scheme: str = "",
    lr: float = 0.01,
    diag: bool = False,
) -> None:
    """Build and load the firmware: start the emulated board, or program a real one with the
    training firmware `invoke train` needs (its plan and build id), then check HELLO's build id."""
    b = resolve_board(board)
    if b.is_emulated and "train" in sys.argv[1:]:
        # The firmware to run is the training firmware, which embeds the plan `train` compiles:
        # `train` (re)starts the emulated board with it. Starting a plain one here would be wasted.
        print(f"flash: `train` will start the emulated board {b.name} with its training firmware")
        return
    if b.is_emulated:
        image = _build(b, diag)
        emu = emulator.start(b, image.elf)
        print(f"emulated board {b.name} running: pid {emu.pid}, serial {emu.url}, log {emu.log}")
        print("  stop it with `invoke stop`; timing figures are QEMU instruction counts (-icount shift=0)")
        return
    from pathlib import Path

    from pytools.flashing import check_running, flash_image, training_image

    if diag:  # the diagnostic firmware (no training plan): link self-tests, fault injection, erase
        image = _build(b, diag)
    else:
        validate.lr(lr)
        image = training_image(b, Path(model) if model else None, scheme, lr)
        print(f"built {b.name} training firmware {image.build_id}: {image.elf}")
    done = flash_image(b, image, tool)
    got = check_running(b, image, port)
    print(f"flashed {b.name} with {done.tool}; the board answers HELLO with build id {got} (the image's)")


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
    from pytools import validate

    validate.integer(count, "--count", 1, 1_000_000)
    validate.integer(size, "--size", 0, 65_535, "the board says at connection how much it takes")
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

    from pytools import validate
    from pytools.model.pipeline import check_fits, convert, memory_report

    if out:
        validate.output_file(out)  # before the build
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
        "model": "an int8 .tflite model (a classifier, a binary classifier, a regression or an autoencoder)",
        "scheme": "a scheme file (schemes/*.toml) or inline: bias=22,-1=1,-3=0.25",
        "board": BOARD_HELP,
        "out": "where to write the training plan (default: build/models/<model>-<board>.train.plan)",
        "loss": LOSS_HELP,
        "new_head": NEW_HEAD_HELP,
    }
)
@friendly
def compile(
    c: Context,
    model: str,
    scheme: str,
    board: str | None = None,
    out: str | None = None,
    loss: str = "auto",
    new_head: int = 0,
) -> None:
    """Compile a training step: memory report by category; refuses a plan that does not fit."""
    from pathlib import Path

    from pytools import validate
    from pytools.train.compile_train import check_fits, load_and_compile, report
    from pytools.train.scheme import load_scheme

    if out:
        validate.output_file(out)  # before the build
    b = resolve_board(board)
    ct = load_and_compile(Path(model), load_scheme(scheme), b, loss=loss, new_head=new_head)
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
        "model": "a pretrained int8 .tflite: a classifier ending in SOFTMAX, logits or LOGISTIC, or an "
        "autoencoder (see --loss; default: the data set's own: digits_cnn, built once, or the backbone in "
        "models/ for hapt and fashion_mnist)",
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
        "label-column": LABEL_COLUMN_HELP,
        "loss": LOSS_HELP + "; a session trains ce, bce (labels 0/1) or an autoencoder's mse (labels, "
        "if any: 0 normal, else anomalous; reports the reconstruction error and ROC AUC)",
        "new-head": NEW_HEAD_HELP + "; initialised seeded by --seed, kept by the session for invoke pull",
    }
)
@friendly
def train(
    c: Context,
    board: str | None = None,
    dataset: str = "digits",
    scheme: str = "",
    epochs: str = "",
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
    label_column: str = "",
    loss: str = "auto",
    new_head: int = 0,
) -> None:
    """Stream a data set to the board and train on it there: progress, held-out metrics, a session folder."""
    from pathlib import Path

    from pytools.session import DEFAULT_SCHEME, run_training_session

    try:
        every = int(save_every) if save_every.strip() else None  # "": at each epoch's end
    except ValueError:
        msg = f"--save-every takes a number of steps (0: only at the end), not {save_every!r}"
        raise ToolError(msg) from None

    # Not given (the defaults "" and -1): the data set's size picks the epochs, a sweep on the
    # host twin the lr; any other value is checked (pytools/validate.py) before anything starts.
    try:
        epochs_given = None if str(epochs).strip() == "" else int(epochs)
    except ValueError:
        raise ToolError(f"--epochs takes a whole number, not {epochs!r}") from None
    lr_given = None if lr == -1.0 else validate.lr(lr)
    run_training_session(
        board if board == HOST else resolve_board(board).name,
        dataset=dataset,
        scheme=scheme or DEFAULT_SCHEME,
        epochs=epochs_given,
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
        label_column=label_column or None,
        loss=loss,
        new_head=new_head or None,
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
        "dealt by a seeded Dirichlet draw; the default for other data sets, ALPHA 0.5), column:NAME (your "
        ".csv's column or .npz's array of group ids: client k owns the k-th group) or iid; each client's "
        "share is listed in the fleet folder's partition.json",
        "label-column": LABEL_COLUMN_HELP,
        "limit": "train each client on at most this many of its own samples per round (default: all)",
        "eval-on": "where held-out samples are scored: twin (the host twin with the board's read-back "
        "state, the board scoring the first 3 too, bit for bit; default) or board (every one on the board)",
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
    label_column: str = "",
    limit: int = 0,
    eval_on: str = "twin",
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
        label_column=label_column or None,
        limit=limit or None,
        eval_on=eval_on,
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
        "predictions against the board's on held-out samples. Refused when the board does not "
        "hold the session's final state (a damaged slot, a failed final save): the error says what "
        "it holds",
        "allow-older": "with --session: export the session's earlier checkpoint the board holds when its "
        "final state is not there (never the untrained state)",
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
    allow_older: bool = False,
) -> None:
    """Read the trained weights from the board and write them into a copy of the original .tflite."""
    from pytools.export import pull as pull_trained

    lines = pull_trained(
        board, out, model=model, scheme=scheme, lr=lr, port=port, session=session, allow_older=allow_older
    )
    for line in lines:
        print(line)


@task(
    help={
        "model": "an int8 .tflite classifier",
        "scheme": "a scheme file or inline (bias=22,-1=1,-3=0.25)",
        "board": BOARD_HELP,
        "port": PORT_HELP,
        "out": "also write the results as Markdown to this file",
        "suite": "run the whole benchmark suite (zoo models, MobileNetV2-w0.35) and write BENCHMARKS.md",
        "samples": "an .npz of samples to train on: x, y (or x_train, y_train), read as --dataset reads it",
        "dataset": _datasets_help()
        + " to train on (default: the model's own data set for a zoo or suite model, else seeded "
        "inputs labelled with the model's own prediction)",
        "label-column": LABEL_COLUMN_HELP,
        "lr": "learning rate of the measured steps (default: the first of 0.01, 0.005, 0.002, 0.001 whose "
        "steps do not diverge on the host twin; a given one is checked the same way)",
        "steps": "steps measured (each as one INVOKE and as forward + backward from the same state)",
        "per-op": "also measure the last step one operator at a time (per-operator and per-layer tables)",
        "kernels": "optimized (the firmware as built, DSP variants) or reference (without -DKERNELS_DSP=1)",
        "link-only": "memory figures from the linker only: nothing runs (a real board need not be attached)",
        "seed": "seed of the split of your own data and of drawn samples",
        "loss": LOSS_HELP,
        "new_head": NEW_HEAD_HELP,
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
    samples: str = "",
    dataset: str = "",
    label_column: str = "",
    lr: float = -1.0,
    steps: int = 5,
    per_op: bool = True,
    kernels: str = "optimized",
    link_only: bool = False,
    seed: int = 0,
    loss: str = "auto",
    new_head: int = 0,
) -> None:
    """Peak SRAM (measured), flash, cost per training step (forward/backward, per operator) and MACs."""
    from pathlib import Path

    from pytools import validate
    from pytools.bench import run_bench, write_benchmarks

    if board == HOST:
        raise ToolError(
            "invoke bench measures a board: its peak SRAM, flash and cost per step; the host twin has "
            "none of these. Give a board (default: the emulated board), or use `invoke train --board "
            "host` to try a scheme on the twin"
        )
    # -1: not given (run_bench picks a rate that does not diverge); anything else is checked now.
    lr_given = None if lr == -1.0 else validate.lr(lr)
    if out:
        validate.output_file(out)  # before the benchmark runs
    b = resolve_board(board)
    if suite:
        dest = Path(out) if out else ROOT / "BENCHMARKS.md"
        write_benchmarks(dest, board_name=b.name, command=f"invoke bench --suite --board {b.name}")
        print(f"wrote {dest}")
        return
    if not model or not scheme:
        raise ToolError("give --model and --scheme (or --suite for the whole benchmark)")
    result = run_bench(
        Path(model),
        scheme,
        b.name,
        Path(out) if out else None,
        steps=steps,
        per_op=per_op,
        port=port,
        link_only=link_only,
        samples_file=samples,
        dataset=dataset,
        label_column=label_column or None,
        seed=seed,
        lr=lr_given,
        kernels=kernels,
        loss=loss,
        new_head=new_head,
    )
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
        "label-column": LABEL_COLUMN_HELP,
        "loss": LOSS_HELP,
        "new_head": NEW_HEAD_HELP,
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
    label_column: str = "",
    loss: str = "auto",
    new_head: int = 0,
) -> None:
    """Choose a sparse-update scheme under a memory budget (contribution analysis, evolutionary search)."""
    from pathlib import Path

    from pytools import validate
    from pytools.plan.run import parse_budget
    from pytools.plan.run import plan as run_plan

    if board == HOST:
        raise ToolError(
            "invoke plan fine-tunes every candidate on the host twin already; --board names the board "
            "whose memory the scheme must fit (default: the emulated board, the Nucleo's limits)"
        )
    validate.lr(lr)
    validate.integer(steps, "--steps", 1, 10**7)
    try:
        seed_list = tuple(
            validate.integer(int(s), "--seeds", 0, validate.SEED_MAX) for s in seeds.split(",") if s
        )
    except ValueError:
        raise ToolError(f"--seeds takes comma-separated whole numbers (e.g. 0,1,2), not {seeds!r}") from None
    if out:
        validate.output_file(out, "--out", ".toml")

    run_plan(
        resolve_board(board),
        dataset,
        parse_budget(budget),
        model=Path(model) if model else None,
        out=Path(out) if out else None,
        lr=lr,
        steps=steps,
        seeds=seed_list,
        split=split or None,
        adapt=adapt or None,
        label_column=label_column or None,
        loss=loss,
        new_head=new_head,
    )


@task(
    help={
        "tasks": "comma-separated task names (default: all; pytools/results.py TASKS)",
        "board": BOARD_HELP,
        "dry-run": "print the runs each task and stage would make and their estimated CPU time; run nothing",
        "render": "rewrite the report (RESULTS.md, README's table) from the runs stored in "
        "docs/results/*.json, after a change to how results are reported; run nothing",
    }
)
@friendly
def results(
    c: Context, tasks: str = "", board: str | None = None, dry_run: bool = False, render: bool = False
) -> None:
    """Regenerate docs/RESULTS.md and docs/results/: accuracy and peak SRAM of each scheme, per task."""
    from pytools.results import OUT_MD, dry_run_text, run_all, single_threaded_tf
    from pytools.results import render as render_report

    only = [t for t in tasks.split(",") if t] or None
    if dry_run:
        print(dry_run_text(only))
        return
    if render:
        render_report()
        print(f"rewrote {OUT_MD} and README.md's table from docs/results/*.json (nothing rerun)")
        return
    single_threaded_tf()  # before anything loads TensorFlow (a fresh clone builds a backbone)
    _, seconds = run_all(resolve_board(board), only)
    print(f"wrote {OUT_MD} in {seconds / 60:.1f} min")


@task
@friendly
def ops_table(c: Context) -> None:
    """Regenerate docs/operators.md (operators, forward/backward kernels, DSP) from ops.def."""
    from pytools.model.ops_table import write

    print(f"wrote {write()}")


@task(help={"models": "comma-separated .tflite files or glob patterns (default: ../shared/models/*.tflite)"})
@friendly
def compare_tflm(c: Context, models: str = "") -> None:
    """Our arena against TFLite Micro's (tflite-micro's own report), as a Markdown table: one
    row per model, with the reason on its row when either side cannot take it."""
    from pytools.boards import load_board
    from pytools.model.compiler import compile_graph
    from pytools.model.tflite_import import import_tflite
    from pytools.model.tflm import COMPARE_HEADER, compare_row, expand_model_paths
    from pytools.paths import SHARED_MODELS

    paths = expand_model_paths(models, SHARED_MODELS)
    if not paths:
        raise ToolError(f"no models given and none in {SHARED_MODELS}")
    board = load_board("mps2_an500")

    def our_arena(data: bytes, name: str) -> int:
        return compile_graph(import_tflite(data, name), board, name).arena

    print("\n".join(COMPARE_HEADER))
    for p in paths:
        print(compare_row(p, our_arena), flush=True)


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


def _run(cmd: list[str]) -> None:
    """Runs a command from an argument list, never through a shell: a value given on the command
    line (a -k expression, a path) is one argument, whatever quotes or semicolons it holds."""
    import subprocess

    code = subprocess.run(cmd, cwd=ROOT).returncode
    if code:
        sys.exit(code)


def _c_files() -> list[str]:
    import subprocess

    out = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "firmware/*.c", "firmware/*.h"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [str(ROOT / f) for f in out.split()]


@task(
    help={
        "board": BOARD_HELP,
        "port": PORT_HELP,
        "tool": "real boards: the flashing tool (see `invoke flash --help`)",
        "flash": "real boards: flash the main job's firmware first (default on; --no-flash: test what runs)",
        "diag": "link the plan into the diagnostic firmware, so the torn-save check runs (default on; "
        "--no-diag: test the very image `invoke train` flashes, torn save skipped)",
    }
)
@friendly
def hil(
    c: Context,
    board: str | None = None,
    port: str | None = None,
    tool: str | None = None,
    flash: bool = True,
    diag: bool = True,
) -> None:
    """The on-board test suite: link, kernels, training, persistence, cost, memory; a report in hil/."""
    from pytools.hil import run_hil

    run = run_hil(resolve_board(board).name, port=port, tool=tool, flash=flash, diag=diag)
    for check in run.checks:
        mark = "ok  " if check.passed else "skip" if check.passed is None else "FAIL"
        print(f"{mark} {check.name:<12} {check.figure}")
        if check.passed is False:
            print(f"     {check.detail}")
    print(f"report: {run.folder / 'report.md'} and {run.folder / 'junit.xml'}")
    if not run.passed:
        raise ToolError(f"the HIL suite failed on {run.board.name}: see {run.folder / 'report.md'}")


@task(help={"k": "only tests matching this pytest -k expression", "x": "stop at the first failure"})
def test(c: Context, k: str = "", x: bool = False) -> None:
    """Run every test (Python and the C unit tests) with pytest."""
    args = ["-q"]
    if k:
        args += ["-k", k]  # one argument, passed as it is (no shell)
    if x:
        args.append("-x")
    _run([sys.executable, "-m", "pytest", *args])


@task
def lint(c: Context) -> None:
    """ruff (Python) and clang-format (C) checks; `invoke fmt` fixes what they find."""
    _run([sys.executable, "-m", "ruff", "check", str(ROOT)])
    _run([sys.executable, "-m", "ruff", "format", "--check", str(ROOT)])
    _run(["clang-format", "--dry-run", "--Werror", *_c_files()])


@task
def fmt(c: Context) -> None:
    """Format Python (ruff) and C (clang-format) in place."""
    _run([sys.executable, "-m", "ruff", "format", str(ROOT)])
    _run([sys.executable, "-m", "ruff", "check", "--fix", str(ROOT)])
    _run(["clang-format", "-i", *_c_files()])
