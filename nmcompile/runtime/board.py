"""Boards: where a network runs. `open_board(url)` returns a `Board` for a URL scheme.

    with open_board("verilator://", progress=print) as board:
        board.load("digits-fpga")                 # a compiled artifact directory (every board)
        out = board.run(spikes)                   # spikes [T, B, N_in] -> [T, B, N_out] (one output)
        everything = board.run_all(spikes)        # {output name: [T, B, *shape], "weight:<projection>": [B, out, in]}
        for chunk_out in board.stream(chunks): ...    # chunks [t, B, N_in], state kept across chunks
        board.stream([EventChunk(steps, rows)])      # an event list (step, neuron) of one sample as a chunk
                                                     # (nmcompile.runtime.events: recordings binned into steps)

Schemes: `ref://` (the reference simulator, in process; owned by this module: it also loads a Graph or a network
file) and the schemes of the backend registry (`nmcompile.backends.board_schemes()`: lava://, verilator://,
serial://DEVICE), whose classes are imported when opened and built with `Class.from_url(url, query)`. Each class
validates its query options (`?program=0`, `?baud=N`) and refuses unknown or malformed ones. Board and transport
failures raise `BoardError`; progress (a model being built, a simulator starting) goes to the `progress` callback,
never to stdout.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import ParseResult, parse_qsl, urlparse

import numpy as np

from nmcompile.errors import NmcError, ShapeError, UnsupportedError
from nmcompile.runtime.events import EventChunk

Progress = Callable[[str], None]


class Board(Protocol):
    """What every board offers (`BaseBoard` implements the shared parts)."""

    latency: int

    def load(self, source: object) -> None: ...

    def run(self, spikes: np.ndarray) -> np.ndarray: ...

    def run_all(self, spikes: np.ndarray) -> dict[str, np.ndarray]: ...

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Board: ...

    def __exit__(self, *exc: object) -> None: ...


# -- URL options -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BoardOption:
    """A `?name=value` option of a board URL: `parse` turns the text into the constructor argument `name` (raising
    ValueError when malformed); `values` says what is accepted."""

    name: str
    values: str
    parse: Callable[[str], Any]

    def describe(self) -> str:
        return f"{self.name}={self.values}"


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError(text)
    return value


def flag_option(name: str) -> BoardOption:
    return BoardOption(name, "0|1", _flag)


def int_option(name: str) -> BoardOption:
    return BoardOption(name, "N (a positive integer)", _positive_int)


def seconds_option(name: str) -> BoardOption:
    return BoardOption(name, "SECONDS (a positive number)", _positive_float)


def choice_option(name: str, *choices: str) -> BoardOption:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(text)
        return text

    return BoardOption(name, "|".join(choices), parse)


def parse_query(scheme: str, query: Mapping[str, str], options: Iterable[BoardOption]) -> dict[str, Any]:
    """The query of a `scheme://` URL checked against the board's options: one error line naming the option and
    the accepted ones for an unknown key or a malformed value."""
    accepted = {o.name: o for o in options}
    listing = ", ".join(o.describe() for o in accepted.values())
    parsed: dict[str, Any] = {}
    for key, text in query.items():
        option = accepted.get(key)
        if option is None:
            known = f"accepted: {listing}" if accepted else "it takes none"
            raise UnsupportedError(f"{scheme}:// has no option '{key}'; {known}")
        try:
            parsed[key] = option.parse(text)
        except ValueError:
            raise UnsupportedError(f"{scheme}://?{key}={text}: '{key}' must be {option.values} (options of "
                                   f"{scheme}://: {listing})") from None
    return parsed


def require_no_location(url: ParseResult) -> None:
    """Boards that run locally take no host or path: options go after '?'."""
    if url.netloc or url.path not in ("", "/"):
        raise UnsupportedError(f"{url.geturl()}: {url.scheme}:// takes no host or path; options go after '?', e.g. "
                               f"{url.scheme}://?OPTION=VALUE")


# -- the shared parts ----------------------------------------------------------------------------------------------

class BaseBoard(abc.ABC):
    """Context manager, `run` through `run_all`, argument checks and the artifact check shared by every board.

    Subclasses set `scheme`, `target` (the target whose artifacts they run; None: any), `requires` (files of the
    artifact they read) and `options` (URL options, also the constructor's keyword arguments), and implement
    `load` and `run_all`."""

    scheme: ClassVar[str] = ""
    target: ClassVar[str | None] = None
    requires: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[tuple[BoardOption, ...]] = ()

    def __init__(self, progress: Progress | None = None):
        self.progress = progress
        self.latency = 0
        self.outputs: list[str] = []
        self.input_shape: tuple[int, ...] | None = None
        self.input_size: int | None = None          # values per step of the one input (event lists' neurons)
        self._loaded = False

    @classmethod
    def from_url(cls, url: ParseResult, query: Mapping[str, str], progress: Progress | None = None) -> BaseBoard:
        """The board a parsed URL names; every query option is checked (unknown or malformed: UnsupportedError)."""
        require_no_location(url)
        return cls(**parse_query(cls.scheme, query, cls.options), progress=progress)

    # context manager: `with open_board(url) as board:` closes the board (a simulator process, a port) at the end
    def __enter__(self) -> BaseBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def report(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def read_artifact(self, source: object):
        """Open a compiled artifact directory of this board's target, with the files the board reads; sets latency,
        outputs and input_shape. A wrong target names the boards that run it (from the backend registry)."""
        from nmcompile import artifact
        from nmcompile.ir.graph import Graph

        name = f"{self.scheme}://"
        if isinstance(source, Graph):
            raise UnsupportedError(f"{name} loads compiled artifact directories (nmcompile compile --target "
                                   f"{self.target}), not a Graph; ref:// simulates graphs")
        path = Path(str(source))
        if path.exists() and not path.is_dir():
            raise UnsupportedError(f"{path}: {name} loads compiled artifact directories (nmcompile compile --target "
                                   f"{self.target} -o DIR), not network files; ref:// simulates network files")
        art = artifact.read(path, rederive=True)
        if self.target is not None and art.target != self.target:
            raise UnsupportedError(f"{path}: {name} runs artifacts compiled with --target {self.target}; this one is "
                                   f"for {art.target}: {boards_for(art.target)}")
        missing = [rel for rel in self.requires if not (path / rel).is_file()]
        if missing:
            stage = art.manifest.get("stage", "complete")
            if stage != "complete":
                raise UnsupportedError(f"{path}: {name} needs the artifact's {', '.join(missing)}, but its compile "
                                       f"{stage} (before emitting target files); compile again without --stop-after")
            raise UnsupportedError(f"{path}: {name} needs the artifact's {', '.join(missing)}, which are missing; "
                                   "compile it again")
        self.latency = art.latency
        self.outputs = list(art.manifest["outputs"])
        inputs = art.manifest["inputs"]
        if len(inputs) != 1:
            raise UnsupportedError(f"{path}: boards run networks with one input; this one has {len(inputs)}")
        self.input_shape = tuple(next(iter(inputs.values())))
        self.input_size = int(np.prod(self.input_shape))
        self._loaded = True
        return art

    def check_spikes(self, spikes: np.ndarray | EventChunk) -> np.ndarray:
        """A loaded board and spikes [T, B, *input_shape] (or [T, B, N_in]); an EventChunk (rows (step, neuron) of
        one sample) becomes [steps, 1, N_in]."""
        if not self._loaded:
            raise NmcError("no network loaded; call load() first")
        if isinstance(spikes, EventChunk):
            if self.input_size is None:
                raise UnsupportedError(f"{self.scheme}:// takes event lists for networks with one input; pass "
                                       "spikes [T, B, *shape]")
            spikes = spikes.to_spikes(self.input_size)
        spikes = np.asarray(spikes)
        if spikes.ndim < 3:
            raise ShapeError(f"spikes must be [T, B, N], got an array of shape {spikes.shape}")
        if self.input_shape is not None:
            size = int(np.prod(self.input_shape))
            if int(np.prod(spikes.shape[2:])) != size:
                raise ShapeError(f"spikes have {int(np.prod(spikes.shape[2:]))} values per step but the network "
                                 f"expects shape {self.input_shape} ({size} values)")
        return spikes

    @abc.abstractmethod
    def load(self, source: object) -> None:
        """Load a compiled artifact (ref:// also a Graph or a network file)."""

    @abc.abstractmethod
    def run_all(self, spikes: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name ([T, B, *shape]) and, where the board learns, 'weight:<projection>' [B, out, in]."""

    def run(self, spikes: np.ndarray) -> np.ndarray:
        """The network's output spikes [T, B, N_out] (for networks with one output; else use run_all)."""
        results = self.run_all(spikes)
        out = results[self.single_output()]
        return out.reshape(out.shape[0], out.shape[1], -1)

    def single_output(self) -> str:
        if len(self.outputs) != 1:
            raise UnsupportedError(f"run() returns the one output of a network; this one has {len(self.outputs)} "
                                   f"({', '.join(self.outputs)}): use run_all()")
        return self.outputs[0]

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        raise UnsupportedError(f"{self.scheme}:// runs whole input sequences, not streams; use run() or run_all()")

    def close(self) -> None:
        self._loaded = False


def boards_for(target: str) -> str:
    """Which boards run artifacts of `target`, from the backend registry (for error messages)."""
    from nmcompile.backends import board_schemes

    schemes = [f"{s}://" for s, (t, _) in board_schemes().items() if t == target]
    if schemes:
        return f"run it on {' or '.join(schemes)} (or ref:// for its integer reference)"
    return f"no board in this build runs {target} artifacts; ref:// runs its integer reference"


# -- ref:// ----------------------------------------------------------------------------------------------------

class RefBoard(BaseBoard):
    """The reference simulator as a board. Float graphs run in float64 (or float32), integer graphs and
    compiled artifacts in the integer model, unless `integer` asks to quantize first; a precision given for an
    integer graph is refused."""

    scheme = "ref"
    options = (flag_option("integer"), choice_option("precision", "float64", "float32"))

    def __init__(self, integer: bool = False, precision: str | None = None, progress: Progress | None = None):
        super().__init__(progress)
        self.integer = integer
        self.precision = precision
        self._sim = None

    def load(self, source: object) -> None:
        """A Graph, a network or IR file (.nir, .nmir, ...) or a compiled artifact directory."""
        from nmcompile.api import load_network
        from nmcompile.ir.graph import Graph
        from nmcompile.ir.simulate import Simulator

        graph = source if isinstance(source, Graph) else load_network(Path(str(source)))
        if self.integer and not graph.is_integer:
            raise UnsupportedError(
                "--integer needs a quantized network (an integer IR file or a compiled artifact); "
                "this one is float"
            )
        if graph.is_integer and self.precision is not None:
            raise UnsupportedError(f"precision {self.precision} (--float32, ref://?precision=) applies to float "
                                   "networks; this one is quantized and runs in the integer model")
        mode = "integer" if graph.is_integer else self.precision or "float64"
        self._sim = Simulator(graph, mode)
        self.latency = graph.latency
        self.outputs = list(graph.outputs)
        self.input_shape = None                     # the simulator checks inputs, naming the Input node
        inputs = list(graph.inputs)
        self.input_size = int(np.prod(graph.node(inputs[0]).shape)) if len(inputs) == 1 else None
        self._loaded = True

    def _require(self):
        if self._sim is None:
            raise NmcError("no network loaded; call load() first")
        return self._sim

    def run_all(self, spikes: np.ndarray) -> dict[str, np.ndarray]:
        sim = self._require()
        result = sim.run(self.check_spikes(spikes))
        outputs = dict(result.outputs)
        outputs.update({f"weight:{name}": w for name, w in result.weights.items()})
        return outputs

    def run(self, spikes: np.ndarray) -> np.ndarray:
        self._require()
        name = self.single_output()
        out = self.run_all(spikes)[name]
        return out.reshape(out.shape[0], out.shape[1], -1)

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        sim = self._require()
        name = self.single_output()
        started = False
        for chunk in chunks:
            chunk = self.check_spikes(chunk)
            if not started:
                sim.start(chunk.shape[1])
                started = True
            out = sim.feed(chunk)[name]
            yield out.reshape(out.shape[0], out.shape[1], -1)

    def close(self) -> None:
        super().close()
        self._sim = None


# -- opening a URL -----------------------------------------------------------------------------------------------

def known_schemes() -> dict[str, str]:
    """scheme -> "module:Class" for ref:// and every board of the backend registry."""
    from nmcompile.backends import board_schemes

    return {"ref": f"{__name__}:RefBoard", **{s: spec for s, (_, spec) in board_schemes().items()}}


def _query(url: str, parsed: ParseResult) -> dict[str, str]:
    try:
        pairs = parse_qsl(parsed.query, keep_blank_values=True, strict_parsing=bool(parsed.query))
    except ValueError:
        raise UnsupportedError(f"board {url!r}: malformed options {parsed.query!r}; write "
                               f"{parsed.scheme}://?KEY=VALUE&KEY=VALUE") from None
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query:
            raise UnsupportedError(f"board {url!r}: option '{key}' is given twice")
        query[key] = value
    return query


def open_board(url: str, progress: Progress | None = None, **options: str) -> BaseBoard:
    """Open the board a URL names, e.g. 'ref://', 'verilator://?program=0', 'serial:///dev/ttyUSB0?baud=1000000'.
    `options` are added to the URL's query options (and take precedence); `progress` receives one-line progress
    messages (a model being built)."""
    from nmcompile.backends import load_object

    schemes = known_schemes()
    listing = ", ".join(f"{s}://" for s in schemes)
    parsed = urlparse(url)
    if not parsed.scheme or "://" not in url:
        raise UnsupportedError(f"board {url!r} is not a URL; known schemes: {listing}")
    spec = schemes.get(parsed.scheme)
    if spec is None:
        raise UnsupportedError(f"unknown board scheme '{parsed.scheme}://'; known: {listing}")
    query = {**_query(url, parsed), **options}
    return load_object(spec).from_url(parsed, query, progress=progress)
