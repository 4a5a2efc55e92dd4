"""model.net: the network in lava-dl netx's HDF5 layout (docs/formats/loihi.md; lava-dl's netx/hdf5.py reader).

netx describes a chain `input -> (dense | conv | flatten)*` of CUBA LIF layers. A layer's bias is a neuron bias
(netx: bias_mant = bias, bias_exp = 6). nmcompile carries biases on constant sources so they start with the layer's
first input; here they are folded back into the neuron bias, which netx applies from the first step. model.net
therefore equals the compiled network exactly for bias-free networks, and after the first L steps otherwise.
Networks netx cannot describe (recurrence, skip connections, per-synapse delays, negative weight exponents, a
bias that is not a multiple of 64) get no model.net, with the reason in the report.
"""

from __future__ import annotations

import io

import numpy as np

from nmcompile.ir import fixed
from nmcompile.lowered import LoweredNetwork, Projection


class NotNetx(Exception):
    pass


def netx_bytes(view: LoweredNetwork) -> tuple[bytes | None, str]:
    try:
        layers = _layers(view)
    except NotNetx as why:
        return None, str(why)
    return _write(layers), f"{len(layers)} layers"


def _layers(view: LoweredNetwork) -> list[dict]:
    if len(view.inputs) != 1 or len(view.outputs) != 1:
        raise NotNetx("netx describes one input and one output")
    source = next(iter(view.inputs.values()))
    output = next(iter(view.outputs.values()))
    layers: list[dict] = [{"type": "input", "shape": source.shape}]
    node = source.name
    while True:
        readers = [p for p in view.projections if p.source == node]
        if node == output.layer and not readers:
            return layers
        if len(readers) != 1 or node == output.layer:
            raise NotNetx(f"'{node}' feeds {len(readers) + (node == output.layer)} nodes; netx describes a chain")
        p = readers[0]
        if p.form == "csr":
            raise NotNetx(f"'{p.name}' is a sparse projection")
        if tuple(p.source_shape) != tuple(p.in_shape):
            if len(p.in_shape) != 1:
                raise NotNetx(f"'{p.name}' reads '{p.source}' {tuple(p.source_shape)} laid out as {tuple(p.in_shape)} "
                              "(a Reshape); netx's only layout change is a flatten")
            layers.append({"type": "flatten", "shape": p.in_shape})
        if tuple(p.out_shape) != tuple(view.layers[p.dest].shape):
            raise NotNetx(f"'{p.name}' must feed a neuron layer directly")
        layers.append(_layer(view, p))
        node = p.dest


def _bias_from_sources(view: LoweredNetwork, main: Projection, shape) -> np.ndarray:
    """The per-step input a neuron layer receives from constant sources, as u units (a << 6 per step)."""
    total = np.zeros(shape, dtype=np.int64)
    for p in view.into(main.dest):
        if p is main:
            continue
        if p.source not in view.constants:
            raise NotNetx(f"'{main.dest}' has a second input '{p.name}'; netx layers have one")
        if p.form == "dense":
            a = fixed.floor_shift(p.effective_matrix()[:, 0], p.weight_exp)
            total += a.reshape(shape)
        else:
            total += p.op.weight[:, 0].reshape(-1, *([1] * (len(shape) - 1))).astype(np.int64)
    return total


def _layer(view: LoweredNetwork, p: Projection) -> dict:
    op, name, neuron_name = p.op, p.name, p.dest
    neuron = view.layers[neuron_name].op
    shape = view.layers[neuron_name].shape
    if np.any(p.delay != 1):
        raise NotNetx(f"'{name}' has delays other than one step")
    if np.ptp(neuron.du) or np.ptp(neuron.dv) or np.ptp(neuron.vth):
        raise NotNetx(f"'{neuron_name}' has per-neuron decays or thresholds")
    if np.any(neuron.u_init) or np.any(neuron.v_init):
        raise NotNetx(f"'{neuron_name}' starts from a non-zero state")
    source_bias = _bias_from_sources(view, p, shape)
    if np.any(source_bias) and int(np.asarray(neuron.du).reshape(-1)[0]) != fixed.DECAY_UNITY - 1:
        raise NotNetx(f"'{neuron_name}': a bias through a decaying current has no netx form")
    total = (source_bias << fixed.ACT_SHIFT) + np.broadcast_to(fixed.effective_bias(neuron.bias_mant, neuron.bias_exp),
                                                              shape)
    if np.any(total % (1 << fixed.ACT_SHIFT)):
        raise NotNetx(f"'{neuron_name}': its bias is not a multiple of 64 (netx biases have exponent 6)")
    block = {"shape": shape, "neuron": {"type": "CUBA", "iDecay": int(np.asarray(neuron.du).reshape(-1)[0]) + 1,
                                        "vDecay": int(np.asarray(neuron.dv).reshape(-1)[0]),
                                        "vThMant": int(np.asarray(neuron.vth).reshape(-1)[0]), "refDelay": 1,
                                        "gradedSpike": False}}
    if np.any(total):
        block["bias"] = (total >> fixed.ACT_SHIFT).astype(np.float32)
    if op.weight_exp < 0:
        raise NotNetx(f"'{name}': a negative weight exponent floors the sum; netx weights are integers")
    if p.form == "dense":
        from nmcompile.frontend.netx import netx_reads_exactly

        weight = p.effective_matrix() << op.weight_exp
        if not netx_reads_exactly(weight):
            raise NotNetx(f"'{name}': weights {int(weight.min())}..{int(weight.max())} (mantissa << exponent) are "
                          "not netx's 8-bit weights, which netx would clip or truncate")
        block.update(type="dense", inFeatures=op.weight.shape[1], outFeatures=op.weight.shape[0],
                     weight=weight.astype(np.float32))
    else:
        if op.weight.ndim != 4:
            raise NotNetx(f"'{name}': netx convolutions are 2-D")
        block.update(type="conv", inChannels=op.weight.shape[1] * op.groups, outChannels=op.weight.shape[0],
                     kernelSize=np.array(op.weight.shape[2:]), stride=np.array(op.stride),
                     padding=np.array(op.padding), dilation=np.array(op.dilation), groups=op.groups,
                     weight=op.weight.astype(np.float32))
    return block


def _write(layers: list[dict]) -> bytes:
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w", track_order=False) as f:
        group = f.create_group("layer")
        for k, layer in enumerate(layers):
            g = group.create_group(str(k))
            for key, value in layer.items():
                if key == "neuron":
                    ng = g.create_group("neuron")
                    for nk, nv in value.items():
                        ng.create_dataset(nk, data=np.bytes_(nv) if isinstance(nv, str) else nv, track_times=False)
                elif key == "type":
                    g.create_dataset("type", data=np.array([value.encode()], dtype="S10"), track_times=False)
                else:
                    g.create_dataset(key, data=np.asarray(value), track_times=False)
        sim = f.create_group("simulation")
        sim.create_dataset("Ts", data=1.0, track_times=False)
        sim.create_dataset("tSample", data=1, track_times=False)
    return buffer.getvalue()
