"""Load a model saved by sweep (a directory with model.json and model.safetensors) into NumPy
or PyTorch, and predict with it exactly as `worker predict` does.

Pure Python and NumPy (PyTorch only for `to_torch`); no safetensors package is needed: the
format is 8 bytes of header length, a JSON header, and the raw little-endian tensors.

    import sweep_model
    card, tensors = sweep_model.load("best-model")
    probs = sweep_model.predict_proba(card, tensors, images)   # images: uint8, N×28×28
    net = sweep_model.to_torch(card, tensors)                  # torch.nn.Sequential, eval mode
    probs = torch.softmax(net(torch.from_numpy(images.reshape(len(images), -1) / 255.0).float()), 1)

docs/MODELS.md describes the files.
"""

import json
import math
import pathlib
import struct

try:
    import numpy as np
except ImportError as e:  # the wheel installs numpy only with its `model` extra
    raise ImportError("sweep_model needs numpy: pip install numpy (or 'sweep-hpo[model]')") from e

FORMAT = "sweep-mlp"
VERSION = 1


def load(directory):
    """The model's card (a dict) and its tensors (name → float32 array), checked against
    each other."""
    d = pathlib.Path(directory)
    card = json.loads((d / "model.json").read_text())
    if card.get("format") != FORMAT or card.get("version") != VERSION:
        raise ValueError(f"{d / 'model.json'}: not a {FORMAT} card of version {VERSION}")
    raw = (d / card["weights"]["file"]).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {t['dtype']}, expected F32")
        begin, end = t["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(t["shape"])
    sizes = card["architecture"]["sizes"]
    for l in range(len(sizes) - 1):
        if tensors[f"layers.{l}.weight"].shape != (sizes[l + 1], sizes[l]):
            raise ValueError(f"layers.{l}.weight: shape does not match the card")
    return card, tensors


_ERF = np.vectorize(math.erf, otypes=[np.float64])

ACTIVATIONS = {
    "identity": lambda z: z,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "gelu": lambda z: z * 0.5 * (1.0 + _ERF(z / math.sqrt(2.0))),
    "silu": lambda z: z / (1.0 + np.exp(-z)),
}


def predict_proba(card, tensors, images):
    """Class probabilities (N × classes) of uint8 images (N × H × W, or N × H·W): pixels
    scaled by 1/255, the network in inference mode (batch normalization by its running
    estimates, no dropout), softmax output."""
    arch = card["architecture"]
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0
    layers = len(arch["sizes"]) - 1
    act = ACTIVATIONS[arch["activation"]]
    for l in range(layers):
        z = x @ tensors[f"layers.{l}.weight"].T.astype(np.float64) + tensors[f"layers.{l}.bias"]
        if l == layers - 1:
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            return e / e.sum(axis=1, keepdims=True)
        if arch["batch_norm"]:
            t = lambda s: tensors[f"layers.{l}.norm.{s}"].astype(np.float64)
            z = t("weight") * (z - t("running_mean")) / np.sqrt(t("running_var") + arch["batch_norm_eps"]) + t("bias")
        x = act(z)


def to_torch(card, tensors):
    """A torch.nn.Sequential in eval mode with the model's weights: Linear, then for each
    hidden layer BatchNorm1d (if any), the activation and Dropout. It returns logits; apply
    softmax for probabilities."""
    import torch
    from torch import nn

    arch = card["architecture"]
    sizes = arch["sizes"]
    modules = {
        "identity": nn.Identity,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.01),
        "gelu": nn.GELU,
        "silu": nn.SiLU,
    }
    seq = []
    for l in range(len(sizes) - 1):
        lin = nn.Linear(sizes[l], sizes[l + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(tensors[f"layers.{l}.weight"].copy()))
            lin.bias.copy_(torch.from_numpy(tensors[f"layers.{l}.bias"].copy()))
        seq.append(lin)
        if l == len(sizes) - 2:
            break
        if arch["batch_norm"]:
            bn = nn.BatchNorm1d(sizes[l + 1], eps=arch["batch_norm_eps"])
            with torch.no_grad():
                for ours, theirs in [("weight", bn.weight), ("bias", bn.bias), ("running_mean", bn.running_mean), ("running_var", bn.running_var)]:
                    theirs.copy_(torch.from_numpy(tensors[f"layers.{l}.norm.{ours}"].copy()))
            seq.append(bn)
        seq.append(modules[arch["activation"]]())
        seq.append(nn.Dropout(arch["dropout"][l]))
    return nn.Sequential(*seq).eval()
