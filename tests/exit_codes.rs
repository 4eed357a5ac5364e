//! The exit statuses `limpq --help` and the README promise, and how the binary ends when
//! its stdout goes away: 0 success (a closed pipe included), 1 error, 2 usage error,
//! 3 no policy meets the budgets, 4 a policy not proven optimal, 5 a limit reached before
//! any policy was found.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};

use common::{limpq_cmd, stderr, stdout};
use limpq_solver::{Frontier, Policy};

const IND: &str = "tests/fixtures/solver/tiny.indicators.ron";
const LAT: &str = "tests/fixtures/solver/latency.ron";
/// Two layers whose first policy breaks a budget (see the test that uses them).
const CUT: &str = "tests/fixtures/solver/cut.indicators.ron";
const CUT_LAT: &str = "tests/fixtures/solver/cut.latency.ron";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn limpq(args: &[&str]) -> Output {
    common::limpq_in(root(), args)
}

fn tmp(name: &str) -> common::Scratch {
    common::tmp_dir("exit-codes", name)
}

/// `out` ended with `code`, and its stderr holds every one of `needles`.
fn exits(out: &Output, code: i32, needles: &[&str]) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit status {code}, got {}\nstderr:\n{err}\nstdout:\n{}",
        out.status,
        stdout(out)
    );
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
    err
}

#[test]
fn help_documents_every_exit_status() {
    let out = limpq(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("Exit status"), "{text}");
    for line in [
        "0  success",
        "1  error",
        "2  usage",
        "3  no policy",
        "4  a policy",
        "5  the limit",
    ] {
        assert!(text.contains(line), "--help lacks `{line}`:\n{text}");
    }
    let solve = stdout(&limpq(&["solve", "--help"]));
    assert!(solve.contains("Exit status"), "{solve}");
}

#[test]
fn success_is_0_and_errors_are_1() {
    exits(&limpq(&["solve", IND, "--bitops", "w3a3"]), 0, &[]);
    let err = exits(
        &limpq(&["solve", "no/such/file.ron", "--bitops", "w4a4"]),
        1,
        &["no/such/file.ron"],
    );
    assert!(err.starts_with("error: "), "{err}");
    // An output in a folder that is not there: said of the file asked for.
    let err = exits(
        &limpq(&["solve", IND, "--bitops", "w3a3", "-o", "no/such/dir/p.ron"]),
        1,
        &["no/such/dir/p.ron", "its folder no/such/dir does not exist"],
    );
    assert!(!err.contains(".tmp"), "{err}");
    // The long commands check their outputs before any work: a run of hours must not end
    // by failing to write (before, `train` wrote its first epoch's checkpoint and failed).
    #[cfg(feature = "gpu")]
    for args in [
        &["train", "--model", "small_cnn", "-o", "no/such/dir/x.ckpt"][..],
        &[
            "indicators",
            "--model",
            "small_cnn",
            "--ckpt",
            "a.ckpt",
            "-o",
            "no/such/dir/i.ron",
        ],
        &[
            "sensitivity",
            "--model",
            "small_cnn",
            "--init",
            "a.ckpt",
            "-o",
            "no/such/dir/s.ron",
        ],
        &["eval", "--ckpt", "a.ckpt", "--logits", "no/such/dir/l.npy"],
    ] {
        exits(
            &limpq(args),
            1,
            &["no/such/dir/", "its folder no/such/dir does not exist"],
        );
    }
}

