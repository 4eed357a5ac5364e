//! `limpq_solver`: the exact bit-width search of `limpq-solver` as a Python module.
//!
//! A thin layer: every rule, every figure and every message comes from `limpq-solver`
//! (the search, `Problem::evaluate`) and `limpq-io` (indicator files, the reference code's
//! pickles and layer tables); this file only turns Python values into the Rust types and
//! the answers into plain dicts, lists and tuples. The stubs are `limpq_solver.pyi`; the
//! tests `python/tests/`. See `docs/SOLVER.md`, "From Python".

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use limpq_io::import_limpq::{self, Indicators, TableRow};
use limpq_io::pickle::Value;
use limpq_solver::{
    BitOpsBudget, Error, IndicatorSet, Layer, LayerBits, Policy, Resource, ResourceLayer,
    ResourceTable, SizeBudget, Solution, SolveOptions, Usage, MAX_SWEEP_POINTS,
};

create_exception!(
    limpq_solver,
    SolverError,
    PyValueError,
    "Anything the solver refuses: malformed input (with `layer`, `field` and `reason` \
     attributes where the solver names them), a budget that does not parse, a file that \
     cannot be read or parsed. The message is the solver's own."
);
create_exception!(
    limpq_solver,
    InfeasibleError,
    SolverError,
    "No policy meets the budgets: `binding` names the budget that cannot be met, `floors` \
     lists per budget the smallest value reachable on its own (dicts with `name`, `budget`, \
     `smallest`)."
);

create_exception!(
    limpq_solver,
    LimitReachedError,
    SolverError,
    "The node limit ran out before any policy meeting the budgets was found: nothing is \
     proven (a larger `node_limit` may find one). `limit` names the limit."
);

/// The solver's error as a Python exception with its message and its fields as attributes.
fn solver_err(e: Error) -> PyErr {
    let msg = e.to_string();
    solver_err_saying(e, msg)
}

/// [`solver_err`] whose message is `msg` (the error's own, with where it was found).
/// Every `SolverError` has `layer`, `field` and `reason`: None where the error is not
/// about malformed input.
fn solver_err_saying(e: Error, msg: String) -> PyErr {
    Python::attach(|py| {
        let err = match &e {
            Error::Infeasible { .. } => InfeasibleError::new_err(msg),
            Error::LimitReached { .. } => LimitReachedError::new_err(msg),
            _ => SolverError::new_err(msg),
        };
        let v = err.value(py);
        let set = |k: &str, val: Bound<'_, PyAny>| {
            // Attributes on a fresh exception instance cannot fail; if they did, the
            // message still says everything.
            let _ = v.setattr(k, val);
        };
        for k in ["layer", "field", "reason"] {
            set(k, py.None().into_bound(py));
        }
        match e {
            Error::InvalidInput {
                layer,
                field,
                reason,
            } => {
                set("layer", opt_str(py, layer.as_deref()));
                set("field", PyString::new(py, &field).into_any());
                set("reason", PyString::new(py, &reason).into_any());
            }
            Error::Infeasible { binding, floors } => {
                set("binding", PyString::new(py, &binding).into_any());
                let list = PyList::empty(py);
                for f in floors {
                    let d = PyDict::new(py);
                    let _ = d.set_item("name", f.name);
                    let _ = d.set_item("budget", f.budget);
                    let _ = d.set_item("smallest", f.smallest);
                    let _ = list.append(d);
                }
                set("floors", list.into_any());
            }
            Error::LimitReached { limit } => {
                set("limit", PyString::new(py, &limit).into_any());
            }
            _ => {}
        }
        err
    })
}

fn opt_str<'py>(py: Python<'py>, s: Option<&str>) -> Bound<'py, PyAny> {
    match s {
        Some(s) => PyString::new(py, s).into_any(),
        None => py.None().into_bound(py),
    }
}

/// Any other refusal (files, pickles, budgets, shapes) as a [`SolverError`] (its `layer`,
/// `field` and `reason` None).
fn err(msg: impl std::fmt::Display) -> PyErr {
    let e = SolverError::new_err(msg.to_string());
    Python::attach(|py| {
        for k in ["layer", "field", "reason"] {
            let _ = e.value(py).setattr(k, py.None());
        }
    });
    e
}

/// A bit-width search: an indicator set and everything the search takes besides it.
///
/// Build one with `from_arrays`, `from_file`, `from_text` or `from_limpq`; set budgets and
/// rules with the chaining methods (each changes this problem and returns it); then
/// `solve()`, `sweep(n)` or `evaluate(policy)`.
#[pyclass(module = "limpq_solver", name = "Problem")]
#[derive(Clone)]
struct PyProblem {
    /// Shared with the searches running on it ([`PyProblem::snapshot`]): a setter changes
    /// its own copy when one is ([`PyProblem::problem_mut`]), never theirs.
    p: Arc<limpq_solver::Problem>,
    node_limit: Option<u64>,
}

