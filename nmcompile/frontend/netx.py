"""lava-dl netx networks (`.net`, HDF5) read into the integer IR, with netx's own meaning of every field.

The layout is lava-dl's `src/lava/lib/dl/netx/README.md`: groups /layer/0 .. /layer/n-1, each with a `type`
(input, dense, conv, flatten, ...), a `shape` ((C, H, W) or (N,)), `weight` and `bias` (integer-valued floats that
netx truncates with `.astype(int)`), optional `delay`, conv geometry as (H, W) pairs, and a `neuron` group. netx
(lava-dl 0.6, `netx/hdf5.py`, `netx/utils.py`) maps a CUBA (or LOIHI) neuron to Lava's LIF as

    du = iDecay - 1,  dv = vDecay,  vth = vThMant,  bias_mant = bias,  bias_exp = 6

(a dense block without a neuron group gets netx's default: iDecay 0, vDecay 4096, vThMant 1 << 17). Dense weights
go through netx's `optimize_weight_bits`: weights beyond 8 bits with both signs are clipped to [-256, 254]; the sign
mode follows the signs; the weights are shifted left by s = floor(log2(scale)) + signed (scale = 127 / max and
-128 / min for mixed, 255 / max excitatory, -256 / min inhibitory) with weight_exp = -s, and num_weight_bits =
8 - s - n (n: the trailing zero bits all weights share, less one when signed). Where Lava's truncation keeps those
shifted weights unchanged, the sum shifted back by s is exactly sum(W x), and the projection is stored with the
file's weights and weight_exp 0; otherwise with netx's own (weight, weight_exp, num_weight_bits, sign mode). A conv
block is Lava's Conv: the file's weights as they are (PyTorch orientation), no exponent, output wrapped to 24 bits.

A dense block's `delay` delays its own synapses as netx 0.6 does (Lava DelayDense, clamped to 62 steps): a scalar
for all, one value per output neuron (a row), one per input (a column), or a full matrix; the synapse delivers
1 + delay steps later. netx ignores a conv block's delay, and so does this reader (with a warning). Everything the
IR cannot express is refused naming the block: pool, average, concat, convT, unpool, complex and recurrent blocks,
SDNN and resonate-and-fire neurons, graded spikes (`messageBits` > 0 or `gradedSpike`), an input block with a
neuron of its own.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nmcompile.errors import InputFileError, UnsupportedError, warn
from nmcompile.ir import fixed
from nmcompile.ir import ops as O
from nmcompile.ir.base import Provenance, conv_out_len
from nmcompile.ir.graph import Graph

NETX_BIAS_EXP = 6
DEFAULT_NEURON = {"type": "CUBA", "iDecay": 0, "vDecay": 4096, "vThMant": 1 << 17}  # netx hdf5.py (1 << 18 - 1)
MAX_NETX_DELAY = 62  # netx hdf5.py clamps delays to 62 (Lava DelayDense: 6-bit delays)
UNSUPPORTED = {"pool", "average", "concat", "convT", "unpool", "dense_comp", "dense_rec"}


def read_netx(path: str | Path) -> Graph:
    """The integer graph of a netx file: Input -> (QLinear | QConv) -> QNeuron -> ... -> Output."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "layer" not in f:
                raise UnsupportedError(f"{path}: no /layer group; not a lava-dl netx network")
            blocks = [_block(f["layer"][key]) for key in sorted(f["layer"], key=_index)]
    except OSError as err:
        raise InputFileError(f"{path}: not a readable HDF5 file ({' '.join(str(err).split())[:120]})") from None
    return _graph(blocks, path)


def _index(key: str) -> int:
    if not key.isdigit():
        raise UnsupportedError(f"/layer/{key}: netx layers are named 0, 1, 2, ...")
    return int(key)


def _block(group) -> dict:
    """A layer group as plain values (datasets read whole; the neuron group as a dict)."""
    out: dict = {}
    for key, item in group.items():
        if key == "neuron":
            out["neuron"] = {k: _value(v[()]) for k, v in item.items()}
        elif hasattr(item, "shape"):
            out[key] = _value(item[()])
    return out


def _value(raw):
    if isinstance(raw, bytes):
        return raw.decode("ascii")
    array = np.asarray(raw)
    if array.dtype.kind == "S":
        return array.reshape(-1)[0].decode("ascii")
    return array


