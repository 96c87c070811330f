"""L4: what every pylium daemon does the same way: logging, signals, its config file.

Daemons log one line per event to stderr (the lab sends it to a file) as
``time level logger: message key=value ...``; SIGTERM and SIGINT set the stop event that
every loop waits on, so shutdown is prompt and clean.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pylium.base.errors import ConfigError

_STD_FIELDS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in _STD_FIELDS}
        if extra:
            base += " " + " ".join(f"{k}={v}" for k, v in sorted(extra.items()))
        return base


def setup_logging(debug: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        logging.getLogger(__name__).info("stopping on signal %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def read_configmap(path: Path | None) -> dict[str, str]:
    """A flat ``cilium-config`` map from a JSON file (the lab writes one per daemon)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError("--config", f"{path}: {err}") from err
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError("--config", f"{path}: expected a JSON object of string values")
    return data
