"""The spinnaker2 backend: per-PE data images for nmcompile's integer LIF kernel (C, Cortex-M4F), placement and
per-chip routing tables (docs/formats/spinnaker2.md), verified as a network of PEs under QEMU (`qemu://`)."""

from nmcompile.backends import Backend

BACKEND = Backend(
    name="spinnaker2",
    summary="PE data images + Cortex-M4F kernel (kernel.elf), placement, routing tables; verified under QEMU",
    pipeline=("fold_bn", "fold_mpbn", "fuse_projections", "retime", "quantize", "partition", "analyse"),
    emitter="nmcompile.backends.spinnaker2.emit:emit",
    boards={"qemu": "nmcompile.runtime.spinnaker2_board:QemuBoard", "udp": "nmcompile.runtime.udp_board:UdpBoard"},
    conformance=("qemu://?record=1",),
)
