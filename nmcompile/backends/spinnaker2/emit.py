"""Emit the SpiNNaker 2 files of an artifact (docs/formats/spinnaker2.md), under `spinnaker2/`:

    pe_<x>_<y>_<pe>.bin      one data image per PE
    routing_<x>_<y>.bin      one routing table per chip
    placement.json           PEs, their neurons, host sources, layers and outputs (read by the host runtime)
    kernel.elf               the PE program (built from nmcompile/backends/spinnaker2/kernel/, cached)
    py_spinnaker2_network.py the same network for py-spinnaker2 (a convenience export, not the verified path)
"""

from __future__ import annotations

import json

import numpy as np

from nmcompile.backends import Emitted
from nmcompile.backends.spinnaker2.lower import DATA_BYTES, Spinnaker2Design, lower, routing_bytes
from nmcompile.lowered import LoweredNetwork
from nmcompile.lowered.limits import check_target


def emit(view: LoweredNetwork, target, options: dict, log) -> Emitted:
    check_target(view, target)
    design = lower(view, target)
    files = network_files(view, design)
    from nmcompile.backends.spinnaker2.pyspinnaker2 import script

    files["spinnaker2/py_spinnaker2_network.py"] = script(view).encode()
    kernel_lines: list[str] = []
    from nmcompile.backends.spinnaker2.build import build_kernel

    kernel = build_kernel(log=log)
    files["spinnaker2/kernel.elf"] = kernel.elf.read_bytes()
    kernel_lines.append(f"PE program: {kernel.sizes.describe()}")
    return Emitted(files, _report_lines(view, design) + kernel_lines)


def network_files(view: LoweredNetwork, design: Spinnaker2Design) -> dict[str, bytes]:
    """Every file but the kernel: PE images, routing tables, placement."""
    files = {f"spinnaker2/{pe.name}.bin": pe.image for pe in design.pes}
    for chip, entries in design.tables.items():
        files[f"spinnaker2/routing_{chip[0]}_{chip[1]}.bin"] = routing_bytes(chip, entries)
    files["spinnaker2/placement.json"] = (json.dumps(placement(view, design), indent=1, sort_keys=True)
                                          + "\n").encode()
    return files


def placement(view: LoweredNetwork, design: Spinnaker2Design) -> dict:
    return {
        "pes": [{"name": pe.name, "chip": list(pe.xy), "pe": pe.index, "source_id": pe.source_id,
                 "neurons": [[layer, flat] for layer, flat in pe.neurons],
                 "groups": [[proj, delay] for proj, delay in pe.groups],
                 "image_bytes": len(pe.image), "state_bytes": 4 * pe.state_words} for pe in design.pes],
        "hosts": [{"source_id": h.source_id, "source": h.source, "first_unit": h.first_unit, "units": h.units,
                   "kind": "input" if h.source in view.inputs else "constant"} for h in design.hosts],
        "chips": [list(chip) for chip in design.chips],
        "layers": {name: {"shape": list(layer.shape), "readout": not layer.op.spiking,
                          "pe": design.where[name][0].tolist(), "local": design.where[name][1].tolist()}
                   for name, layer in view.layers.items()},
        "outputs": {name: {"layer": layer} for name, layer in design.outputs.items()},
    }


def _report_lines(view: LoweredNetwork, design: Spinnaker2Design) -> list[str]:
    used = np.array([len(pe.image) + 4 * pe.state_words for pe in design.pes])
    bound = max(view.mapping.lower_bound.values()) if view.mapping.lower_bound else len(design.pes)
    entries = {chip: len(e) for chip, e in design.tables.items()}
    from nmcompile.passes.partition import RESOURCES

    budget = view.mapping.capacity[RESOURCES.index("instructions")]
    per_tick = view.mapping.core_use[:, RESOURCES.index("instructions")] if view.mapping.cores else np.zeros(1)
    rates = "measured on the calibration spikes" if view.mapping.rates_measured else "at an assumed rate of 0.1"
    compute = (f"per-tick instructions per PE (neuron updates, synaptic events and packets {rates}): max "
               f"{int(per_tick.max()):,}, mean {int(per_tick.mean()):,} of {int(budget):,} (300 MHz, 1 ms tick)"
               if np.isfinite(budget) else "per-tick instruction budget: not modelled for this target")
    return [
        f"{len(design.pes)} PE(s) on {len({pe.chip for pe in design.pes})} chip(s) (lower bound {bound}); "
        f"{len(design.hosts)} host source(s)",
        f"SRAM per PE (image + state, of {DATA_BYTES:,} bytes): max {int(used.max()):,}, mean {int(used.mean()):,}",
        "router entries per chip: " + ", ".join(f"{chip}: {n}" for chip, n in sorted(entries.items())),
        compute,
    ]