#[test]
fn clap_usage_errors_are_2() {
    exits(
        &limpq(&["solve", IND, "--no-such-flag"]),
        2,
        &["--no-such-flag"],
    );
    exits(&limpq(&["no-such-command"]), 2, &[]);
    exits(&limpq(&["solve", IND, "--bitops", "w4x4"]), 2, &["w4x4"]);
    // The solver bench's seconds: refused before anything runs (infinity panicked).
    for (flag, value) in [
        ("--microlp-limit", "inf"),
        ("--microlp-limit", "0"),
        ("--microlp-budget", "-1"),
        ("--microlp-budget", "nan"),
        // Counts of 0 were run as 1.
        ("--instances", "0"),
        ("--repeats", "0"),
        ("--sweep-points", "0"),
    ] {
        exits(&limpq(&["bench", "solver", flag, value]), 2, &[flag, value]);
    }
    // The GPU benches' counts and shapes: usage errors before a GPU opens (they were exit
    // 1, after it).
    #[cfg(feature = "gpu")]
    for (args, flag) in [
        (
            &["bench", "train", "--model", "small_cnn", "--batch", "0"][..],
            "--batch",
        ),
        (
            &["bench", "train", "--model", "small_cnn", "--steps", "0"],
            "--steps",
        ),
        (
            &[
                "bench",
                "conv",
                "--model",
                "small_cnn",
                "--check-batch",
                "0",
            ],
            "--check-batch",
        ),
        (
            &["bench", "conv", "--model", "small_cnn", "--iters", "0"],
            "--iters",
        ),
        (&["bench", "gemm", "--size", "0"], "--size"),
    ] {
        exits(&limpq(args), 2, &[flag, "1 or more"]);
    }
    // Dispatches of one submission: at least one, and not so many that recording them
    // exhausts the host.
    #[cfg(feature = "gpu")]
    for reps in ["0", "100001"] {
        for bench in ["gemm", "conv"] {
            exits(
                &limpq(&["bench", bench, "--reps", reps]),
                2,
                &["--reps", "1 to 100000"],
            );
        }
    }
    // Candidate bits: out of order (`6,2` ran at 6 bits, not the lowest), twice, or out
    // of the engine's range (refused after the GPU opened).
    #[cfg(feature = "gpu")]
    {
        let train = |more: &[&'static str]| {
            let mut v = vec!["bench", "train", "--model", "small_cnn"];
            v.extend_from_slice(more);
            v
        };
        for (args, says) in [
            (train(&["--bits", "6,2"]), &["--bits", "ascending"][..]),
            (train(&["--bits", "2,2"]), &["--bits", "ascending"]),
            (
                train(&["--mode", "single-quant", "--bits", "1"]),
                &["--bits", "outside 2..=16"],
            ),
            (train(&["--bits", "16,17"]), &["--bits", "outside 2..=16"]),
            (
                vec!["bench", "gemm", "--check", "1,2"],
                &["--check", "M,K,N"],
            ),
            (
                vec![
                    "indicators",
                    "--model",
                    "small_cnn",
                    "--ckpt",
                    "x.ckpt",
                    "--bits",
                    "1,2",
                    "-o",
                    "x.ron",
                ],
                &["--bits", "outside 2..=16"],
            ),
        ] {
            exits(&limpq(&args), 2, says);
        }
    }
    // The GPU commands' numbers and names: refused before a GPU or a dataset is opened.
    #[cfg(feature = "gpu")]
    for (cmd, flag, value) in [
        ("train", "--lr", "nan"),
        ("indicators", "--momentum", "inf"),
        ("finetune", "--weight-decay", "-1"),
        // Zero counts: an empty test subset was evaluated to a made-up 0% accuracy.
        ("eval", "--test-subset", "0"),
        ("train", "--batch", "0"),
        ("sensitivity", "--images", "0"),
        // An unknown backend name was skipped with a log line, leaving no backend.
        ("devices", "--backend", "nosuch"),
        // Found by the trainer after the GPU and the data were opened (exit 1).
        ("train", "--label-smoothing", "NaN"),
        ("finetune", "--label-smoothing", "1"),
    ] {
        exits(&limpq(&[cmd, flag, value]), 2, &[flag, value]);
    }
    // Combinations a run cannot honour, found before any file is read (they were exit 1,
    // some after a GPU was opened).
    #[cfg(feature = "gpu")]
    for (args, says) in [
        (
            &[
                "train",
                "--model",
                "small_cnn",
                "--lr-floor",
                "0.5",
                "--lr-schedule",
                "per-step",
                "-o",
                "x.ckpt",
            ][..],
            "--lr-floor applies to --lr-schedule per-epoch only",
        ),
        // A floor above the rate made the per-epoch schedule rise.
        (
            &[
                "train",
                "--model",
                "small_cnn",
                "--lr",
                "0.01",
                "--lr-floor",
                "1",
                "-o",
                "x.ckpt",
            ][..],
            "--lr-floor 1 is above the learning rate 0.01",
        ),
        (
            &[
                "indicators",
                "--model",
                "small_cnn",
                "--ckpt",
                "none.ckpt",
                "--bits",
                "6,4,2",
                "-o",
                "i.ron",
            ],
            "--bits: [6, 4, 2] must be ascending",
        ),
        (
            &[
                "sensitivity",
                "--model",
                "small_cnn",
                "--init",
                "none.ckpt",
                "--bits",
                "3,2",
                "-o",
                "i.ron",
            ],
            "--bits: [3, 2] must be ascending",
        ),
        (
            &[
                "pipeline",
                "examples/small_cnn.pipeline.ron",
                "--seeds",
                "5,5",
            ],
            "--seeds: a seed is listed twice",
        ),
        (
            &[
                "train",
                "--model",
                "small_cnn",
                "--transform",
                "(resize: 0)",
                "-o",
                "x.ckpt",
            ],
            "--transform applies to an image folder (--data folder), not to fashion-mnist",
        ),
    ] {
        exits(&limpq(args), 2, &[says]);
    }
    // A re-rendered report holds every seed of results.ron: a seed filter beside it
    // would be silently ignored, so it is refused before any file is read. (`pipeline`
    // comes with the default `gpu` feature.)
    #[cfg(feature = "gpu")]
    exits(
        &limpq(&[
            "pipeline",
            "no-such-job.ron",
            "--report-only",
            "--seeds",
            "0",
        ]),
        2,
        &["--report-only", "--seeds"],
    );
    // A flag of one `export` mode given in another was ignored (clap drops a `requires`
    // whose target conflicts with a flag given): refused before any file is read.
    #[cfg(feature = "gpu")]
    for (args, flag) in [
        (
            &["export", "x.ron", "--format", "csv", "--policy", "y.ron"][..],
            "--policy is --onnx's",
        ),
        (
            &["export", "x.ckpt", "--onnx", "x.onnx", "-o", "y"],
            "-o is --format's",
        ),
        (
            &[
                "export",
                "x.ckpt",
                "--safetensors",
                "x.st",
                "--onnx-model",
                "m.onnx",
            ],
            "--onnx-model is --format's",
        ),
    ] {
        exits(&limpq(args), 2, &[flag]);
    }
}

