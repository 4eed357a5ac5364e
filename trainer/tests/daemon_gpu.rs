//! Train and eval jobs through the daemon on the software adapter (tiny shapes): progress,
//! outputs, a shutdown mid-training that resumes from the epoch checkpoint, a GPU error that
//! fails one job while the next runs.
// The daemon serves a Unix-domain socket: Unix only (docs/DAEMON.md, Platforms).
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(all(unix, feature = "gpu"))]

mod common;
use common::TempDir;
use limpq_solver::format::versioned::ron_from_str;

use std::path::Path;
use std::time::{Duration, Instant};

use limpq_trainer::checkpoint::Checkpoint;
use limpq_trainer::daemon::client::Client;
use limpq_trainer::daemon::job::{EvalJob, JobKind, JobSpec, TrainJob};
use limpq_trainer::daemon::protocol::{JobState, Request, Response};
use limpq_trainer::daemon::{self, Config, Handle};

fn start(dir: &Path) -> Handle {
    let mut cfg = Config::new(dir.join("d.sock"), dir.join("state"));
    cfg.tick = Duration::from_millis(20);
    daemon::start(cfg).expect("daemon starts")
}

fn client(h: &Handle) -> Client {
    let c = Client::connect(h.socket()).unwrap();
    c.set_timeout(Some(Duration::from_secs(300))).unwrap();
    c
}

fn tiny_train(epochs: usize) -> TrainJob {
    ron_from_str(&format!(
        "(model: \"small_cnn\", epochs: {epochs}, batch: 32, lr: 0.05, subset: Some(256), test_subset: Some(64), eval_batch: 64)"
    ))
    .unwrap()
}

/// The accuracy an eval job wrote to `eval.ron` in its output folder.
fn eval_accuracy(output_dir: &str) -> f64 {
    let text = std::fs::read_to_string(Path::new(output_dir).join("eval.ron")).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("accuracy: "))
        .unwrap_or_else(|| panic!("no accuracy in {text}"))
        .trim_end_matches(',')
        .parse()
        .unwrap()
}

fn spec(job: JobKind) -> JobSpec {
    JobSpec {
        name: String::new(),
        job,
    }
}

#[test]
fn train_then_eval_through_the_daemon() {
    let dir = TempDir::new("train");
    let h = start(&dir.0);
    let mut c = client(&h);
    let id = c.submit(spec(JobKind::Train(tiny_train(2)))).unwrap();
    let mut epochs_seen = Vec::new();
    let mut losses = Vec::new();
    let fin = c
        .watch(id, |r| {
            if let Response::Progress(_, p) = r {
                if let Some(e) = p.epoch {
                    epochs_seen.push(e);
                }
                if let Some(l) = p.loss {
                    losses.push(l);
                }
            }
        })
        .unwrap();
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    assert!(epochs_seen.contains(&(2, 2)), "{epochs_seen:?}");
    assert!(!losses.is_empty() && losses.iter().all(|l| l.is_finite()));
    let ckpt_path = Path::new(&fin.output_dir).join("model.ckpt");
    let ck = Checkpoint::load(&ckpt_path).unwrap();
    assert_eq!(ck.epoch, 2);
    assert_eq!(ck.step, 2 * (256 / 32));
    let history = std::fs::read_to_string(Path::new(&fin.output_dir).join("history.ron")).unwrap();
    let history: Vec<(usize, f64, f64, f64, f64)> = ron_from_str(&history).unwrap();
    assert_eq!(history.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1, 2]);

    let eval = EvalJob {
        ckpt: ckpt_path.clone(),
        data: None,
        data_dir: None,
        subset: Some(64),
        batch: 32,
    };
    let e = c.submit(spec(JobKind::Eval(eval))).unwrap();
    let fin = c.watch(e, |_| {}).unwrap();
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    let text = std::fs::read_to_string(Path::new(&fin.output_dir).join("eval.ron")).unwrap();
    assert!(text.contains("images: 64"), "{text}");
    // The eval job's accuracy is the one train measured on the same 64 test images.
    let acc = eval_accuracy(&fin.output_dir);
    assert!(
        (acc - history[1].4).abs() < 1e-9,
        "eval {acc} vs train's test acc {}",
        history[1].4
    );
    let log = std::fs::read_to_string(dir.0.join(format!("state/jobs/{e}/log.txt"))).unwrap();
    assert!(!log.contains("records no data set"), "{log}");

    // A checkpoint that records no data set (an import's): the same images, said in the log.
    let mut bare = Checkpoint::load(&ckpt_path).unwrap();
    bare.meta.retain(|(k, _)| k != "data");
    let bare_path = dir.0.join("bare.ckpt");
    bare.save(&bare_path).unwrap();
    let eval = EvalJob {
        ckpt: bare_path,
        data: None,
        data_dir: None,
        subset: Some(64),
        batch: 32,
    };
    let e = c.submit(spec(JobKind::Eval(eval))).unwrap();
    let fin = c.watch(e, |_| {}).unwrap();
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    assert_eq!(eval_accuracy(&fin.output_dir), acc);
    let log = std::fs::read_to_string(dir.0.join(format!("state/jobs/{e}/log.txt"))).unwrap();
    assert!(
        log.contains("records no data set") && log.contains("fashion-mnist"),
        "{log}"
    );
    h.shutdown().unwrap();
}

