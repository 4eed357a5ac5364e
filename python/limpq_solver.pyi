"""Exact mixed-precision bit-width search (limpq-solver) from Python. See docs/SOLVER.md."""

import os
from typing import (
    Any,
    Dict,
    List,
    Literal,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    TypeVar,
    TypedDict,
    Union,
    final,
    type_check_only,
)

__all__ = [
    "Problem",
    "SolverError",
    "InfeasibleError",
    "LimitReachedError",
    "bench_problem",
    "bench_entry",
    "read_policy",
    "policy_text",
    "frontier_text",
    "BENCH_KINDS",
    "BENCH_KINDS_LATENCY",
    "__version__",
]

__version__: str
BENCH_KINDS: Tuple[str, ...]
"""The instance kinds of `limpq bench solver`, in its order."""
BENCH_KINDS_LATENCY: Tuple[str, ...]
"""Kinds with a third budget (a latency-like resource table), timed after BENCH_KINDS."""

_T_co = TypeVar("_T_co", covariant=True)

@type_check_only
class _Array(Protocol[_T_co]):
    """A list, tuple or numpy array (anything with a length and integer indexing)."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> _T_co: ...

_Path = Union[str, "os.PathLike[str]"]
_Budget = Union[str, int]
_Bits = Tuple[int, int]
_TableRow = Union[
    Tuple[str, int, int],
    Tuple[str, int, int, Optional[_Bits]],
    Dict[str, Any],
]

# Types of the returned dicts: for annotations only (not importable at run time).
@type_check_only
class Use(TypedDict):
    used: float
    budget: Optional[float]

@type_check_only
class Proof(TypedDict):
    optimal: bool
    lower_bound: float
    gap: float
    nodes: int
    backend: Literal["exact", "microlp"]

@type_check_only
class Priced(TypedDict):
    model: str
    policy: Dict[str, _Bits]
    """Every layer (fixed ones included), in model order: name -> (weight bits, act bits)."""
    objective: float
    bitops: int
    """BitOps of the searchable layers."""
    weight_bits_total: int
    """Weight storage of every layer, in bits."""
    fixed_bitops: int
    """BitOps of the fixed layers at their bits (not in `bitops`)."""
    bitops_budget: Optional[int]
    size_budget_bits: Optional[int]
    usage: Dict[str, Use]
    """"BitOps", "size", then each extra resource by name."""

@type_check_only
class Solution(Priced):
    proof: Proof

@type_check_only
class Evaluation(Priced):
    feasible: bool
    violations: List[str]

@type_check_only
class PolicyFile(TypedDict):
    """A policy file's fields (`read_policy`)."""
    model: str
    policy: Dict[str, _Bits]
    objective: float
    bitops: int
    weight_bits_total: int
    optimal: bool
    bitops_budget: Optional[int]
    size_budget_bits: Optional[int]

@type_check_only
class Timing(TypedDict):
    repeats: int
    total_ns: int
    """Median of compile + solve, nanoseconds (each median on its own)."""
    compile_ns: int
    solve_ns: int
    solution: Solution
    """The last run's answer, as `solve()` returns it."""

@type_check_only
class IlpRow(TypedDict):
    coef: List[float]
    """Per choice: what it uses of this budget."""
    capacity: float
    """The budget less the fixed layers' part."""

@type_check_only
class Ilp(TypedDict):
    groups: List[List[str]]
    """Layers of each group (one unless tied)."""
    start: List[int]
    """Group g's choices are start[g]:start[g+1]."""
    objective: List[float]
    bits: List[List[_Bits]]
    """Per choice: (weight bits, act bits) per layer of its group."""
    rows: Dict[str, IlpRow]
    """"BitOps", "size" (weight bits), then each extra resource, where budgeted."""

@type_check_only
class Floor(TypedDict):
    name: str
    budget: float
    smallest: float

class SolverError(ValueError):
    """Anything the solver refuses; the message is the solver's own."""

    layer: Optional[str]
    """Malformed input only: the layer named; else None."""
    field: Optional[str]
    """Malformed input only: the field named; else None."""
    reason: Optional[str]
    """Malformed input only: what is wrong; else None."""

class InfeasibleError(SolverError):
    """No policy meets the budgets."""

    binding: str
    floors: List[Floor]

class LimitReachedError(SolverError):
    """The node limit ran out before any policy meeting the budgets was found; nothing is
    proven (a larger `node_limit` may find one)."""

    limit: str

