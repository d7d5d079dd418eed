"""Hostile array files for the loader tests (issue 21's reproducers and the fuzz suite).

:func:`density_files` and :func:`checkpoint_files` write them into a folder and return
``{label: (path, dataset or None, text expected in the error)}``.
"""
from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "checkpoints" / "realnvp_moons.npz"


def density_files(folder: Path, shape=(64, 64)) -> dict:
    """Files a density (or sample) ``path`` may name, each wrong in its own way."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder.joinpath
    good = np.ones(shape)
    out = {}
    p("empty.npy").write_bytes(b"")
    out["empty"] = (p("empty.npy"), None, "is empty")
    with open(p("two.npy"), "wb") as f:  # an .npz of two arrays named .npy
        np.savez(f, a=good, b=good)
    out["npz_named_npy"] = (p("two.npy"), None, "name one with the dataset key")
    np.save(p("struct.npy"), np.zeros(shape, dtype=[("a", "f8"), ("b", "i4")]))
    out["structured"] = (p("struct.npy"), None, "structured")
    from numpy.lib import format as npformat
    with open(p("huge.npy"), "wb") as f:
        npformat.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False,
                                            "shape": (10_000_000_000,)})
        f.write(b"\0" * 64)
    out["huge_header"] = (p("huge.npy"), None, "more than this machine can hold")
    with open(p("lying.npy"), "wb") as f:  # a header larger than the data that follows
        npformat.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False,
                                            "shape": shape})
        f.write(b"\0" * 64)
    out["truncated"] = (p("lying.npy"), None, "truncated")
    np.save(p("complex.npy"), good + 1j)
    out["complex"] = (p("complex.npy"), None, "imaginary part")
    np.save(p("strings.npy"), np.full(shape, "1.5"))
    out["strings"] = (p("strings.npy"), None, "strings")
    p("text.npy").write_text("1.5 2.5\n")
    out["not_an_array"] = (p("text.npy"), None, "not a .npy, .npz or HDF5 file")
    p("dir.npy").mkdir(exist_ok=True)
    out["directory"] = (p("dir.npy"), None, "is a directory")
    if not p("fifo.npy").exists():
        os.mkfifo(p("fifo.npy"))
    out["fifo"] = (p("fifo.npy"), None, "not a regular file")
    with h5py.File(p("bad.h5"), "w") as f:
        f["str"] = np.array(["1.5"] * 4, dtype=h5py.string_dtype())
        f["fixed_str"] = np.full(shape, b"1.5")
        f["compound"] = np.zeros(shape, dtype=[("a", "f8"), ("b", "i4")])
        f["soft"] = h5py.SoftLink("/nowhere")
        f["ext"] = h5py.ExternalLink(str(p("missing.h5")), "/x")
        f.create_group("grp")
    for name, text in (("str", "Python objects"), ("fixed_str", "strings"),
                       ("compound", "structured"), ("soft", "dangling link"),
                       ("ext", "external link"), ("grp", "is a group"),
                       ("absent", "no dataset")):
        out[f"hdf5_{name}"] = (p("bad.h5"), name, text)
    out["hdf5_no_dataset"] = (p("bad.h5"), None, "needs 'dataset'")
    return out


def _savez(path: Path, arrays: dict) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _safetensors(path: Path, header) -> Path:
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"\0" * 16)
    return path


def checkpoint_files(folder: Path) -> dict:
    """Damaged flow checkpoints: ``{label: (path, None, text expected in the error)}``."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder.joinpath
    z = dict(np.load(CHECKPOINT))
    meta = z["metadata"].tobytes().decode()
    out = {}
    buf = io.BytesIO()
    np.savez_compressed(buf, **z)
    raw = bytearray(buf.getvalue())
    for k in range(len(raw) // 2, len(raw) // 2 + 64):
        raw[k] ^= 0xFF
    p("deflate.npz").write_bytes(bytes(raw))
    out["corrupt_deflate"] = (p("deflate.npz"), None, "corrupt")
    np.save(p("npy.npy"), z["metadata"])
    os.replace(p("npy.npy"), p("npy_named.npz"))
    out["npy_named_npz"] = (p("npy_named.npz"), None, "not an .npz archive")
    out["reference_0d"] = (_savez(p("ref0d.npz"), {**z, "reference/input": np.array(1.0)}),
                           None, "reference/input")
    with zipfile.ZipFile(CHECKPOINT) as zin, zipfile.ZipFile(p("member.npz"), "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info.filename))
        zout.writestr("notes.txt", b"hello")
    out["member_not_npy"] = (p("member.npz"), None, "not an .npy array")
    out["safetensors_list"] = (_safetensors(p("list.safetensors"), [1, 2, 3]), None,
                               "expected a JSON object")
    out["safetensors_negative"] = (_safetensors(p("neg.safetensors"), {
        "__metadata__": {"ot_pde": meta},
        "param/x": {"dtype": "F64", "shape": [-1, -2], "data_offsets": [0, 16]}}), None,
        "non-negative")
    deep = "[" * 5000 + "]" * 5000
    out["metadata_deep"] = (_savez(p("deep.npz"), {**z, "metadata": np.frombuffer(
        deep.encode(), dtype=np.uint8)}), None, "metadata")
    return out