impl PyProblem {
    fn new(ind: IndicatorSet) -> PyProblem {
        PyProblem::of(limpq_solver::Problem::new(ind))
    }

    fn of(p: limpq_solver::Problem) -> PyProblem {
        PyProblem {
            p: Arc::new(p),
            node_limit: None,
        }
    }

    /// The problem to change: this object's own (copied first when a search started from
    /// it is still running).
    fn problem_mut(&mut self) -> &mut limpq_solver::Problem {
        Arc::make_mut(&mut self.p)
    }

    /// The problem and options as they are now, for a search that runs without the GIL:
    /// the caller lets go of `slf` before searching, so that another thread may change
    /// this problem meanwhile (its setters leave the snapshot as it was) instead of being
    /// refused by the borrow a running search held.
    fn snapshot(slf: PyRef<'_, Self>) -> (Arc<limpq_solver::Problem>, SolveOptions) {
        let snap = (Arc::clone(&slf.p), slf.options());
        drop(slf);
        snap
    }

    fn options(&self) -> SolveOptions {
        let mut o = SolveOptions::default();
        if let Some(n) = self.node_limit {
            o.node_limit = n;
        }
        o
    }
}

/// A file path: `str` or `os.PathLike`, never a container.
fn as_path(o: &Bound<'_, PyAny>) -> Option<PathBuf> {
    if o.is_instance_of::<PyString>() || o.hasattr("__fspath__").unwrap_or(false) {
        o.extract::<PathBuf>().ok()
    } else {
        None
    }
}

#[pymethods]
impl PyProblem {
    /// An indicator set from arrays, one entry (row) per layer in model order.
    #[staticmethod]
    #[pyo3(signature = (names, macs, params, weight_scale, act_scale, weight_bits, act_bits, fixed=None, model="model"))]
    #[allow(clippy::too_many_arguments)]
    fn from_arrays(
        names: Vec<String>,
        macs: Vec<u64>,
        params: Vec<u64>,
        weight_scale: Vec<Vec<f64>>,
        act_scale: Vec<Vec<f64>>,
        weight_bits: Vec<u32>,
        act_bits: Vec<u32>,
        fixed: Option<std::collections::HashMap<String, (u32, u32)>>,
        model: &str,
    ) -> PyResult<PyProblem> {
        let n = names.len();
        for (what, len) in [
            ("macs", macs.len()),
            ("params", params.len()),
            ("weight_scale", weight_scale.len()),
            ("act_scale", act_scale.len()),
        ] {
            if len != n {
                return Err(err(format!(
                    "field `{what}`: {len} entries for {n} layer names"
                )));
            }
        }
        let mut fixed = fixed.unwrap_or_default();
        let layers: Vec<Layer> = names
            .into_iter()
            .zip(macs)
            .zip(params)
            .zip(weight_scale.into_iter().zip(act_scale))
            .map(
                |(((name, macs), params), (weight_scale, act_scale))| Layer {
                    fixed: fixed.remove(&name),
                    name,
                    macs,
                    params,
                    weight_scale,
                    act_scale,
                },
            )
            .collect();
        if let Some(name) = fixed.keys().min() {
            return Err(err(format!(
                "layer `{name}`, field `fixed`: no such layer in `names`"
            )));
        }
        Ok(PyProblem::new(IndicatorSet {
            model: model.to_string(),
            weight_bits,
            act_bits,
            layers,
            meta: Vec::new(),
        }))
    }

    /// An indicator file: JSON when the name ends in `.json`, RON otherwise (as `limpq solve`).
    #[staticmethod]
    fn from_file(path: PathBuf) -> PyResult<PyProblem> {
        let ind = limpq_io::documents::read_indicators(&path).map_err(err)?;
        // Refused here, naming the file, rather than at the first solve without it.
        if let Err(e) = ind.check() {
            let msg = format!("in {}: {e}", path.display());
            return Err(solver_err_saying(e, msg));
        }
        Ok(PyProblem::new(ind))
    }

    /// An indicator set from its text, `format` "ron" or "json".
    #[staticmethod]
    #[pyo3(signature = (text, format="ron"))]
    fn from_text(text: &str, format: &str) -> PyResult<PyProblem> {
        let ind = if text_format(format)? {
            IndicatorSet::from_json_str(text)
        } else {
            IndicatorSet::from_ron_str(text)
        }
        .map_err(solver_err)?;
        Ok(PyProblem::new(ind))
    }