/// Every flag combination `solve` cannot honour as given is a usage error (2), said
/// before any file is read, naming the flags involved.
#[test]
fn solve_usage_errors_are_2() {
    let cases: &[(&[&str], &[&str])] = &[
        (&[IND], &["--bitops", "--sweep"]),
        (
            &[IND, "--bitops", "w4a4", "--pin", "foo"],
            &["--pin", "foo"],
        ),
        (
            &[IND, "--bitops", "w4a4", "--pin", "a=4"],
            &["--pin", "a=4"],
        ),
        (&[IND, "--bitops", "w4a4", "--pin", "a=x,4"], &["--pin"]),
        (&[IND, "--bitops", "w4a4", "--resource", LAT], &["--max"]),
        (&[IND, "--bitops", "w4a4", "--max", "3"], &["--resource"]),
        (
            &[IND, "--sweep", "4", "--backend", "microlp"],
            &["--sweep", "microlp"],
        ),
        (&[IND, "--sweep", "0"], &["--sweep 0"]),
        (&[IND, "--sweep", "100001"], &["--sweep"]),
        (
            &[IND, "--sweep", "4", "--bitops", "w4a4"],
            &["--sweep", "--bitops"],
        ),
        (
            &[IND, "--bitops", "w4a4", "--time-limit", "5"],
            &["--time-limit", "microlp"],
        ),
        (
            &[
                IND,
                "--bitops",
                "w4a4",
                "--weight-only",
                "--act-bits",
                "2,4",
            ],
            &["--act-bits", "--weight-only"],
        ),
        (
            &[
                IND,
                "--bitops",
                "w4a4",
                "--backend",
                "microlp",
                "--time-limit",
                "0",
            ],
            &["--time-limit"],
        ),
        (
            &[
                IND,
                "--bitops",
                "w4a4",
                "--backend",
                "microlp",
                "--node-limit",
                "5",
            ],
            &["--node-limit", "microlp"],
        ),
        // Numbers the flag's type admits but the command cannot use: refused as usage,
        // not sent to the library (where NaN was reported as the file's field) or turned
        // into a duration (where more seconds than one holds panicked).
        (
            &[IND, "--bitops", "w4a4", "--alpha", "nan"],
            &["--alpha", "nan"],
        ),
        (
            &[IND, "--bitops", "w4a4", "--alpha", "-1"],
            &["--alpha", "-1"],
        ),
        (
            &[
                IND,
                "--bitops",
                "w4a4",
                "--backend",
                "microlp",
                "--time-limit",
                "1e300",
            ],
            &["--time-limit", "more seconds than a duration"],
        ),
    ];
    for (args, needles) in cases {
        let mut a = vec!["solve"];
        a.extend_from_slice(args);
        let err = exits(&limpq(&a), 2, needles);
        assert!(err.starts_with("error: "), "{a:?}: {err}");
    }
    // Usage is checked before the indicator file is read: a missing file does not hide it.
    exits(&limpq(&["solve", "no/such/file.ron"]), 2, &["--bitops"]);
}

