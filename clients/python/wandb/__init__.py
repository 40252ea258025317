"""A `wandb` module for scripts swept by `sweep`: the calls training scripts make
(`wandb.init`, `wandb.config`, `wandb.log`, `wandb.summary`, `wandb.finish`,
`wandb.define_metric`, `wandb.plot.confusion_matrix`, ...) report to the sweep worker that runs
the script; nothing is sent anywhere else and no account is needed. Pure Python, no
dependencies. docs/PROGRAMS.md lists what each call does."""

import atexit
import json
import os
import sys
import time

from . import _files, _install, _media, _transport, plot, sklearn, util  # noqa: F401  (wandb.plot, wandb.sklearn, wandb.util)
from ._media import Html, Image, Table  # noqa: F401
from ._agent import agent, sweep  # noqa: F401

__version__ = "0.1.0+sweep"

_run = None

_install.warn_if_beside_real_wandb()


def termlog(text="", *args, **kwargs):
    print("wandb: " + str(text), file=sys.stderr, flush=True)


termwarn = termlog
termerror = termlog


def _sweep_params():
    text = os.environ.get("SWEEP_PARAMS")
    if not text:
        return {}
    try:
        params = json.loads(text)
    except ValueError:
        _transport.notice("SWEEP_PARAMS is not JSON; the sweep's parameters are not in wandb.config")
        return {}
    return params if isinstance(params, dict) else {}


class Config(object):
    """`wandb.config`: the run's hyperparameters, read as attributes or items. Keys the sweep
    sets are locked: a script's own defaults (`init(config=...)`, `config.update(...)`) do not
    replace them, as in W&B."""

    def __init__(self, locked=None):
        object.__setattr__(self, "_items", {})
        object.__setattr__(self, "_locked", set())
        if locked:
            self._items.update(locked)
            self._locked.update(locked)

    def _set(self, key, value, allow_val_change=False):
        key = str(key)
        if key in self._locked and self._items.get(key) != value:
            _transport.notice("config key %r is set by the sweep; ignored the script's value %r" % (key, value))
            return
        self._items[key] = value

    def update(self, d=None, allow_val_change=False, **kwargs):
        if d is not None:
            if not isinstance(d, dict):
                d = vars(d)  # an argparse Namespace
            for k, v in d.items():
                self._set(k, v, allow_val_change)
        for k, v in kwargs.items():
            self._set(k, v, allow_val_change)

    def setdefaults(self, d):
        for k, v in d.items():
            self._items.setdefault(str(k), v)

    def setdefault(self, key, default=None):
        return self._items.setdefault(str(key), default)

    def as_dict(self):
        return dict(self._items)

    def get(self, key, default=None):
        return self._items.get(key, default)

    def keys(self):
        return self._items.keys()

    def values(self):
        return self._items.values()

    def items(self):
        return self._items.items()

    def __getattr__(self, key):
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError("wandb.config has no key %r" % key)

    def __setattr__(self, key, value):
        self._set(key, value)

    def __getitem__(self, key):
        return self._items[key]

    def __setitem__(self, key, value):
        self._set(key, value)

    def __delitem__(self, key):
        del self._items[key]

    def __contains__(self, key):
        return key in self._items

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return repr(self._items)


class Summary(object):
    """`run.summary`: the run's final values. By default each logged key's last value; setting a
    key sends it to the worker, which then ranks the run by it."""

    def __init__(self):
        object.__setattr__(self, "_items", {})

    def _logged(self, row):
        self._items.update(row)

    def update(self, d=None, **kwargs):
        d = dict(d or {}, **kwargs)
        self._items.update(d)
        _transport.send({"summary": _flatten(d)})

    def get(self, key, default=None):
        return self._items.get(key, default)

    def keys(self):
        return self._items.keys()

    def items(self):
        return self._items.items()

    def __getitem__(self, key):
        return self._items[key]

    def __setitem__(self, key, value):
        self.update({key: value})

    def __getattr__(self, key):
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(key)

    def __setattr__(self, key, value):
        self.update({key: value})

    def __contains__(self, key):
        return key in self._items

    def __repr__(self):
        return repr(self._items)


def _flatten(d, prefix=""):
    """Nested dicts as W&B names their values: {"val": {"acc": 1}} is "val.acc"."""
    out = {}
    for k, v in d.items():
        name = prefix + str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


class _Ignored(object):
    """Media and objects W&B stores (images, tables, artifacts): accepted, not kept."""

    def __init__(self, *args, **kwargs):
        _transport.notice("wandb.%s is accepted and not kept" % type(self).__name__)

    def __getattr__(self, name):
        return lambda *a, **k: None


class Histogram(_Ignored):
    pass