def _graph(blocks: list[dict], path: Path) -> Graph:
    graph = Graph(path.stem)
    if not blocks or blocks[0].get("type") != "input":
        raise UnsupportedError(f"{path}: layer 0 must be the input block")
    if "neuron" in blocks[0]:
        raise UnsupportedError(f"{path}: layer 0 (input) has a neuron of its own (netx's Input block, with an "
                               "affine transform applied outside the network); only a plain input is supported")
    shape = tuple(int(d) for d in np.asarray(blocks[0]["shape"]).reshape(-1))
    graph.add("input", O.Input(shape=shape, provenance=Provenance("netx", "layer/0")))
    previous, latency, flatten = "input", 0, False
    for k, block in enumerate(blocks[1:], start=1):
        kind, where = block.get("type"), f"{path}: layer {k} ({block.get('type')})"
        if kind == "flatten":
            flatten = True
            continue
        if kind in UNSUPPORTED or kind not in ("dense", "conv"):
            raise UnsupportedError(f"{where}: netx block type '{kind}' is not supported (input, dense, conv, flatten)")
        if flatten or (kind == "dense" and len(shape) > 1):
            graph.add(f"layer{k}.flatten", O.Flatten())
            graph.connect(previous, f"layer{k}.flatten")
            previous, shape, flatten = f"layer{k}.flatten", (int(np.prod(shape)),), False
        projection = _dense(block, where, shape) if kind == "dense" else _conv(block, where, shape)
        out_shape = projection.out_shape(shape)
        declared = tuple(int(d) for d in np.asarray(block["shape"]).reshape(-1))
        if int(np.prod(declared)) != int(np.prod(out_shape)):
            raise UnsupportedError(f"{where}: shape {declared} but its weights produce {out_shape}")
        neuron = _neuron(block, where, out_shape)
        graph.add(f"layer{k}.synapse", projection)
        graph.add(f"layer{k}", neuron)
        graph.connect(previous, f"layer{k}.synapse")
        graph.connect(f"layer{k}.synapse", f"layer{k}")
        latency += int(np.max(projection.delay))
        previous, shape = f"layer{k}", out_shape
    if previous == "input":
        raise UnsupportedError(f"{path}: no dense or conv block")
    graph.add("output", O.Output(shape=shape))
    graph.connect(previous, "output")
    graph.latency = latency
    graph.verify()
    return graph


def _synapse_delay(block: dict, where: str, weight_shape) -> np.ndarray:
    """netx's delay of a dense block's synapses (0 where absent), broadcast to the weights."""
    if "delay" not in block:
        return np.zeros((), dtype=np.int64)
    delay = np.asarray(block["delay"])
    if delay.size and delay.min() < 0:
        raise UnsupportedError(f"{where}: negative delays")
    if delay.size and delay.max() > MAX_NETX_DELAY:
        warn(f"{where}: delays up to {int(delay.max())} steps; netx clamps them to {MAX_NETX_DELAY}")
        delay = np.clip(delay, 0, MAX_NETX_DELAY)
    delay = delay.astype(np.int64)
    n_out, n_in = weight_shape
    if delay.ndim == 0 or delay.size == 1:
        return delay.reshape(())
    if delay.ndim == 1 and delay.size == n_out:
        return np.repeat(delay.reshape(-1, 1), n_in, axis=1)
    if delay.ndim == 1 and delay.size == n_in:
        return np.repeat(delay.reshape(1, -1), n_out, axis=0)
    if delay.shape == tuple(weight_shape):
        return delay
    raise UnsupportedError(f"{where}: delay of shape {delay.shape} does not fit the weights {tuple(weight_shape)}")


