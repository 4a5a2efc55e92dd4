"""Compile pipeline for the FPGA emulator: one engine, so `partition` checks the configured size."""

PIPELINE = ["fold_bn", "fold_mpbn", "fuse_projections", "retime", "quantize", "stdp", "partition", "analyse"]
