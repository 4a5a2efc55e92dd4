"""Run a .net file through lava-dl 0.6.0's own netx reader in Lava 0.10 (fixed_pt): the reference for nmcompile's
netx reader. Runs under the Lava interpreter with lava-dl installed --no-deps on PYTHONPATH (Makefile: lava-netx):

    python netx_lava_runner.py NET INPUTS.npy OUTPUTS.npy      INPUTS [T, *shape] (nmcompile layout), OUTPUTS [T, *out]

netx's package __init__ imports two torch-based modules its HDF5 reader does not use (sequential_modules, and slayer's
resonate-and-fire parameters, used only for RF neurons); they are replaced by empty modules so that torch is not
needed.
"""

import sys
import types
from pathlib import Path

for name in ("lava.lib.dl.netx.sequential_modules", "lava.lib.dl.slayer", "lava.lib.dl.slayer.neuron",
             "lava.lib.dl.slayer.neuron.rf"):
    module = types.ModuleType(name)
    module.__file__ = str(Path(__file__))  # Lava's process-model discovery asks modules for their file
    sys.modules[name] = module
sys.modules["lava.lib.dl.slayer.neuron.rf"].neuron_params = None

import numpy as np  # noqa: E402
from lava.lib.dl import netx  # noqa: E402
from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.io.sink import RingBuffer as Sink  # noqa: E402
from lava.proc.io.source import RingBuffer  # noqa: E402


def main() -> None:
    net_path, in_path, out_path = sys.argv[1:4]
    x = np.load(in_path)
    steps = x.shape[0]
    data = x.transpose(3, 2, 1, 0) if x.ndim == 4 else x.T  # Lava's (W, H, C, T) or (N, T)
    net = netx.hdf5.Network(net_config=net_path)
    source = RingBuffer(data=data.astype(int))
    source.s_out.connect(net.inp)
    sink = Sink(shape=net.out.shape, buffer=steps)
    net.out.connect(sink.a_in)
    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    out = sink.data.get()
    net.stop()
    np.save(out_path, out.T if out.ndim == 2 else out.transpose(3, 2, 1, 0))


if __name__ == "__main__":
    main()