class Video(_Ignored):
    pass


class Audio(_Ignored):
    pass


class Object3D(_Ignored):
    pass


class Artifact(_Ignored):
    pass


class Settings(object):
    def __init__(self, *args, **kwargs):
        self.__dict__.update(kwargs)


class Error(Exception):
    pass


class Run(object):
    """The run `wandb.init` returns (`wandb.run`)."""

    def __init__(self, config, project=None, entity=None, name=None, group=None, tags=None,
                 notes=None, job_type=None, id=None):
        self.config = config
        self.summary = Summary()
        self.project = project or os.environ.get("WANDB_PROJECT") or "uncategorized"
        self.entity = entity or os.environ.get("WANDB_ENTITY")
        self.id = id or os.environ.get("WANDB_RUN_ID") or "offline-%d" % os.getpid()
        self._name = str(name) if name else self.id
        if name:
            _transport.send({"name": self._name})
        self.group = group
        self.tags = tuple(tags or ())
        self.notes = notes
        self.job_type = job_type
        self.sweep_id = os.environ.get("WANDB_SWEEP_ID")
        # Files written here are kept with the trial (SWEEP_FILES_DIR; docs/PROGRAMS.md).
        self.dir = _files.files_dir() or os.getcwd()
        self.url = None
        self.offline = not _transport.connected()
        self.step = 0
        self._row = {}
        self._finished = False
        self._start = time.time()
        _media.reset()

    # The run's name: shown with the trial (leaderboard, `coordinator trial`, the dashboard).
    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        self._name = str(value)
        _transport.send({"name": self._name})

    # W&B's older spelling of the same.
    display_name = name

    # History: a row is committed by log() unless commit=False; a larger step commits the row
    # before it (W&B's rules).
    def log(self, data, step=None, commit=None, sync=None):
        if self._finished:
            _transport.notice("wandb.log after finish() is ignored")
            return
        if not isinstance(data, dict):
            raise TypeError("wandb.log takes a dict, got %s" % type(data).__name__)
        # W&B's step model: a row is committed at the current step (`_step`), which then goes
        # up by one; commit=False merges into the row, a larger `step=` commits the row before
        # it and moves to that step, a smaller one is dropped, and with `step=` given the row
        # waits for a commit (tests/programs/wandb_steps: W&B's own client's rows).
        if step is not None:
            step = int(step)
            if step < self.step:
                _transport.notice("wandb.log with step %d < current step %d is ignored (as W&B does)" % (step, self.step))
                return
            if step > self.step:
                self._send_row()
                self.step = step
        row = {}
        for k, v in _flatten(data).items():
            if isinstance(v, plot.CustomChart):
                if v.confusion is not None:
                    _transport.send({"confusion": v.confusion})
                else:
                    _transport.notice("wandb.plot.%s is accepted and not kept" % v.kind)
                continue
            if isinstance(v, _Ignored):
                continue
            is_media = isinstance(v, _media.Media) or (
                isinstance(v, (list, tuple)) and v and all(isinstance(m, _media.Media) for m in v))
            if is_media or _is_figure(v):
                # A figure that cannot be drawn or a full disk is said, never fatal to the run.
                try:
                    self._keep_media(k, v if is_media else Image(v))
                except Exception as e:
                    _transport.notice("wandb.log: %s is not kept (%s: %s)" % (k, type(e).__name__, e))
                continue
            p = _transport.plain(v)
            if isinstance(p, (int, float, bool)) or p in ("NaN", "Infinity", "-Infinity"):
                row[k] = p
        self._row.update(row)
        if commit is None:
            commit = step is None
        if commit:
            self._send_row()
            self.step += 1

    def _keep_media(self, key, value):
        root = _files.files_dir()
        if root is None:
            _transport.notice(
                "wandb.%s is accepted and not kept: %s" % (
                    type(value[0] if isinstance(value, (list, tuple)) else value).__name__,
                    "not run by a sweep worker" if self.offline else
                    "the sweep keeps no files (program_options.max_files_mb: 0 or keep_models: 0)"))
            return
        _media.keep(root, key, self.step, value)

    def _send_row(self):
        """Sends the row being made, at the current step (a row with no values is not sent, but
        its step is spent all the same)."""
        if not self._row:
            return
        row, self._row = self._row, {}
        self.summary._logged(row)
        _transport.send({"log": row, "step": self.step})

    def define_metric(self, name, step_metric=None, step_sync=None, hidden=None, summary=None,
                      goal=None, overwrite=None, **kwargs):
        if summary:
            msg = {"name": name, "summary": summary}
            if goal:
                msg["goal"] = goal
            _transport.send({"define_metric": msg})
        return None

    def finish(self, exit_code=None, quiet=None):
        global _run
        if self._finished:
            return
        self._send_row()
        self._finished = True
        if _run is self:
            _run = None

    def save(self, glob_str=None, base_path=None, policy="live", glob=True):
        # With no file, W&B's save() only syncs the run: nothing to do here.
        if glob_str is None:
            return True
        return _files.save(glob_str, base_path=base_path, policy=policy, glob=glob)

    def watch(self, *args, **kwargs):
        _transport.notice("wandb.watch is accepted and not kept")

    def log_artifact(self, *args, **kwargs):
        _transport.notice("wandb.log_artifact is accepted and not kept")

    def use_artifact(self, *args, **kwargs):
        _transport.notice("wandb.use_artifact is accepted and not kept")
        return Artifact()

    def log_code(self, *args, **kwargs):
        pass

    def alert(self, *args, **kwargs):
        pass

    def mark_preempting(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.finish(exit_code=1 if exc_type else 0)
        return False


def init(project=None, entity=None, config=None, name=None, group=None, tags=None, notes=None,
         job_type=None, reinit=None, mode=None, id=None, resume=None, dir=None, settings=None,
         anonymous=None, save_code=None, allow_val_change=None, config_exclude_keys=None,
         config_include_keys=None, sync_tensorboard=None, monitor_gym=None, magic=None,
         force=None, **kwargs):
    """Starts the run: `config` holds the script's defaults, under the sweep's parameters."""
    global _run
    if _run is not None:
        if reinit in (False, "return_previous"):
            return _run
        _run.finish()
    cfg = Config(locked=_sweep_params())
    if config is not None:
        if isinstance(config, str):
            _transport.notice("wandb.init(config=%r): config files are not read; pass a dict" % config)
        else:
            cfg.update(config if isinstance(config, dict) else vars(config))
    if config_exclude_keys:
        for k in config_exclude_keys:
            if k in cfg and k not in cfg._locked:
                del cfg[k]
    _run = Run(cfg, project=project, entity=entity, name=name, group=group, tags=tags,
               notes=notes, job_type=job_type, id=id)
    if _run.offline:
        _transport.notice("not run by a sweep worker: nothing is reported (the script runs as usual)")
    return _run


def _need_run(what):
    if _run is None:
        raise Error("You must call wandb.init() before %s" % what)
    return _run


def log(data, step=None, commit=None, sync=None):
    _need_run("wandb.log()").log(data, step=step, commit=commit)


def define_metric(name, *args, **kwargs):
    return _need_run("wandb.define_metric()").define_metric(name, *args, **kwargs)


def finish(exit_code=None, quiet=None):
    if _run is not None:
        _run.finish(exit_code=exit_code)


def login(*args, **kwargs):
    return True


def setup(*args, **kwargs):
    return None


def teardown(*args, **kwargs):
    finish()


def save(glob_str=None, base_path=None, policy="live", glob=True):
    return _need_run("wandb.save()").save(glob_str, base_path=base_path, policy=policy, glob=glob)


def _is_figure(v):
    """Whether `v` is a matplotlib figure, or the pyplot module itself (`wandb.log({"c": plt})`
    logs its current figure in W&B)."""
    mod = type(v).__module__ or ""
    return mod.startswith("matplotlib") or getattr(v, "__name__", "") == "matplotlib.pyplot"


class Api(object):
    """W&B's public API (`wandb.Api()`): made without error, as offline W&B makes it; a query
    says that runs are read from the coordinator here (`coordinator leaderboard`, `trial`,
    `export`, or its HTTP API)."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        def unavailable(*args, **kwargs):
            raise Error(
                "wandb.Api().%s is not available in a sweep run: nothing is sent to W&B; read "
                "the sweep's runs from its coordinator (coordinator leaderboard/trial/export, or "
                "GET /api/v1/sweeps/ID)" % name
            )
        return unavailable


def watch(*args, **kwargs):
    _transport.notice("wandb.watch is accepted and not kept")


def unwatch(*args, **kwargs):
    pass


def log_artifact(*args, **kwargs):
    _transport.notice("wandb.log_artifact is accepted and not kept")


def use_artifact(*args, **kwargs):
    _transport.notice("wandb.use_artifact is accepted and not kept")
    return Artifact()


def alert(*args, **kwargs):
    pass


def __getattr__(name):
    # wandb.run, wandb.config and wandb.summary follow the current run.
    if name == "run":
        return _run
    if name == "config":
        return _run.config if _run is not None else Config()
    if name == "summary":
        return _run.summary if _run is not None else Summary()
    raise AttributeError("module 'wandb' (sweep) has no attribute %r" % name)


@atexit.register
def _finish_at_exit():
    finish()
