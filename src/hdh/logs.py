"""Where the hub's log goes: the hub folder's ``logs/hdh.log`` once a hub is open,
else the user's state folder. Tracebacks go here, never to a user's terminal unless
they ask with ``--debug``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

LOGGER = "hdh"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_state: dict[str, Path] = {}


def fallback_log_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hdh" / "hdh.log"


def configure(path: Path | None = None, *, level: str = "INFO", debug: bool = False) -> Path:
    """Send the ``hdh`` logger to ``path`` (or the fallback), replacing earlier handlers.

    With ``debug`` it also writes to standard error at DEBUG level.
    """
    path = path or fallback_log_path()
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG if debug else level)
    logger.propagate = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler: logging.Handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    except OSError:
        file_handler = logging.NullHandler()
    file_handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(file_handler)
    if debug:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(stream)
    _state["path"] = path
    return path


def current_log_path() -> Path:
    return _state.get("path") or fallback_log_path()
