"""How the `wandb` module talks to a sweep worker: JSON objects, one per line, on the file
descriptor named by SWEEP_REPORT_FD (docs/PROGRAMS.md). Without one (a script run by hand),
nothing is sent and the script runs as usual."""

import json
import math
import os
import sys
import threading

_lock = threading.Lock()
_out = None
_opened = False
_said = set()


def notice(text):
    """Print a notice once per text, to stderr (the worker keeps the tail of it)."""
    if text in _said:
        return
    _said.add(text)
    print("wandb (sweep): " + text, file=sys.stderr, flush=True)


def _open():
    global _out, _opened
    if _opened:
        return _out
    _opened = True
    fd = os.environ.get("SWEEP_REPORT_FD")
    if fd:
        try:
            _out = os.fdopen(int(fd), "w", encoding="utf-8", closefd=False)
        except (OSError, ValueError) as e:
            notice("cannot write to SWEEP_REPORT_FD=%s (%s); nothing is reported" % (fd, e))
    return _out


def use(stream):
    """Send to `stream` from now on (wandb.agent's socket to its worker)."""
    global _out, _opened
    _out, _opened = stream, True


def connected():
    """Whether a worker is listening."""
    return _open() is not None


def plain(value):
    """A value as plain JSON data: numpy scalars and arrays, tuples and sets become numbers and
    lists; NaN and infinities become the strings the worker reads back as such; anything else
    becomes None (not a metric)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "size", 1) == 1:
        try:
            return plain(item())
        except (TypeError, ValueError):
            return None
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return plain(tolist())
    return None


def send(message):
    """Send one message ({"log": ...}, {"summary": ...}, ...) to the worker, if there is one."""
    out = _open()
    if out is None:
        return
    line = json.dumps(plain(message), allow_nan=False)
    with _lock:
        try:
            out.write(line + "\n")
            out.flush()
        except (OSError, ValueError) as e:
            notice("the worker's report pipe is closed (%s); nothing more is reported" % e)
