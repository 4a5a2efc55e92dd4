"""Training-time modules whose deployment semantics nmcompile knows exactly."""

from nmcompile.nn.mpbn import MPBNLIF, spike_fn

__all__ = ["MPBNLIF", "spike_fn"]
