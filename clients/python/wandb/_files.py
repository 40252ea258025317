"""`wandb.save` and `wandb.run.dir`: the files a run hands back to the sweep worker.

The worker names a directory for each trial (SWEEP_FILES_DIR); what the script writes there,
or saves into it with `wandb.save`, is kept with the trial on the coordinator (up to the
sweep's `program_options.max_files_mb`), where `coordinator files` downloads it. `wandb.save`
follows W&B's rules: a glob is expanded when it is called, relative paths keep their folders
under the working directory (or under `base_path`), an absolute one keeps one folder level;
"live" and "end" link the file (its content when the run ends is kept), "now" copies it."""

import glob as _glob
import os
import shutil

from . import _transport


def files_dir():
    """The worker's directory for this run's files, or None outside a worker."""
    d = os.environ.get("SWEEP_FILES_DIR")
    return d or None


def save(glob_str, base_path=None, policy="live", glob=True):
    if isinstance(glob_str, bytes):
        glob_str = glob_str.decode("utf-8")
    glob_str = os.fspath(glob_str)
    if glob_str.startswith(("gs://", "s3://")):
        _transport.notice("wandb.save(%r): a cloud storage URL is not a file; nothing is kept" % glob_str)
        return []
    if policy not in ("live", "end", "now"):
        raise ValueError('Only "live", "end" and "now" policies are currently supported.')
    root = files_dir()
    if root is None:
        _transport.notice("wandb.save is accepted and not kept (not run by a sweep worker)")
        return []
    pattern = os.path.abspath(glob_str)
    if base_path is not None:
        base = os.path.abspath(os.fspath(base_path))
    elif not os.path.isabs(glob_str):
        base = os.path.abspath(".")
    else:
        base = os.path.dirname(os.path.dirname(pattern))
    if os.path.commonpath([pattern, base]) != base:
        raise ValueError("Glob may not walk above the base path")
    if pattern == base:
        raise ValueError("Glob cannot be the same as the base path")
    rel = os.path.relpath(pattern, base)
    if rel.split(os.sep)[0] == "*":
        raise ValueError("Glob may not start with '*' relative to the base path")
    if glob:
        sources = sorted(_glob.glob(os.path.join(base, rel)))
    else:
        literal = os.path.join(base, rel)
        sources = [literal] if os.path.lexists(literal) else []
    if not sources:
        _transport.notice(
            "wandb.save(%r) matched no file: a file is kept when it exists as save() is called "
            "(as in W&B); save it after writing it, or write it into wandb.run.dir" % glob_str)
        return []
    real_root = os.path.realpath(root)
    out = []
    for src in sources:
        src = os.path.abspath(src)
        if os.path.isdir(src):
            _transport.notice("wandb.save: %s is a directory; save the files in it (e.g. %s/*)" % (src, src))
            continue
        # A file already in the run's directory is kept as it is.
        real = os.path.realpath(src)
        if real == real_root or real.startswith(real_root + os.sep):
            out.append(src)
            continue
        dst = os.path.join(root, os.path.relpath(src, base))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.lexists(dst):
            os.unlink(dst)
        if policy == "now":
            shutil.copyfile(src, dst)
        else:
            try:
                os.symlink(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        out.append(dst)
    return sorted(out)