    /// The reference code's indicators (`{'layer_name': [...], 'weight': {...}, 'act': {...}}`)
    /// joined with a layer table, as `limpq import-limpq` does. `indicators` is the dict
    /// (e.g. from `pickle.load`) or the path of the pickle (then read by limpq's plain-data
    /// reader, which runs no code); `layers` is a CSV or RON table's path or a list of rows
    /// `(name, macs, params)` / `(name, macs, params, (w, a) or None)` in model order.
    #[staticmethod]
    #[pyo3(signature = (indicators, layers, model="model", fix_missing=false))]
    fn from_limpq(
        indicators: &Bound<'_, PyAny>,
        layers: &Bound<'_, PyAny>,
        model: &str,
        fix_missing: bool,
    ) -> PyResult<PyProblem> {
        let (value, source) = match as_path(indicators) {
            Some(path) => {
                let (v, _) = import_limpq::read_pickle(&path).map_err(err)?;
                (v, path.display().to_string())
            }
            None => (to_value(indicators, 0)?, String::from("a Python object")),
        };
        let (rows, table) = match as_path(layers) {
            Some(path) => (
                import_limpq::read_table(&path).map_err(err)?,
                path.display().to_string(),
            ),
            None => (table_rows(layers)?, String::from("a Python list")),
        };
        let ind = Indicators::from_value(&value)
            .map_err(|e| err(format!("indicators from {source}: {e}")))?;
        let mut set = import_limpq::convert(&ind, &rows, model, fix_missing).map_err(|e| {
            err(format!(
                "matching {source} against layer table {table}: {e}"
            ))
        })?;
        set.meta = vec![
            ("source".into(), source),
            ("layers_table".into(), table),
            (
                "importer".into(),
                format!("limpq_solver (Python) {}", env!("CARGO_PKG_VERSION")),
            ),
        ];
        Ok(PyProblem::new(set))
    }

