"""Where things are in the repository."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
BUILD = ROOT / "build"
# State of running emulated boards (pid, port, log); tests point this elsewhere.
RUN = Path(os.environ.get("TINYTRAIN_RUN_DIR", ROOT / ".run"))
SHARED_MODELS = ROOT.parent / "shared" / "models"
