"""Hardware targets nmcompile can compile for. A target is added here when its backend lands."""

from __future__ import annotations

TARGETS: dict[str, object] = {}
PLANNED = ("loihi2", "spinnaker2", "fpga")


def describe_targets() -> str:
    if not TARGETS:
        return ("No compile targets are available in this build yet: the backends for "
                + ", ".join(PLANNED) + " have not landed.\n"
                "You can already inspect and simulate networks: `nmcompile inspect` and `nmcompile run --board ref://`.")
    return "\n".join(str(t) for t in TARGETS.values())
