"""Run a Loihi 2 artifact in Lava's bit-accurate CPU models (Loihi2SimCfg(select_tag="fixed_pt")).

    python run_lava.py ARTIFACT_DIR INPUTS.npz RESULT.npz [--states]

INPUTS.npz holds `spikes` [T, B, *input_shape] (0/1) in nmcompile's layout; every sample runs from a fresh
network for T steps. RESULT.npz gets, for every output, `<output>` [T, B, *shape] (spikes), with --states also
`<layer>.u` and `<layer>.v` for every LIF layer, and `seconds_per_step` (wall time of the timed run, after
compilation and the first step). Only numpy and lava-nc 0.10 are needed (scipy for sparse projections), so this
file runs in Lava's own Python 3.10 environment; it does not import nmcompile.
"""

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np


def to_lava(array, layout):
    """nmcompile layout [..., *shape] -> Lava layout [..., *lava_shape] for a stack of samples or steps."""
    if layout == "chw":
        return np.moveaxis(array, (-3, -2, -1), (-1, -2, -3))
    if layout == "cl":
        return np.expand_dims(np.swapaxes(array, -1, -2), -2)
    return array


def read_shape(lava_shape, layout):
    """The nmcompile shape a projection reads, from its Lava shape: an input is reshaped to it (C order) first."""
    if layout == "chw":
        return tuple(reversed(lava_shape))
    if layout == "cl":
        return (lava_shape[2], lava_shape[0])
    return tuple(lava_shape)


def from_lava(array, layout):
    if layout == "chw":
        return np.moveaxis(array, (-1, -2, -3), (-3, -2, -1))
    if layout == "cl":
        return np.swapaxes(array[..., 0, :], -1, -2)
    return array


def load_network(artifact):
    spec = importlib.util.spec_from_file_location("lava_network", Path(artifact) / "lava_network.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_sample(module, artifact, spikes, states):
    """spikes: [T, *input_shape] of one sample. Returns ({output: [T, *shape]}, {layer.u/v: [T, *shape]}, s/step)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.monitor.process import Monitor

    steps = spikes.shape[0]
    net = module.build(Path(artifact) / "network.npz")
    for uses in net.inputs.values():
        for layout, lava_shape, proc, port in uses:
            data = to_lava(spikes.reshape((steps, *read_shape(lava_shape, layout))), layout)
            data = np.moveaxis(np.asarray(data, dtype=np.int64), 0, -1)  # Lava wants time last
            source = Source(data=data.reshape((*lava_shape, steps)))
            source.s_out.connect(getattr(net.proc[proc], port))
    for uses in net.constants.values():
        for _layout, lava_shape, proc, port, start in uses:
            data = np.zeros((*lava_shape, steps), dtype=np.int64)
            data[..., start:] = 1
            source = Source(data=data)
            source.s_out.connect(getattr(net.proc[proc], port))
    sinks = {}
    for name, (layer, _shape, layout) in net.outputs.items():
        lif = net.proc[layer]
        sinks[name] = (Sink(shape=lif.s_out.shape, buffer=steps), layout)
        lif.s_out.connect(sinks[name][0].a_in)
    monitors = {}
    if states:
        for layer, (_shape, layout) in net.neurons.items():
            for var in ("u", "v"):
                monitor = Monitor()
                monitor.probe(getattr(net.proc[layer], var), steps)
                monitors[f"{layer}.{var}"] = (monitor, layer, var, layout)
    anchor = next(iter(net.proc.values()))
    config = Loihi2SimCfg(select_tag="fixed_pt")
    anchor.run(condition=RunSteps(num_steps=1), run_cfg=config)
    start = time.perf_counter()
    if steps > 1:
        anchor.run(condition=RunSteps(num_steps=steps - 1), run_cfg=config)
    per_step = (time.perf_counter() - start) / max(steps - 1, 1)
    outputs = {}
    for name, (sink, layout) in sinks.items():
        data = np.rint(sink.data.get()).astype(np.int64)          # [*lava_shape, T]
        outputs[name] = from_lava(np.moveaxis(data, -1, 0), layout)
    recorded = {}
    for key, (monitor, layer, var, layout) in monitors.items():
        data = monitor.get_data()[net.proc[layer].name][var]      # [T, *lava_shape]
        recorded[key] = from_lava(np.rint(data).astype(np.int64), layout)
    anchor.stop()
    return outputs, recorded, per_step


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run an nmcompile loihi2 artifact in Lava's fixed_pt simulator.")
    parser.add_argument("artifact")
    parser.add_argument("inputs")
    parser.add_argument("result")
    parser.add_argument("--states", action="store_true", help="also record every LIF layer's u and v")
    args = parser.parse_args(argv)
    with np.load(args.inputs) as f:
        spikes = f["spikes"]
    module = load_network(args.artifact)
    collected = {}
    per_step = []
    for b in range(spikes.shape[1]):
        outputs, recorded, seconds = run_sample(module, args.artifact, spikes[:, b], args.states)
        per_step.append(seconds)
        for key, value in {**outputs, **recorded}.items():
            collected.setdefault(key, []).append(value)
    result = {key: np.stack(values, axis=1) for key, values in collected.items()}
    result["seconds_per_step"] = np.array(per_step)
    np.savez(args.result, **result)


if __name__ == "__main__":
    sys.exit(main())
