"""The memory of a core's key table and row index where the index spans whole sources
(`SynapseFormat.index_unit_bits`, spinnaker2's PE image): known only once every layer is placed, since a source's
units are all the neurons of the core that sends them.

A core's image holds, next to its synapses and neuron state: a header, one record per (projection, delay)
accumulator group, and per source feeding it (a core, or the host's units in blocks of 2**index_unit_bits) that
source's units as aligned power-of-two blocks (units = 40: blocks 32 and 8): per block a key entry and an index
word per unit plus one. Tiles count only a word per source unit with synapses (rows x per_row_header_bits); this
module gives each core's remainder, and the partitioner shrinks the tiles of a layer whose cores would overflow.
"""

from __future__ import annotations

import numpy as np

from nmcompile.lowered.boxes import distinct


def index_bits(tiles: list, costs: dict, projs: dict, where: dict[str, np.ndarray], target,
               n_cores: int) -> np.ndarray:
    """Per core: the bits of its header, accumulator groups, key table and index beyond the row words its
    tiles count (0 everywhere for a target whose rows are counted per unit)."""
    fmt = target.synapse_format
    extra = np.zeros(n_cores, dtype=np.float64)
    if not fmt.index_unit_bits or not n_cores:
        return extra
    units_of_core = np.zeros(n_cores, dtype=np.int64)
    for cores in where.values():
        units_of_core += np.bincount(cores[cores >= 0], minlength=n_cores)
    block = 1 << fmt.index_unit_bits
    by_core: dict[int, list] = {}
    for t in tiles:
        by_core.setdefault(t.core, []).append(t)
    for core, core_tiles in by_core.items():
        sources: dict[str, list[np.ndarray]] = {}
        sizes: dict[str, int] = {}
        groups: set[tuple[str, int]] = set()
        for t in core_tiles:
            for proj in projs.get(t.layer, []):
                groups.update((proj.name, int(d)) for d in np.unique(proj.delay))
                sizes[proj.source] = int(np.prod(proj.source_shape))
                for b in costs[t.layer]._proj_boxes(proj, t.boxes):
                    sources.setdefault(proj.source, []).append(proj.flat_sources(b))
        rows = index_words = keys = 0
        for source, parts in sources.items():
            idx = distinct(np.concatenate(parts))
            rows += idx.size
            if source in where:
                units = units_of_core[np.unique(where[source][idx])]
            else:
                chunks = np.unique(idx // block)
                units = np.minimum(block, sizes[source] - chunks * block)
            blocks = np.array([bin(int(u)).count("1") for u in units], dtype=np.int64)
            index_words += int(units.sum() + blocks.sum())
            keys += int(blocks.sum())
        extra[core] = (fmt.core_header_bits + fmt.group_bits * len(groups) + index_words * fmt.word_bits
                       + keys * fmt.key_bits - rows * fmt.per_row_header_bits)
    return extra