#[test]
fn infeasible_budgets_are_3() {
    exits(
        &limpq(&["solve", IND, "--bitops", "1000"]),
        3,
        &["BitOps", "smallest achievable"],
    );
    exits(
        &limpq(&["solve", IND, "--bitops", "w4a4", "--size", "10"]),
        3,
        &["size"],
    );
}

/// A search stopped by --node-limit keeps its best policy: written, printed, and exit 4
/// with a warning that it is not proven optimal.
#[test]
fn not_proven_optimal_is_4_and_keeps_the_policy() {
    let d = tmp("unproven");
    // JSON both: the same text of the objective parses to the same float.
    let file = d.join("p.json");
    let out = limpq(&[
        "solve",
        IND,
        "--bitops",
        "w3a4",
        "--node-limit",
        "0",
        "--format",
        "json",
        "-o",
        file.to_str().unwrap(),
    ]);
    let err = exits(&out, 4, &["NOT proven optimal", "--node-limit"]);
    assert!(err.starts_with("warning: "), "{err}");
    let printed = Policy::from_json_str(&stdout(&out)).unwrap();
    let written = Policy::from_json_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(!written.optimal);
    assert_eq!(printed, written);
    // Given room, the same search proves its answer and ends with 0.
    exits(&limpq(&["solve", IND, "--bitops", "w3a4"]), 0, &[]);
    // A sweep with unproven points ends with 4 as well, its frontier written.
    let f = d.join("f.ron");
    let out = limpq(&[
        "solve",
        IND,
        "--sweep",
        "5",
        "--node-limit",
        "0",
        "-o",
        f.to_str().unwrap(),
    ]);
    exits(&out, 4, &["NOT proven optimal"]);
    let frontier = Frontier::from_ron_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
    assert_eq!(frontier.points.len(), 5);
    assert!(frontier.points.iter().any(|p| !p.optimal));
}

/// A search stopped by --node-limit before it found any policy proves nothing: exit 5, an
/// error naming the limit (not infeasibility), and no file written. The fixture's first
/// policy, repaired from the relaxation's, breaks a budget, so at a node limit of 0 there
/// is none; without the limit the same search finds the optimum.
#[test]
fn a_limit_reached_before_any_policy_is_5_and_writes_nothing() {
    let d = tmp("cut");
    let file = d.join("p.ron");
    let args = |limit: Option<&'static str>| {
        let mut a = vec![
            "solve",
            CUT,
            "--bitops",
            "87337",
            "--resource",
            CUT_LAT,
            "--max",
            "28.25",
            "--alpha",
            "0.5",
            "-o",
            file.to_str().unwrap(),
        ];
        if let Some(n) = limit {
            a.extend(["--node-limit", n]);
        }
        a
    };
    let err = exits(
        &limpq(&args(Some("0"))),
        5,
        &["node limit of 0 states", "raise the limit"],
    );
    assert!(
        err.starts_with("error: ") && !err.contains("infeasible"),
        "{err}"
    );
    assert!(!file.exists(), "a policy was written");
    exits(&limpq(&args(None)), 0, &[]);
    let p = Policy::from_ron_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(p.optimal);
}