#[test]
fn bad_train_specs_are_refused_and_a_gpu_error_fails_only_its_job() {
    let dir = TempDir::new("badtrain");
    let h = start(&dir.0);
    let mut c = client(&h);
    let mut t = tiny_train(1);
    t.model = "resnet9000".into();
    let e = c.submit(spec(JobKind::Train(t))).unwrap_err().to_string();
    assert!(e.contains("resnet9000"), "{e}");
    let mut t = tiny_train(1);
    t.run.lr = Some(f32::NAN);
    let e = c.submit(spec(JobKind::Train(t))).unwrap_err().to_string();
    assert!(e.contains("lr") && e.contains("NaN"), "{e}");
    let mut t = tiny_train(1);
    t.run.momentum = Some(-0.5);
    let e = c.submit(spec(JobKind::Train(t))).unwrap_err().to_string();
    assert!(e.contains("momentum"), "{e}");
    // An empty subset is refused at submission, not run to a made-up 0% accuracy.
    let mut t = tiny_train(1);
    t.data.test_subset = Some(0);
    let e = c.submit(spec(JobKind::Train(t))).unwrap_err().to_string();
    assert!(e.contains("test_subset") && e.contains("at least 1"), "{e}");
    let mut t = tiny_train(1);
    t.data.data_dir = Some(dir.0.join("no-such-data"));
    let e = c.submit(spec(JobKind::Train(t))).unwrap_err().to_string();
    assert!(e.contains("no-such-data"), "{e}");
    // Data folder exists but holds no dataset: a failed job naming the folder.
    let empty = dir.0.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut t = tiny_train(1);
    t.data.data_dir = Some(empty.clone());
    let f = c.submit(spec(JobKind::Train(t))).unwrap();
    let fi = c.watch(f, |_| {}).unwrap();
    assert!(
        matches!(&fi.state, JobState::Failed(m) if m.contains("empty")),
        "{fi:?}"
    );

    // A batch whose buffers exceed the device's limits: the GPU refuses, the job fails. The
    // batch is cut to the test images, so the whole test set (10,000) at a batch past it
    // is what the job asks; an adapter whose buffers hold that runs it instead.
    let ck = dir.0.join("init.ckpt");
    let t = c.submit(spec(JobKind::Train(tiny_train(1)))).unwrap();
    let ti = c.watch(t, |_| {}).unwrap();
    std::fs::copy(Path::new(&ti.output_dir).join("model.ckpt"), &ck).unwrap();
    let huge = EvalJob {
        ckpt: ck.clone(),
        data: None,
        data_dir: None,
        subset: None,
        batch: 1 << 22,
    };
    let holds = common::gpu_or_skip("daemon eval past the adapter").is_some_and(|gpu| {
        let m = limpq_trainer::model::builtin("small_cnn").unwrap();
        let per_image = m.analyze().unwrap().iter().map(|i| i.output.numel()).max();
        limpq_trainer::gpu::Tensor::fits(gpu, 10_000 * per_image.unwrap())
    });
    let none = EvalJob {
        subset: Some(0),
        ..huge.clone()
    };
    let e = c.submit(spec(JobKind::Eval(none))).unwrap_err().to_string();
    assert!(e.contains("eval.subset"), "{e}");
    let g = c.submit(spec(JobKind::Eval(huge))).unwrap();
    let ok = EvalJob {
        ckpt: ck,
        data: None,
        data_dir: None,
        subset: Some(64),
        batch: 64,
    };
    let after = c.submit(spec(JobKind::Eval(ok))).unwrap();
    let gi = c.watch(g, |_| {}).unwrap();
    // The engine names the tensor and the limit it exceeds.
    if holds {
        assert_eq!(gi.state, JobState::Done, "{gi:?}");
    } else {
        assert!(
            matches!(&gi.state, JobState::Failed(m) if m.contains("exceed")),
            "{gi:?}"
        );
    }
    assert_eq!(c.watch(after, |_| {}).unwrap().state, JobState::Done);
    h.shutdown().unwrap();
}