    /// Weight of the weight indicators in the objective (Σ act + α · weight); default 2.
    fn alpha(mut slf: PyRefMut<'_, Self>, alpha: f64) -> PyRefMut<'_, Self> {
        slf.problem_mut().options.alpha = alpha;
        slf
    }

    /// BitOps budget: "wXaY" (every searchable layer at X/Y bits) or a number of BitOps.
    fn bitops<'a>(
        mut slf: PyRefMut<'a, Self>,
        budget: &Bound<'_, PyAny>,
    ) -> PyResult<PyRefMut<'a, Self>> {
        let b = match budget_int(budget) {
            Some(n) => BitOpsBudget::Absolute(n),
            None => BitOpsBudget::parse(&budget_text(budget)?).map_err(err)?,
        };
        slf.problem_mut().options.bitops = Some(b);
        Ok(slf)
    }

    /// Size budget: "cr:X" (32-bit weights of the whole model / X) or a number of bytes.
    fn size<'a>(
        mut slf: PyRefMut<'a, Self>,
        budget: &Bound<'_, PyAny>,
    ) -> PyResult<PyRefMut<'a, Self>> {
        let b = match budget_int(budget) {
            Some(n) => SizeBudget::Bytes(n),
            None => SizeBudget::parse(&budget_text(budget)?).map_err(err)?,
        };
        slf.problem_mut().options.size = Some(b);
        Ok(slf)
    }

    /// Candidate weight bits (a subset of the file's).
    fn weight_bits(mut slf: PyRefMut<'_, Self>, bits: Vec<u32>) -> PyRefMut<'_, Self> {
        slf.problem_mut().options.weight_bits = Some(bits);
        slf
    }

    /// Candidate activation bits (a subset of the file's).
    fn act_bits(mut slf: PyRefMut<'_, Self>, bits: Vec<u32>) -> PyRefMut<'_, Self> {
        slf.problem_mut().options.act_bits = Some(bits);
        slf
    }

    /// Search weights only, every searchable layer's activations at `act_bits`.
    #[pyo3(signature = (act_bits=8))]
    fn weight_only(mut slf: PyRefMut<'_, Self>, act_bits: u32) -> PyRefMut<'_, Self> {
        slf.problem_mut().options.weight_only = Some(act_bits);
        slf
    }

    /// Holds `layer` at (weight, act) bits.
    fn pin(
        mut slf: PyRefMut<'_, Self>,
        layer: String,
        weight: u32,
        act: u32,
    ) -> PyRefMut<'_, Self> {
        slf.problem_mut().options.pinned.push((layer, weight, act));
        slf
    }

    /// These layers take the same weight bits.
    fn tie_weights(mut slf: PyRefMut<'_, Self>, layers: Vec<String>) -> PyRefMut<'_, Self> {
        slf.problem_mut().options.tie_weight.push(layers);
        slf
    }

    /// These layers take the same activation bits.
    fn tie_acts(mut slf: PyRefMut<'_, Self>, layers: Vec<String>) -> PyRefMut<'_, Self> {
        slf.problem_mut().options.tie_act.push(layers);
        slf
    }

    /// The non-monotone rule (on by default; `limpq solve --allow-non-monotone` turns it off).
    fn non_monotone_rule(mut slf: PyRefMut<'_, Self>, on: bool) -> PyRefMut<'_, Self> {
        slf.problem_mut().options.non_monotone_rule = on;
        slf
    }

    /// An extra linear resource: `table` is a resource-table file's path (RON, or JSON for
    /// `.json`) or a dict layer → [(w, a, value), ...]; at most `max`. `name` names it
    /// (default: a file's own name, else "resource"); each resource needs its own.
    #[pyo3(signature = (table, max, name=None))]
    fn resource<'a>(
        mut slf: PyRefMut<'a, Self>,
        table: &Bound<'_, PyAny>,
        max: f64,
        name: Option<String>,
    ) -> PyResult<PyRefMut<'a, Self>> {
        let mut t = match as_path(table) {
            Some(path) => limpq_io::documents::read_resource_table(&path).map_err(err)?,
            None => {
                let d = table.cast::<PyDict>().map_err(|_| {
                    err("a resource table is a file path or a dict layer -> [(w, a, value), ...]")
                })?;
                let mut layers = Vec::with_capacity(d.len());
                for (k, v) in d.iter() {
                    let name: String = k.extract().map_err(|_| {
                        err(format!("a layer name is a str, not {}", type_name(&k)))
                    })?;
                    let costs = v.extract().map_err(|_| {
                        err(format!(
                            "layer `{name}`: expected a list of (weight bits, act bits, \
                             value), not {}",
                            shown(&v)
                        ))
                    })?;
                    layers.push(ResourceLayer { name, costs });
                }
                ResourceTable {
                    name: String::from("resource"),
                    layers,
                }
            }
        };
        if let Some(n) = name {
            t.name = n;
        }
        slf.problem_mut()
            .options
            .resources
            .push(Resource { table: t, max });
        Ok(slf)
    }

    /// Search states the exact solver may use before it returns its best policy unproven
    /// (`proof["optimal"]` False); default 20 000 000 (`limpq solve --node-limit`).
    fn node_limit(mut slf: PyRefMut<'_, Self>, states: u64) -> PyRefMut<'_, Self> {
        slf.node_limit = Some(states);
        slf
    }

    /// An independent copy (the chaining methods change the problem they are called on).
    fn copy(&self) -> PyProblem {
        self.clone()
    }

    /// The model name of the indicator set.
    #[getter]
    fn model(&self) -> String {
        self.p.indicators.model.clone()
    }

    /// Every layer's name, in model order (fixed layers included).
    #[getter]
    fn layers(&self) -> Vec<String> {
        self.p
            .indicators
            .layers
            .iter()
            .map(|l| l.name.clone())
            .collect()
    }

    /// The indicator set as an indicator file's text (`format` "ron" or "json"), e.g. to
    /// hand a set built from arrays to `limpq solve`.
    #[pyo3(signature = (format="ron"))]
    fn indicators_text(&self, format: &str) -> PyResult<String> {
        Ok(if text_format(format)? {
            self.p.indicators.to_json_string()
        } else {
            self.p.indicators.to_ron_string()
        })
    }

    /// The optimal policy under the budgets, with its usage and proof (a dict, see the stubs).
    /// Searches the problem as it is when called, without the GIL: another thread may
    /// change the problem meanwhile, for the next search.
    fn solve<'py>(slf: PyRef<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        // A snapshot, not a copy: a setter called meanwhile copies the problem it changes.
        let (p, opts) = PyProblem::snapshot(slf);
        let s = py
            .detach(move || p.compile()?.solve(&opts))
            .map_err(solver_err)?;
        solution_dict(py, &s)
    }

    /// Optimal policies at `points` BitOps budgets spread evenly from the smallest feasible
    /// BitOps to every layer at its highest bits (`limpq solve --sweep N`); a BitOps budget
    /// set on the problem is ignored. Like `solve()`, of the problem as it is when called.
    fn sweep<'py>(slf: PyRef<'py, Self>, points: usize) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        if points == 0 || points > MAX_SWEEP_POINTS {
            return Err(err(format!(
                "a sweep takes 1 to {MAX_SWEEP_POINTS} points, not {points}"
            )));
        }
        let (p, opts) = PyProblem::snapshot(slf);
        let sols = py
            .detach(move || p.compile_for_sweep()?.sweep(points, &opts))
            .map_err(solver_err)?;
        let out = PyList::empty(py);
        for s in &sols {
            out.append(solution_dict(py, s)?)?;
        }
        Ok(out)
    }

    /// Prices a policy (dict layer → (w, a), every layer) under this problem with the
    /// solver's own accounting: objective, usage, feasibility and why not.
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        policy: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = policy.cast::<PyDict>().map_err(|_| {
            err(format!(
                "a policy is a dict layer -> (weight bits, act bits), not {} (a solution's \
                 is its \"policy\")",
                type_name(policy)
            ))
        })?;
        if d.contains("policy")? && d.contains("objective")? {
            return Err(err(
                "a solution, not a policy: evaluate its \"policy\" (solution[\"policy\"])",
            ));
        }
        let layers = layer_bits(d, "")?;
        let e = self.p.evaluate(&layers).map_err(solver_err)?;
        let out = policy_fields(py, &e.policy, &e.usage, e.fixed_bitops)?;
        out.set_item("feasible", e.feasible)?;
        out.set_item("violations", e.violations)?;
        Ok(out)
    }

    /// Sets the budgets of `limpq bench solver` for this problem's indicator set: BitOps of
    /// uniform W4A4 and weights at 3.5 bits on average (4.5 with 6 or more weight
    /// bit-widths), fixed layers counted (as its `--indicators` rows); or, given
    /// `budgets` (`"BITOPS,SIZE"`, the part of a benchmark entry after its `@`, see
    /// `bench_entry`), those.
    #[pyo3(signature = (budgets=None))]
    fn bench_budgets<'py>(
        mut slf: PyRefMut<'py, Self>,
        budgets: Option<&str>,
    ) -> PyResult<PyRefMut<'py, Self>> {
        let b = limpq_solver::gen::entry_problem(slf.p.indicators.clone(), budgets).map_err(err)?;
        let options = &mut slf.problem_mut().options;
        options.bitops = b.options.bitops;
        options.size = b.options.size;
        Ok(slf)
    }

    /// Times `repeats` solves inside Rust (no Python in the loop): each run compiles the
    /// problem and solves it, as `solve()` does. Returns the medians in nanoseconds of
    /// compile, solve and both together (each a median on its own) and the last run's
    /// solution (the dict `solve()` returns). Like `solve()`, of the problem as it is when
    /// called.
    #[pyo3(signature = (repeats=20))]
    fn time_solve<'py>(slf: PyRef<'py, Self>, repeats: usize) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        if repeats == 0 || repeats > 10_000_000 {
            return Err(err(format!(
                "time_solve takes 1 to 10000000 repeats, not {repeats}"
            )));
        }
        let (p, opts) = PyProblem::snapshot(slf);
        let (s, mut tc, mut ts, mut tt) = py
            .detach(move || -> Result<_, Error> {
                use std::time::Instant;
                let (mut tc, mut ts, mut tt) = (
                    Vec::with_capacity(repeats),
                    Vec::with_capacity(repeats),
                    Vec::with_capacity(repeats),
                );
                let mut last = None;
                for _ in 0..repeats {
                    let t0 = Instant::now();
                    let c = p.compile()?;
                    let t1 = Instant::now();
                    let s = c.solve(&opts)?;
                    let t2 = Instant::now();
                    tc.push((t1 - t0).as_nanos());
                    ts.push((t2 - t1).as_nanos());
                    tt.push((t2 - t0).as_nanos());
                    last = Some(s);
                }
                let s = last.ok_or_else(|| Error::Backend(String::from("no run")))?;
                Ok((s, tc, ts, tt))
            })
            .map_err(solver_err)?;
        let median = |v: &mut Vec<u128>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        let d = PyDict::new(py);
        d.set_item("repeats", repeats)?;
        d.set_item("total_ns", median(&mut tt))?;
        d.set_item("compile_ns", median(&mut tc))?;
        d.set_item("solve_ns", median(&mut ts))?;
        d.set_item("solution", solution_dict(py, &s)?)?;
        Ok(d)
    }

    /// The compiled problem as a 0-1 ILP, to hand to another solver: one binary per
    /// allowed choice (dominated ones included), exactly one choice per group, each budget
    /// row `≤` its capacity; minimising `objective` gives `solve()`'s objective. A dict:
    /// `groups` (layers of each group), `start` (group g's choices are
    /// `start[g]:start[g+1]`), per choice `objective` and `bits` ((w, a) per layer of its
    /// group), and `rows`: budget name → {"coef": per choice, "capacity": the budget less
    /// the fixed layers' part}.
    fn ilp<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let ilp = self.p.compile().map_err(solver_err)?.ilp();
        let d = PyDict::new(py);
        d.set_item("groups", &ilp.groups)?;
        d.set_item("start", &ilp.start)?;
        d.set_item("objective", &ilp.cost)?;
        d.set_item("bits", &ilp.bits)?;
        let rows = PyDict::new(py);
        let m = ilp.rows.len();
        for (k, name) in ilp.rows.iter().enumerate() {
            let r = PyDict::new(py);
            let coef: Vec<f64> = ilp.coef.iter().skip(k).step_by(m).copied().collect();
            r.set_item("coef", coef)?;
            r.set_item("capacity", ilp.capacity[k])?;
            rows.set_item(name, r)?;
        }
        d.set_item("rows", rows)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let ind = &self.p.indicators;
        format!(
            "Problem(model={:?}, layers={}, weight_bits={:?}, act_bits={:?})",
            ind.model,
            ind.layers.len(),
            ind.weight_bits,
            ind.act_bits
        )
    }
}

