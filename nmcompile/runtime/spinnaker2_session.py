"""One sample of a SpiNNaker 2 network stepped tick by tick, with inputs arriving one step at a time: what a board
does while spikes stream in (`qemu://` stream(), the UDP board emulator of `nmcompile emulate`).

    session = NetworkSession(net)            # net: a Spinnaker2Network (its PEs: ModelPe or QEMU processes)
    session.reset()                          # every PE from its image's initial state
    outputs = session.step(x)                # x: the flat input of step t -> {output name: flat values of step t}

Tick t delivers the keys emitted in tick t-1 (PE spikes and the host's input keys of step t-1) through the routing
tables, runs every PE once and reads the outputs from the PEs' records, exactly as `Spinnaker2Network.run`, so
stepping a sample gives the spikes of running it whole.
"""

from __future__ import annotations

import numpy as np

from nmcompile.runtime.spinnaker2_net import Spinnaker2Network, _readout_of


class NetworkSession:
    """The PEs of a network, stepped one tick per input step."""

    def __init__(self, net: Spinnaker2Network):
        self.net = net
        placement = net.placement
        self.dests = net._destinations()
        self.layer_pe = {name: (np.asarray(v["pe"]), np.asarray(v["local"])) for name, v in placement["layers"].items()}
        self.output_layers = {name: o["layer"] for name, o in placement["outputs"].items()}
        self.output_sizes = {name: len(placement["layers"][layer]["pe"]) for name, layer in self.output_layers.items()}
        self.source_ids = [net.parsed[name].source_id for name in net.pe_names]
        self.input_size = sum(h["units"] for h in placement["hosts"] if h["kind"] == "input")
        self._hosts = placement["hosts"]
        self._emitted = np.zeros(0, dtype=np.int64)
        # per PE, a table over source ids: True where the routing tables deliver that source's packets to it
        sources = [*self.dests, *self.source_ids, *(int(h["source_id"]) for h in self._hosts)]
        self._routed = np.zeros((len(net.pe_names), max(sources, default=0) + 1), dtype=bool)
        for sid, pes in self.dests.items():
            self._routed[pes, sid] = True
        # the host's keys in Spinnaker2Network's order (hosts grouped by source): every unit of a bias source each
        # step, an input source's units where x has a spike
        by_source: dict[str, list[dict]] = {}
        for host in self._hosts:
            by_source.setdefault(host["source"], []).append(host)
        self._host_parts = [((int(h["source_id"]) << 8) | np.arange(h["units"], dtype=np.int64),
                             h["first_unit"] if h["kind"] == "input" else None)
                            for hosts in by_source.values() for h in hosts]
        self._readout = {name: net.placement["layers"][layer]["readout"] for name, layer in self.output_layers.items()}

    def reset(self) -> None:
        """Start a sample: PEs created on first use, then every PE reset."""
        net = self.net
        if not net.pes:
            try:
                for name in net.pe_names:
                    net.pes.append(net.make_pe(name, net.images[name]))
            except BaseException:
                net.close()
                raise
        for pe in net.pes:
            pe.reset()
        self._emitted = np.zeros(0, dtype=np.int64)

    def host_keys(self, x: np.ndarray) -> np.ndarray:
        """The keys the host emits for a step with flat input x: input spikes and every bias source's units."""
        parts = [keys if first is None else keys[x[first:first + len(keys)] != 0] for keys, first in self._host_parts]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def step(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One tick with the flat input x of this step; returns each output's flat values of the step."""
        net = self.net
        emitted = self._emitted
        sources = emitted >> 8
        results, fired_keys = [], []
        for k, pe in enumerate(net.pes):
            result = pe.tick(emitted[self._routed[k, sources]])
            results.append(result)
            fired_keys.append((self.source_ids[k] << 8) | np.asarray(result[0], dtype=np.int64))
        self._emitted = np.concatenate([*fired_keys, self.host_keys(np.asarray(x).reshape(-1))])
        outputs = {}
        for name, layer in self.output_layers.items():
            pe_of, local = self.layer_pe[layer]
            flat = np.zeros(len(pe_of), dtype=np.int64)
            for k in np.unique(pe_of).tolist():
                sel = pe_of == k
                fired, readout = results[k][0], results[k][1]
                if self._readout[name]:
                    flat[sel] = _readout_of(net, k, readout, local[sel])
                else:
                    spiked = np.zeros(net.parsed[net.pe_names[k]].n, dtype=bool)
                    spiked[np.asarray(fired, dtype=np.int64)] = True
                    flat[sel] = spiked[local[sel]]
            outputs[name] = flat
        return outputs