#[test]
fn shutdown_mid_training_resumes_from_the_epoch_checkpoint() {
    let dir = TempDir::new("trainresume");
    let h = start(&dir.0);
    let mut c = client(&h);
    let id = c.submit(spec(JobKind::Train(tiny_train(3)))).unwrap();
    let ck = dir.0.join("state/jobs/1/checkpoint/current.ckpt");
    let end = Instant::now() + Duration::from_secs(300);
    while !ck.exists() {
        assert!(Instant::now() < end, "no epoch checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    h.shutdown().unwrap();
    let info = c_status_on_disk(&dir.0, id);
    let saved = Checkpoint::load(&ck).unwrap();
    // The stop lands at the next optimizer step, long before epoch 3 ends.
    assert!(
        (1..3).contains(&saved.epoch),
        "checkpoint at epoch {}",
        saved.epoch
    );
    assert_eq!(info, "Interrupted");
    // The stop saved the exact position (not only the last epoch end).
    let pos = limpq_trainer::train::Position::of(&saved)
        .unwrap()
        .expect("the stop checkpoint carries a training position");
    assert_eq!(pos.global_step as u64, saved.step);
    assert_eq!(pos.epochs_done, saved.epoch);

    let h = start(&dir.0);
    let mut c = client(&h);
    let fin = c.watch(id, |_| {}).unwrap();
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    assert_eq!(fin.resumes, 1);
    let log = std::fs::read_to_string(dir.0.join("state/jobs/1/log.txt")).unwrap();
    assert!(
        log.contains(&format!(
            "resumed from checkpoint at epoch {} of 3",
            saved.epoch
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "stopped after step {} of {} in epoch {}",
            pos.epoch_step,
            pos.steps_per_epoch,
            pos.epochs_done + 1
        )),
        "{log}"
    );
    assert_eq!(
        log.lines().filter(|l| l.starts_with("epoch 1/3")).count(),
        1,
        "epoch 1 ran once: {log}"
    );
    let out = Checkpoint::load(Path::new(&fin.output_dir).join("model.ckpt")).unwrap();
    assert_eq!(out.epoch, 3);
    h.shutdown().unwrap();
}

fn c_status_on_disk(dir: &Path, id: u64) -> String {
    let text = std::fs::read_to_string(dir.join(format!("state/jobs/{id}/status.ron"))).unwrap();
    let info: limpq_trainer::daemon::protocol::JobInfo = ron_from_str(&text).unwrap();
    format!("{:?}", info.state)
}

#[test]
fn a_pipeline_job_file_runs_through_the_daemon() {
    let dir = TempDir::new("pipeline");
    let file = dir.0.join("tiny.pipeline.ron");
    std::fs::write(
        &file,
        r#"Job(
    model: "small_cnn",
    data: (name: "fashion-mnist", train: Some(128), test: Some(64)),
    seeds: [0],
    pretrain: (epochs: 2, batch: 32, lr: 0.05),
    joint: (bits: [2, 3, 4], epochs: 1, batch: 32, lr: 0.01),
    budgets: ["w3a3"],
    finetune: (epochs: 1, batch: 32, lr: 0.01),
    random_policies: 3,
    output: "out",
)"#,
    )
    .unwrap();
    // A bare `limpq pipeline` file is accepted as a job; `output` is taken from its folder.
    let spec = JobSpec::from_file(&file).unwrap();
    assert!(matches!(spec.job, JobKind::Pipeline(_)));
    let h = start(&dir.0);
    let mut c = client(&h);

    // Cancelled once its first training step is reported: it stops cleanly (no panic, a
    // log line naming the stage), and the run below still completes.
    let first = c.submit(JobSpec::from_file(&file).unwrap()).unwrap();
    let mut canceller = client(&h);
    let mut asked = false;
    let fin = c
        .watch(first, |r| {
            if let Response::Progress(_, p) = r {
                if p.step.is_some() && !asked {
                    asked = true;
                    assert_eq!(
                        canceller.request(&Request::Cancel(first)).unwrap(),
                        Response::Ok
                    );
                }
            }
        })
        .unwrap();
    assert_eq!(fin.state, JobState::Cancelled, "{fin:?}");
    let log = std::fs::read_to_string(dir.0.join(format!("state/jobs/{first}/log.txt"))).unwrap();
    assert!(log.contains("stopped during seed 0: pretrain"), "{log}");
    // Pretraining kept its exact position (after step 1)...
    let partial = dir.0.join("out/seed0/pretrain.partial.ckpt");
    assert!(partial.is_file(), "no partial pretraining checkpoint");

    let id = c.submit(spec).unwrap();
    let mut stages = Vec::new();
    let mut first_pretrain_step = None;
    let fin = c
        .watch(id, |r| {
            if let Response::Progress(_, p) = r {
                if stages.last() != Some(&p.stage) {
                    stages.push(p.stage.clone());
                }
                if p.stage.contains("pretrain") && first_pretrain_step.is_none() {
                    // Global step: (epoch - 1) · steps per epoch + step.
                    first_pretrain_step =
                        p.epoch.zip(p.step).map(|((e, _), (s, n))| (e - 1) * n + s);
                }
            }
        })
        .unwrap();
    // ...so the rerun continued from it rather than from step 1, and removed it when done.
    assert!(
        first_pretrain_step.is_some_and(|s| s >= 2),
        "resumed pretraining started at step {first_pretrain_step:?}"
    );
    assert!(
        !partial.exists(),
        "the partial checkpoint outlived its stage"
    );
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    assert_eq!(Path::new(&fin.output_dir), dir.0.join("out"));
    assert!(dir.0.join("out/report.md").is_file());
    assert!(dir.0.join("out/results.ron").is_file());
    assert!(
        stages
            .iter()
            .any(|s| s.contains("pretrain") || s.starts_with("[1/")),
        "{stages:?}"
    );
    let log = std::fs::read_to_string(dir.0.join(format!("state/jobs/{id}/log.txt"))).unwrap();
    assert!(log.contains("report written to"), "{log}");

    // Submitted again, every stage is found done and skipped.
    let again = c.submit(JobSpec::from_file(&file).unwrap()).unwrap();
    assert_eq!(c.watch(again, |_| {}).unwrap().state, JobState::Done);
    let log = std::fs::read_to_string(dir.0.join(format!("state/jobs/{again}/log.txt"))).unwrap();
    assert!(
        log.contains("done earlier, skipped") && !log.contains("epoch"),
        "{log}"
    );
    h.shutdown().unwrap();
}

/// A folder of IDX files holding the first `train` and `test` images of Fashion-MNIST.
fn idx_part(dir: &Path, train: usize, test: usize) -> std::path::PathBuf {
    use limpq_trainer::data::{Dataset, DatasetKind, Split};
    std::fs::create_dir_all(dir).unwrap();
    let from = DatasetKind::FashionMnist.default_dir();
    for (split, prefix, n) in [(Split::Train, "train", train), (Split::Test, "t10k", test)] {
        let ds = Dataset::load("fashion-mnist", Some(&from), split).unwrap();
        let labels: Vec<u8> = ds.labels[..n].iter().map(|&l| l as u8).collect();
        let images = &ds.images[..n * 28 * 28];
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            common::idx_bytes(&[n as u32, 28, 28], images),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            common::idx_bytes(&[n as u32], &labels),
        )
        .unwrap();
    }
    dir.to_path_buf()
}