/// A budget given as text (`"w4a4"`, `"cr:8"`, `"1_500_000"`); an int that is not a
/// `u64` (the caller tried that first) is refused with its value.
/// A budget given as an int. A bool is an int to Python, but `bitops(True)` is a mistake,
/// not a budget of 1: it is left to [`budget_text`], which refuses it by its type.
fn budget_int(b: &Bound<'_, PyAny>) -> Option<u64> {
    if b.is_instance_of::<PyBool>() {
        return None;
    }
    b.extract::<u64>().ok()
}

fn budget_text(b: &Bound<'_, PyAny>) -> PyResult<String> {
    if b.is_instance_of::<PyInt>() && !b.is_instance_of::<PyBool>() {
        return Err(err(format!(
            "an int budget is 0 to {}, not {}",
            u64::MAX,
            b.str().map(|s| s.to_string()).unwrap_or_default()
        )));
    }
    b.extract::<String>().map_err(|_| {
        err(format!(
            "a budget is a str or a non-negative int, not {}",
            type_name(b)
        ))
    })
}

fn type_name(o: &Bound<'_, PyAny>) -> String {
    o.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| String::from("?"))
}

/// The policy file's fields, but `optimal` (a solution says it in its proof): `model`,
/// `policy`, `objective`, `bitops`, `weight_bits_total`, the budgets.
fn policy_file_fields<'py>(py: Python<'py>, p: &Policy) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("model", &p.model)?;
    let bits = PyDict::new(py);
    for l in &p.layers {
        bits.set_item(&l.name, (l.weight, l.act))?;
    }
    d.set_item("policy", bits)?;
    d.set_item("objective", p.objective)?;
    d.set_item("bitops", p.bitops)?;
    d.set_item("weight_bits_total", p.weight_bits_total)?;
    d.set_item("bitops_budget", p.bitops_budget)?;
    d.set_item("size_budget_bits", p.size_budget_bits)?;
    Ok(d)
}

