//! The documented formats (docs/FORMATS.md) against their JSON Schemas (docs/schemas/) and
//! the format-version rules:
//!
//! - every example file in `examples/` and every `docs/results/**/job.ron`, read with the
//!   program's own reader and re-serialised as JSON, is valid under its schema;
//! - a value of every type (every model op, every daemon job kind, policies and frontiers
//!   the solver computes, a resource table) is valid, and the files `limpq solve` writes
//!   are valid as written; so a field added to, renamed in or dropped from a type without
//!   its schema fails here (the schemas forbid unknown properties);
//! - each reader accepts `format_version` 1 or none, and refuses 0 and a newer version
//!   with an error that names the field (and the file, where it reads one).

// The trainer's formats (checkpoints, models, pipeline and daemon jobs) exist only with
// the default `gpu` feature; the solver's own crate checks its formats' versions in every
// build.
#![cfg(feature = "gpu")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use limpq_solver::{
    BitOpsBudget, Frontier, IndicatorSet, Policy, Problem, ResourceLayer, ResourceTable,
};
use limpq_trainer::checkpoint::{Checkpoint, NamedTensor, TensorKind};
use limpq_trainer::daemon::job::{CountJob, JobKind, JobSpec};
use limpq_trainer::model::{builtin, Model, Node, Op, BUILTIN_NAMES, INPUT};
use limpq_trainer::pipeline::Job;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn root() -> &'static Path {
    Path::new(ROOT)
}

/// The compiled schemas of docs/schemas, by file stem.
struct Schemas {
    schemas: boon::Schemas,
    index: Vec<(&'static str, boon::SchemaIndex)>,
}

const NAMES: [&str; 7] = [
    "indicators",
    "policy",
    "frontier",
    "resource-table",
    "model",
    "pipeline-job",
    "daemon-job",
];

impl Schemas {
    fn load() -> Schemas {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        let index = NAMES
            .iter()
            .map(|&name| {
                let path = root().join(format!("docs/schemas/{name}.schema.json"));
                let i = compiler
                    .compile(path.to_str().unwrap(), &mut schemas)
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                (name, i)
            })
            .collect();
        Schemas { schemas, index }
    }

    fn errors(&self, schema: &str, value: &Value) -> Option<String> {
        let (_, i) = self
            .index
            .iter()
            .find(|(n, _)| *n == schema)
            .unwrap_or_else(|| panic!("no schema {schema}"));
        self.schemas
            .validate(value, *i)
            .err()
            .map(|e| format!("{e:#}"))
    }

    fn check(&self, schema: &str, what: &str, value: &Value) {
        if let Some(e) = self.errors(schema, value) {
            panic!("{what} is not valid under docs/schemas/{schema}.schema.json:\n{e}\n{value:#}");
        }
    }