/// The settings every indicators/finetune test below shares: tiny, on lavapipe.
const TINY: &str = "epochs: 1, batch: 32, eval_batch: 32, subset: Some(128), test_subset: Some(32)";

/// A train job with an `init` and no `data` trains on the data set the init was trained
/// on, as `limpq train --init` does (DAEMON.md); it took fashion-mnist whatever the init's.
#[test]
fn a_train_job_takes_its_inits_data_set() {
    let dir = TempDir::new("initdata");
    let h = start(&dir.0);
    let mut c = client(&h);
    let fp = fp_checkpoint(&mut c, &dir.0);
    let mut ck = Checkpoint::load(&fp).unwrap();
    assert_eq!(ck.meta("data"), Some("fashion-mnist"));
    // MNIST and Fashion-MNIST share the IDX format and file names: part of the fashion
    // files stands in for MNIST's (a part: the whole set is known by its labels and refused
    // as MNIST), and the checkpoint the job writes says which set it trained on.
    for (k, v) in &mut ck.meta {
        if k == "data" {
            *v = "mnist".into();
        }
    }
    let init = dir.0.join("mnist.ckpt");
    ck.save(&init).unwrap();
    let mut t = tiny_train(1);
    t.init = Some(init);
    t.data.data_dir = Some(idx_part(&dir.0.join("mnist"), 512, 128));
    let id = c.submit(spec(JobKind::Train(t))).unwrap();
    let fin = c.watch(id, |_| {}).unwrap();
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    let out = Checkpoint::load(Path::new(&fin.output_dir).join("model.ckpt")).unwrap();
    assert_eq!(out.meta("data"), Some("mnist"));
    h.shutdown().unwrap();
}