/// The policy's fields shared by a solution and an evaluation.
fn policy_fields<'py>(
    py: Python<'py>,
    p: &Policy,
    usage: &[Usage],
    fixed_bitops: u64,
) -> PyResult<Bound<'py, PyDict>> {
    let d = policy_file_fields(py, p)?;
    d.set_item("fixed_bitops", fixed_bitops)?;
    let u = PyDict::new(py);
    for x in usage {
        let e = PyDict::new(py);
        e.set_item("used", x.used)?;
        e.set_item("budget", x.budget)?;
        u.set_item(&x.name, e)?;
    }
    d.set_item("usage", u)?;
    Ok(d)
}

fn solution_dict<'py>(py: Python<'py>, s: &Solution) -> PyResult<Bound<'py, PyDict>> {
    let d = policy_fields(py, &s.policy, &s.usage, s.fixed_bitops)?;
    let pr = PyDict::new(py);
    pr.set_item("optimal", s.proof.optimal)?;
    pr.set_item("lower_bound", s.proof.lower_bound)?;
    pr.set_item("gap", s.proof.gap)?;
    pr.set_item("nodes", s.proof.nodes)?;
    pr.set_item(
        "backend",
        match s.proof.backend {
            limpq_solver::Backend::Exact => "exact",
            limpq_solver::Backend::Microlp => "microlp",
            _ => "other",
        },
    )?;
    d.set_item("proof", pr)?;
    Ok(d)
}

/// Rows of a layer table given as a list of tuples or dicts.
fn table_rows(layers: &Bound<'_, PyAny>) -> PyResult<Vec<TableRow>> {
    let mut rows = Vec::new();
    for (i, row) in layers.try_iter()?.enumerate() {
        let row = row?;
        let r = if let Ok(d) = row.cast::<PyDict>() {
            let get = |k: &str| -> PyResult<Bound<'_, PyAny>> {
                d.get_item(k)?
                    .ok_or_else(|| err(format!("layer table row {i}: no `{k}`")))
            };
            TableRow {
                name: get("name")?.extract()?,
                macs: get("macs")?.extract()?,
                params: get("params")?.extract()?,
                fixed: match d.get_item("fixed")? {
                    Some(f) => f.extract()?,
                    None => None,
                },
            }
        } else {
            let t: Vec<Bound<'_, PyAny>> = row.extract()?;
            if !(3..=4).contains(&t.len()) {
                return Err(err(format!(
                    "layer table row {i}: expected (name, macs, params[, fixed]), got {} items",
                    t.len()
                )));
            }
            TableRow {
                name: t[0].extract()?,
                macs: t[1].extract()?,
                params: t[2].extract()?,
                fixed: match t.get(3) {
                    Some(f) => f.extract()?,
                    None => None,
                },
            }
        };
        rows.push(r);
    }
    Ok(rows)
}

