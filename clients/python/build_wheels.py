#!/usr/bin/env python3
"""Builds sweep's two Python wheels from binaries already compiled, with no Rust step of its own.

    cargo build --release -p coordinator -p worker
    python3 clients/python/build_wheels.py              # --bin-dir target/release --out dist

writes
  dist/sweep_hpo-VERSION-py3-none-PLATFORM.whl   the `coordinator` and `worker` programs (into
                                                 the environment's bin/) and `sweep_model`
  dist/sweep_hpo_wandb-VERSION-py3-none-any.whl  the `wandb` compatibility package (pure Python)

The `wandb` package is its own distribution, pulled in by the extra `sweep-hpo[wandb]`, so that
installing sweep never puts a second `wandb` over a real one without being asked to
(docs/INSTALL.md). A wheel is a zip archive with a dist-info folder (PEP 427, PEP 491); the
programs go in its `.data/scripts/`, which pip installs executable into the environment's bin/.
Pure standard library, Python 3.7 or newer.
"""

import argparse
import base64
import hashlib
import os
import re
import sys
import sysconfig
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROGRAMS = ("coordinator", "worker")
SUMMARY = "Self-hosted hyperparameter sweeps: W&B sweep YAML and training scripts, unchanged, offline"


def workspace_version():
    """The version in the workspace's Cargo.toml ([workspace.package] version)."""
    with open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8") as f:
        text = f.read()
    section = re.search(r"^\[workspace\.package\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = section and re.search(r'^version\s*=\s*"([^"]+)"', section.group(1), re.M)
    if not found:
        sys.exit("build_wheels: no version in [workspace.package] of %s" % os.path.join(ROOT, "Cargo.toml"))
    return found.group(1)


def platform_tag():
    """This machine's wheel platform tag (linux_x86_64, macosx_11_0_arm64, ...)."""
    return re.sub(r"[-.]", "_", sysconfig.get_platform())


def digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


class Wheel:
    """One wheel being written: files in, then dist-info (METADATA, WHEEL, RECORD) on close."""

    def __init__(self, out_dir, name, version, tag, purelib):
        self.dist = "%s-%s" % (name.replace("-", "_"), version)
        self.path = os.path.join(out_dir, "%s-%s.whl" % (self.dist, tag))
        self.name, self.version, self.tag, self.purelib = name, version, tag, purelib
        self.records = []
        self.zip = zipfile.ZipFile(self.path + ".part", "w", zipfile.ZIP_DEFLATED)

    def add(self, arcname, data, executable=False):
        info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        # pip makes a file executable when its zip entry says so.
        info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
        self.zip.writestr(info, data)
        self.records.append("%s,%s,%d" % (arcname, digest(data), len(data)))

    def add_file(self, arcname, path, executable=False):
        with open(path, "rb") as f:
            self.add(arcname, f.read(), executable)

    def close(self, metadata):
        info = self.dist + ".dist-info/"
        self.add(info + "METADATA", metadata.encode())
        self.add(info + "WHEEL", (
            "Wheel-Version: 1.0\nGenerator: sweep build_wheels.py\n"
            "Root-Is-Purelib: %s\nTag: %s\n" % ("true" if self.purelib else "false", self.tag)).encode())
        record = "\n".join(self.records + [info + "RECORD,,"]) + "\n"
        self.zip.writestr(zipfile.ZipInfo(info + "RECORD", date_time=(2020, 1, 1, 0, 0, 0)), record)
        self.zip.close()
        os.replace(self.path + ".part", self.path)
        return self.path


def metadata(name, version, summary, extra_lines=()):
    lines = ["Metadata-Version: 2.1", "Name: " + name, "Version: " + version, "Summary: " + summary,
             "License: MIT OR Apache-2.0", "Requires-Python: >=3.7"]
    return "\n".join(lines + list(extra_lines)) + "\n"


def python_files(package_dir):
    """(arcname, path) for every .py file of a package, sorted, caches left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                found.append((os.path.relpath(path, HERE).replace(os.sep, "/"), path))
    return found


def build(bin_dir, out_dir, version, tag):
    os.makedirs(out_dir, exist_ok=True)
    for program in PROGRAMS:
        path = os.path.join(bin_dir, program)
        if not os.access(path, os.X_OK):
            sys.exit("build_wheels: no `%s` program in %s: build it first "
                     "(cargo build --release -p coordinator -p worker) or name the folder with --bin-dir"
                     % (program, bin_dir))

    main = Wheel(out_dir, "sweep-hpo", version, "py3-none-" + tag, purelib=False)
    for program in PROGRAMS:
        main.add_file("%s.data/scripts/%s" % (main.dist, program), os.path.join(bin_dir, program), executable=True)
    main.add_file("sweep_model.py", os.path.join(HERE, "sweep_model.py"))
    main_path = main.close(metadata("sweep-hpo", version, SUMMARY, [
        "Provides-Extra: wandb",
        'Requires-Dist: sweep-hpo-wandb==%s; extra == "wandb"' % version,
        "Provides-Extra: model",
        'Requires-Dist: numpy; extra == "model"',
    ]))

    compat = Wheel(out_dir, "sweep-hpo-wandb", version, "py3-none-any", purelib=True)
    for arcname, path in python_files(os.path.join(HERE, "wandb")):
        compat.add_file(arcname, path)
    compat_path = compat.close(metadata(
        "sweep-hpo-wandb", version,
        "The `wandb` calls training scripts make, answered by a sweep coordinator instead of W&B "
        "(installs a package named wandb: keep it out of an environment with the real wandb)"))
    return main_path, compat_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"),
                        help="folder holding the built coordinator and worker (default: target/release)")
    parser.add_argument("--out", default=os.path.join(ROOT, "dist"), help="folder for the wheels (default: dist)")
    parser.add_argument("--plat", default=None, help="platform tag (default: this machine's, e.g. linux_x86_64)")
    args = parser.parse_args(argv)
    for path in build(args.bin_dir, args.out, workspace_version(), args.plat or platform_tag()):
        print(path)


if __name__ == "__main__":
    main()
