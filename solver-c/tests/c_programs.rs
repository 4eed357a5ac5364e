//! The C and C++ example programs (`tests/c/solve.c`, `tests/cpp/solve.cpp`), compiled
//! with the system compilers (`cc` and `c++`, or `$CC` and `$CXX`) against
//! `include/limpq_solver.h` and the static library this test was built with, solve the
//! shipped ResNet-20 example under a budget, price the policy, sweep, take the policy and
//! the sweep as file text, and hit an infeasible budget; each printed line is compared
//! with the Rust solver's answer, the texts byte for byte with what `limpq solve -o`
//! writes (`Policy::to_ron_string` and the like, `io::documents::write_policy`). Both
//! also run under valgrind's memcheck, where it is installed.
//!
//! The libraries: cargo builds this crate's `staticlib` and `cdylib` next to the test
//! binary (`target/<profile>/deps/liblimpq_solver_c.{a,so}`) when it builds the library
//! for the test. Linking the static one needs `-lpthread -ldl -lm` besides the C library;
//! one program is also linked against the shared one.

use std::path::{Path, PathBuf};
use std::process::Command;

use limpq_solver::{
    BitOpsBudget, Evaluation, IndicatorSet, Policy, Problem, Proof, SizeBudget, Solution, Usage,
};
use serde_json::Value;

const BITOPS: &str = "w4a4";
const SIZE: &str = "cr:8";
const POINTS: usize = 5;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example() -> PathBuf {
    crate_dir().join("../examples/resnet20.indicators.ron")
}

/// The static library built for this test run.
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let lib = exe
        .parent()
        .expect("the test binary's directory")
        .join("liblimpq_solver_c.a");
    let built = std::fs::metadata(&lib)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e} (cargo builds it for this test)", lib.display()));
    let source = std::fs::metadata(crate_dir().join("src/lib.rs"))
        .and_then(|m| m.modified())
        .expect("src/lib.rs");
    assert!(
        built >= source,
        "{} is older than src/lib.rs",
        lib.display()
    );
    lib
}

/// How a program links the library.
#[derive(Clone, Copy)]
enum Link {
    Static,
    /// `-L<dir> -llimpq_solver_c`: the shared library beside the static one.
    Shared,
}

