"""`wandb.sweep` and `wandb.agent` on a sweep coordinator.

`sweep(config)` submits the config with the `coordinator` program (`coordinator submit`).
`agent(sweep_id, function, count)` starts a `worker` for that sweep with one end of a socket
pair; the worker leases the trials (with its heartbeats, retries and fencing) and hands each to
this process, which runs `function` with `wandb.config` set to the trial's parameters, as W&B's
agent does. Both programs are found through SWEEP_COORDINATOR_BIN and SWEEP_WORKER_BIN, on
PATH, or in the bin/ of this Python's environment (where `pip install sweep-hpo` puts them); the coordinator's address and token come from SWEEP_COORDINATOR and
SWEEP_TOKEN (default http://127.0.0.1:50051)."""

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import traceback

from . import _install, _transport


class SweepStop(BaseException):
    """Raised inside the function when the coordinator stops its trial (early termination, the
    sweep stopped). A BaseException, so `except Exception` in the function does not swallow it."""


def _binary(name, env):
    path = os.environ.get(env) or shutil.which(name) or _install.program(name)
    if not path:
        raise RuntimeError(
            "wandb.%s needs sweep's `%s` program: `pip install sweep-hpo` puts it beside this "
            "Python, `cargo install --path %s` on PATH; or set %s to its path"
            % ("sweep" if name == "coordinator" else "agent", name, name, env))
    return path


def _url():
    return os.environ.get("SWEEP_COORDINATOR", "http://127.0.0.1:50051")


def sweep(sweep, entity=None, project=None, prior_runs=None):
    """Creates a sweep from a config dict (W&B's schema) and returns its id."""
    config = sweep() if callable(sweep) else dict(sweep)
    if not any(k in config for k in ("trainer", "program", "command")):
        # Made for wandb.agent: its trials run the caller's function, whatever their names.
        config["trainer"] = "agent"
    if project is not None and "project" not in config:
        config["project"] = project
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        path = f.name
    try:
        out = subprocess.run(
            [_binary("coordinator", "SWEEP_COORDINATOR_BIN"), "submit", path, "--coordinator", _url()],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    finally:
        os.unlink(path)
    if out.returncode != 0:
        raise RuntimeError("wandb.sweep: the coordinator refused the config: " + out.stderr.strip())
    for line in out.stderr.splitlines():
        print("wandb: " + line, file=sys.stderr)
    sweep_id = out.stdout.strip()
    print("wandb: Created sweep with ID: %s" % sweep_id, file=sys.stderr, flush=True)
    return sweep_id


def _raise_in(thread_id):
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(SweepStop))


def agent(sweep_id, function=None, entity=None, project=None, count=None):
    """Runs `function` for trials of `sweep_id` until the sweep is over, or `count` trials."""
    import wandb

    if function is None:
        raise ValueError("wandb.agent needs function=: the code that trains one run")
    mine, theirs = socket.socketpair()
    cmd = [_binary("worker", "SWEEP_WORKER_BIN"), "--coordinator", _url(), "--sweep", str(sweep_id),
           "--function-fd", str(theirs.fileno())]
    if count:
        cmd += ["--count", str(int(count))]
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    proc = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], env=env)
    theirs.close()
    reader = mine.makefile("r", encoding="utf-8")
    writer = mine.makefile("w", encoding="utf-8")
    _transport.use(writer)
    main = threading.get_ident()
    trials = []
    ready = threading.Condition()
    state = {"running": False, "stopped": None, "closed": False}

    def read():
        for line in reader:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with ready:
                if "trial" in msg:
                    trials.append(msg["trial"])
                    ready.notify_all()
                elif "stop" in msg and state["running"] and state["stopped"] is None:
                    state["stopped"] = msg["stop"]
                    _raise_in(main)
        with ready:
            state["closed"] = True
            ready.notify_all()

    threading.Thread(target=read, name="sweep-agent", daemon=True).start()
    saved = {k: os.environ.get(k) for k in ("SWEEP_PARAMS", "WANDB_SWEEP_ID", "WANDB_RUN_ID", "SWEEP_TRIAL", "SWEEP_ATTEMPT", "SWEEP_FILES_DIR", "SWEEP_MAX_MEDIA_MB")}
    try:
        while True:
            with ready:
                while not trials and not state["closed"]:
                    ready.wait()
                if not trials:
                    break
                t = trials.pop(0)
                state["running"], state["stopped"] = True, None
            os.environ.update({
                "SWEEP_PARAMS": json.dumps(t["params"]), "WANDB_SWEEP_ID": t["sweep_id"],
                "WANDB_RUN_ID": t["run_id"], "SWEEP_TRIAL": str(t["trial"]),
                "SWEEP_ATTEMPT": str(t["attempt"]),
            })
            # The trial's files directory (none when the sweep keeps no files).
            if t.get("files_dir"):
                os.environ["SWEEP_FILES_DIR"] = t["files_dir"]
            else:
                os.environ.pop("SWEEP_FILES_DIR", None)
            if t.get("max_media_mb") is not None:
                os.environ["SWEEP_MAX_MEDIA_MB"] = str(t["max_media_mb"])
            error = None
            try:
                try:
                    function()
                finally:
                    with ready:
                        state["running"] = False
            except SweepStop:
                pass
            except Exception:
                error = traceback.format_exc()
                print(error, file=sys.stderr, flush=True)
            try:
                wandb.finish()
            except SweepStop:  # a stop that arrived as the function returned
                wandb.finish()
            _transport.send({"done": {"error": error}})
    finally:
        _transport.use(None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        try:
            mine.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        proc.wait()
