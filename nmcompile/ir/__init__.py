"""The graph IR: ops, graph, text dump, serialization and the reference simulator."""

from nmcompile.ir.base import Provenance, Shape, same_op
from nmcompile.ir.graph import Edge, Graph

__all__ = ["Edge", "Graph", "Provenance", "Shape", "same_op"]
