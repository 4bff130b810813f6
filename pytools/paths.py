"""Where things are in the repository."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
BUILD = ROOT / "build"
RUN = ROOT / ".run"  # state of running emulated boards (pid, port, log)
SHARED_MODELS = ROOT.parent / "shared" / "models"
