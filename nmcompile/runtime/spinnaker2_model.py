"""Every PE of a SpiNNaker 2 network stepped at once, with the kernel's rules: what the emulated UDP board runs for
`--pe model` (`nmcompile emulate`), the same spikes as stepping one `ModelPe` per PE through `NetworkSession`, in a
few numpy calls per tick instead of a few dozen per PE.

    session = FusedModelSession(net)         # net: a Spinnaker2Network (its images and routing tables)
    session.reset()
    outputs = session.step(x)                # as NetworkSession.step: {output name: flat values of the step}

Built once from the images and the routing tables:
- the synapses as one table in CSR order over "rows", a row being one (source id, unit) key a PE can receive: for
  each PE the key reaches through the routing tables, the synapse rows of the first matching entry of that PE's
  key table (docs/formats/spinnaker2.md), each synapse as (column, weight) where a column is one (PE, group,
  target neuron) slot of the arrival rings;
- the rings of every (PE, group) side by side: column c has its group's delay d_c and exponent e_c; a key emitted in
  tick t-1 adds its weight to slot (t - 1 + d_c) mod (d_c + 1) of its column, and tick t reads slot t mod (d_c + 1)
  of every column, shifts it by e_c (floor), sums the columns of each neuron and clears them (`ModelPe.arrived`);
- the neuron update of `ModelPe` over the neurons of all PEs concatenated (their parameters side by side).
A small network (rows x columns up to DENSE_LIMIT) also keeps the table dense and sums a tick's input as one
float64 matrix-vector product: exact, since every sum of int8 weights stays far below 2**53.
A tick delivers the keys emitted in the tick before: the PEs' spikes, the host's input keys of the step before and
every bias unit (nothing in the first tick), exactly as `NetworkSession.step`.
"""

from __future__ import annotations

import numpy as np

from nmcompile.ir import fixed
from nmcompile.runtime.spinnaker2_net import Image, ModelPe, Spinnaker2Network, synapses_of
from nmcompile.runtime.spinnaker2_session import NetworkSession

DENSE_LIMIT = 1 << 21          # rows x columns up to which the synapse table is also kept dense (16 MB)


class _FusedPe(ModelPe):
    """ModelPe's neuron update over the neurons of every PE; the input comes from the fused rings."""

    def __init__(self, params: np.ndarray, columns: tuple[np.ndarray, np.ndarray, np.ndarray]):
        self.col_delay, self.col_exp, self.col_neuron = columns
        order = np.argsort(self.col_neuron, kind="stable")
        self._order = order
        self._fed, self._starts = np.unique(self.col_neuron[order], return_index=True)
        super().__init__(Image(0, params, np.zeros((0, 4), dtype=np.int64), np.zeros((0, 4), dtype=np.int64),
                               np.zeros(0, dtype=np.int64), 0, 0))

    def reset(self) -> None:
        super().reset()
        depth = int(self.col_delay.max()) + 1 if self.col_delay.size else 1
        self.ring = np.zeros((depth, self.col_delay.size), dtype=np.int64)
        self._cols = np.arange(self.col_delay.size)

    def add(self, columns: np.ndarray, weights: np.ndarray) -> None:
        """Synapses of the keys emitted in the previous tick: each weight into its column's slot of arrival."""
        if columns.size == 0:
            return
        # integer sums through float64 bincount: exact, |sum| <= 128 * synapses < 2**53
        self.add_totals(np.bincount(columns, weights=weights, minlength=self._cols.size).astype(np.int64))

    def add_totals(self, total: np.ndarray) -> None:
        """Per column, the summed weights arriving from the previous tick."""
        slots = (self.tick_count - 1 + self.col_delay) % (self.col_delay + 1)
        self.ring[slots, self._cols] += total

    def arrived(self) -> np.ndarray:
        a = np.zeros(self.image.n, dtype=np.int64)
        if self._cols.size == 0:
            return a
        slots = self.tick_count % (self.col_delay + 1)
        shifted = fixed.shift_left(self.ring[slots, self._cols], self.col_exp)
        self.ring[slots, self._cols] = 0
        a[self._fed] = np.add.reduceat(shifted[self._order], self._starts)
        return a