fn tiny_data() -> (
    std::sync::Arc<limpq_trainer::data::Dataset>,
    std::sync::Arc<limpq_trainer::data::Dataset>,
) {
    use limpq_trainer::data::{Dataset, Split, TEST_SUBSET_SEED};
    let load = |split, n, seed| {
        std::sync::Arc::new(
            Dataset::load_subset("fashion-mnist", None, split, Some(n), seed).unwrap(),
        )
    };
    (
        load(Split::Train, 128, 0),
        load(Split::Test, 32, TEST_SUBSET_SEED),
    )
}

/// A full-precision checkpoint from a tiny train job.
fn fp_checkpoint(c: &mut Client, dir: &Path) -> std::path::PathBuf {
    let id = c.submit(spec(JobKind::Train(tiny_train(1)))).unwrap();
    let fin = c.watch(id, |_| {}).unwrap();
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    let ck = dir.join("fp.ckpt");
    std::fs::copy(Path::new(&fin.output_dir).join("model.ckpt"), &ck).unwrap();
    ck
}

/// Indicators and finetune jobs give what the library functions `limpq indicators` and
/// `limpq finetune` call give for the same settings, bit for bit, including an indicators
/// job stopped by a shutdown after its first step and resumed by the next daemon.
#[test]
fn indicators_and_finetune_jobs_equal_the_library_runs_and_resume() {
    use limpq_trainer::daemon::job::{FinetuneJob, IndicatorsJob};
    use limpq_trainer::gpu::{Gpu, GpuOptions};
    use limpq_trainer::method::{finetune, joint_train_full};

    let dir = TempDir::new("indft");
    let h = start(&dir.0);
    let mut c = client(&h);
    let fp = fp_checkpoint(&mut c, &dir.0);

    // Indicators, shut down after the first step.
    let ind_job: IndicatorsJob = ron_from_str(&format!(
        "(model: \"small_cnn\", ckpt: {:?}, bits: [2, 4], {TINY})",
        fp.display().to_string()
    ))
    .unwrap();
    let id = c
        .submit(spec(JobKind::Indicators(ind_job.clone())))
        .unwrap();
    let mut stages = Vec::new();
    let fin = c
        .watch(id, |r| {
            if let Response::Progress(_, p) = r {
                if p.step.is_some() && stages.is_empty() {
                    h.request_shutdown();
                }
                stages.push(p.stage.clone());
            }
        })
        .unwrap();
    assert_eq!(fin.state, JobState::Interrupted, "{fin:?}");
    assert!(stages.iter().any(|s| s == "joint training"), "{stages:?}");
    h.join().unwrap();
    let state = dir.0.join(format!("state/jobs/{id}/checkpoint/joint.ckpt"));
    assert!(state.is_file(), "no joint state saved at the stop");

    let h = start(&dir.0);
    let mut c = client(&h);
    let fin = c.watch(id, |_| {}).unwrap();
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    assert_eq!(fin.resumes, 1);
    let log = std::fs::read_to_string(dir.0.join(format!("state/jobs/{id}/log.txt"))).unwrap();
    assert!(log.contains("resumed from checkpoint"), "{log}");
    let ind_path = Path::new(&fin.output_dir).join("indicators.ron");
    let from_job =
        limpq_solver::IndicatorSet::from_ron_str(&std::fs::read_to_string(&ind_path).unwrap())
            .unwrap();

    // The same run through the library, uninterrupted.
    let gpu = Gpu::new(&GpuOptions::from_env()).unwrap();
    let init = Checkpoint::load(&fp).unwrap();
    let model = init.model.clone();
    let (train, test) = tiny_data();
    let lib = joint_train_full(
        &gpu,
        &model,
        &init,
        train.clone(),
        test.clone(),
        &ind_job.config(),
        &mut |_| {},
    )
    .unwrap();
    let lib_ind =
        limpq_solver::IndicatorSet::from_ron_str(&lib.indicators.to_ron_string()).unwrap();
    assert_eq!(from_job.layers, lib_ind.layers);
    assert_eq!(from_job.weight_bits, vec![2, 4]);

    // A policy from those indicators, then finetuning with the indicators' step sizes.
    let policy = limpq_solver::Problem::new(from_job.clone())
        .bitops(limpq_solver::BitOpsBudget::Uniform { weight: 2, act: 4 })
        .solve()
        .unwrap()
        .policy;
    let policy_path = dir.0.join("policy.ron");
    std::fs::write(&policy_path, policy.to_ron_string()).unwrap();
    let out = dir.0.join("ft.ckpt");
    let ft_job: FinetuneJob = ron_from_str(&format!(
        "(ckpt: {:?}, policy: {:?}, indicators: Some({:?}), output: Some({:?}), {TINY})",
        fp.display().to_string(),
        policy_path.display().to_string(),
        ind_path.display().to_string(),
        out.display().to_string()
    ))
    .unwrap();
    let ft = c.submit(spec(JobKind::Finetune(ft_job.clone()))).unwrap();
    let mut seen = Vec::new();
    let fin = c
        .watch(ft, |r| {
            if let Response::Progress(_, p) = r {
                seen.push(p.stage.clone());
            }
        })
        .unwrap();
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    assert!(seen.iter().any(|s| s == "finetuning"), "{seen:?}");
    let from_job = Checkpoint::load(&out).unwrap();
    let lib = finetune(
        &gpu,
        &model,
        &init,
        &policy,
        Some(&from_job_indicators(&ind_path)),
        train,
        test,
        &ft_job.config(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(from_job.tensors, lib.checkpoint.tensors);
    assert_eq!(from_job.step, lib.checkpoint.step);

    // An eval job of the finetuned checkpoint evaluates it at its policy, as `limpq eval`.
    let eval = EvalJob {
        ckpt: out.clone(),
        data: None,
        data_dir: None,
        subset: Some(32),
        batch: 32,
    };
    let e = c.submit(spec(JobKind::Eval(eval))).unwrap();
    let fin = c.watch(e, |_| {}).unwrap();
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    let text = std::fs::read_to_string(Path::new(&fin.output_dir).join("eval.ron")).unwrap();
    let loss: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("loss: "))
        .unwrap_or_else(|| panic!("no loss in {text}"))
        .trim_end_matches(',')
        .parse()
        .unwrap();
    let (_, test) = tiny_data();
    let at_policy = limpq_trainer::method::evaluate_checkpoint(
        &gpu,
        &from_job,
        "ft",
        Some(&policy),
        "fashion-mnist",
        test,
        32,
        None,
    )
    .unwrap();
    assert_eq!(eval_accuracy(&fin.output_dir), at_policy.accuracy);
    assert_eq!(loss, at_policy.loss, "{text}");
    h.shutdown().unwrap();
}

fn from_job_indicators(p: &Path) -> limpq_solver::IndicatorSet {
    limpq_solver::IndicatorSet::from_ron_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Bad indicators and finetune specs are refused at submission, naming the field.
#[test]
fn bad_indicators_and_finetune_specs_are_refused() {
    use limpq_trainer::daemon::job::{FinetuneJob, IndicatorsJob};
    let dir = TempDir::new("badindft");
    let h = start(&dir.0);
    let mut c = client(&h);
    let ck = dir.0.join("fp.ckpt");
    std::fs::write(&ck, b"not read at submission").unwrap();
    let ind = |extra: &str| -> JobSpec {
        let text = format!(
            "(model: \"small_cnn\", ckpt: {:?}, {TINY}{extra})",
            ck.display().to_string()
        );
        spec(JobKind::Indicators(
            ron_from_str::<IndicatorsJob>(&text).unwrap(),
        ))
    };
    let refused = |c: &mut Client, s: JobSpec, want: &[&str]| {
        let e = c.submit(s).unwrap_err().to_string();
        assert!(want.iter().all(|w| e.contains(w)), "{want:?}: {e}");
    };
    refused(
        &mut c,
        ind(", bits: [4, 2]"),
        &["indicators.bits", "ascending"],
    );
    refused(
        &mut c,
        ind(", bits: [1, 2]"),
        &["indicators.bits", "outside"],
    );
    refused(&mut c, ind(", bits: [4]"), &["indicators.bits", "two"]);
    refused(&mut c, ind(", lr: -1.0"), &["indicators.lr"]);
    refused(&mut c, ind(", clip: inf"), &["indicators.clip"]);
    refused(&mut c, ind(", label_smoothing: 1.0"), &["label_smoothing"]);
    refused(&mut c, ind(", eval_every: 0"), &["indicators.eval_every"]);
    refused(
        &mut c,
        ind(", output: Some(\"/no/such/folder/i.ron\")"),
        &["indicators.output", "/no/such/folder"],
    );
    let mut j = ron_from_str::<IndicatorsJob>("(model: \"resnet9000\", ckpt: \"x\")").unwrap();
    j.ckpt = ck.clone();
    refused(&mut c, spec(JobKind::Indicators(j)), &["resnet9000"]);
    let mut j = ron_from_str::<IndicatorsJob>("(model: \"small_cnn\", ckpt: \"x\")").unwrap();
    j.ckpt = dir.0.join("missing.ckpt");
    refused(
        &mut c,
        spec(JobKind::Indicators(j)),
        &["indicators.ckpt", "missing.ckpt"],
    );

    let policy = dir.0.join("policy.ron");
    std::fs::write(&policy, "not a policy").unwrap();
    let ft = |policy: &Path, indicators: Option<&Path>| -> JobSpec {
        spec(JobKind::Finetune(FinetuneJob {
            ckpt: ck.clone(),
            policy: policy.to_path_buf(),
            indicators: indicators.map(Path::to_path_buf),
            data: Default::default(),
            run: Default::default(),
            choices: Default::default(),
            output: None,
        }))
    };
    refused(
        &mut c,
        ft(&policy, None),
        &["finetune.policy", "policy.ron"],
    );
    refused(
        &mut c,
        ft(&dir.0.join("nope.ron"), None),
        &["finetune.policy", "nope.ron"],
    );
    refused(
        &mut c,
        ft(Path::new("/dev/zero"), None),
        &["finetune.policy", "/dev/zero"],
    );
    let good_policy = dir.0.join("good.ron");
    let ind_set = limpq_solver::IndicatorSet::from_ron_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/resnet20.indicators.ron"),
        )
        .unwrap(),
    )
    .unwrap();
    let p = limpq_solver::Problem::new(ind_set).solve().unwrap().policy;
    std::fs::write(&good_policy, p.to_ron_string()).unwrap();
    refused(
        &mut c,
        ft(&good_policy, Some(&dir.0.join("none.ron"))),
        &["finetune.indicators", "none.ron"],
    );
    let mut bad = ft(&good_policy, None);
    if let JobKind::Finetune(f) = &mut bad.job {
        f.run.epochs = Some(0);
    }
    refused(&mut c, bad, &["finetune.epochs"]);
    let mut no_ind = ft(&good_policy, None);
    if let JobKind::Finetune(f) = &mut no_ind.job {
        f.choices.steps_from_indicators = Some(true);
    }
    refused(
        &mut c,
        no_ind,
        &["finetune.steps_from_indicators", "finetune.indicators"],
    );
    h.shutdown().unwrap();
}

