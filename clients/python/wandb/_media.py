"""`wandb.Image`, `wandb.Table` and `wandb.Html`: what a script logs besides numbers, kept as
files of its trial, as W&B keeps them in the run's `media/` folder.

Each logged object is written at once under the trial's files directory (SWEEP_FILES_DIR):
`media/images/KEY_STEP_N.png` (or the image file's own type), `media/table/KEY_STEP_N.table.json`
(`{"columns": [...], "data": [[...]]}`, W&B's layout) and `media/html/KEY_STEP_N.html`, and one
line for it is added to `media/_index.jsonl`: `{"key", "step", "type", "path", ...}`. The worker
hands the files back with the trial's other files; the coordinator keeps a trial's `media/` for
every trial (its other files only for the best), and the dashboard's trial page and the report
show them. A trial's media may take SWEEP_MAX_MEDIA_MB (the sweep's
`program_options.max_media_mb`, 10 by default); past it nothing more is written, with a notice.

Images are made as W&B makes them: a numpy array (or nested lists, or a PyTorch tensor with
channels first) of shape H×W, H×W×1, H×W×3 or H×W×4 becomes an L, RGB or RGBA PNG; values in
[0, 1] are scaled by 255, values in [-1, 1] mapped to [0, 255], others clipped to [0, 255]
(`normalize=False` only clips). A PIL image, a matplotlib figure (or `plt`) and an image file's
path are taken as they are. PNGs are encoded here (zlib): no imaging library is needed."""

import io
import json
import os
import re
import struct
import zlib

from . import _transport

INDEX = "media/_index.jsonl"
DEFAULT_MAX_MB = 10
MAX_TABLE_ROWS = 10000
_IMAGE_TYPES = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".gif": "gif"}

_state = {"bytes": 0, "count": 0, "full": False}


def reset():
    """A new run: its own budget and numbering."""
    _state.update(bytes=0, count=0, full=False)


def _budget():
    try:
        mb = float(os.environ.get("SWEEP_MAX_MEDIA_MB", DEFAULT_MAX_MB))
    except ValueError:
        mb = DEFAULT_MAX_MB
    return int(max(mb, 0) * 1024 * 1024)


class Media(object):
    """What `wandb.log` keeps as a file of the trial."""

    kind = "media"

    def _files(self, stem):
        """[(path under the files directory, bytes)] and the index entry's extra fields."""
        raise NotImplementedError


def _png(width, height, channels, rows):
    """A PNG of 8-bit pixels: `rows` holds `height` byte strings of width × channels bytes."""
    color = {1: 0, 3: 2, 4: 6}[channels]

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))


def _png_size(data):
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def _scale(lo, hi, normalize):
    """W&B's guess: [0, 1] → ×255, [-1, 1] → (x + 1) × 127.5, else clip; then truncate."""
    if normalize and 0 <= lo and hi <= 1:
        return lambda x: int(x * 255)
    if normalize and -1 <= lo and hi <= 1:
        return lambda x: int(255 * 0.5 * (x + 1))
    return lambda x: int(min(max(x, 0), 255))


def _array_png(data, normalize):
    """PNG bytes, width and height of an array-like image."""
    if hasattr(data, "detach"):  # a PyTorch tensor: C×H×W
        data = data.detach().cpu()
        if len(data.shape) == 3 and data.shape[0] in (1, 3, 4):
            data = data.permute(1, 2, 0)
        data = data.numpy()
    elif hasattr(data, "numpy") and not hasattr(data, "tobytes"):  # a TensorFlow eager tensor
        data = data.numpy()
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is not None:
        a = np.asarray(data)
        if a.ndim > 2:
            a = a.squeeze()
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)) or a.size == 0:
            raise ValueError("Un-supported shape for image conversion %s" % list(a.shape))
        a = a.astype(np.float64) if a.dtype.kind in "fiub" else a
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if normalize and 0 <= lo and hi <= 1:
            a = a * 255
        elif normalize and -1 <= lo and hi <= 1:
            a = 255 * 0.5 * (a + 1)
        else:
            a = np.clip(a, 0, 255)
        a = np.nan_to_num(a).astype(np.uint8)
        h, w = a.shape[0], a.shape[1]
        channels = 1 if a.ndim == 2 else a.shape[2]
        return _png(w, h, channels, [a[i].tobytes() for i in range(h)]), w, h
    # Nested lists without numpy.
    rows = [list(r) for r in data]
    if not rows or not rows[0]:
        raise ValueError("an empty image")
    channels = len(rows[0][0]) if isinstance(rows[0][0], (list, tuple)) else 1
    if channels not in (1, 3, 4):
        raise ValueError("Un-supported image: %d channels" % channels)
    flat = [v for r in rows for p in r for v in (p if isinstance(p, (list, tuple)) else [p])]
    f = _scale(min(flat), max(flat), normalize)
    w, h = len(rows[0]), len(rows)
    out = []
    for r in rows:
        if len(r) != w:
            raise ValueError("image rows differ in length")
        out.append(bytes(f(v) for p in r for v in (p if isinstance(p, (list, tuple)) else [p])))
    return _png(w, h, channels, out), w, h


