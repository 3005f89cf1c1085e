"""Character-level tiny Shakespeare: vocabulary, encoding and the conventional 90/10 split."""
import hashlib
import os

import numpy as np

# The shared data folder beside the checkout: <checkout>/../shared/data (override with QTF_DATA or --data).
DEFAULT_DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                             "shared", "data", "tinyshakespeare", "input.txt"))


def load_text(path=DEFAULT_DATA):
    with open(path, "r", encoding="utf-8") as f:
        return f.read()


def char_vocab(text):
    """Token id -> character, sorted by code point (65 symbols for tiny Shakespeare)."""
    return sorted(set(text))


def encode(text, vocab):
    index = {c: i for i, c in enumerate(vocab)}
    return np.array([index[c] for c in text], dtype=np.int64)


def split(ids, train_fraction=0.9):
    n = int(len(ids) * train_fraction)
    return ids[:n], ids[n:]


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def data_path(path=None):
    return path or os.environ.get("QTF_DATA", DEFAULT_DATA)
