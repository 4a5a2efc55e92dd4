"""nmcompile: compile trained spiking neural networks to neuromorphic hardware and prove the result bit-exact.

Importing this package is cheap: torch, onnx, Lava and EDA tools are imported only by the code that needs them.
"""

__version__ = "0.1.0"
