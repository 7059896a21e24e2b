"""Datasets read from files on this machine.

    train = FashionMNIST(train=True)     # /usr/share/datasets/fashion-mnist
    loader = DataLoader(train, batch_size=64, shuffle=True, seed=0)
"""

from __future__ import annotations

import os
import zlib

import numpy as np

from .data import Dataset, SampleBatch

__all__ = ["FashionMNIST"]

_INSTALL_HINT = ("install it with `sudo apt-get install dataset-fashion-mnist` "
                 "or pass root= a directory holding the IDX files")

_IMAGES_MAGIC = 0x00000803   # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801   # unsigned byte, 1 dimension
_ROWS = _COLS = 28


def _read_bytes(path: str) -> bytes:
    """The file's contents, gunzipped when it is a .gz (every member; a
    truncated or corrupt stream is a ValueError naming the file)."""
    with open(path, "rb") as f:
        raw = f.read()
    if not path.endswith(".gz"):
        return raw
    parts = []
    try:
        while raw:
            # wbits=31: a gzip header and trailer. Concatenated members are a valid gzip file.
            d = zlib.decompressobj(31)
            parts.append(d.decompress(raw))
            if not d.eof:
                raise ValueError(f"{path}: truncated gzip stream")
            raw = d.unused_data
    except zlib.error as e:
        raise ValueError(f"{path}: not a valid gzip file ({e})") from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _parse_idx(path: str, magic: int, item_shape: tuple) -> np.ndarray:
    """An IDX file of unsigned bytes: a big-endian magic, one count per
    dimension, then exactly prod(dims) bytes."""
    buf = _read_bytes(path)
    ndim = 1 + len(item_shape)
    header = 4 * (1 + ndim)
    if len(buf) < header:
        raise ValueError(f"{path}: {len(buf)} bytes is shorter than the {header}-byte IDX header")
    fields = np.frombuffer(buf, dtype=">u4", count=1 + ndim)
    if int(fields[0]) != magic:
        raise ValueError(f"{path}: magic number 0x{int(fields[0]):08x}, expected 0x{magic:08x}")
    dims = tuple(int(d) for d in fields[1:])
    if dims[1:] != item_shape:
        raise ValueError(f"{path}: item dimensions {dims[1:]}, expected {item_shape}")
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(buf) != expected:
        what = "truncated" if len(buf) < expected else "longer than its header says"
        raise ValueError(f"{path}: {what}: {len(buf)} bytes, expected {expected} for "
                         f"{dims[0]} items")
    # NOTE: read-only view of the decompressed bytes (no copy); batches are
    # fancy-indexed copies, so nothing downstream writes into it.
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims)


def _find(root: str, name: str) -> str:
    for directory in (root, os.path.join(root, "FashionMNIST", "raw")):
        for candidate in (name, name + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                return path
    if not os.path.isdir(root):
        raise FileNotFoundError(f"FashionMNIST: no directory {root}; {_INSTALL_HINT}")
    raise FileNotFoundError(f"FashionMNIST: {name}[.gz] not found in {root}; {_INSTALL_HINT}")


class FashionMNIST(Dataset):
    """Zalando's Fashion-MNIST: 28x28 grayscale clothing images, 10 classes,
    60000 for training and 10000 for testing (Xiao et al., 2017).

    Items are (image, label): image float32 in [0, 1] shaped (1, 28, 28),
    label an int64. `transform` / `target_transform` are applied to those
    per item. Without transforms, batches are fetched by fancy indexing.

    Attributes: data (uint8 [N, 28, 28], read-only), targets (int64 [N]),
    classes (the 10 names, indexed by label).
    """

    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    def __init__(self, root="/usr/share/datasets/fashion-mnist", train=True,
                 transform=None, target_transform=None):
        self.root = os.fspath(root)
        self.train = train
        self.transform = transform
        self.target_transform = target_transform
        prefix = "train" if train else "t10k"
        images_path = _find(self.root, f"{prefix}-images-idx3-ubyte")
        labels_path = _find(self.root, f"{prefix}-labels-idx1-ubyte")
        self.data = _parse_idx(images_path, _IMAGES_MAGIC, (_ROWS, _COLS))
        labels = _parse_idx(labels_path, _LABELS_MAGIC, ())
        if len(labels) != len(self.data):
            raise ValueError(f"{labels_path}: {len(labels)} labels but {images_path} has "
                             f"{len(self.data)} images")
        if len(labels) and labels.max() >= len(self.classes):
            bad = int(np.argmax(labels >= len(self.classes)))
            raise ValueError(f"{labels_path}: label {int(labels[bad])} at index {bad} is "
                             f"outside 0..{len(self.classes) - 1}")
        self.targets = labels.astype(np.int64)

    def __len__(self):
        return len(self.data)

    @staticmethod
    def _images(raw: np.ndarray) -> np.ndarray:
        # uint8 [..., 28, 28] -> float32 [..., 1, 28, 28] in [0, 1]
        shape = raw.shape[:-2] + (1, _ROWS, _COLS)
        out = raw.reshape(shape).astype(np.float32)
        out /= np.float32(255)
        return out

    def __getitem__(self, index):
        image, label = self._images(self.data[index]), self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def __getitems__(self, indices):
        if self.transform is not None or self.target_transform is not None:
            return [self[i] for i in np.asarray(indices).tolist()]
        idx = np.asarray(indices, dtype=np.int64)
        return SampleBatch((self._images(self.data[idx]), self.targets[idx]))

    def __repr__(self):
        split = "train" if self.train else "test"
        return f"FashionMNIST({split}, {len(self)} items, root={self.root!r})"
