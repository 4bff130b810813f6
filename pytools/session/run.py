"""run_training_session(): a whole session, from the arguments to the session folder."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from pytools import emulator, validate
from pytools.boards import DEFAULT_BOARD, HOST, load_board
from pytools.connect import BOARD_ENV, resolve_board
from pytools.errors import ToolError
from pytools.model.board_runner import BoardTraining
from pytools.session.board import (
    Connection,
    Terminated,
    connect,
    reconnect,
    sigterm_as_exit,
    state_is_initial,
)
from pytools.session.folder import (
    BOARD_FLASH,
    ROLLED_BACK,
    SESSIONS,
    TRAINED_STATE,
    TWIN_COST_UNIT,
    create_folder,
    resume_target,
    session_config,
    session_path,
    write_json,
    write_row,
)
from pytools.session.inputs import (
    DEFAULT_DATASET,
    DEFAULT_LR,
    DEFAULT_SCHEME,
    DEFAULT_STEPS,
    MAX_DEFAULT_EPOCHS,
    default_epochs,
    prepare,
)
from pytools.session.loop import BoardLog, Run, flash_wear_note, saved_text
from pytools.session.summary import finish
from pytools.session.twin import TwinTraining
from pytools.train import schedule as schedules
from pytools.train.losses import LOSSES
from pytools.train.trainer import Trainer


def run_training_session(
    board_name: str | None,
    dataset: str = DEFAULT_DATASET,
    scheme: str = DEFAULT_SCHEME,
    epochs: int | None = 3,
    lr: float | None = DEFAULT_LR,
    lr_schedule: str = schedules.DEFAULT,
    split: str | None = None,
    port: str | None = None,
    out_dir: Path | None = None,
    model: Path | None = None,
    seed: int = 0,
    limit: int | None = None,
    resume: bool = False,
    held_out: int | None = None,
    save: bool = True,
    save_every: int | None = None,
    label_column: str | None = None,
    loss: str = "auto",
    new_head: int | None = None,
) -> Path:
    """Fine-tunes a model on a board from the host, sample by sample; returns the session folder.

    board_name: a board (boards/*.toml); "host": the host twin (the firmware's C on this
    machine, bit-exact with the board, at the host's speed; the plan is compiled for
    $TINYTRAIN_BOARD or the emulated board, nothing is flashed, the session cannot be resumed);
    None: --board elsewhere on the line, $TINYTRAIN_BOARD, else the emulated board.
    dataset: a name in datasets.names(), or the user's own data (a path or module:function,
    inputs.load_data). split: one of the data set's SPLITS (None: its first).
    scheme: inline (bias=3,-1=1,-2=0.5), a .toml file or a name in schemes/. epochs: None:
    inputs.default_epochs (about 1,000 steps). lr: SGD learning rate in real units (QAS);
    None: a short sweep on the host twin picks it (lr_sweep.py). lr_schedule:
    pytools/train/schedule.py's SCHEDULES, over all the session's steps (linear: from lr down
    to 0). port: the board's serial port or pyserial URL. out_dir: the session folder
    (default sessions/<UTC time>-<board>-<dataset>/). model: an int8 .tflite classifier
    (default: the data set's pretrained model). seed: the sample order of each epoch (and of
    the lr sweep's, and of the split of the user's own data). limit: train on only this many
    fine-tuning samples (classes in turn; for tests). label_column: the user's CSV's label
    column (a name or an index; default: its last).
    loss: auto | ce | bce | mse (pytools/train/losses.py): softmax cross-entropy on a SOFTMAX
    output or on logits, binary cross-entropy on a LOGISTIC output or one logit (labels 0/1),
    mean squared error of an autoencoder (target = the input; labels, if any, mark held-out
    samples normal 0 / anomalous: the ROC AUC of the reconstruction error); auto picks from the
    model's output and says what it picked. new_head: replace the model's output layer by a
    new_head-class one first (pytools/train/new_head.py, seeded by seed), trained by the scheme.
    held_out: evaluate on only this many held-out samples (classes in turn; default all).
    save: save the trained state to the board's flash (restored at its next boot, with the
    board's count of trained samples; `invoke pull --session` exports it): checkpoints during
    the session, and at the end. False: the flash is never written.
    save_every: a checkpoint every this many steps; None (the default) at each epoch's end;
    0 only at the end. Each is a line in checkpoints.jsonl.
    resume: carry on the session in out_dir (default: the latest under sessions/) on the board
    it ran on, with the settings in its config.json, --no-save included (the other arguments
    but port are ignored): the board says how many samples it trained, and the session continues with
    the next, so each sample is trained exactly once. Its files are appended to. A board that
    was reset (or lost power; an emulated board that is not running is started again from its
    flash) stands at its last checkpoint: the steps after it are moved from the session's
    files to rolled_back.jsonl and trained again, so the result is still every sample
    trained once, in order, at its step's lr.
    """
    t_start, started = time.monotonic(), dt.datetime.now(dt.UTC)
    saved: dict[str, Any] | None = None
    if resume:
        out_dir, saved = resume_target(out_dir)
        if saved["board"].get("host_twin"):
            raise ToolError(
                f"the session in {out_dir} ran on the host twin (--board host), whose trained state "
                "lived in that process: it cannot be resumed. Run it again (the twin takes seconds)"
            )
        a = saved["arguments"]
        board_name, dataset, scheme = a["board_name"], a["dataset"], a["scheme"]
        # An lr the sweep chose, and default epochs, are the ones the session resolved.
        epochs = a["epochs"] if a["epochs"] is not None else saved["epochs"]
        lr = a["lr"] if a["lr"] is not None else saved["lr"]["value"]
        split, seed, limit, held_out = a["split"], a["seed"], a["limit"], a.get("held_out")
        label_column = a.get("label_column")
        split = split or saved["dataset"]["split"]
        save_every = a.get("save_every")  # sessions before checkpoints: at each epoch's end now
        lr_schedule = a.get("lr_schedule", "constant")  # sessions before schedules trained at a constant lr
        save = a.get("save", save)  # a --no-save session stays one (older sessions: as asked now)
        model = Path(a["model"]) if a["model"] else None
        loss, new_head = a.get("loss", "auto"), a.get("new_head")  # older sessions: a SOFTMAX's ce
        port = port or a["port"]
        board_name = board_name or saved["board"]["name"]
    arguments = {
        "board_name": board_name,
        "dataset": dataset,
        "scheme": scheme,
        "epochs": epochs,
        "lr": lr,
        "lr_schedule": lr_schedule,
        "split": split,
        "port": port,
        "out_dir": out_dir,
        "model": model,
        "seed": seed,
        "limit": limit,
        "held_out": held_out,
        "save_every": save_every,
        "save": save,
        "label_column": label_column,
        "loss": loss,
        "new_head": new_head,
    }
    if loss not in LOSSES:
        raise ToolError(f"--loss {loss!r}: one of {', '.join(LOSSES)} (auto picks from the model's output)")
    if new_head is not None and (isinstance(new_head, bool) or not isinstance(new_head, int) or new_head < 2):
        raise ToolError(
            f"--new-head {new_head!r}: the number of classes of the new head, a whole number of at least 2"
        )
    # Every option, and the folder to write, before anything loads or starts (pytools/validate.py).
    validate.training(
        dataset=dataset, epochs=epochs, lr_value=lr, seed=seed, limit=limit, held_out=held_out,
        save_every=save_every, out_dir=out_dir if out_dir is not None else SESSIONS,
    )  # fmt: skip
    try:
        schedules.check(lr_schedule)
    except ValueError as e:
        raise ToolError(str(e)) from None
    on_twin = (board_name or os.environ.get(BOARD_ENV)) == HOST
    if on_twin:
        if port:
            raise ToolError(
                f"--port {port}: the host twin runs in this process; leave out --port (or --board)"
            )
        # The plan's memory limits: the board a session would otherwise run on.
        env_board = os.environ.get(BOARD_ENV)
        board = load_board(env_board if env_board and env_board != HOST else DEFAULT_BOARD)
        save = False  # no flash: trained_state.npz holds the result
    else:
        board = resolve_board(board_name)
    inp = prepare(
        board, dataset, scheme, lr, split, model, limit, held_out, seed, lr_schedule,
        link=not on_twin, label_column=label_column, loss=loss, new_head=new_head or 0,
    )  # fmt: skip  # steps 1-3
    lr = inp.lr
    if epochs is None:
        epochs = default_epochs(len(inp.y_train))
        print(f"epochs    {epochs} (none given: about {DEFAULT_STEPS:,} steps, at most {MAX_DEFAULT_EPOCHS})")
    initial = Trainer(inp.ct).state()  # the plan's initial trained state (on the host twin)
    where = HOST if on_twin else board.name
    if resume and out_dir is not None:
        path = Path(out_dir)
    else:
        path = session_path(out_dir, where, inp.data.name)
    folder: Path | None = None

    board_log = BoardLog()
    own: list[str] = []  # the emulator this session started, by name
    conn: Connection | None = None
    run: Run | None = None
    status = "interrupted"
    try:
        with sigterm_as_exit():
            twin: TwinTraining | None = None
            if on_twin:
                twin = TwinTraining(inp.ct)
                conn = Connection(None, "the host twin, in this process")
                folder = create_folder(path, explicit=out_dir is not None)
            elif saved is not None:
                conn = reconnect(board, inp.ct, port, saved, board_log, own, path)
                folder = path
            else:
                conn = connect(board, inp.ct, port, initial, board_log, own)  # step 4
                folder = create_folder(path, explicit=out_dir is not None)
            if not on_twin:
                board_log.attach(folder / "board.log")
            print(
                f"session   {folder}{' (resumed)' if saved else ''}{' on the host twin' if on_twin else ''}"
            )
            if saved is not None:
                first_id = saved.get("first_sample_id", 0)
            elif conn.link is not None:
                first_id = BoardTraining(conn.link).status()["samples_trained"]
            else:
                first_id = 0
            every = save_every if save else 0
            note = flash_wear_note(board, every, epochs * len(inp.y_train))
            if note and not on_twin:
                print(note)
            unit = TWIN_COST_UNIT if on_twin else board.counter_unit
            run = Run(folder, inp, conn.link, unit, first_id, lr_schedule, epochs, every, twin=twin)
            if saved is None and not on_twin and conn.emulator_name is None and conn.reused is None:
                conn.fresh_state = state_is_initial(run.trainer, initial)
                if not conn.fresh_state:
                    print(
                        "note      the board's trained state is not the plan's initial state: it has "
                        "trained since its last reset, and this session carries on from there "
                        "(reset the board for a fresh start)"
                    )
            if saved is None:
                config = session_config(arguments, started, board, inp, conn)
                config["first_sample_id"] = first_id
                # Where the session starts, as a board that lost every step must stand to redo
                # them all (see Run.roll_back).
                config["first_state_crc"] = run.status()["state_crc"]
                config["plan"]["crc32"] = run.training.config["plan_crc"]
                config["epochs"] = epochs
                write_json(folder / "config.json", config)
            elif saved["plan"].get("crc32") not in (None, run.training.config["plan_crc"]):
                # Defence in depth: reconnect already refused a board whose build id (firmware
                # and plan CRC) is not the session's; sessions before checkpoints have no crc32.
                plan_crc = run.training.config["plan_crc"]
                raise ToolError(
                    f"cannot resume the session in {folder}: the board runs plan CRC-32 0x{plan_crc:08x}, "
                    f"the session trained 0x{saved['plan']['crc32']:08x}. Start a new session"
                )
            rng = np.random.default_rng(seed)
            orders = [rng.permutation(len(inp.y_train)) for _ in range(epochs)]
            if saved is not None:
                st = run.status()
                rolled: dict[str, Any] | None = None
                if st["samples_trained"] - first_id < len(run.steps):
                    rolled = run.roll_back(st, saved)
                    print(
                        f"rollback  the board stands at its {rolled['to']} (sample {st['samples_trained']}): "
                        f"it lost {rolled['steps']} steps, which are trained again (their lines moved to "
                        f"{ROLLED_BACK})"
                    )
                replayed = run.resume(orders)
                done = st["samples_trained"] - first_id
                print(
                    f"resumed   the board has trained {done} of this session's {sum(map(len, orders))} "
                    f"steps ({replayed} answered again from its kept results, none trained twice)"
                )
                with open(folder / "resumes.jsonl", "a") as f:
                    write_row(
                        f,
                        {
                            "utc": started.isoformat(timespec="seconds"),
                            "board": st,
                            "replayed": replayed,
                            "rolled_back": rolled,
                        },
                    )
            run.before()  # step 5
            for epoch in range(1, epochs + 1):
                run.epoch(epoch, epochs, orders[epoch - 1])
            run.final = run.status()
            # The trained tensors, read back from the board (ARENA_READ) or the twin: the same
            # file either way, so a twin run and a board run compare directly.
            np.savez(folder / TRAINED_STATE, **run.trainer.state())
            if save:
                run.saved = saved_text(run.checkpoint(epochs, final=True), run.checkpoint_error)
                print(f"flash     {run.saved}")
            status = "completed"
    except KeyboardInterrupt:
        status = "interrupted (Ctrl-C)"
        raise
    except Terminated:
        status = "terminated (SIGTERM)"
        raise
    except BaseException as e:
        status = f"failed: {type(e).__name__}: {e}"
        raise
    finally:
        if run is not None:
            run.close()
        if conn is not None and conn.link is not None:
            with contextlib.suppress(Exception):
                conn.link.close()
        for name in own:  # step 7: the emulator this session started, whatever happened
            emulator.stop(name)
            print(f"stopped emulated board '{name}'")
            if folder is not None:
                with contextlib.suppress(OSError):
                    shutil.move(emulator.RUN / f"{name}.log", folder / "emulator.log")
                # The emulated board's flash goes with the session: `invoke pull --session`
                # boots it again from there and reads the weights it saved.
                if emulator.flash_file(name).exists():
                    emulator.export_flash(board, name, folder / BOARD_FLASH)
                emulator.erase_flash(name)
        board_log.close()
        if folder is not None:  # step 6 (a session that never reached the board leaves no folder)
            on = f"the host twin (plan for {board.name})" if on_twin else board.name
            head = f" with a new {inp.new_head}-class head" if inp.new_head else ""
            title = (
                f"{inp.model_name}{head} on {on}, {dataset} ({inp.split}), loss {inp.head.loss}, "
                f"scheme {scheme}, lr {lr:g}"
            )
            stats = conn.link.stats if conn is not None and conn.link is not None else None
            seconds = time.monotonic() - t_start
            finish(
                folder, status, run, board, f"{title}, seed {seed}", seconds, stats, twin=on_twin,
                loss=inp.head.loss,
            )  # fmt: skip
    assert folder is not None
    return folder
