"""Makes cases.json: the cases of W&B's own sweep engine test suite (`wandb/sweeps`, tests/),
as data, with the answers W&B's engine gives. Not run by CI; run it to refresh the data:

    python -m venv /tmp/wbs-venv && /tmp/wbs-venv/bin/pip install sweeps==0.3.0 pytest
    git clone https://github.com/wandb/sweeps /tmp/wandb-sweeps   # its tests/
    cd /tmp/wandb-sweeps && /tmp/wbs-venv/bin/python -m pytest -q -p harvest tests \\
        --rootdir . -o pythonpath=/path/to/this/directory
    # writes $SWEEP_HARVEST_OUT (default ./cases.json)

While W&B's tests run, this plugin records every config they validate (and whether W&B's
engine accepts it), every grid they search (the whole grid, in W&B's order), every hyperband
decision (runs, histories, the runs stopped) and the value types of random draws. The tests'
own asserts still run; nothing of W&B's code is copied here, only what it answers.
"""
import copy
import json
import os

import sweeps.config.cfg as cfg
import sweeps.grid_search as grid
import sweeps.hyperband_stopping as hb
import sweeps.random_search as rnd

CASES = {"validate": [], "grid": [], "hyperband": [], "types": []}
_seen = set()
_test = {"name": ""}


def _key(kind, obj):
    k = kind + json.dumps(obj, sort_keys=True, default=str)
    if k in _seen:
        return False
    _seen.add(k)
    return True


def _plain(v):
    try:
        json.dumps(v)
        return v
    except TypeError:
        item = getattr(v, "item", None)
        if callable(item):
            return item()
        if isinstance(v, dict):
            return {k: _plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [_plain(x) for x in v]
        return str(v)


_orig_init = cfg.SweepConfig.__init__


def _init(self, d, *a, **kw):
    given = _plain(copy.deepcopy(dict(d)))
    try:
        _orig_init(self, d, *a, **kw)
    except Exception as e:
        if _key("validate", given):
            CASES["validate"].append({"test": _test["name"], "config": given, "valid": False,
                                      "error": type(e).__name__})
        raise
    if _key("validate", given):
        CASES["validate"].append({"test": _test["name"], "config": given, "valid": True})


cfg.SweepConfig.__init__ = _init

_orig_grid = grid.grid_search_next_runs


def _unwrap(config):
    out = {}
    for k, v in config.items():
        out[k] = v["value"] if isinstance(v, dict) and "value" in v else v
    return out


_grids = []


def _grid(runs, sweep_config, *a, **kw):
    given = _plain(copy.deepcopy(dict(sweep_config)))
    if _key("grid", given):
        # Searched at the end of the session, after the tests' own monkeypatches are undone.
        _grids.append((_test["name"], given))
    return _orig_grid(runs, sweep_config, *a, **kw)


def _search_grids():
    for name, given in _grids:
        try:
            points = [r for r in _orig_grid([], copy.deepcopy(given), n=100000) if r is not None]
            CASES["grid"].append({"test": name, "config": given,
                                  "grid": [_plain(_unwrap(r.config)) for r in points]})
        except Exception as e:
            CASES["grid"].append({"test": name, "config": given, "error": type(e).__name__})


grid.grid_search_next_runs = _grid

_orig_hb = hb.hyperband_stop_runs


def _hb(runs, config, *a, **kw):
    out = _orig_hb(runs, config, *a, **kw)
    try:
        metric = config["metric"]["name"]
        case = {"test": _test["name"], "config": _plain(copy.deepcopy(dict(config))),
                "runs": [{"name": r.name, "state": str(getattr(r.state, "value", r.state)),
                          "history": [_plain(h[metric]) for h in (r.history or []) if metric in h]}
                         for r in runs],
                "stop": sorted(r.name for r in out)}
        if _key("hyperband", case):
            CASES["hyperband"].append(case)
    except Exception:
        pass
    return out


hb.hyperband_stop_runs = _hb

_orig_rnd = rnd.random_search_next_runs


def _type(v):
    import numbers

    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "bool"
    if isinstance(v, numbers.Integral):
        return "int"
    if isinstance(v, numbers.Real):
        return "float"
    if isinstance(v, str):
        return "str"
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "dict"
    return type(v).__name__


def _rnd(sweep_config, *a, **kw):
    out = _orig_rnd(sweep_config, *a, **kw)
    given = _plain(copy.deepcopy(dict(sweep_config)))
    try:
        types = {}
        for r in out:
            for k, v in _unwrap(r.config).items():
                types.setdefault(k, set()).add(_type(v))
        if _key("types", given):
            CASES["types"].append({"test": _test["name"], "config": given,
                                   "types": {k: sorted(v) for k, v in types.items()}})
    except Exception:
        pass
    return out


rnd.random_search_next_runs = _rnd


def pytest_runtest_setup(item):
    _test["name"] = item.nodeid


def _finite(v):
    """JSON has no NaN or infinity: such values (histories of runs that diverged) become null."""
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def pytest_sessionfinish(session, exitstatus):
    _search_grids()
    path = os.environ.get("SWEEP_HARVEST_OUT", "cases.json")
    with open(path, "w") as f:
        json.dump({"source": "wandb/sweeps tests/, answers of sweeps==0.3.0", "cases": _finite(CASES)},
                  f, sort_keys=True, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print("\nharvest: %s" % {k: len(v) for k, v in CASES.items()})
