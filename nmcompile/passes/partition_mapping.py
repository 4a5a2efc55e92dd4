"""The partition pass's result: tiles (a part of a layer on a core) and the Mapping stored on the graph, with its
report lines (cores, lower bound, traffic, per-resource use, cores per layer)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmcompile.lowered.boxes import Box

RESOURCES = ("neurons", "memory_bits", "fan_in", "fan_out", "events", "instructions")
FAN_OUT = RESOURCES.index("fan_out")


@dataclass
class Tile:
    layer: str
    boxes: list[Box]        # boxes over the layer's shape
    use: np.ndarray         # resource vector in RESOURCES order
    core: int = -1
    cap: np.ndarray | None = None  # a stricter per-core limit for this tile's layer, if any


@dataclass
class Mapping:
    """The result stored on the graph: which core holds which part of which layer, and the costs."""

    target: str
    tiles: list[Tile]
    cores: int
    chips_used: int
    core_chip: list[int]
    core_use: np.ndarray                 # [cores, len(RESOURCES)]
    capacity: np.ndarray
    lower_bound: dict[str, int]
    traffic: float
    inter_chip_traffic: float
    fan_out: np.ndarray                  # per core: (source neuron, other core) routes leaving it
    rates_measured: bool
    naive: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "target": self.target, "cores": self.cores, "chips_used": self.chips_used,
            "tiles": [{"layer": t.layer, "core": t.core, "boxes": [list(map(list, b)) for b in t.boxes]}
                      for t in self.tiles],
            "core_use": {r: self.core_use[:, k].tolist() for k, r in enumerate(RESOURCES)},
            "lower_bound": self.lower_bound, "traffic": self.traffic, "inter_chip_traffic": self.inter_chip_traffic,
            "naive": self.naive,
        }

    def lines(self) -> list[str]:
        bound = max(self.lower_bound.values())
        worst = max(self.lower_bound, key=self.lower_bound.get)
        lines = [f"{self.cores} core(s) on {self.chips_used} chip(s); lower bound {bound} ({worst}: "
                 + ", ".join(f"{k} {v}" for k, v in self.lower_bound.items()) + ")",
                 f"inter-core spike traffic {self.traffic:.6g} {'spikes/step' if self.rates_measured else 'routes'}"
                 f" (inter-chip {self.inter_chip_traffic:.6g})"
                 + ("" if self.rates_measured else "; no calibration data: every source neuron counts 1")]
        if self.naive:
            lines.append(f"naive sequential fill: {int(self.naive['cores'])} core(s), traffic "
                         f"{self.naive['traffic']:.6g}, largest fan-out {int(self.naive['max_fan_out'])} routes")
        util = self.core_use / np.maximum(self.capacity, 1)
        for k, r in enumerate(RESOURCES):
            if self.capacity[k] < np.inf and self.cores:
                lines.append(f"  {r:<12} per core: max {100 * util[:, k].max():.1f}%, "
                             f"mean {100 * util[:, k].mean():.1f}% of {_fmt(self.capacity[k])}")
        layer_cores: dict[str, set[int]] = {}
        for t in self.tiles:
            layer_cores.setdefault(t.layer, set()).add(t.core)
        for layer, cores in layer_cores.items():
            lines.append(f"  layer {layer}: cores {_ranges(sorted(cores))}")
        return lines


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:.4g}"


def _ranges(values: list[int]) -> str:
    out, start = [], None
    for k, v in enumerate(values):
        if start is None:
            start = v
        if k + 1 == len(values) or values[k + 1] != v + 1:
            out.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(out)
