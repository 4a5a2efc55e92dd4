"""A tampered artifact is never accepted: every file is rebuilt from network.nmir and compared, the manifest is
checked key by key, and no board runs Python shipped in an artifact (docs/formats/artifact.md, "Trust model")."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmcompile import artifact
from nmcompile.errors import InputFileError, NmcError
from tests.hostile.conftest import assert_one_error, cli


def rehash(art: Path, rel: str) -> None:
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"][rel] = hashlib.sha256((art / rel).read_bytes()).hexdigest()
    if rel == "network.nmir":
        manifest["ir_sha256"] = manifest["files"][rel]
    (art / "manifest.json").write_text(json.dumps(manifest))


def flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target", ["fpga", "loihi2", "spinnaker2"])
def test_every_rehashed_target_file_is_rebuilt_and_refused(target, artifacts, copy_artifact):
    files = json.loads((artifacts[target] / "manifest.json").read_text())["files"]
    derived = [rel for rel in files if rel not in ("report.md", "network.nmir", "reference/inputs.npz")]
    assert len(derived) >= 3
    for rel in derived:
        art = copy_artifact(target)
        flip(art / rel)
        rehash(art, rel)
        with pytest.raises(InputFileError, match=f"{rel} (differs from the file rebuilt|is not in the form)|"
                                                 f"{rel} are unreadable|reference/ files are unreadable"):
            artifact.read(art, rederive=True)


def test_verify_names_the_changed_memory_image_and_runs_nothing(copy_artifact):
    art = copy_artifact("fpga")
    (art / "fpga" / "syn.hex").write_text((art / "fpga" / "syn.hex").read_text().replace("0", "1", 1))
    rehash(art, "fpga/syn.hex")
    status, stdout, stderr = cli("verify", art, "--board", "ref://")
    assert_one_error(status, stderr, "fpga/syn.hex differs from the file rebuilt from network.nmir")
    assert "PASS" not in stdout


def test_a_changed_network_is_refused_through_its_target_files(copy_artifact):
    """network.nmir with one weight changed and rehashed: the shipped target files no longer follow from it."""
    import dataclasses

    from nmcompile.ir.serialize import graph_to_bytes, load

    art = copy_artifact("fpga")
    graph = load(art / "network.nmir")
    name = next(n for n, op in graph.nodes.items() if op.role == "projection")
    op = graph.node(name)
    weight = np.array(op.weight, copy=True)
    weight.reshape(-1)[0] += 1
    graph.replace_node(name, dataclasses.replace(op, weight=weight))
    (art / "network.nmir").write_bytes(graph_to_bytes(graph))
    rehash(art, "network.nmir")
    with pytest.raises(InputFileError, match="differs from the file rebuilt from network.nmir"):
        artifact.read(art, rederive=True)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("files"), "manifest.json has no 'files'"),
    (lambda m: m.update(ir_sha256="0" * 64), "'ir_sha256' differs from the digest of network.nmir"),
    (lambda m: m["files"].pop("fpga/synth.ys"), "fpga/synth.ys is not part of the artifact"),
    (lambda m: m["files"].update({"../x": "0" * 64}), "not inside the artifact"),
    (lambda m: m.update(latency=m["latency"] + 1), "latency"),
    (lambda m: m["compile"]["backend_options"].update(fpga_part="xc7a35t"), "fpga/layout.json differs"),
    (lambda m: m["compile"]["target_overrides"].update(chips="two"), "target override"),
    (lambda m: m.update(format_version=1), "format version 1 is not supported"),
])
def test_manifest_edits_are_refused(edit, message, copy_artifact):
    art = copy_artifact("fpga")
    manifest = json.loads((art / "manifest.json").read_text())
    edit(manifest)
    (art / "manifest.json").write_text(json.dumps(manifest))
    status, _, stderr = cli("verify", art, "--board", "ref://")
    assert_one_error(status, stderr, message)


def test_a_stale_file_of_an_earlier_compile_is_refused(copy_artifact):
    art = copy_artifact("fpga")
    (art / "fpga" / "hdl" / "extra.v").write_text("module extra; endmodule\n")
    with pytest.raises(InputFileError, match="fpga/hdl/extra.v is not part of the artifact"):
        artifact.read(art)


def test_a_symbolic_link_is_refused(copy_artifact, artifacts):
    art = copy_artifact("fpga")
    (art / "report.md").unlink()
    (art / "report.md").symlink_to(artifacts["fpga"] / "report.md")
    with pytest.raises(InputFileError, match="report.md is a symbolic link"):
        artifact.read(art)


INFORMATIONAL = {"pipeline", "source", "nmcompile_version"}    # checked for form only (docs/formats/artifact.md)
MANIFEST_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
                               | st.text(max_size=8), lambda children: st.lists(children, max_size=3)
                               | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_manifest_mutations_are_one_error_or_a_no_op(data, artifacts, tmp_path_factory):
    """Any key of the manifest (or of its nested objects) replaced or removed: the artifact is refused with an
    NmcError, or the mutation changed nothing the artifact means (an informational field still of valid form)."""
    original = json.loads((artifacts["fpga"] / "manifest.json").read_text())
    manifest = json.loads(json.dumps(original))
    node, path = manifest, []
    while isinstance(node, dict) and node and data.draw(st.booleans(), "descend"):
        key = data.draw(st.sampled_from(sorted(node)), "key")
        if not isinstance(node[key], dict):
            break
        node, path = node[key], [*path, key]
    key = data.draw(st.sampled_from(sorted(node)) if node else st.just("x"), "target key")
    if data.draw(st.booleans(), "delete") and key in node:
        del node[key]
    else:
        node[key] = data.draw(MANIFEST_VALUES, "value")
    art = tmp_path_factory.mktemp("mutated")
    shutil.rmtree(art)
    shutil.copytree(artifacts["fpga"], art)
    (art / "manifest.json").write_text(json.dumps(manifest))
    try:
        artifact.read(art, rederive=True)
    except NmcError:
        return
    changed = [*path, key][0]
    assert manifest == original or changed in INFORMATIONAL, f"accepted a manifest changed at {[*path, key]}"


def test_the_lava_board_runs_rebuilt_files_not_the_artifacts(copy_artifact, monkeypatch):
    """lava:// hands the installed runner a private directory of files rebuilt from the IR, never the artifact."""
    import subprocess

    from nmcompile.runtime import lava_board

    art = copy_artifact("loihi2")
    seen = {}

    def fake_run(cmd, **kw):
        network = Path(cmd[2])
        seen["cmd"] = cmd
        seen["files"] = {p.name: p.read_bytes() for p in network.iterdir()}
        raise OSError("stop here")

    monkeypatch.setattr(lava_board, "lava_python", lambda: Path("/bin/true"))
    monkeypatch.setattr(subprocess, "run", fake_run)
    board = lava_board.LavaBoard()
    board.load(art)
    with pytest.raises(NmcError, match="stop here"):
        board.run(np.zeros((3, 1, 12), dtype=np.int8))
    assert str(art) not in " ".join(seen["cmd"])
    assert "run_lava.py" not in seen["files"] and set(seen["files"]) == {"lava_network.py", "network.npz"}
    assert seen["files"]["lava_network.py"] == (art / "lava_network.py").read_bytes()
    # and an artifact whose network builder was edited (and rehashed) is refused before anything runs
    with open(art / "lava_network.py", "a") as f:
        f.write("\nimport os\nos.system('echo owned')\n")
    rehash(art, "lava_network.py")
    with pytest.raises(InputFileError, match="lava_network.py differs from the file rebuilt"):
        lava_board.LavaBoard().load(art)