class FusedModelSession(NetworkSession):
    """The network's PEs as one fused model (see the module); the interface of NetworkSession."""

    def __init__(self, net: Spinnaker2Network):
        super().__init__(net)
        images = [net.parsed[name] for name in net.pe_names]
        sizes = np.asarray([image.n for image in images], dtype=np.int64)
        self.first_neuron = np.concatenate([[0], np.cumsum(sizes)])
        total = int(self.first_neuron[-1])
        # ring columns: per PE, per group, its n targets
        delays, exps, neurons, first_col = [], [], [], []
        col = 0
        for k, image in enumerate(images):
            first_col.append(col)
            for delay, exp, _, _ in image.groups.tolist():
                delays.append(np.full(image.n, delay, dtype=np.int64))
                exps.append(np.full(image.n, exp, dtype=np.int64))
                neurons.append(self.first_neuron[k] + np.arange(image.n, dtype=np.int64))
                col += image.n
        columns = tuple(np.concatenate(c) if c else np.zeros(0, dtype=np.int64) for c in (delays, exps, neurons))
        self.pe = _FusedPe(np.concatenate([image.params for image in images]), columns)
        # rows: every key some PE receives: PE spikes (source id, local neuron), host units
        units = {sid: int(sizes[k]) for k, sid in enumerate(self.source_ids)}
        units.update({int(h["source_id"]): int(h["units"]) for h in self._hosts})
        row_base, rows = {}, 0
        for sid in sorted(self.dests):
            row_base[sid] = rows
            rows += units.get(sid, 0)
        row_of_key: list[np.ndarray] = []
        col_of: list[np.ndarray] = []
        weight_of: list[np.ndarray] = []
        for k, image in enumerate(images):
            for sid in sorted(s for s, pes in self.dests.items() if k in pes):
                keys = (sid << 8) | np.arange(units.get(sid, 0), dtype=np.int64)
                key_rows, groups, targets, weights = synapses_of(image, keys)
                row_of_key.append(row_base[sid] + key_rows)
                col_of.append(first_col[k] + groups * image.n + targets)
                weight_of.append(weights)
        key_rows = np.concatenate(row_of_key) if row_of_key else np.zeros(0, dtype=np.int64)
        order = np.argsort(key_rows, kind="stable")
        self.syn_col = (np.concatenate(col_of) if col_of else np.zeros(0, dtype=np.int64))[order]
        self.syn_weight = (np.concatenate(weight_of) if weight_of else np.zeros(0, dtype=np.int64))[order]
        self.row_start = np.concatenate([[0], np.cumsum(np.bincount(key_rows, minlength=rows))])
        # small networks: the same table dense, [rows, columns] float64, a tick's input one matrix-vector product
        # (exact: integer sums below 2**53)
        self.dense = None
        if rows * columns[0].size <= DENSE_LIMIT:
            self.dense = np.zeros((rows, columns[0].size))
            np.add.at(self.dense, (np.sort(key_rows), self.syn_col), self.syn_weight)
        # which row a PE's spike or a host unit is (-1: nobody receives it)
        self.row_of_neuron = np.full(total, -1, dtype=np.int64)
        for k, sid in enumerate(self.source_ids):
            if sid in row_base:
                self.row_of_neuron[self.first_neuron[k]:self.first_neuron[k + 1]] = row_base[sid] + np.arange(sizes[k])
        self.row_of_input = np.full(self.input_size, -1, dtype=np.int64)
        bias_rows = []
        for host in self._hosts:
            sid = int(host["source_id"])
            if sid not in row_base:
                continue
            host_rows = row_base[sid] + np.arange(host["units"], dtype=np.int64)
            if host["kind"] == "input":
                self.row_of_input[host["first_unit"]:host["first_unit"] + host["units"]] = host_rows
            else:
                bias_rows.append(host_rows)
        self.bias_rows = np.concatenate(bias_rows) if bias_rows else np.zeros(0, dtype=np.int64)
        self.output_neurons = {name: self.first_neuron[self.layer_pe[layer][0]] + self.layer_pe[layer][1]
                               for name, layer in self.output_layers.items()}
        self._rows = np.zeros(0, dtype=np.int64)

    def reset(self) -> None:
        self.pe.reset()
        self._rows = np.zeros(0, dtype=np.int64)

    def step(self, x: np.ndarray) -> dict[str, np.ndarray]:
        pe = self.pe
        rows = self._rows
        if self.dense is not None:
            delivered = np.bincount(rows, minlength=self.dense.shape[0]).astype(np.float64)
            pe.add_totals(np.rint(delivered @ self.dense).astype(np.int64))
            rows = rows[:0]
        starts, ends = self.row_start[rows], self.row_start[rows + 1]
        lengths = ends - starts
        count = int(lengths.sum())
        if count:
            # every synapse of every delivered key (a ragged gather)
            offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
            synapse = offsets + np.arange(count)
            pe.add(self.syn_col[synapse], self.syn_weight[synapse])
        fired, _, _, _ = pe.update()
        waiting = pe.tick_count - 1 < pe.start_step
        emitted = self.row_of_neuron[fired]
        inputs = self.row_of_input[np.flatnonzero(np.asarray(x).reshape(-1))]
        rows = np.concatenate([emitted, inputs, self.bias_rows])
        self._rows = rows[rows >= 0]
        outputs = {}
        for name, neurons in self.output_neurons.items():
            if self._readout[name]:
                outputs[name] = np.where(waiting, 0, pe.v)[neurons]
            else:
                spiked = np.zeros(pe.image.n, dtype=np.int64)
                spiked[fired] = 1
                outputs[name] = spiked[neurons]
        return outputs
