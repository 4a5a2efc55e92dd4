"""Compile pipeline for SpiNNaker 2 processing elements (integer LIF kernel)."""

PIPELINE = ["fold_bn", "fold_mpbn", "fuse_projections", "retime", "quantize", "partition", "analyse"]