def _integers(block: dict, key: str, where: str) -> np.ndarray:
    """netx's `.astype(int)` of a weight or bias array (truncation toward zero)."""
    values = np.asarray(block[key], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise UnsupportedError(f"{where}: {key} contains NaN or inf")
    return np.trunc(values).astype(np.int64)


def _dense(block: dict, where: str, in_shape) -> O.QLinear:
    if "weight" not in block:
        raise UnsupportedError(f"{where}: no weight (complex 'weight/real' blocks are not supported)")
    n_out = int(np.prod(np.asarray(block["shape"])))
    weight = _integers(block, "weight", where)
    weight = weight.reshape(n_out, -1) if weight.ndim == 1 else weight
    if weight.shape[1] != in_shape[0]:
        raise UnsupportedError(f"{where}: weight {weight.shape} does not take the {in_shape[0]} inputs it receives")
    delay = 1 + _synapse_delay(block, where, weight.shape)
    return O.QLinear(**_netx_weights(weight, where), delay=delay, provenance=Provenance("netx", where.split(": ")[1]))


def _netx_weights(weight: np.ndarray, where: str) -> dict:
    """netx's optimize_weight_bits (see the module doc), kept exact: the file's weights where Lava keeps them."""
    w = weight.copy()
    if (w.max() > 254 and w.min() < 0) or (w.min() < -256 and w.max() > 0):
        w = np.clip(w, -256, 254)
    high, low = int(w.max()), int(w.min())
    if high == 0 and low == 0:
        raise UnsupportedError(f"{where}: every weight is zero (netx cannot scale them)")
    if high < 0:
        mode, signed, scale = "inhibitory", 0, -256 / low
    elif low >= 0:
        mode, signed, scale = "excitatory", 0, 255 / high
    else:
        mode, signed, scale = "mixed", 1, min(127 / high, -128 / low)
    shift = math.floor(math.log2(scale)) + signed
    if shift < 0:
        raise UnsupportedError(f"{where}: weights {low}..{high} exceed netx's 8-bit range")
    zeros = max(n for n in range(9) if np.all(w % (1 << n) == 0)) - signed
    bits = 8 - shift - zeros
    shifted = np.left_shift(w, shift)
    if not 1 <= bits <= 9:
        raise UnsupportedError(f"{where}: netx would use {bits} weight bits, outside Lava's 1..9")
    if np.array_equal(fixed.prepared_weights(shifted, mode, bits), shifted):
        exact_bits = 9 if mode == "mixed" and np.any(w % 2) else 8
        if np.array_equal(fixed.prepared_weights(w, mode, exact_bits), w):
            return {"weight": w, "weight_exp": 0, "num_weight_bits": exact_bits, "sign_mode": mode}
    return {"weight": shifted, "weight_exp": -shift, "num_weight_bits": bits, "sign_mode": mode}


def netx_reads_exactly(weight: np.ndarray) -> bool:
    """Whether netx's weight handling gives these integer dense weights back unchanged (no clipping, no truncation)."""
    try:
        read = _netx_weights(np.asarray(weight, dtype=np.int64), "")
    except UnsupportedError:
        return False
    return read["weight_exp"] == 0 and np.array_equal(read["weight"], weight)


def _pair(block: dict, key: str, default: int) -> tuple[int, int]:
    value = np.asarray(block.get(key, default)).reshape(-1)
    return (int(value[0]), int(value[0])) if value.size == 1 else (int(value[0]), int(value[1]))


def _conv(block: dict, where: str, in_shape) -> O.QConv:
    if "delay" in block and np.any(np.asarray(block["delay"])):
        warn(f"{where}: netx ignores the delay of a conv block; so does nmcompile")
    if len(in_shape) != 3:
        raise UnsupportedError(f"{where}: a convolution of an input of shape {in_shape} (expects (C, H, W))")
    weight = _integers(block, "weight", where)
    if weight.ndim == 5 and weight.shape[4] == 1:
        weight = weight[..., 0]
    if weight.ndim != 4:
        raise UnsupportedError(f"{where}: conv weight of shape {weight.shape} (expects out, in/groups, kH, kW)")
    stride, padding, dilation = _pair(block, "stride", 1), _pair(block, "padding", 0), _pair(block, "dilation", 1)
    for axis in (0, 1):
        if conv_out_len(in_shape[1 + axis], weight.shape[2 + axis], stride[axis], padding[axis], dilation[axis]) <= 0:
            raise UnsupportedError(f"{where}: input {in_shape} is too small for the kernel")
    return O.QConv(weight=weight, stride=stride, padding=padding, dilation=dilation,
                   groups=int(np.asarray(block.get("groups", 1)).reshape(-1)[0]), weight_exp=0, wrap_bits=24,
                   delay=1, provenance=Provenance("netx", where.split(": ")[1]))


def _neuron(block: dict, where: str, shape) -> O.QNeuron:
    config = block.get("neuron", DEFAULT_NEURON)
    kind = str(config.get("type", ""))
    if kind not in ("CUBA", "LOIHI"):
        raise UnsupportedError(f"{where}: neuron type '{kind}' is not supported (CUBA, LOIHI)")
    if int(np.asarray(config.get("messageBits", 0))) > 0 or bool(np.asarray(config.get("gradedSpike", False))):
        raise UnsupportedError(f"{where}: graded spikes (messageBits / gradedSpike) are not supported; the targets "
                               "emit binary spikes")
    per_channel = (-1,) + (1,) * (len(shape) - 1)
    bias = np.zeros((), dtype=np.int64)
    if "bias" in block:
        bias = _integers(block, "bias", where).reshape(-1)
        bias = bias.reshape(per_channel) if bias.size == shape[0] and len(shape) > 1 else bias.reshape(-1)
        if bias.size not in (1, shape[0], int(np.prod(shape))):
            raise UnsupportedError(f"{where}: bias of {bias.size} values for a layer of shape {shape}")
        if bias.size == int(np.prod(shape)):
            bias = bias.reshape(shape)
    return O.QNeuron(shape=shape, du=int(np.asarray(config["iDecay"])) - 1, dv=int(np.asarray(config["vDecay"])),
                     vth=int(np.asarray(config["vThMant"])), bias_mant=bias, bias_exp=NETX_BIAS_EXP,
                     provenance=Provenance("netx", where.split(": ")[1]))
