"""Resource estimate of an emitted FPGA design: Yosys `synth_xilinx -family xc7`, next to the part's capacity and
NeuroCoreX's published utilisation.

Yosys counts are an estimate, not Vivado's numbers (Yosys vs Vivado comparisons in f4pga-arch-defs #716 and
OpenFPGA #825: block RAM counts are the most stable; LUTs can differ by tens of percent either way). LUTs here
include those used as distributed RAM, as Vivado's "Slice LUTs" does; block RAM is counted in 36 Kb tiles (a
RAMB18 is half a tile).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from nmcompile.errors import NmcError, ToolMissingError, UnsupportedError

# Artix-7 capacities: Xilinx DS180 "7 Series FPGAs Data Sheet: Overview", Table 3 (LUTs = 4 x slices, FFs = 8 x slices)
PARTS = {
    "xc7a35t": {"lut": 20_800, "ff": 41_600, "bram": 50, "dsp": 90},
    "xc7a50t": {"lut": 32_600, "ff": 65_200, "bram": 75, "dsp": 120},
    "xc7a100t": {"lut": 63_400, "ff": 126_800, "bram": 135, "dsp": 240},
    "xc7a200t": {"lut": 134_600, "ff": 269_200, "bram": 365, "dsp": 740},
}
DEFAULT_PART = "xc7a100t"
# ORNL/NeuroCoreX a688f2c, AG_NCX.runs/impl_1/main_utilization_placed.rpt (Vivado 2023.1, xc7a35tcpg236-1)
NEUROCOREX = {"lut": 6_981, "ff": 11_175, "bram": 30.5, "dsp": 8, "neurons": 90, "part": "xc7a35t"}
LUTRAM_LUTS = {"RAM32M": 4, "RAM64M": 4, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1S": 4,
               "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "SRL16E": 1, "SRLC32E": 1}


@dataclass
class Utilization:
    lut: int              # logic LUTs + LUTs used as memory
    lut_memory: int
    ff: int
    bram: float           # 36 Kb tiles
    dsp: int
    cells: dict[str, int]

    def fits(self, part: str) -> bool:
        cap = PARTS[part]
        return self.lut <= cap["lut"] and self.ff <= cap["ff"] and self.bram <= cap["bram"] and self.dsp <= cap["dsp"]


def parse_stat(text: str) -> Utilization:
    """The cell counts of the last `stat` block in a Yosys log."""
    block = text[text.rfind("Number of cells:"):]
    if not block:
        raise NmcError("no statistics in the Yosys log")
    cells = {name: int(count) for name, count in re.findall(r"^\s+([A-Z][A-Z0-9_]+)\s+(\d+)\s*$", block, re.M)}
    logic = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
    memory = sum(LUTRAM_LUTS[k] * v for k, v in cells.items() if k in LUTRAM_LUTS)
    ff = sum(v for k, v in cells.items() if k in ("FDRE", "FDSE", "FDCE", "FDPE"))
    bram = cells.get("RAMB36E1", 0) + 0.5 * cells.get("RAMB18E1", 0)
    return Utilization(logic + memory, memory, ff, bram, cells.get("DSP48E1", 0), cells)


def _key(project: Path) -> str:
    h = hashlib.sha256()
    for f in [*sorted((project / "hdl").glob("*.v")), project / "nmc_top.v", project / "synth.ys"]:
        h.update(f.name.encode() + f.read_bytes())
    for f in sorted(project.glob("*.hex")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def synthesize(project: Path, log=None) -> Utilization:
    """Run synth.ys with Yosys in a scratch copy of `project` (cached in project/utilization.json)."""
    project = Path(project)
    cache = project / "utilization.json"
    key = _key(project)
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return Utilization(**stored["utilization"])
    yosys = shutil.which("yosys")
    if yosys is None:
        raise ToolMissingError("yosys is not installed; install it with `apt-get install yosys` (`make tools` in an "
                               "nmcompile checkout does this), see README.md")
    if log:
        log("running Yosys synth_xilinx -family xc7 (about 30 s for a small design, minutes for large memories)")
    with tempfile.TemporaryDirectory(prefix="nmc-yosys-") as tmp:
        work = Path(tmp) / "fpga"
        shutil.copytree(project, work, ignore=shutil.ignore_patterns("utilization.json"))
        proc = subprocess.run([yosys, "-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=work, capture_output=True,
                              text=True)
        text = (work / "yosys.log").read_text() if (work / "yosys.log").is_file() else ""
        if proc.returncode != 0:
            tail = "\n".join((text or proc.stderr).strip().splitlines()[-10:])
            raise NmcError(f"yosys failed on {project}:\n{tail}")
    util = parse_stat(text)
    cache.write_text(json.dumps({"key": key, "utilization": asdict(util)}, indent=1, sort_keys=True) + "\n")
    return util


def report_lines(util: Utilization, neurons: int, part: str = DEFAULT_PART) -> list[str]:
    if part not in PARTS:
        raise UnsupportedError(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    cap = PARTS[part]
    ncx = NEUROCOREX
    lines = [f"Yosys synth_xilinx -family xc7 estimate for {neurons} neurons, against {part} and NeuroCoreX "
             f"({ncx['neurons']} neurons on {ncx['part']}, Vivado placed):", "",
             f"| resource | this design | per neuron | {part} capacity | used | NeuroCoreX | NeuroCoreX per neuron |",
             "|---|---|---|---|---|---|---|"]
    for key, label in (("lut", "LUT"), ("ff", "FF"), ("bram", "BRAM (36 Kb tiles)"), ("dsp", "DSP48E1")):
        value = getattr(util, key)
        shown = f"{value:,.1f}" if key == "bram" else f"{value:,}"
        lines.append(f"| {label} | {shown} | {value / max(neurons, 1):.2f} | {cap[key]:,} | "
                     f"{100 * value / cap[key]:.1f}% | {ncx[key]:,} | {ncx[key] / ncx['neurons']:.2f} |")
    verdict = "fits" if util.fits(part) else "does NOT fit"
    smallest = next((name for name in PARTS if util.fits(name)), None)
    lines += ["", f"The design {verdict} the {part} ({util.lut_memory:,} of the LUTs are distributed RAM); the "
              f"smallest Artix-7 it fits: {smallest or 'none of ' + ', '.join(PARTS)}. Yosys counts are estimates; "
              "Vivado's can differ."]
    return lines


def report_section(artifact, options: dict, log) -> list[str]:
    """`nmcompile report` on an fpga artifact: the Yosys estimate of its design against the part."""
    layout_file = artifact.path / "fpga" / "layout.json"
    if not layout_file.is_file():
        return []
    layout = json.loads(layout_file.read_text())
    util = synthesize(artifact.path / "fpga", log=log)
    part = options.get("part") or layout.get("part", DEFAULT_PART)
    return ["## FPGA resources", "", *report_lines(util, layout["used"]["neurons"], part)]