class Image(Media):
    """`wandb.Image(data_or_path, mode=None, caption=None, ...)`."""

    kind = "image"

    def __init__(self, data_or_path, mode=None, caption=None, grouping=None, classes=None,
                 boxes=None, masks=None, file_type=None, normalize=True, **kwargs):
        self._caption = None if caption is None else str(caption)
        self._ext = "png"
        self._size = None
        if data_or_path is None:
            raise ValueError("wandb.Image needs an image: an array, a PIL image, a figure or a path")
        d = data_or_path
        mod = type(d).__module__ or ""
        if isinstance(d, Image):
            self._data, self._ext, self._size = d._data, d._ext, d._size
            self._caption = self._caption or d._caption
        elif isinstance(d, (str, bytes)) or hasattr(d, "__fspath__"):
            path = os.fsdecode(os.fspath(d))
            ext = os.path.splitext(path)[1].lower()
            if ext not in _IMAGE_TYPES:
                raise ValueError("wandb.Image(%r): expected a .png, .jpg or .gif file" % path)
            with open(path, "rb") as f:
                self._data = f.read()
            self._ext = _IMAGE_TYPES[ext]
        elif mod.startswith("matplotlib") or getattr(d, "__name__", "") == "matplotlib.pyplot":
            buf = io.BytesIO()
            fig = d.gcf() if hasattr(d, "gcf") else d
            fig.savefig(buf, format="png")
            self._data = buf.getvalue()
        elif mod.startswith("PIL"):
            buf = io.BytesIO()
            d.save(buf, format="PNG")
            self._data = buf.getvalue()
        else:
            self._data, w, h = _array_png(d, normalize)
            self._size = (w, h)
        if self._size is None:
            self._size = _png_size(self._data)

    def _files(self, stem):
        extra = {"caption": self._caption}
        if self._size:
            extra["width"], extra["height"] = self._size
        return [("media/images/%s.%s" % (stem, self._ext), self._data)], extra


def _cell(v):
    p = _transport.plain(v)
    if p is None and v is not None:
        return str(v)[:1000]
    if isinstance(p, str):
        return p[:1000]
    return p


class Table(Media):
    """`wandb.Table(columns=None, data=None, rows=None, dataframe=None, ...)`."""

    kind = "table"

    def __init__(self, columns=None, data=None, rows=None, dataframe=None, dtype=None,
                 optional=True, allow_mixed_types=False, log_mode=None, **kwargs):
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = dataframe.values.tolist()
        rows = data if data is not None else rows
        self.data = [list(r) for r in (rows or [])]
        if columns is None:
            width = len(self.data[0]) if self.data else 3
            columns = ["Input", "Output", "Expected"] if width == 3 else ["c%d" % i for i in range(width)]
        self.columns = [str(c) for c in columns]
        for r in self.data:
            if len(r) != len(self.columns):
                raise ValueError("This table expects %d columns: %s, found %d"
                                 % (len(self.columns), self.columns, len(r)))

    def add_data(self, *data):
        if len(data) != len(self.columns):
            raise ValueError("This table expects %d columns: %s, found %d"
                             % (len(self.columns), self.columns, len(data)))
        self.data.append(list(data))

    def add_column(self, name, data, optional=False):
        if self.data and len(data) != len(self.data):
            raise ValueError("the new column has %d values, the table %d rows" % (len(data), len(self.data)))
        self.columns.append(str(name))
        if not self.data:
            self.data = [[v] for v in data]
        else:
            for r, v in zip(self.data, data):
                r.append(v)

    def get_column(self, name, convert_to=None):
        i = self.columns.index(name)
        return [r[i] for r in self.data]

    def _files(self, stem):
        rows = self.data[:MAX_TABLE_ROWS]
        if len(self.data) > MAX_TABLE_ROWS:
            _transport.notice("wandb.Table: %d rows; the first %d are kept (as W&B keeps)"
                              % (len(self.data), MAX_TABLE_ROWS))
        body = {"_type": "table", "columns": self.columns, "data": [[_cell(v) for v in r] for r in rows]}
        data = json.dumps(body, allow_nan=False, default=str).encode("utf-8")
        return [("media/table/%s.table.json" % stem, data)], {"rows": len(rows), "columns": self.columns[:100]}


class Html(Media):
    """`wandb.Html(data, inject=True)`: HTML text, a path to an .html file, or a file object."""

    kind = "html"

    def __init__(self, data, inject=True, data_is_not_path=False, **kwargs):
        if hasattr(data, "read"):
            data = data.read()
        elif isinstance(data, str) and not data_is_not_path and data.lower().endswith((".html", ".htm")) \
                and os.path.isfile(data):
            with open(data, encoding="utf-8", errors="replace") as f:
                data = f.read()
        self._html = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)

    def _files(self, stem):
        return [("media/html/%s.html" % stem, self._html.encode("utf-8"))], {}


def _stem(key, step):
    _state["count"] += 1
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:64].lstrip(".") or "media"
    return "%s_%d_%d" % (safe, step, _state["count"])


def keep(root, key, step, value):
    """Writes `value` (a Media, or a list of them) logged under `key` at `step` into `root`."""
    items = value if isinstance(value, (list, tuple)) else [value]
    for i, m in enumerate(items):
        if _state["full"]:
            return
        files, extra = m._files(_stem(key, step))
        size = sum(len(b) for _, b in files)
        if _state["bytes"] + size > _budget():
            _state["full"] = True
            _transport.notice(
                "media past %d MB are not kept (the trial's budget, program_options.max_media_mb): "
                "%s at step %d and later" % (_budget() // (1024 * 1024), key, step))
            return
        _state["bytes"] += size
        for path, data in files:
            full = os.path.join(root, *path.split("/"))
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
        entry = {"key": key, "step": step, "type": m.kind, "path": files[0][0]}
        if len(items) > 1:
            entry["index"] = i
        entry.update({k: v for k, v in extra.items() if v is not None})
        with open(os.path.join(root, *INDEX.split("/")), "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
