"""Compile pipeline for Loihi 2 (Lava). Lava's LIF resets to zero immediately and compares with '>', so
`quantize` refuses other reset options for this target, naming the layer."""

PIPELINE = ["fold_bn", "fold_mpbn", "fuse_projections", "retime", "quantize", "partition", "analyse"]
