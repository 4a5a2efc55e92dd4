"""The lowered network view (network.py), its weight storage forms (weights.py), box geometry (boxes.py) and the
generic check of a view against a target's limits (limits.py)."""

from nmcompile.lowered.network import Layer, LoweredNetwork, OutputTap, Projection, Route, Source, lower_network
from nmcompile.lowered.weights import ConvWeights, CsrWeights, DenseWeights

__all__ = ["ConvWeights", "CsrWeights", "DenseWeights", "Layer", "LoweredNetwork", "OutputTap", "Projection", "Route",
           "Source", "lower_network"]
