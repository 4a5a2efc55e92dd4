"""The loihi2 backend: a Lava 0.10 process graph (docs/formats/loihi.md), verified in Lava's bit-accurate models.

Lava's LIF resets to zero immediately and compares with '>'; the `loihi2` Target declares exactly that, so the
generic limit check refuses every other option, naming the layer.
"""

from nmcompile.backends import Backend

BACKEND = Backend(
    name="loihi2",
    summary="Lava process graph (LIF, Dense/DelayDense, Sparse/DelaySparse, Conv) + lava-dl netx model.net",
    pipeline=("fold_bn", "fold_mpbn", "fuse_projections", "retime", "quantize", "partition", "analyse"),
    emitter="nmcompile.backends.loihi.emit:emit",
    boards={"lava": "nmcompile.runtime.lava_board:LavaBoard"},
    conformance=("lava://?states=1",),
)