/// `Config::worker_adapters` (`limpq serve --worker-adapter`): a worker opens its own
/// adapter for its GPU jobs, not the process's preferred one. One worker on GL (Mesa's
/// llvmpipe here) while the preferred adapter is Vulkan (lavapipe): the train and eval jobs'
/// logs name the GL adapter, and the eval gives the accuracy the training measured.
#[test]
fn a_worker_opens_the_adapter_it_was_given() {
    use limpq_trainer::gpu::{AdapterPick, Gpu, GpuOptions};
    let open = |pick: &str| Gpu::new(&GpuOptions::default().with_adapter(pick.parse().unwrap()));
    let preferred = Gpu::new(&GpuOptions::default());
    if open("gl").is_err()
        || preferred
            .as_ref()
            .map_or(true, |g| g.summary.backend.to_lowercase() == "gl")
    {
        eprintln!("SKIP a_worker_opens_the_adapter_it_was_given: needs a GL adapter and another preferred one");
        return;
    }
    drop(preferred);
    let dir = TempDir::new("workeradapter");
    let mut cfg = Config::new(dir.0.join("d.sock"), dir.0.join("state"));
    cfg.tick = Duration::from_millis(20);
    cfg.workers = 1;
    cfg.worker_adapters = vec!["gl".parse::<AdapterPick>().unwrap()];
    let h = daemon::start(cfg).expect("daemon starts");
    let mut c = client(&h);
    let t = c.submit(spec(JobKind::Train(tiny_train(1)))).unwrap();
    let ti = c.watch(t, |_| {}).unwrap();
    assert_eq!(ti.state, JobState::Done, "{ti:?}");
    let ck = Path::new(&ti.output_dir).join("model.ckpt");
    let eval = EvalJob {
        ckpt: ck,
        data: None,
        data_dir: None,
        subset: Some(64),
        batch: 64,
    };
    let e = c.submit(spec(JobKind::Eval(eval))).unwrap();
    let fin = c.watch(e, |_| {}).unwrap();
    assert_eq!(fin.state, JobState::Done, "{fin:?}");
    for id in [t, e] {
        let log = std::fs::read_to_string(dir.0.join(format!("state/jobs/{id}/log.txt"))).unwrap();
        let line = log
            .lines()
            .find(|l| l.starts_with("adapter: "))
            .unwrap_or_else(|| panic!("job {id}: no adapter line in {log}"));
        assert!(line.to_lowercase().ends_with("(gl)"), "job {id}: {line}");
    }
    let history = std::fs::read_to_string(Path::new(&ti.output_dir).join("history.ron")).unwrap();
    let history: Vec<(usize, f64, f64, f64, f64)> = ron_from_str(&history).unwrap();
    let acc = eval_accuracy(&fin.output_dir);
    assert!(
        (acc - history[0].4).abs() < 1e-9,
        "eval {acc} vs train's {}",
        history[0].4
    );
    h.shutdown().unwrap();
}