/// Plain Python data as the pickle reader's value (what the reference code pickles).
fn to_value(o: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > limpq_io::pickle::MAX_DEPTH {
        return Err(err("the indicators nest too deeply"));
    }
    let all = |it: Vec<Bound<'_, PyAny>>| -> PyResult<Vec<Value>> {
        it.iter().map(|x| to_value(x, depth + 1)).collect()
    };
    Ok(if o.is_none() {
        Value::None
    } else if let Ok(b) = o.cast::<PyBool>() {
        Value::Bool(b.is_true())
    } else if o.is_instance_of::<PyInt>() {
        Value::Int(
            o.extract()
                .map_err(|_| err(format!("integer {o} does not fit in 64 bits")))?,
        )
    } else if o.is_instance_of::<PyFloat>() {
        Value::Float(o.extract()?)
    } else if let Ok(s) = o.cast::<PyString>() {
        Value::Str(s.extract()?)
    } else if let Ok(l) = o.cast::<PyList>() {
        Value::List(all(l.iter().collect())?)
    } else if let Ok(t) = o.cast::<PyTuple>() {
        Value::Tuple(all(t.iter().collect())?)
    } else if let Ok(d) = o.cast::<PyDict>() {
        let mut items = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            items.push((to_value(&k, depth + 1)?, to_value(&v, depth + 1)?));
        }
        Value::Dict(items)
    } else if let Ok(x) = o.extract::<f64>() {
        // numpy / torch scalars: their value, as `float(t)` would give.
        Value::Float(x)
    } else {
        return Err(err(format!(
            "a {} in the indicators: expected plain data (dict, list, str, int, float)",
            type_name(o)
        )));
    })
}

/// An instance of `limpq bench solver`: `kind` one of `BENCH_KINDS` or
/// `BENCH_KINDS_LATENCY`, the same seeded indicator set and budgets as the benchmark's row
/// for that kind.
#[pyfunction]
#[pyo3(signature = (kind, seed=0))]
fn bench_problem(kind: &str, seed: u64) -> PyResult<PyProblem> {
    let p = limpq_solver::gen::bench_problem(kind, seed).ok_or_else(|| {
        err(format!(
            "kind `{kind}`: expected one of {}, {}",
            limpq_solver::gen::BENCH_KINDS.join(", "),
            limpq_solver::gen::BENCH_KINDS_LATENCY.join(", ")
        ))
    })?;
    Ok(PyProblem::of(p))
}

/// A benchmark file entry split into its path and the budgets it names: `"PATH"` →
/// `(PATH, None)`, `"PATH@BITOPS,SIZE"` → `(PATH, "BITOPS,SIZE")` (as `limpq bench solver
/// --indicators` reads it).
#[pyfunction]
fn bench_entry(entry: &str) -> (&str, Option<&str>) {
    limpq_solver::gen::bench_entry(entry)
}

/// The text format named by `format`, or the error naming it.
fn text_format(format: &str) -> PyResult<bool> {
    match format {
        "ron" => Ok(false),
        "json" => Ok(true),
        other => Err(err(format!(
            "format `{other}`: expected \"ron\" or \"json\""
        ))),
    }
}

/// `d[key]` as a `T`, the error naming the key and what it takes.
fn item<'py, T: FromPyObjectOwned<'py>>(
    d: &Bound<'py, PyDict>,
    key: &str,
    what: &str,
) -> PyResult<T> {
    let v = d
        .get_item(key)?
        .ok_or_else(|| err(format!("the policy has no `{key}`")))?;
    v.extract()
        .map_err(|_| err(format!("`{key}`: expected {what}, not {}", shown(&v))))
}

/// A number or bool by its `repr`, anything else by its type's name (for messages).
fn shown(v: &Bound<'_, PyAny>) -> String {
    if v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>() {
        v.repr().map(|r| r.to_string()).unwrap_or_default()
    } else {
        type_name(v)
    }
}

/// What an unsigned 64-bit field takes.
const U64: &str = "an int 0 to 18446744073709551615";

