"""Small lava-dl netx files written here with h5py in the layout of lava-dl's netx README (slayer's exporter layout):
integer-valued float32 weights, (C, H, W) shapes, (H, W) conv pairs, a CUBA neuron group per block."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def cuba(i_decay: int, v_decay: int, vth: int, **extra) -> dict:
    return {"type": "CUBA", "iDecay": i_decay, "vDecay": v_decay, "vThMant": vth, "refDelay": 1,
            "gradedSpike": False, **extra}


def write(path: Path, layers: list[dict]) -> Path:
    with h5py.File(path, "w") as f:
        group = f.create_group("layer")
        for k, layer in enumerate(layers):
            g = group.create_group(str(k))
            for key, value in layer.items():
                if key == "neuron":
                    neuron = g.create_group("neuron")
                    for nk, nv in value.items():
                        neuron.create_dataset(nk, data=np.bytes_(nv) if isinstance(nv, str) else nv)
                elif key == "type":
                    g.create_dataset("type", data=np.array([value.encode()], dtype="S10"))
                else:
                    g.create_dataset(key, data=np.asarray(value))
    return path


def dense_layers(rng, delays: bool = True) -> list[dict]:
    """20 -> 30 -> 12 -> 6: even and odd weights, a bias, decaying currents, a block without decay, delays per output
    neuron and per input (netx 0.6 DelayDense)."""
    first = {"type": "dense", "shape": np.array([30]), "inFeatures": 20, "outFeatures": 30,
             "weight": (2 * rng.integers(-60, 128, (30, 20))).astype(np.float32),
             "bias": rng.integers(-3, 4, 30).astype(np.float32), "neuron": cuba(1024, 400, 800)}
    second = {"type": "dense", "shape": np.array([12]), "inFeatures": 30, "outFeatures": 12,
              "weight": rng.integers(-40, 60, (12, 30)).astype(np.float32), "neuron": cuba(4096, 0, 700)}
    if delays:
        first["delay"] = rng.integers(0, 4, 30).astype(np.float32)
        second["delay"] = rng.integers(0, 5, 30).astype(np.float32)
    return [{"type": "input", "shape": np.array([20])}, first, second,
            {"type": "dense", "shape": np.array([6]), "inFeatures": 12, "outFeatures": 6,
             "weight": (4 * rng.integers(-5, 20, (6, 12))).astype(np.float32), "neuron": cuba(4096, 1000, 300)}]


def conv_layers(rng) -> list[dict]:
    """(2, 8, 8) -> conv 3x3 (4, 6, 6) -> flatten -> dense 5; the conv weights with slayer's trailing axis."""
    return [{"type": "input", "shape": np.array([2, 8, 8])},
            {"type": "conv", "shape": np.array([4, 6, 6]), "inChannels": 2, "outChannels": 4,
             "kernelSize": np.array([3, 3]), "stride": np.array([1, 1]), "padding": np.array([0, 0]),
             "dilation": np.array([1, 1]), "groups": 1,
             "weight": (2 * rng.integers(-40, 100, (4, 2, 3, 3, 1))).astype(np.float32),
             "neuron": cuba(2048, 300, 600)},
            {"type": "flatten", "shape": np.array([144])},
            {"type": "dense", "shape": np.array([5]), "inFeatures": 144, "outFeatures": 5,
             "weight": (2 * rng.integers(-30, 60, (5, 144))).astype(np.float32), "neuron": cuba(4096, 512, 1200)}]