/// Compiles `source` with `compiler` (overridden by the environment variable `env`) into
/// the test's scratch directory.
fn compile(compiler: &str, env: &str, std: &str, source: &str, name: &str, link: Link) -> PathBuf {
    let compiler = std::env::var(env).unwrap_or_else(|_| String::from(compiler));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let lib = static_lib();
    let mut cmd = Command::new(&compiler);
    cmd.args([std, "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join(source));
    match link {
        Link::Static => cmd.arg(&lib).args(["-lpthread", "-ldl", "-lm"]),
        Link::Shared => cmd
            .arg(format!("-L{}", lib.parent().unwrap().display()))
            .arg("-llimpq_solver_c"),
    };
    let result = cmd
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        result.status.success(),
        "{compiler} {source} failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

/// Runs a compiled program on the example and parses its JSON lines.
fn run(program: &Path) -> Vec<Value> {
    run_under(&[], program)
}

/// [`run`] under a wrapper command (`wrapper[0]` with its arguments, then the program's).
fn run_under(wrapper: &[&str], program: &Path) -> Vec<Value> {
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    };
    let result = cmd
        // Where a program linked with `Link::Shared` finds the library.
        .env("LD_LIBRARY_PATH", static_lib().parent().unwrap())
        .arg(example())
        .args([BITOPS, SIZE, &POINTS.to_string()])
        .output()
        .expect("run the program");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{} exited with {}:\n{stdout}\n{}",
        program.display(),
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// What the Rust solver says on the same inputs.
struct Expected {
    solution: Solution,
    evaluation: Evaluation,
    sweep: Vec<Solution>,
    error: String,
}

fn expected() -> Expected {
    let text = std::fs::read_to_string(example()).expect("the example indicator file");
    let p = Problem::new(IndicatorSet::from_ron_str(&text).expect("the example parses"))
        .bitops(BitOpsBudget::parse(BITOPS).unwrap())
        .size(SizeBudget::parse(SIZE).unwrap());
    let solution = p.solve().expect("the example solves");
    let evaluation = p.evaluate(&solution.policy.layers).expect("evaluate");
    let sweep = p.sweep(POINTS).expect("sweep");
    let error = p
        .clone()
        .bitops(BitOpsBudget::Absolute(1))
        .solve()
        .expect_err("1 BitOps is infeasible")
        .to_string();
    Expected {
        solution,
        evaluation,
        sweep,
        error,
    }
}

fn close(got: &Value, want: f64, what: &str) {
    let got = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {got} is not a number"));
    assert!(
        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
        "{what}: {got} vs {want}"
    );
}

fn check_policy(v: &Value, policy: &Policy, usage: &[Usage], fixed_bitops: u64, what: &str) {
    assert_eq!(v["model"], policy.model.as_str(), "{what}");
    close(
        &v["objective"],
        policy.objective,
        &format!("{what}: objective"),
    );
    assert_eq!(v["bitops"], policy.bitops, "{what}: bitops");
    assert_eq!(v["fixed_bitops"], fixed_bitops, "{what}: fixed_bitops");
    assert_eq!(
        v["weight_bits_total"], policy.weight_bits_total,
        "{what}: weight_bits_total"
    );
    assert_eq!(
        v["bitops_budget"],
        policy.bitops_budget.map_or(Value::Null, Value::from),
        "{what}: bitops_budget"
    );
    let layers: Vec<Value> = policy
        .layers
        .iter()
        .map(|l| serde_json::json!([l.name, l.weight, l.act]))
        .collect();
    assert_eq!(v["layers"], Value::from(layers), "{what}: layers");
    let got = v["usage"].as_array().expect("usage");
    assert_eq!(got.len(), usage.len(), "{what}: usage");
    for (g, u) in got.iter().zip(usage) {
        assert_eq!(g["name"], u.name.as_str(), "{what}");
        close(&g["used"], u.used, &format!("{what}: {} used", u.name));
        match u.budget {
            Some(b) => close(&g["budget"], b, &format!("{what}: {} budget", u.name)),
            None => assert!(g["budget"].is_null(), "{what}: {} budget", u.name),
        }
    }
}

fn check_solution(v: &Value, s: &Solution, what: &str) {
    check_policy(v, &s.policy, &s.usage, s.fixed_bitops, what);
    let (p, want): (&Value, &Proof) = (&v["proof"], &s.proof);
    assert_eq!(p["optimal"], want.optimal, "{what}: optimal");
    close(
        &p["lower_bound"],
        want.lower_bound,
        &format!("{what}: lower_bound"),
    );
    close(&p["gap"], want.gap, &format!("{what}: gap"));
    assert_eq!(p["nodes"], want.nodes, "{what}: nodes");
}

/// A file text a program prints on its `files` line.
#[derive(Clone, Copy)]
enum File {
    SolvedPolicyRon,
    PricedPolicyJson,
    FrontierRon,
    FrontierJson,
}

impl File {
    fn key(self) -> &'static str {
        match self {
            File::SolvedPolicyRon => "policy_ron",
            File::PricedPolicyJson => "policy_json",
            File::FrontierRon => "frontier_ron",
            File::FrontierJson => "frontier_json",
        }
    }

    /// The text the CLI writes for it.
    fn want(self, want: &Expected) -> String {
        let frontier = || limpq_solver::report::frontier(&want.solution.policy.model, &want.sweep);
        match self {
            File::SolvedPolicyRon => want.solution.policy.to_ron_string(),
            File::PricedPolicyJson => want.evaluation.policy.to_json_string(),
            File::FrontierRon => frontier().to_ron_string(),
            File::FrontierJson => frontier().to_json_string(),
        }
    }
}

/// What each program prints on its `files` line.
const C_FILES: [File; 2] = [File::SolvedPolicyRon, File::FrontierJson];
const CPP_FILES: [File; 2] = [File::PricedPolicyJson, File::FrontierRon];

fn check_output(lines: &[Value], want: &Expected, files: &[File], program: &str) {
    assert_eq!(lines.len(), 4 + POINTS, "{program}: {lines:?}");
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[..2], ["solve", "evaluate"], "{program}");
    assert!(want.solution.proof.optimal);
    check_solution(&lines[0], &want.solution, &format!("{program} solve"));

    let e = &lines[1];
    assert_eq!(e["feasible"], want.evaluation.feasible, "{program}");
    assert_eq!(e["feasible"], true, "{program}");
    assert_eq!(
        e["violations"],
        want.evaluation.violations.len(),
        "{program}"
    );
    let ev = &want.evaluation;
    check_policy(
        e,
        &ev.policy,
        &ev.usage,
        ev.fixed_bitops,
        &format!("{program} evaluate"),
    );

    assert_eq!(want.sweep.len(), POINTS);
    for (i, s) in want.sweep.iter().enumerate() {
        let l = &lines[2 + i];
        assert_eq!(l["kind"], "sweep", "{program}");
        assert_eq!(l["index"], i, "{program}");
        check_solution(l, s, &format!("{program} sweep point {i}"));
    }

    let f = &lines[2 + POINTS];
    assert_eq!(f["kind"], "files", "{program}");
    for &file in files {
        let got = f[file.key()]
            .as_str()
            .unwrap_or_else(|| panic!("{program}: no {} in {f}", file.key()));
        assert_eq!(got, file.want(want), "{program}: {}", file.key());
    }
    // The texts read back as the documents they are (the evaluation's says not optimal).
    if let Some(t) = f["policy_json"].as_str() {
        let p = Policy::from_json_str(t).expect("the priced policy's JSON reads back");
        assert_eq!(p, want.evaluation.policy, "{program}");
        assert!(
            !p.optimal,
            "{program}: a priced policy is not proven optimal"
        );
    }
    if let Some(t) = f["policy_ron"].as_str() {
        let p = Policy::from_ron_str(t).expect("the policy's RON reads back");
        assert_eq!(p, want.solution.policy, "{program}");
        assert!(p.optimal, "{program}");
    }

    let err = &lines[3 + POINTS];
    assert_eq!(err["kind"], "error", "{program}");
    assert_eq!(err["status"], 5, "{program}: LIMPQ_INFEASIBLE");
    assert_eq!(err["infeasible"], true, "{program}");
    assert_eq!(
        err["null"], true,
        "{program}: the out-pointer is NULL after a failure"
    );
    assert_eq!(err["message"], want.error.as_str(), "{program}");
}

#[test]
fn c_program_matches_the_rust_solver() {
    let c = "tests/c/solve.c";
    let program = compile("cc", "CC", "-std=c99", c, "solve_c", Link::Static);
    check_output(&run(&program), &expected(), &C_FILES, "C");
}

#[test]
fn cpp_program_matches_the_rust_solver() {
    let cpp = "tests/cpp/solve.cpp";
    let program = compile("c++", "CXX", "-std=c++17", cpp, "solve_cpp", Link::Static);
    check_output(&run(&program), &expected(), &CPP_FILES, "C++");
}

/// The same C program against the shared library, as SOLVER.md shows it linked.
#[test]
fn c_program_runs_on_the_shared_library() {
    let c = "tests/c/solve.c";
    let program = compile("cc", "CC", "-std=c99", c, "solve_c_shared", Link::Shared);
    check_output(&run(&program), &expected(), &C_FILES, "C, shared library");
}

/// Valgrind's memcheck finds no invalid read or write, no use of uninitialised memory and
/// no memory lost (definitely or indirectly) in the C and C++ programs, which call every
/// kind of function the header has: the library's side of the boundary, and the programs
/// as SOLVER.md shows them to be copied. Skipped, saying so, where valgrind is not
/// installed (`scripts/setup.sh` installs it on Debian).
#[test]
fn the_programs_run_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("skipped: valgrind is not installed");
        return;
    }
    let memcheck = [
        "valgrind",
        "--quiet",
        "--leak-check=full",
        "--show-leak-kinds=definite,indirect",
        "--errors-for-leak-kinds=definite,indirect",
        "--error-exitcode=99",
    ];
    let want = expected();
    let c = compile(
        "cc",
        "CC",
        "-std=c99",
        "tests/c/solve.c",
        "solve_c_memcheck",
        Link::Static,
    );
    check_output(
        &run_under(&memcheck, &c),
        &want,
        &C_FILES,
        "C under valgrind",
    );
    let cpp = compile(
        "c++",
        "CXX",
        "-std=c++17",
        "tests/cpp/solve.cpp",
        "solve_cpp_memcheck",
        Link::Static,
    );
    check_output(
        &run_under(&memcheck, &cpp),
        &want,
        &CPP_FILES,
        "C++ under valgrind",
    );
}

/// docs/SOLVER.md shows the C program that `c_program_matches_the_rust_solver` runs,
/// character for character.
#[test]
fn the_solver_doc_shows_the_tested_c_program() {
    let doc = std::fs::read_to_string(crate_dir().join("../docs/SOLVER.md")).expect("SOLVER.md");
    let program = std::fs::read_to_string(crate_dir().join("tests/c/solve.c")).expect("solve.c");
    let block = format!("```c\n{program}```\n");
    assert!(
        doc.contains(&block),
        "docs/SOLVER.md must show tests/c/solve.c verbatim in a ```c block"
    );
}
