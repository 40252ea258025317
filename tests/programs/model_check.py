"""Loads a saved model with clients/python/sweep_model.py and prints, as one JSON object, its
predictions on the test images of an IDX file pair: the probabilities of the first N images,
the accuracy on all of them, the first image's pixels (for a PNG), and the same through PyTorch
when it can be imported. Used by tests/tests/models.rs."""

import gzip
import json
import sys

import numpy as np

import sweep_model


def idx(path):
    raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw[4 + 4 * dims :], dtype=np.uint8).reshape(shape)


model, images_path, labels_path, first = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
card, tensors = sweep_model.load(model)
images, labels = idx(images_path), idx(labels_path)
p = sweep_model.predict_proba(card, tensors, images)
out = {
    "probabilities": p[:first].tolist(),
    "accuracy": float((p.argmax(axis=1) == labels).mean()),
    "first_image": images[0].reshape(-1).tolist(),
}
try:
    import torch
except ImportError:
    torch = None
if torch is not None:
    net = sweep_model.to_torch(card, tensors)
    with torch.no_grad():
        x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
        tp = torch.softmax(net(x), dim=1).numpy()
    out["torch_probabilities"] = tp[:first].tolist()
    out["torch_accuracy"] = float((tp.argmax(axis=1) == labels).mean())
print(json.dumps(out))
