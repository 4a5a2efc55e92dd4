"""Neuron parameter groups of the FPGA design (docs/formats/fpga.md, PARAM and INIT).

An engine stores neuron parameters and initial states once per group of consecutive slots that share both, not once
per slot: a layer (or its piece on the engine) is usually one group. Group g covers the slots after group g - 1's
last slot up to its own last slot, held in PARAM bits 88-103; the last group ends at slot 65,535 so that the walk
over the slots never leaves it. A network whose neurons all differ gets one group per neuron, the per-slot layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LAST_SLOT_SHIFT = 88            # PARAM bits 88-103: the group's last slot
OPEN_END = 0xFFFF               # the last group's last slot


@dataclass(frozen=True)
class NeuronGroup:
    last: int                   # last slot of the group
    param: int                  # 88-bit PARAM word of its neurons (nmcompile/backends/fpga/lower.py)
    init: int                   # 48-bit INIT word (u_init, v_init)

    @property
    def param_word(self) -> int:
        """The 104-bit PARAM word as stored: the parameters and the group's last slot."""
        return self.param | self.last << LAST_SLOT_SHIFT


def neuron_groups(params: Sequence[int], inits: Sequence[int]) -> list[NeuronGroup]:
    """Runs of equal (PARAM, INIT) words over the slots, in slot order (one group for no slots at all)."""
    groups: list[NeuronGroup] = []
    for slot, (param, init) in enumerate(zip(params, inits, strict=True)):
        if groups and (groups[-1].param, groups[-1].init) == (param, init):
            groups[-1] = NeuronGroup(slot, param, init)
        else:
            groups.append(NeuronGroup(slot, int(param), int(init)))
    if not groups:
        return [NeuronGroup(OPEN_END, 0, 0)]
    groups[-1] = NeuronGroup(OPEN_END, groups[-1].param, groups[-1].init)
    return groups