/// `d[key]` as an optional `u64` (absent or None: None).
fn opt_u64(d: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<u64>> {
    match d.get_item(key)? {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => v.extract().map(Some).map_err(|_| {
            err(format!(
                "`{key}`: expected None or {U64}, not {}",
                shown(&v)
            ))
        }),
    }
}

/// A policy dict (a solution, an evaluation or `read_policy`'s) as the policy file's
/// fields. `optimal` is the solution's proof, else the dict's `optimal`, else false (an
/// evaluation proves nothing).
/// A policy's bits, a dict layer -> (weight bits, act bits), as the solver's layers: each
/// pair a tuple or a list (a solution through `json.loads(json.dumps(...))` has lists) of
/// two non-negative ints; anything else a [`SolverError`] naming the layer (`what` before
/// it).
fn layer_bits(bits: &Bound<'_, PyDict>, what: &str) -> PyResult<Vec<LayerBits>> {
    let mut layers = Vec::with_capacity(bits.len());
    for (k, v) in bits.iter() {
        let name: String = k.extract().map_err(|_| {
            err(format!(
                "{what}a layer name is a str, not {}",
                type_name(&k)
            ))
        })?;
        let pair = v.extract::<(u32, u32)>().ok().or_else(|| {
            match v.extract::<Vec<u32>>().ok()?.as_slice() {
                &[w, a] => Some((w, a)),
                _ => None,
            }
        });
        let Some((weight, act)) = pair else {
            return Err(err(format!(
                "{what}layer `{name}`: expected (weight bits, act bits), two ints 0 or more, \
                 not {}",
                shown(&v)
            )));
        };
        layers.push(LayerBits { name, weight, act });
    }
    Ok(layers)
}

fn policy_from_dict(o: &Bound<'_, PyAny>) -> PyResult<Policy> {
    let d = o.cast::<PyDict>().map_err(|_| {
        err(format!(
            "a policy to write is a dict (from solve, sweep, evaluate or read_policy), not {}",
            type_name(o)
        ))
    })?;
    let bits: Bound<'_, PyDict> = item(d, "policy", "a dict layer -> (weight bits, act bits)")?;
    let layers = layer_bits(&bits, "`policy`: ")?;
    let optimal = match d.get_item("proof")? {
        Some(proof) => {
            let proof = proof.cast::<PyDict>().map_err(|_| {
                err(format!(
                    "`proof`: expected a dict, not {}",
                    type_name(&proof)
                ))
            })?;
            item(proof, "optimal", "a bool")?
        }
        None => match d.get_item("optimal")? {
            Some(_) => item(d, "optimal", "a bool")?,
            None => false,
        },
    };
    Ok(Policy {
        model: item(d, "model", "a str")?,
        layers,
        objective: item(d, "objective", "a float")?,
        bitops: item(d, "bitops", U64)?,
        weight_bits_total: item(d, "weight_bits_total", U64)?,
        optimal,
        bitops_budget: opt_u64(d, "bitops_budget")?,
        size_budget_bits: opt_u64(d, "size_budget_bits")?,
    })
}

/// A policy file (`limpq solve -o`, or its `--format json` report) as a dict: `model`,
/// `policy` (layer → (weight bits, act bits), in model order), `objective`, `bitops`,
/// `weight_bits_total`, `optimal`, `bitops_budget`, `size_budget_bits`. JSON when the
/// name ends in `.json`, RON otherwise.
#[pyfunction]
fn read_policy<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let p = limpq_io::documents::read_policy(&path).map_err(err)?;
    let d = policy_file_fields(py, &p)?;
    d.set_item("optimal", p.optimal)?;
    Ok(d)
}

/// The policy file's text, as `limpq solve -o` writes it (`format` "ron" or "json"), of
/// a solution, an evaluation (`optimal: false`) or a dict from `read_policy`: the file
/// that `limpq finetune --policy`, `limpq export` and a pipeline's `policy` read.
#[pyfunction]
#[pyo3(signature = (policy, format="ron"))]
fn policy_text(policy: &Bound<'_, PyAny>, format: &str) -> PyResult<String> {
    let json = text_format(format)?;
    let p = policy_from_dict(policy)?;
    Ok(if json {
        p.to_json_string()
    } else {
        p.to_ron_string()
    })
}

/// The frontier file's text of a sweep's solutions, as `limpq solve --sweep N -o` writes
/// it (`format` "ron" or "json").
#[pyfunction]
#[pyo3(signature = (sweep, format="ron"))]
fn frontier_text(sweep: Vec<Bound<'_, PyAny>>, format: &str) -> PyResult<String> {
    let json = text_format(format)?;
    let points = sweep
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // The message alone (`Display` of a `PyErr` puts its type first).
            policy_from_dict(s).map_err(|e| err(format!("sweep point {i}: {}", e.value(s.py()))))
        })
        .collect::<PyResult<Vec<Policy>>>()?;
    let Some(first) = points.first() else {
        return Err(err("a frontier needs at least one sweep point"));
    };
    if let Some((i, p)) = points
        .iter()
        .enumerate()
        .find(|(_, p)| p.model != first.model)
    {
        return Err(err(format!(
            "sweep point {i} is of model `{}`, point 0 of `{}`",
            p.model, first.model
        )));
    }
    let f = limpq_solver::report::frontier_of(&first.model, points.iter().map(|p| (p, p.optimal)));
    Ok(if json {
        f.to_json_string()
    } else {
        f.to_ron_string()
    })
}

#[pymodule(name = "limpq_solver")]
fn limpq_solver_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyProblem>()?;
    m.add_function(wrap_pyfunction!(bench_problem, m)?)?;
    m.add_function(wrap_pyfunction!(bench_entry, m)?)?;
    m.add_function(wrap_pyfunction!(read_policy, m)?)?;
    m.add_function(wrap_pyfunction!(policy_text, m)?)?;
    m.add_function(wrap_pyfunction!(frontier_text, m)?)?;
    m.add(
        "BENCH_KINDS",
        PyTuple::new(py, limpq_solver::gen::BENCH_KINDS)?,
    )?;
    m.add(
        "BENCH_KINDS_LATENCY",
        PyTuple::new(py, limpq_solver::gen::BENCH_KINDS_LATENCY)?,
    )?;
    m.add("SolverError", py.get_type::<SolverError>())?;
    m.add("InfeasibleError", py.get_type::<InfeasibleError>())?;
    m.add("LimitReachedError", py.get_type::<LimitReachedError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
