"""The daily training session: fine-tune a model on the board, sample by sample, from the host.

run_training_session() loads a data set (datasets/), compiles the training step for the
board, puts the firmware holding that step on the board, streams every fine-tuning sample
to it (one SGD step per sample, computed on the device), measures the held-out metric of its
loss (accuracy; an autoencoder's reconstruction error and ROC AUC) on the device before
training and after each epoch, and writes a session folder:

    config.json    every argument, the loss and the head (--loss, --new-head), the board (or
                   "host_twin": true), the data spec, its split and sizes, the lr and how it
                   was chosen, the epochs, the firmware build id the board reported, the plan
                   and arena sizes, the timing note
    trained_state.npz  the trained tensors at the end, read back from the board or the twin
    steps.jsonl    one line per training step: epoch, step, sample, the board's sample id,
                   label, prediction, loss, cost (the board's counter unit, from STEP_RESULT),
                   samples trained, stack high-water, replayed, wall time, link retransmits
    epochs.jsonl   one line per epoch (0 = before training): held-out accuracy (mse: AUC) and
                   loss, mean loss
    loss.png, accuracy.png (held_out.png for an autoencoder's mse), summary.txt, board.log (the
    firmware's own log lines, appended as they come), resumes.jsonl (one line per --resume),
    emulator.log (emulated boards only)
    checkpoints.jsonl  one line per SAVE of the trained state to the board's flash: when asked
                   ("saving") and when done ("saved"): the board's count of trained samples and
                   its state's CRC-32 at the save, slot, sequence
    rolled_back.jsonl  lines a --resume took out of the files above because the board had lost
                   those steps (it was reset, or lost power, after its last checkpoint)
    board-flash.bin    an emulated board's flash, kept when the session ends

The board trains with the training messages (docs/protocol.md, "Training over the link"):
SAMPLE chunks sized by what the board reports, then TRAIN of a sample id; held-out samples
go through EVAL, which trains nothing. The board counts the samples it trained, and step g of
a session trains its sample id first_sample_id + g (config.json). So a session whose host
process died (killed, cable pulled) is carried on with `invoke train --resume`: the board
says how far it got, the steps it trained but the dead process did not log are answered
again from the board's kept results (not trained again), and training goes on from the next
sample. Every sample is trained exactly once, and the session's files are appended to.

Checkpoints: the session SAVEs the board's trained state to its flash during training (at
each epoch's end by default, every save_every steps if given) and at the end; the board keeps
its count of trained samples with the state and restores both at boot. A board that was reset
(or lost power) mid-session comes back at its last checkpoint, below what the session logged:
--resume checks that the board stands exactly at one of the session's checkpoints (count and
state CRC), moves the lines after it to rolled_back.jsonl, and trains those samples again, in
the same order at the same per-step lr factor, so the end state is still every sample trained
once (loop.Run.roll_back).

Which board runs it:
- emulated: a running emulated board (`invoke flash`'s) is reused only if it runs this very
  plan from its initial state; otherwise the session starts its own emulator under a name
  of its own and stops it at the end, on errors and on Ctrl-C too;
- real: the board on --port (or the ST-LINK's port) must run the firmware built for this
  plan; else the error says what to flash and how.

A board proves which plan it runs with two things. The build id in HELLO is a hash of the
firmware's sources, board file and flags: it does not change with the embedded plan, so the
session also compares MODEL_INFO (model name, plan size, arena size, operator and tensor
counts) with the plan it compiled, and reads the trained state back (ARENA_READ) to know
whether it still holds the plan's initial weights.
The package, by what each part is:

    inputs.py   the data set (load_data: the one place --dataset is resolved), the model
                (with its new head, model_head) and its loss (check_model),
                the scheme, and the training step compiled for the board: everything checked
                before a board is touched (prepare)
    board.py    bringing up the board: reuse or start an emulated board, check a real one
                runs this plan's firmware, find a session's board again to resume it
    loop.py     training and evaluation over the link, step by step: steps.jsonl, epochs.jsonl,
                checkpoints, roll-back (Run)
    folder.py   the session folder: its path, config.json, the .jsonl files, the latest session
    plots.py    loss.png and accuracy.png (or held_out.png: mse)
    summary.py  summary.txt at the end
    twin.py     the host twin behind the board's training calls (--board host)
    lr_sweep.py the learning rate when none is given: a short sweep on the twin
    run.py      run_training_session(): the whole session, arguments to folder
"""

from pytools.session.board import model_info, plan_mismatches
from pytools.session.folder import BOARD_FLASH, CHECKPOINTS, ROLLED_BACK, SESSIONS, latest_session, read_jsonl
from pytools.session.inputs import (
    DEFAULT_DATASET,
    DEFAULT_LR,
    DEFAULT_SCHEME,
    Inputs,
    check_classifier,
    check_model,
    default_split,
    is_user_data,
    load_data,
    load_model,
    model_head,
    model_inputs,
    prepare,
    resolve_scheme,
    subset,
)
from pytools.session.loop import Run, flash_wear_note
from pytools.session.run import run_training_session
from pytools.session.twin import TwinTraining

__all__ = [
    "BOARD_FLASH",
    "CHECKPOINTS",
    "DEFAULT_DATASET",
    "DEFAULT_LR",
    "DEFAULT_SCHEME",
    "ROLLED_BACK",
    "SESSIONS",
    "Inputs",
    "Run",
    "TwinTraining",
    "check_classifier",
    "check_model",
    "default_split",
    "flash_wear_note",
    "is_user_data",
    "latest_session",
    "load_data",
    "load_model",
    "model_head",
    "model_info",
    "model_inputs",
    "plan_mismatches",
    "prepare",
    "read_jsonl",
    "resolve_scheme",
    "run_training_session",
    "subset",
]