    fn check_ser<T: serde::Serialize>(&self, schema: &str, what: &str, value: &T) {
        self.check(schema, what, &serde_json::to_value(value).unwrap());
    }
}

fn tmp_dir(name: &str) -> common::Scratch {
    common::tmp_dir("schemas", name)
}

fn example_indicators() -> IndicatorSet {
    let text = std::fs::read_to_string(root().join("examples/resnet20.indicators.ron")).unwrap();
    IndicatorSet::from_ron_str(&text).unwrap()
}

#[test]
fn every_schema_compiles() {
    let s = Schemas::load();
    assert_eq!(s.index.len(), NAMES.len());
    // Every schema file is loaded here: a new one must be added to NAMES (and tested).
    let mut on_disk: Vec<String> = std::fs::read_dir(root().join("docs/schemas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut known: Vec<String> = NAMES.iter().map(|n| format!("{n}.schema.json")).collect();
    known.sort();
    assert_eq!(on_disk, known);
}

#[test]
fn every_example_file_is_valid_under_its_schema() {
    let s = Schemas::load();
    let mut seen = 0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        if name.ends_with(".indicators.ron") {
            let v = IndicatorSet::from_ron_str(&text).unwrap();
            s.check_ser("indicators", &name, &v);
        } else if name.ends_with(".model.ron") {
            let m = Model::from_ron_file(path).unwrap();
            s.check_ser("model", &name, &m);
        } else if name.ends_with(".pipeline.ron") {
            let job = Job::from_file(path).unwrap();
            s.check_ser("pipeline-job", &name, &job);
            // A pipeline job file is also a daemon job file.
            let spec = JobSpec::from_file(path).unwrap();
            s.check_ser("daemon-job", &name, &spec);
        } else if name.ends_with(".job.ron") {
            let spec = JobSpec::from_file(path).unwrap();
            s.check_ser("daemon-job", &name, &spec);
        } else {
            panic!("{name}: an example of no documented format (add its schema and a case here)");
        }
        seen += 1;
    }
    assert!(seen >= 8, "only {seen} examples");
}

#[test]
fn every_result_job_file_is_valid_under_the_pipeline_schema() {
    let s = Schemas::load();
    let mut seen = 0;
    for dir in std::fs::read_dir(root().join("docs/results")).unwrap() {
        let path = dir.unwrap().path().join("job.ron");
        if !path.is_file() {
            continue;
        }
        let job = Job::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        s.check_ser("pipeline-job", &path.display().to_string(), &job);
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} job files");
}

#[test]
fn a_value_of_every_type_is_valid_under_its_schema() {
    let s = Schemas::load();

    // Indicators, as read and as the writer writes them (with format_version).
    let ind = example_indicators();
    s.check_ser("indicators", "indicators", &ind);
    let written: Value = serde_json::from_str(&ind.to_json_string()).unwrap();
    assert_eq!(written["format_version"], 1);
    s.check("indicators", "written indicators", &written);
    // A skeleton with fixed layers and meta.
    let mut sk = builtin("resnet20")
        .unwrap()
        .indicator_skeleton(&[2, 4], &[2, 4])
        .unwrap();
    for l in &mut sk.layers {
        l.weight_scale = vec![0.5, 0.25];
        l.act_scale = vec![0.5, 0.25];
    }
    sk.meta.push(("seed".into(), "0".into()));
    assert!(sk.layers.iter().any(|l| l.fixed.is_some()));
    s.check_ser("indicators", "skeleton", &sk);

    // Policies and frontiers as the solver computes them.
    let sol = Problem::new(ind.clone())
        .bitops(BitOpsBudget::Uniform { weight: 3, act: 3 })
        .solve()
        .unwrap();
    s.check_ser("policy", "policy", &sol.policy);
    let written: Value = serde_json::from_str(&sol.policy.to_json_string()).unwrap();
    s.check("policy", "written policy", &written);
    let mut unbudgeted = sol.policy.clone();
    unbudgeted.bitops_budget = None;
    unbudgeted.size_budget_bits = Some(1 << 20);
    s.check_ser("policy", "policy with a size budget", &unbudgeted);
    let sweep = Problem::new(ind.clone()).sweep(4).unwrap();
    let frontier = Frontier {
        model: ind.model.clone(),
        points: sweep
            .iter()
            .map(|p| limpq_solver::FrontierPoint {
                bitops_budget: p.policy.bitops_budget.unwrap_or(0),
                objective: p.policy.objective,
                bitops: p.policy.bitops,
                weight_bits_total: p.policy.weight_bits_total,
                optimal: p.proof.optimal,
                layers: p.policy.layers.clone(),
            })
            .collect(),
    };
    assert!(!frontier.points.is_empty());
    s.check_ser("frontier", "frontier", &frontier);
    let written: Value = serde_json::from_str(&frontier.to_json_string()).unwrap();
    s.check("frontier", "written frontier", &written);

    // A resource table over the example's layers.
    let table = ResourceTable {
        name: "latency_us".into(),
        layers: ind
            .layers
            .iter()
            .map(|l| ResourceLayer {
                name: l.name.clone(),
                costs: vec![(2, 2, 1.5), (8, 8, 4.0)],
            })
            .collect(),
    };
    s.check_ser("resource-table", "resource table", &table);
    let written: Value = serde_json::from_str(&table.to_json_string()).unwrap();
    s.check("resource-table", "written resource table", &written);

    // Every built-in model, and one node of every op.
    for name in BUILTIN_NAMES {
        s.check_ser("model", name, &builtin(name).unwrap());
    }
    let ops = vec![
        Op::Conv2d {
            out_channels: 4,
            kernel: 3,
            stride: 1,
            padding: 1,
            groups: 1,
            bias: true,
        },
        Op::BatchNorm,
        Op::Relu,
        Op::Relu6,
        Op::Add,
        Op::MaxPool {
            kernel: 2,
            stride: 2,
            padding: 0,
        },
        Op::AvgPool {
            kernel: 2,
            stride: 2,
            padding: 0,
        },
        Op::GlobalAvgPool,
        Op::Flatten,
        Op::Linear {
            out_features: 10,
            bias: false,
        },
    ];
    let every_op = Model {
        name: "every_op".into(),
        input: (1, 8, 8),
        classes: 10,
        nodes: ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| Node {
                name: format!("n{i}"),
                op,
                inputs: vec![INPUT.into()],
            })
            .collect(),
    };
    s.check_ser("model", "a node of every op", &every_op);
    let versioned = every_op.to_ron_versioned();
    assert!(versioned.contains("format_version: 1"), "{versioned}");

    // Every daemon job kind.
    let train = JobSpec::from_file(&root().join("examples/train.job.ron")).unwrap();
    let solve = JobSpec::from_file(&root().join("examples/solve.job.ron")).unwrap();
    let eval = JobSpec::from_file(&root().join("examples/eval.job.ron")).unwrap();
    let indicators = JobSpec::from_file(&root().join("examples/indicators.job.ron")).unwrap();
    let finetune = JobSpec::from_file(&root().join("examples/finetune.job.ron")).unwrap();
    let pipeline = Job::from_file(&root().join("examples/small_cnn.pipeline.ron")).unwrap();
    let kinds = [
        train.job,
        solve.job,
        eval.job,
        indicators.job,
        finetune.job,
        JobKind::Pipeline(pipeline),
        JobKind::Count(CountJob {
            n: 3,
            step_ms: 10,
            fail_at: Some(2),
            panic_at: None,
        }),
    ];
    let mut names: Vec<&str> = kinds.iter().map(JobKind::name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 7, "one job of every kind");
    for job in kinds {
        let what = job.name();
        let spec = JobSpec {
            name: format!("a {what} job"),
            job,
        };
        s.check_ser("daemon-job", what, &spec);
    }
}

/// The schemas are strict: these must all be refused, or the tests above prove nothing.
#[test]
fn the_schemas_refuse_unknown_missing_and_mistyped_fields() {
    let s = Schemas::load();
    let ind = serde_json::to_value(example_indicators()).unwrap();
    let mut extra = ind.clone();
    extra["layers"][0]["bogus"] = 1.into();
    assert!(s.errors("indicators", &extra).is_some());
    let mut missing = ind.clone();
    missing.as_object_mut().unwrap().remove("act_bits");
    assert!(s.errors("indicators", &missing).is_some());
    let mut typed = ind;
    typed["layers"][0]["macs"] = "many".into();
    assert!(s.errors("indicators", &typed).is_some());
    let mut zero = typed.clone();
    zero["format_version"] = 0.into();
    assert!(s.errors("indicators", &zero).is_some());

    let model = serde_json::to_value(builtin("small_cnn").unwrap()).unwrap();
    let mut op = model.clone();
    op["nodes"][0]["op"] = serde_json::json!({"Conv3d": {"out_channels": 1, "kernel": 1}});
    assert!(s.errors("model", &op).is_some());
    let mut strid = model;
    strid["nodes"][0]["op"]["Conv2d"]["strid"] = 2.into();
    assert!(s.errors("model", &strid).is_some());

    let spec =
        serde_json::to_value(JobSpec::from_file(&root().join("examples/solve.job.ron")).unwrap())
            .unwrap();
    let mut kind = spec.clone();
    kind["job"] = serde_json::json!({"Frobnicate": {}});
    assert!(s.errors("daemon-job", &kind).is_some());
    let mut nested = serde_json::to_value(
        JobSpec::from_file(&root().join("examples/small_cnn.pipeline.ron")).unwrap(),
    )
    .unwrap();
    nested["job"]["Pipeline"]["format_version"] = 1.into();
    assert!(
        s.errors("daemon-job", &nested).is_some(),
        "a nested pipeline job has no version of its own"
    );
    let mut budget = serde_json::to_value(
        Job::from_file(&root().join("examples/small_cnn.pipeline.ron")).unwrap(),
    )
    .unwrap();
    budget["budgets"][0] = "three bits".into();
    assert!(s.errors("pipeline-job", &budget).is_some());
}

/// `text` with `format_version: V,` as its first field (RON struct or JSON object).
fn with_version(text: &str, v: u64, json: bool) -> String {
    let open = if json { '{' } else { '(' };
    let at = text.find(open).unwrap() + 1;
    let field = if json {
        format!("\"format_version\": {v},")
    } else {
        format!("format_version: {v},")
    };
    format!("{}{field}{}", &text[..at], &text[at..])
}

fn refused_for_version(e: &str, v: u64) {
    assert!(
        e.contains("format_version") && e.contains(&v.to_string()),
        "error does not name the field and version {v}: {e}"
    );
}

#[test]
fn solver_formats_check_their_version() {
    let ind = example_indicators();
    let policy = Problem::new(ind.clone())
        .bitops(BitOpsBudget::Uniform { weight: 4, act: 4 })
        .solve()
        .unwrap()
        .policy;
    let table = ResourceTable {
        name: "energy".into(),
        layers: vec![ResourceLayer {
            name: "conv1".into(),
            costs: vec![(8, 8, 1.0)],
        }],
    };
    let frontier = Frontier {
        model: "m".into(),
        points: Vec::new(),
    };
    macro_rules! versions {
        ($ty:ty, $value:expr) => {{
            let value: $ty = $value;
            let ron = value.to_ron_string();
            let json = value.to_json_string();
            assert!(ron.contains("format_version: 1"), "{ron}");
            assert!(json.contains("\"format_version\": 1"), "{json}");
            assert_eq!(<$ty>::FORMAT_VERSION, 1);
            // Written, explicit 1, and absent (the plain serde form) all read back.
            assert_eq!(<$ty>::from_ron_str(&ron).unwrap(), value);
            assert_eq!(<$ty>::from_json_str(&json).unwrap(), value);
            let plain_json = serde_json::to_string(&value).unwrap();
            assert_eq!(<$ty>::from_json_str(&plain_json).unwrap(), value);
            let plain_ron = ron::to_string(&value).unwrap();
            assert!(!plain_ron.contains("format_version"));
            assert_eq!(<$ty>::from_ron_str(&plain_ron).unwrap(), value);
            for v in [0u64, 2, 99] {
                let e = <$ty>::from_ron_str(&with_version(&plain_ron, v, false))
                    .unwrap_err()
                    .to_string();
                refused_for_version(&e, v);
                let e = <$ty>::from_json_str(&with_version(&plain_json, v, true))
                    .unwrap_err()
                    .to_string();
                refused_for_version(&e, v);
            }
        }};
    }
    versions!(IndicatorSet, ind);
    versions!(Policy, policy);
    versions!(ResourceTable, table);
    versions!(Frontier, frontier);
}

#[test]
fn the_solve_command_names_the_file_of_a_newer_version() {
    let dir = tmp_dir("solve");
    let text = std::fs::read_to_string(root().join("examples/resnet20.indicators.ron"))
        .unwrap()
        .replacen("format_version: 1,", "", 1);
    // Insert after the struct's opening parenthesis (after any leading comments).
    let body_at = text.find("\n(").map(|i| i + 1).unwrap_or(0);
    let newer = format!(
        "{}{}",
        &text[..body_at],
        with_version(&text[body_at..], 2, false)
    );
    let path = dir.join("newer.ron");
    std::fs::write(&path, newer).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_limpq"))
        .args(["solve", path.to_str().unwrap(), "--bitops", "w3a3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("newer.ron"), "{err}");
    refused_for_version(&err, 2);
    // The writer's output reads back.
    let policy = dir.join("policy.json");
    let out = Command::new(env!("CARGO_BIN_EXE_limpq"))
        .args(["solve", "--bitops", "w3a3", "-o", policy.to_str().unwrap()])
        .arg(root().join("examples/resnet20.indicators.ron"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&policy).unwrap()).unwrap();
    assert_eq!(written["format_version"], 1);
    Schemas::load().check("policy", "policy.json written by limpq solve", &written);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn model_descriptions_check_their_version() {
    let dir = tmp_dir("model");
    let m = builtin("small_cnn").unwrap();
    let text = m.to_ron_versioned();
    assert!(text.contains("format_version: 1"), "{text}");
    let current = dir.join("current.ron");
    std::fs::write(&current, &text).unwrap();
    assert_eq!(Model::from_ron_file(&current).unwrap(), m);
    for v in [0u64, 2] {
        let path = dir.join(format!("v{v}.ron"));
        std::fs::write(&path, with_version(&m.to_ron(), v, false)).unwrap();
        let e = Model::from_ron_file(&path).unwrap_err().to_string();
        assert!(e.contains(&format!("v{v}.ron")), "{e}");
        refused_for_version(&e, v);
    }
    // Unknown fields are still refused next to the version.
    let path = dir.join("typo.ron");
    std::fs::write(
        &path,
        with_version(&m.to_ron(), 1, false).replacen("name:", "nmae:", 1),
    )
    .unwrap();
    let e = Model::from_ron_file(&path).unwrap_err().to_string();
    assert!(e.contains("nmae"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pipeline_and_daemon_jobs_check_their_version() {
    let dir = tmp_dir("jobs");
    let job = Job::from_file(&root().join("examples/small_cnn.pipeline.ron")).unwrap();
    let written = job.to_ron();
    assert!(written.contains("format_version: 1"), "{written}");
    assert_eq!(Job::from_ron_str(&written).unwrap(), job);
    let plain = written.replacen("format_version: 1,", "", 1);
    assert_eq!(Job::from_ron_str(&plain).unwrap(), job);
    for v in [0u64, 2] {
        let path = dir.join(format!("pipeline-v{v}.ron"));
        std::fs::write(&path, with_version(&plain, v, false)).unwrap();
        let e = Job::from_file(&path).unwrap_err().to_string();
        assert!(e.contains(&format!("pipeline-v{v}.ron")), "{e}");
        refused_for_version(&e, v);
        // Submitted to the daemon as it is, the same refusal.
        let e = JobSpec::from_file(&path).unwrap_err().to_string();
        assert!(e.contains(&format!("pipeline-v{v}.ron")), "{e}");
        refused_for_version(&e, v);
    }

    // Daemon job files are at version 2 (the solver's budgets); version 1 still reads.
    assert_eq!(JobSpec::FORMAT_VERSION, 2);
    let spec_text = std::fs::read_to_string(root().join("examples/solve.job.ron"))
        .unwrap()
        .replacen("format_version: 2,", "", 1);
    let ind = dir.join("resnet20.indicators.ron");
    std::fs::copy(root().join("examples/resnet20.indicators.ron"), &ind).unwrap();
    let body_at = spec_text.find("\n(").unwrap() + 1;
    for (v, ok) in [(1u64, true), (2, true), (0, false), (3, false)] {
        let path = dir.join(format!("solve-v{v}.job.ron"));
        let text = format!(
            "{}{}",
            &spec_text[..body_at],
            with_version(&spec_text[body_at..], v, false)
        );
        std::fs::write(&path, text).unwrap();
        match JobSpec::from_file(&path) {
            Ok(spec) => {
                assert!(ok, "version {v} accepted");
                assert_eq!(spec.job.name(), "solve");
            }
            Err(e) => {
                let e = e.to_string();
                assert!(!ok, "version {v} refused: {e}");
                assert!(e.contains(&format!("solve-v{v}.job.ron")), "{e}");
                refused_for_version(&e, v);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn checkpoints_check_their_header_version() {
    let ck = Checkpoint {
        origin: None,
        model: builtin("small_cnn").unwrap(),
        seed: 1,
        epoch: 0,
        step: 0,
        meta: vec![("data".into(), "none".into())],
        tensors: vec![NamedTensor {
            name: "fc.bias".into(),
            kind: TensorKind::Param,
            data: vec![0.5; 3],
        }],
    };
    let path = Path::new("ck.ckpt");
    let bytes = ck.to_bytes();
    assert_eq!(&bytes[8..12], &1u32.to_le_bytes());
    assert_eq!(Checkpoint::from_bytes(&bytes, path).unwrap(), ck);
    for v in [0u32, 2] {
        let mut b = bytes.clone();
        b[8..12].copy_from_slice(&v.to_le_bytes());
        let e = Checkpoint::from_bytes(&b, path).unwrap_err().to_string();
        assert!(
            e.contains("ck.ckpt") && e.contains("version") && e.contains(&v.to_string()),
            "{e}"
        );
    }
}

/// The pipeline job's stages in the schema list exactly the fields the parser reads (every
/// run setting and each stage's own), and a job that sets every one of them is valid: a
/// setting added to the parser without the schema, or the other way round, fails here.
#[test]
fn pipeline_stage_fields_match_the_schema() {
    use limpq_trainer::pipeline::job::{FINETUNE_FIELDS, JOINT_FIELDS, PRETRAIN_FIELDS};
    let s = Schemas::load();
    let text =
        std::fs::read_to_string(root().join("docs/schemas/pipeline-job.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    for (stage, fields) in [
        ("pretrain", PRETRAIN_FIELDS),
        ("joint", JOINT_FIELDS),
        ("finetune", FINETUNE_FIELDS),
    ] {
        let props = schema["properties"][stage]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{stage}: no properties"));
        let mut in_schema: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut parsed: Vec<&str> = fields.to_vec();
        in_schema.sort_unstable();
        parsed.sort_unstable();
        assert_eq!(in_schema, parsed, "{stage}: schema vs parser");
    }
    let every = r#"Job(
        model: "small_cnn",
        data: (name: "fashion-mnist"),
        seeds: [0],
        pretrain: (epochs: 1, batch: 32, lr: 0.1, schedule: PerEpoch(floor: 1e-5),
                   momentum: 0.9, nesterov: true, weight_decay: 5e-4, label_smoothing: 0.1,
                   clip: 1.0, eval_batch: 100, eval_every: 2, sync_bn: true, init: None),
        joint: (bits: [2, 4], epochs: 1, batch: 32, lr: 0.01, schedule: PerStep,
                momentum: 0.9, nesterov: false, weight_decay: 0.0, label_smoothing: 0.0,
                clip: 1.0, eval_batch: 100, eval_every: 1, sync_bn: false, fixed_bits: Some((8, 8))),
        budgets: ["w2a4"],
        finetune: (epochs: 1, batch: 32, lr: 0.01, schedule: PerEpoch(floor: 0.0),
                   momentum: 0.9, nesterov: true, weight_decay: 1e-4, label_smoothing: 0.0,
                   clip: 2.0, eval_batch: 100, eval_every: 3, sync_bn: true, steps_from_indicators: true,
                   bn_recalibration: 512),
        output: "runs/every",
    )"#;
    let job = Job::from_ron_str(every).unwrap_or_else(|e| panic!("{e}"));
    let v = serde_json::to_value(&job).unwrap();
    for (stage, fields) in [
        ("pretrain", PRETRAIN_FIELDS),
        ("joint", JOINT_FIELDS),
        ("finetune", FINETUNE_FIELDS),
    ] {
        for f in fields.iter().filter(|f| **f != "init") {
            assert!(
                !v[stage][*f].is_null(),
                "{stage}.{f} not written: {}",
                v[stage]
            );
        }
    }
    s.check("pipeline-job", "a job with every stage field", &v);
    let mut bad = v.clone();
    bad["joint"]["fixed_bits"] = serde_json::json!([8]);
    assert!(s.errors("pipeline-job", &bad).is_some());
}

/// A newer `format_version` followed by a field the expected type lacks is most likely a
/// file of another kind (the daemon's job files are version 2, the others 1): the refusal
/// says so instead of only sending the user for a newer limpq. A newer file of the right
/// kind is still refused for its version alone.
#[test]
fn a_file_of_another_kind_is_not_sent_for_a_newer_limpq() {
    for (args, kind) in [
        (
            vec!["solve", "examples/solve.job.ron", "--bitops", "w4a4"],
            "IndicatorSet",
        ),
        (vec!["pipeline", "examples/train.job.ron"], "Job"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_limpq"))
            .current_dir(root())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "field `name` is not one of `{kind}`'s: is this another kind of file?"
            )),
            "{args:?}: {err}"
        );
        assert!(err.contains("version 2 is newer"), "{args:?}: {err}");
    }
    for json in [false, true] {
        let (ron_text, json_text) = (
            "(format_version: 2, model: \"m\", weight_bits: [], act_bits: [], layers: [])",
            r#"{"format_version": 2, "model": "m", "weight_bits": [], "act_bits": [], "layers": []}"#,
        );
        let read = |t: &str| match json {
            false => IndicatorSet::from_ron_str(t),
            true => IndicatorSet::from_json_str(t),
        };
        // The right kind, newer: only the version.
        let e = read(if json { json_text } else { ron_text })
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 2 is newer"), "{e}");
        assert!(
            e.contains("use a newer limpq") && !e.contains("another kind"),
            "{e}"
        );
        // Another kind (a policy's `objective` where the set's fields belong), newer.
        let other = if json {
            r#"{"format_version": 2, "objective": 1.0}"#
        } else {
            "(format_version: 2, objective: 1.0)"
        };
        let e = read(other).unwrap_err().to_string();
        assert!(
            e.contains("field `objective` is not one of `IndicatorSet`'s"),
            "{e}"
        );
        // A version the reader knows: the type's own refusal (here a missing field).
        let known = if json {
            r#"{"format_version": 1, "objective": 1.0}"#
        } else {
            "(format_version: 1, objective: 1.0)"
        };
        let e = read(known).unwrap_err().to_string();
        assert!(!e.contains("another kind") && !e.contains("newer"), "{e}");
        assert!(e.contains("model"), "{e}");
        // The version as the last field: refused for it.
        let last = if json {
            r#"{"model": "m", "weight_bits": [], "act_bits": [], "layers": [], "format_version": 3}"#
        } else {
            "(model: \"m\", weight_bits: [], act_bits: [], layers: [], format_version: 3)"
        };
        let e = read(last).unwrap_err().to_string();
        assert!(e.contains("version 3 is newer"), "{e}");
    }
}
