"""The spinnaker2 backend: today the passes only (quantize, partition, analyse; `--stop-after`); the PE program
emitter is not in this build."""

from nmcompile.backends import Backend

BACKEND = Backend(
    name="spinnaker2",
    summary="SpiNNaker 2 PEs running nmcompile's integer LIF kernel (passes only in this build)",
    pipeline=("fold_bn", "fold_mpbn", "fuse_projections", "retime", "quantize", "partition", "analyse"),
)