@final
class Problem:
    @staticmethod
    def from_arrays(
        names: _Array[str],
        macs: _Array[int],
        params: _Array[int],
        weight_scale: _Array[_Array[float]],
        act_scale: _Array[_Array[float]],
        weight_bits: _Array[int],
        act_bits: _Array[int],
        fixed: Optional[Dict[str, _Bits]] = None,
        model: str = "model",
    ) -> Problem:
        """One entry (row) per layer; `weight_scale` is layers x len(weight_bits) (numpy
        arrays welcome), `act_scale` likewise; `fixed` maps a layer to its fixed bits."""
    @staticmethod
    def from_file(path: _Path) -> Problem:
        """An indicator file: JSON for a `.json` name, RON otherwise."""
    @staticmethod
    def from_text(text: str, format: Literal["ron", "json"] = "ron") -> Problem: ...
    @staticmethod
    def from_limpq(
        indicators: Union[Dict[str, Any], _Path],
        layers: Union[_Path, Sequence[_TableRow]],
        model: str = "model",
        fix_missing: bool = False,
    ) -> Problem:
        """The reference code's indicator dict (or its pickle's path, read without running
        code) joined with a layer table (CSV/RON path or rows), as `limpq import-limpq`."""
    def alpha(self, alpha: float) -> "Problem": ...
    def bitops(self, budget: _Budget) -> "Problem":
        """"wXaY" or a number of BitOps."""
    def size(self, budget: _Budget) -> "Problem":
        """"cr:X" or a number of bytes."""
    def weight_bits(self, bits: Sequence[int]) -> "Problem": ...
    def act_bits(self, bits: Sequence[int]) -> "Problem": ...
    def weight_only(self, act_bits: int = 8) -> "Problem": ...
    def pin(self, layer: str, weight: int, act: int) -> "Problem": ...
    def tie_weights(self, layers: Sequence[str]) -> "Problem": ...
    def tie_acts(self, layers: Sequence[str]) -> "Problem": ...
    def non_monotone_rule(self, on: bool) -> "Problem": ...
    def resource(
        self,
        table: Union[_Path, Dict[str, Sequence[Tuple[int, int, float]]]],
        max: float,
        name: Optional[str] = None,
    ) -> "Problem": ...
    def node_limit(self, states: int) -> "Problem": ...
    def copy(self) -> Problem: ...
    @property
    def model(self) -> str: ...
    @property
    def layers(self) -> List[str]: ...
    def indicators_text(self, format: Literal["ron", "json"] = "ron") -> str: ...
    def solve(self) -> Solution:
        """Raises InfeasibleError when no policy meets the budgets, LimitReachedError when the
        node limit runs out before any policy is found, SolverError on bad input. Searches
        the problem as it is when called, without the GIL; another thread may change the
        problem meanwhile (for the next search), as with `sweep` and `time_solve`."""
    def sweep(self, points: int) -> List[Solution]: ...
    def evaluate(self, policy: Dict[str, _Bits]) -> Evaluation: ...
    def bench_budgets(self, budgets: Optional[str] = None) -> "Problem":
        """The budgets of `limpq bench solver`: BitOps of W4A4, 3.5 (or 4.5) bits a weight;
        or `budgets` ("BITOPS,SIZE", as `bench_entry` splits off an entry's `@` part)."""
    def time_solve(self, repeats: int = 20) -> Timing:
        """Times compile + solve `repeats` times inside Rust; medians in nanoseconds."""
    def ilp(self) -> Ilp:
        """The compiled problem as a 0-1 ILP (every allowed choice), for another solver."""

def bench_problem(kind: str, seed: int = 0) -> Problem:
    """A seeded instance of `limpq bench solver` (kind in BENCH_KINDS or
    BENCH_KINDS_LATENCY), with its budgets."""

def bench_entry(entry: str) -> Tuple[str, Optional[str]]:
    """A benchmark file entry, "PATH" or "PATH@BITOPS,SIZE", as (path, budgets or None)."""

def read_policy(path: _Path) -> PolicyFile:
    """A policy file as `limpq solve -o` writes it (JSON for a .json name, RON otherwise)."""

def policy_text(
    policy: Union[Solution, Evaluation, PolicyFile], format: Literal["ron", "json"] = "ron"
) -> str:
    """The policy file's text, as `limpq solve -o` writes it: what `limpq finetune
    --policy`, `limpq export` and a pipeline read. An evaluation's says `optimal: false`."""

def frontier_text(sweep: Sequence[Solution], format: Literal["ron", "json"] = "ron") -> str:
    """The frontier file's text of a sweep, as `limpq solve --sweep N -o` writes it."""