/// A reader that stops early (`limpq solve … | head -1`) ends the command quietly with 0,
/// and the -o file, written before anything is printed, is complete.
#[test]
fn a_closed_stdout_pipe_ends_quietly_with_0() {
    let d = tmp("pipe");
    let file = d.join("f.json");
    // Far more than a pipe buffer (64 KiB), so the writer meets the closed pipe however
    // fast it runs.
    let mut child = limpq_cmd(&[
        "solve",
        IND,
        "--sweep",
        "400",
        "--format",
        "json",
        "-o",
        file.to_str().unwrap(),
    ])
    .current_dir(root())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), "{");
    // The reader is dropped: the pipe is closed.
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "status {}; stderr:\n{}",
        out.status,
        stderr(&out)
    );
    assert_eq!(stderr(&out), "", "a closed pipe is not an error");
    let f = Frontier::from_json_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(f.points.len(), 400);

    // Closed before the first byte, for the table as well.
    let mut child = limpq_cmd(&["solve", IND, "--sweep", "3000"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

/// A stdout that cannot take the output (a full disk) is an error naming standard
/// output, exit 1, not a panic; the -o file was written before.
#[test]
fn a_full_stdout_is_an_error_1() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("SKIP a_full_stdout_is_an_error_1: no /dev/full");
        return;
    };
    let d = tmp("full");
    let file = d.join("p.ron");
    let out = limpq_cmd(&[
        "solve",
        IND,
        "--bitops",
        "w3a3",
        "-o",
        file.to_str().unwrap(),
    ])
    .current_dir(root())
    .stdout(Stdio::from(full))
    .output()
    .unwrap();
    exits(&out, 1, &["standard output", "error: "]);
    let p = Policy::from_ron_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(p.optimal);
    // Help and the version too (clap's printing ignored the failed write: exit 0).
    for args in [
        &["--help"][..],
        &["-V"],
        &["help", "solve"],
        &["solve", "--help"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = limpq_cmd(args).stdout(Stdio::from(full)).output().unwrap();
        exits(&out, 1, &["standard output"]);
    }
    // And when they are read: the text as clap writes it.
    let out = limpq(&["-V"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("limpq {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Input is read with a cap: `/dev/zero` is refused after 64 MiB (or at once, where only
/// a regular file is read), not read until memory runs out.
#[test]
fn endless_input_is_refused_with_1() {
    if !Path::new("/dev/zero").exists() {
        eprintln!("SKIP endless_input_is_refused_with_1: no /dev/zero");
        return;
    }
    exits(
        &limpq(&["solve", "/dev/zero", "--bitops", "w4a4"]),
        1,
        &["/dev/zero", "64 MiB"],
    );
    exits(
        &limpq(&[
            "solve",
            IND,
            "--bitops",
            "w4a4",
            "--resource",
            "/dev/zero",
            "--max",
            "1",
        ]),
        1,
        &["/dev/zero", "64 MiB"],
    );
    // A model description is read only from a regular file: refused before a byte is read.
    exits(
        &limpq(&["layers", "/dev/zero"]),
        1,
        &["/dev/zero", "not a regular file"],
    );
}

/// An output that is one of the command's inputs (however spelled) or another of its
/// outputs is a usage error, found before anything is read or written: the input is left
/// as it was. `limpq solve ind.ron … -o ind.ron` used to replace the indicator file with
/// the policy.
#[test]
fn an_output_that_is_an_input_is_2_and_leaves_the_input() {
    let d = tmp("output-is-input");
    let ind = d.join("ind.ron");
    std::fs::copy(root().join(IND), &ind).unwrap();
    let kept = std::fs::read(&ind).unwrap();
    let (ind_s, dir_s) = (ind.to_str().unwrap(), d.to_str().unwrap());
    // The same file by another spelling: through `.` and, on Unix, a hard link.
    let dotted = format!("{dir_s}/./ind.ron");
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut spellings = vec![ind_s.to_string(), dotted];
    #[cfg(unix)]
    {
        let linked = d.join("linked.ron");
        std::fs::hard_link(&ind, &linked).unwrap();
        spellings.push(linked.to_str().unwrap().to_string());
    }
    for out in &spellings {
        exits(
            &limpq(&["solve", ind_s, "--bitops", "w4a4", "-o", out]),
            2,
            &[&format!(
                "-o {out} is the same file as the indicator file {ind_s}"
            )],
        );
        assert_eq!(std::fs::read(&ind).unwrap(), kept, "-o {out}");
    }
    let lat = d.join("lat.ron");
    std::fs::copy(root().join(LAT), &lat).unwrap();
    let lat_s = lat.to_str().unwrap();
    exits(
        &limpq(&[
            "solve",
            ind_s,
            "--bitops",
            "w4a4",
            "--resource",
            lat_s,
            "--max",
            "1e9",
            "-o",
            lat_s,
        ]),
        2,
        &["is the same file as --resource"],
    );
    // A distinct output is written as before.
    let pol = d.join("p.ron");
    exits(
        &limpq(&[
            "solve",
            ind_s,
            "--bitops",
            "w4a4",
            "-o",
            pol.to_str().unwrap(),
        ]),
        0,
        &[],
    );
    assert_eq!(std::fs::read(&ind).unwrap(), kept);

    // The pickle and the layer table of `import-limpq`.
    let pkl = root().join("docs/results/reference_resnet50/importance_indicators_resnet50.pkl");
    let csv = root().join("docs/results/reference_resnet50/reference_counting.csv");
    let (pkl_c, csv_c) = (d.join("i.pkl"), d.join("t.csv"));
    std::fs::copy(&pkl, &pkl_c).unwrap();
    std::fs::copy(&csv, &csv_c).unwrap();
    let (pkl_s, csv_s) = (pkl_c.to_str().unwrap(), csv_c.to_str().unwrap());
    for (out, what) in [(pkl_s, "the pickle"), (csv_s, "--layers")] {
        exits(
            &limpq(&["import-limpq", pkl_s, "--layers", csv_s, "-o", out]),
            2,
            &[&format!("is the same file as {what}")],
        );
    }
    assert_eq!(std::fs::read(&pkl_c).unwrap(), std::fs::read(&pkl).unwrap());
    assert_eq!(std::fs::read(&csv_c).unwrap(), std::fs::read(&csv).unwrap());
    let _ = std::fs::remove_dir_all(&d);
}

/// The same rule in every command that writes files from others (refused before a GPU
/// is opened or an input read, so stand-in inputs do).
#[cfg(feature = "gpu")]
#[test]
fn every_command_refuses_an_output_that_is_an_input() {
    let d = tmp("outputs-everywhere");
    let f = |name: &str| {
        let p = d.join(name);
        std::fs::write(&p, b"keep").unwrap();
        p.to_str().unwrap().to_string()
    };
    let (ck, pol, ind, x) = (f("a.ckpt"), f("p.ron"), f("i.ron"), f("x.npy"));
    let (onnx, st) = (f("m.onnx"), f("w.safetensors"));
    let fresh = d.join("new.ron").to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["export", &pol, "--format", "json", "-o", &pol], "-o"),
        (vec!["export", &ck, "--onnx", &ck], "--onnx"),
        (vec!["export", &ck, "--safetensors", &ck], "--safetensors"),
        (
            vec!["infer", &ck, "--input", &x, "--output", &x],
            "--output",
        ),
        (
            vec!["eval", "--ckpt", &ck, "--predictions", &ck],
            "--predictions",
        ),
        (
            vec![
                "eval",
                "--ckpt",
                &ck,
                "--predictions",
                &fresh,
                "--logits",
                &fresh,
            ],
            "--predictions and --logits name the same file",
        ),
        (
            vec![
                "indicators",
                "--model",
                "resnet20",
                "--ckpt",
                &ck,
                "-o",
                &ck,
            ],
            "-o",
        ),
        (
            vec![
                "indicators",
                "--model",
                "resnet20",
                "--ckpt",
                &ck,
                "-o",
                &ind,
                "--checkpoint",
                &ck,
            ],
            "--checkpoint",
        ),
        (
            vec![
                "sensitivity",
                "--model",
                "resnet20",
                "--init",
                &ck,
                "-o",
                &ck,
            ],
            "-o",
        ),
        (
            vec![
                "finetune", "--ckpt", &ck, "--policy", &pol, "--epochs", "1", "-o", &pol,
            ],
            "-o",
        ),
        (
            vec![
                "finetune",
                "--ckpt",
                &ck,
                "--policy",
                &pol,
                "--indicators",
                &ind,
                "--epochs",
                "1",
                "-o",
                &ind,
            ],
            "-o",
        ),
        (
            vec!["import-safetensors", &st, "--model", "resnet20", "-o", &st],
            "-o",
        ),
        (
            vec!["import-onnx", &onnx, "-o", &onnx, "--weights", &ck],
            "-o",
        ),
        (
            vec!["import-onnx", &onnx, "-o", &fresh, "--weights", &fresh],
            "-o and --weights name the same file",
        ),
        (
            vec![
                "train", "--model", "resnet20", "--init", &ck, "--epochs", "1", "-o", &ck,
            ],
            "-o",
        ),
    ];
    for (args, flag) in cases {
        let err = exits(&limpq(&args), 2, &[flag]);
        assert!(
            err.contains("is the same file as") || err.contains("name the same file"),
            "{args:?}: {err}"
        );
    }
    for p in [&ck, &pol, &ind, &x, &onnx, &st] {
        assert_eq!(std::fs::read(p).unwrap(), b"keep", "{p}");
    }
    assert!(!Path::new(&fresh).exists());
    let _ = std::fs::remove_dir_all(&d);
}
