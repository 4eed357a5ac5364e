//! `limpq indicators` → `limpq solve` → `limpq finetune` → `limpq eval` on the real binary
//! with a tiny Fashion-MNIST subset, and the errors that name what is wrong.
//! Runs on whatever adapter wgpu finds (lavapipe in CI); skips only without one.
// These commands exist only with the default `gpu` feature.
#![cfg(feature = "gpu")]

mod common;

use common::{have_gpu_and_data, limpq, refused_with, stderr, stdout, FMNIST};

/// The entry of layer `name` in `p`.
fn layer<'a>(p: &'a mut limpq_solver::Policy, name: &str) -> &'a mut limpq_solver::LayerBits {
    p.layers.iter_mut().find(|l| l.name == name).unwrap()
}

fn tmp(name: &str) -> common::Scratch {
    common::tmp("method-cli", name)
}

fn train_fp(path: &str) {
    let out = limpq(&[
        "train",
        "--model",
        "small_cnn",
        "--data-dir",
        FMNIST,
        "--subset",
        "64",
        "--test-subset",
        "50",
        "--batch",
        "32",
        "--lr",
        "0.05",
        "--seed",
        "3",
        "-o",
        path,
    ]);
    assert!(out.status.success(), "train failed: {}", stderr(&out));
}

#[test]
fn indicators_solve_finetune_eval() {
    if !have_gpu_and_data("method cli") {
        return;
    }
    let fp = tmp("fp.ckpt");
    let fp = fp.to_str().unwrap();
    train_fp(fp);
    let ind = tmp("ind.ron");
    let ind = ind.to_str().unwrap();
    let out = limpq(&[
        "indicators",
        "--model",
        "small_cnn",
        "--ckpt",
        fp,
        "--bits",
        "2,3,4",
        "--epochs",
        "1",
        "--batch",
        "32",
        "--subset",
        "64",
        "--test-subset",
        "50",
        "--data-dir",
        FMNIST,
        "--seed",
        "4",
        "--subset-seed",
        "7",
        "-o",
        ind,
    ]);
    assert!(out.status.success(), "indicators failed: {}", stderr(&out));
    assert!(stdout(&out).contains("joint epoch 1/1"), "{}", stdout(&out));
    // Two steps leave the step sizes near their init, and the command says so.
    let err = stderr(&out);
    assert!(
        err.contains("the step sizes moved from their LSQ init weights by")
            && err.contains("more --epochs move them further"),
        "{err}"
    );
    let text = std::fs::read_to_string(ind).unwrap();
    let set = limpq_solver::IndicatorSet::from_ron_str(&text).unwrap();
    assert_eq!(set.model, "small_cnn");
    assert_eq!(set.weight_bits, vec![2, 3, 4]);
    let meta = |k: &str| {
        set.meta
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(meta("seed").as_deref(), Some("4"));
    assert_eq!(meta("subset_seed").as_deref(), Some("7"));
    assert!(meta("step_drift.act.median").is_some());
    assert_eq!(meta("init").as_deref(), Some(fp));
    assert_eq!(meta("data").as_deref(), Some("fashion-mnist"));
    assert!(meta("date").is_some());
    // `limpq solve` reads it unchanged.
    let pol = tmp("pol.ron");
    let pol = pol.to_str().unwrap();
    let out = limpq(&["solve", ind, "--bitops", "w3a3", "-o", pol]);
    assert!(out.status.success(), "solve failed: {}", stderr(&out));
    let q = tmp("q.ckpt");
    let q = q.to_str().unwrap();
    let out = limpq(&[
        "finetune",
        "--ckpt",
        fp,
        "--policy",
        pol,
        "--indicators",
        ind,
        "--epochs",
        "1",
        "--batch",
        "32",
        "--subset",
        "64",
        "--test-subset",
        "50",
        "--data-dir",
        FMNIST,
        "-o",
        q,
    ]);
    assert!(out.status.success(), "finetune failed: {}", stderr(&out));
    let ft = stdout(&out);
    assert!(ft.contains("quantized test accuracy"), "{ft}");
    // BN recalibration (on by default) runs on a training split smaller than the
    // evaluation batch (64 images, batch 256): it used to take whole batches only and so
    // did nothing, the statistics the same as with --bn-recalibration 0.
    let q0 = tmp("q0.ckpt");
    let out0 = limpq(&[
        "finetune",
        "--ckpt",
        fp,
        "--policy",
        pol,
        "--epochs",
        "1",
        "--batch",
        "32",
        "--subset",
        "64",
        "--test-subset",
        "50",
        "--data-dir",
        FMNIST,
        "--bn-recalibration",
        "0",
        "-o",
        q0.to_str().unwrap(),
    ]);
    assert!(out0.status.success(), "finetune failed: {}", stderr(&out0));
    let stats = |p: &str| -> Vec<Vec<f32>> {
        let ck = limpq_trainer::checkpoint::Checkpoint::load(p).unwrap();
        (ck.tensors.iter())
            .filter(|t| t.name.ends_with("running_mean") || t.name.ends_with("running_var"))
            .map(|t| t.data.clone())
            .collect()
    };
    let (with, without) = (stats(q), stats(q0.to_str().unwrap()));
    assert!(!with.is_empty());
    assert_ne!(with, without, "recalibration changed no BN statistic");
    // A checkpoint finetuned at one policy: evaluating it at another is refused (its step
    // sizes are those bits'), and finetuning it at another starts the changed layers' step
    // sizes afresh (a W3 step was kept at W2), the others' kept.
    let policy =
        limpq_solver::Policy::from_ron_str(&std::fs::read_to_string(pol).unwrap()).unwrap();
    // The solved policy edited by `edit`, written to `name` in the test folder.
    let edited = |name: &str, edit: &dyn Fn(&mut limpq_solver::Policy)| -> common::Scratch {
        let mut p = policy.clone();
        edit(&mut p);
        let path = tmp(name);
        std::fs::write(&path, p.to_ron_string()).unwrap();
        path
    };
    let conv2 = policy
        .layers
        .iter()
        .find(|l| l.name == "conv2")
        .unwrap()
        .clone();
    let new_bits = if conv2.weight == 2 { 4 } else { 2 };
    let pol2 = edited("pol2.ron", &|p| layer(p, "conv2").weight = new_bits);
    let pol2 = pol2.to_str().unwrap();
    let out2 = limpq(&[
        "eval",
        "--ckpt",
        q,
        "--policy",
        pol2,
        "--data-dir",
        FMNIST,
        "--test-subset",
        "50",
    ]);
    refused_with(&out2, &["layer 'conv2': the checkpoint was finetuned at"]);
    // infer refuses it alike (it computed logits with the W-old steps at the new bits).
    let x = tmp("x.npy");
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 28, 28), }";
    let header = format!("{header:<117}\n");
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend(std::iter::repeat_n(0u8, 4 * 28 * 28));
    std::fs::write(&x, npy).unwrap();
    let infer = |policy: &str| {
        limpq(&[
            "infer",
            q,
            "--policy",
            policy,
            "--input",
            x.to_str().unwrap(),
            "--output",
            tmp("logits.npy").to_str().unwrap(),
        ])
    };
    let inferred = infer(pol);
    assert!(
        inferred.status.success(),
        "infer at its policy: {}",
        stderr(&inferred)
    );
    refused_with(
        &infer(pol2),
        &["layer 'conv2': the checkpoint was finetuned at"],
    );
    // A policy that names a layer twice (finetune took the first entry, an ONNX Runtime
    // export the last), or that was written for another model, is refused by every reader.
    let twice_path = edited("twice.ron", &|p| {
        p.layers.push(limpq_solver::LayerBits {
            weight: 8,
            ..conv2.clone()
        })
    });
    let twice_path = twice_path.to_str().unwrap();
    let foreign_path = edited("foreign.ron", &|p| p.model = "another".into());
    let foreign_path = foreign_path.to_str().unwrap();
    for args in [
        vec!["eval", "--ckpt", q, "--policy", twice_path],
        vec!["export", twice_path, "--format", "csv"],
        vec![
            "finetune",
            "--ckpt",
            fp,
            "--policy",
            twice_path,
            "--epochs",
            "0",
            "-o",
            tmp("q-twice.ckpt").to_str().unwrap(),
        ],
    ] {
        refused_with(
            &limpq(&args),
            &[twice_path, "layer 'conv2' is listed twice"],
        );
    }
    refused_with(&infer(twice_path), &["layer 'conv2' is listed twice"]);
    let eval_foreign = limpq(&[
        "eval",
        "--ckpt",
        q,
        "--policy",
        foreign_path,
        "--data-dir",
        FMNIST,
    ]);
    refused_with(&eval_foreign, &["the policy is for model 'another'"]);
    refused_with(&infer(foreign_path), &["the policy is for model 'another'"]);
    // A bit-width the trainer cannot run is refused with the file and the layer: by
    // finetune and eval before any data is read, and by the runtime tables.
    let one_bit_path = edited("one-bit.ron", &|p| layer(p, "conv2").act = 1);
    let one_bit_path = one_bit_path.to_str().unwrap();
    for args in [
        vec!["export", one_bit_path, "--format", "tensorrt"],
        vec![
            "eval",
            "--ckpt",
            q,
            "--policy",
            one_bit_path,
            "--data-dir",
            "/nonexistent",
        ],
        vec![
            "finetune",
            "--ckpt",
            fp,
            "--policy",
            one_bit_path,
            "--epochs",
            "0",
            "--data-dir",
            "/nonexistent",
            "-o",
            tmp("q-one.ckpt").to_str().unwrap(),
        ],
    ] {
        refused_with(
            &limpq(&args),
            &[
                one_bit_path,
                "policy layer 'conv2' at W",
                "A1: bit-width",
                "outside 2..=16",
            ],
        );
    }
    // A fixed layer at other bits is obeyed, and said.
    let stem4_path = edited("stem4.ron", &|p| layer(p, "conv1").weight = 4);
    let out_stem = limpq(&[
        "finetune",
        "--ckpt",
        fp,
        "--policy",
        stem4_path.to_str().unwrap(),
        "--epochs",
        "0",
        "--subset",
        "64",
        "--test-subset",
        "50",
        "--data-dir",
        FMNIST,
        "-o",
        tmp("q-stem4.ckpt").to_str().unwrap(),
    ]);
    assert!(
        out_stem.status.success(),
        "finetune with the stem at W4: {}",
        stderr(&out_stem)
    );
    assert!(
        stderr(&out_stem).contains("puts layer 'conv1' at W4A8; the model fixes it at W8A8"),
        "{}",
        stderr(&out_stem)
    );
    assert!(
        !stderr(&out).contains("the model fixes it"),
        "{}",
        stderr(&out)
    );
    let q2 = tmp("q2.ckpt");
    let out2 = limpq(&[
        "finetune",
        "--ckpt",
        q,
        "--policy",
        pol2,
        "--epochs",
        "1",
        "--batch",
        "32",
        "--subset",
        "64",
        "--test-subset",
        "50",
        "--data-dir",
        FMNIST,
        "-o",
        q2.to_str().unwrap(),
    ]);
    assert!(
        out2.status.success(),
        "finetune at another policy: {}",
        stderr(&out2)
    );
    assert!(
        stderr(&out2).contains("finetuned at other bits in 1 layer(s) (first 'conv2'"),
        "{}",
        stderr(&out2)
    );
    let step = |p: &str, name: &str| -> Vec<f32> {
        let ck = limpq_trainer::checkpoint::Checkpoint::load(p).unwrap();
        let t = ck.tensors.iter().find(|t| t.name == name);
        t.unwrap_or_else(|| panic!("{p} has no {name}"))
            .data
            .clone()
    };
    // Two small steps later conv2's weight step is near the LSQ init at its new bits
    // (2·mean|w|/√Qp), not near the step it had at the old ones.
    let q2 = q2.to_str().unwrap();
    let w = step(q, "conv2.weight");
    let mean_abs = w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len() as f64;
    let init = 2.0 * mean_abs / (((1u64 << (new_bits - 1)) - 1) as f64).sqrt();
    let (old_step, new_step) = (
        step(q, "conv2.weight_step")[0] as f64,
        step(q2, "conv2.weight_step")[0] as f64,
    );
    assert!(
        (new_step - init).abs() < (new_step - old_step).abs(),
        "conv2's step {new_step}: LSQ init at W{new_bits} {init}, the finetuned one {old_step}"
    );
    // --indicators without --steps-from-indicators is read for nothing, and it says so.
    assert!(
        stderr(&out).contains(&format!(
            "warning: --indicators {ind} is read only with --steps-from-indicators"
        )),
        "{}",
        stderr(&out)
    );
    // Measured sensitivity is loss increases, not step sizes: refused as a start for them,
    // before any training.
    let mut sens = set.clone();
    sens.meta.push(("source".into(), "sensitivity".into()));
    let sens_path = tmp("sens.ron");
    std::fs::write(&sens_path, sens.to_ron_string()).unwrap();
    let out = limpq(&[
        "finetune",
        "--ckpt",
        fp,
        "--policy",
        pol,
        "--indicators",
        sens_path.to_str().unwrap(),
        "--steps-from-indicators",
        "--epochs",
        "1",
        "--data-dir",
        FMNIST,
        "-o",
        tmp("q-sens.ckpt").to_str().unwrap(),
    ]);
    refused_with(
        &out,
        &[
            "measured sensitivity",
            "--steps-from-indicators needs the joint run's indicators",
        ],
    );
    // eval reads the policy stored in the checkpoint and prints its cost.
    let out = limpq(&[
        "eval",
        "--ckpt",
        q,
        "--data-dir",
        FMNIST,
        "--test-subset",
        "50",
    ]);
    assert!(out.status.success(), "eval failed: {}", stderr(&out));
    let ev = stdout(&out);
    assert!(ev.contains("quantized, on 50 test images"), "{ev}");
    assert!(ev.contains("BitOps in searched layers"), "{ev}");
    // The BitOps printed are the solver's for that policy.
    assert!(
        ev.contains(&format!("policy: {} BitOps", policy.bitops)),
        "{ev} vs {}",
        policy.bitops
    );
    // Same test images, same model: finetune's final accuracy equals eval's.
    let acc = |s: &str, key: &str| -> String {
        let at = s.find(key).unwrap() + key.len();
        s[at..].split('%').next().unwrap().trim().to_string()
    };
    assert_eq!(
        acc(&ft, "quantized test accuracy"),
        acc(&ev, "accuracy"),
        "{ft}\n{ev}"
    );
    // `--format json` carries the same accuracy and the policy's cost.
    let out = limpq(&[
        "eval",
        "--ckpt",
        q,
        "--data-dir",
        FMNIST,
        "--test-subset",
        "50",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "eval --format json: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(v["quantized"], true);
    let a = v["accuracy"].as_f64().unwrap() * 100.0;
    assert_eq!(format!("{a:.2}"), acc(&ev, "accuracy"), "{v}");
    assert_eq!(v["cost"]["bitops"].as_u64(), Some(policy.bitops), "{v}");
    let fixed = v["cost"]["fixed_bitops"].as_u64().unwrap();
    assert!(
        ev.contains(&format!("(+{fixed} in fixed layers)")),
        "{ev} vs {v}"
    );
}

#[test]
fn finetune_errors_name_the_problem() {
    if !have_gpu_and_data("method cli errors") {
        return;
    }
    let fp = tmp("fp2.ckpt");
    let fp = fp.to_str().unwrap();
    train_fp(fp);
    // A policy of another model.
    let pol = tmp("other.ron");
    std::fs::write(
        &pol,
        "Policy(model: \"resnet20\", layers: [], objective: 0.0, bitops: 0, \
         weight_bits_total: 0, optimal: true, bitops_budget: None, size_budget_bits: None)",
    )
    .unwrap();
    // `--init`, the older spelling of `--ckpt`, still reads the checkpoint.
    let out = limpq(&[
        "finetune",
        "--init",
        fp,
        "--policy",
        pol.to_str().unwrap(),
        "--data-dir",
        FMNIST,
        "-o",
        tmp("x.ckpt").to_str().unwrap(),
    ]);
    refused_with(&out, &["policy for model 'resnet20'"]);
    // A joint-training state (one batch norm per bit-width) is no model to finetune or
    // evaluate: said so, not "missing parameter 'bn2.weight'".
    let mut joint = limpq_trainer::checkpoint::Checkpoint::load(fp).unwrap();
    joint.meta.push(("stage".into(), "joint".into()));
    let joint_path = tmp("joint-state.ckpt");
    joint.save(&joint_path).unwrap();
    let jp = joint_path.to_str().unwrap();
    let layers = limpq_trainer::model::builtin("small_cnn")
        .unwrap()
        .quantizable_layers()
        .unwrap();
    let w5 = tmp("w5.ron");
    std::fs::write(&w5, common::uniform_policy("small_cnn", 5)).unwrap();
    let w5 = w5.to_str().unwrap();
    for args in [
        vec![
            "finetune",
            "--ckpt",
            jp,
            "--policy",
            w5,
            "-o",
            "/tmp/never.ckpt",
        ],
        vec!["eval", "--ckpt", jp],
    ] {
        refused_with(
            &limpq(&args),
            &["joint-state.ckpt is a joint-training state"],
        );
    }
    // Steps from indicators that lack the policy's bits (W5 against 2, 3, 4): the error
    // names the indicator file.
    let mut ind = limpq_solver::IndicatorSet {
        model: "small_cnn".into(),
        weight_bits: vec![2, 3, 4],
        act_bits: vec![2, 3, 4],
        layers: vec![],
        meta: vec![],
    };
    for l in &layers {
        ind.layers.push(limpq_solver::Layer {
            name: l.name.clone(),
            macs: l.macs,
            params: l.params,
            weight_scale: if l.fixed {
                vec![]
            } else {
                vec![0.1, 0.05, 0.02]
            },
            act_scale: if l.fixed { vec![] } else { vec![0.3, 0.2, 0.1] },
            fixed: l.fixed.then_some((8, 8)),
        });
    }
    let ind_path = tmp("ind234.ron");
    std::fs::write(&ind_path, ind.to_ron_string()).unwrap();
    let out = limpq(&[
        "finetune",
        "--ckpt",
        fp,
        "--policy",
        w5,
        "--indicators",
        ind_path.to_str().unwrap(),
        "--steps-from-indicators",
        "-o",
        tmp("never.ckpt").to_str().unwrap(),
    ]);
    refused_with(
        &out,
        &[
            "ind234.ron",
            "the policy's W5A5 is not among the indicators' bits",
        ],
    );
    // A learning rate that turns the weights to NaN while fake quantization keeps the
    // loss finite (the quantizer clamps a NaN weight to a level): refused after the epoch,
    // naming the parameter, and nothing written (this saved all-NaN weights, exit 0).
    let nan = tmp("nan-weights.ckpt");
    let _ = std::fs::remove_file(&nan);
    let out = limpq(&[
        "finetune",
        "--ckpt",
        fp,
        "--policy",
        w5,
        "--data-dir",
        FMNIST,
        "--subset",
        "64",
        "--test-subset",
        "10",
        "--batch",
        "32",
        "--lr",
        "1e30",
        "-o",
        nan.to_str().unwrap(),
    ]);
    refused_with(
        &out,
        &["finetuning diverged", "is not finite after epoch 1"],
    );
    assert!(!nan.exists());
    // BN recalibration of a full-precision model: a usage error, before a GPU is opened.
    let out = limpq(&[
        "eval",
        "--ckpt",
        fp,
        "--recalibrate-bn",
        "64",
        "--test-subset",
        "10",
        "--data-dir",
        FMNIST,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--recalibrate-bn applies to a quantized model"));
    // Indicators from a missing checkpoint.
    let out = limpq(&[
        "indicators",
        "--model",
        "small_cnn",
        "--init",
        "/nonexistent/fp.ckpt",
        "-o",
        tmp("i.ron").to_str().unwrap(),
    ]);
    refused_with(&out, &["/nonexistent/fp.ckpt"]);
    // Candidate bits out of order.
    let out = limpq(&[
        "indicators",
        "--model",
        "small_cnn",
        "--init",
        fp,
        "--bits",
        "4,2",
        "--subset",
        "64",
        "--test-subset",
        "50",
        "--data-dir",
        FMNIST,
        "-o",
        tmp("i.ron").to_str().unwrap(),
    ]);
    refused_with(&out, &["ascending"]);
    // --resume needs the state to continue: without --checkpoint it is a usage error, with
    // a missing one the error names the file.
    let base = [
        "indicators",
        "--model",
        "small_cnn",
        "--init",
        fp,
        "--subset",
        "64",
        "--test-subset",
        "50",
        "--data-dir",
        FMNIST,
        "-o",
    ];
    let ind = tmp("r.ron");
    let mut args = base.to_vec();
    args.extend([ind.to_str().unwrap(), "--resume"]);
    refused_with(&limpq(&args), &["--checkpoint"]);
    args.extend(["--checkpoint", "/nonexistent/joint.state"]);
    refused_with(&limpq(&args), &["--resume", "/nonexistent/joint.state"]);
    // A state of another kind of run (here: a copy of a full-precision checkpoint) is
    // refused by name.
    let copy = tmp("fp2-copy.ckpt");
    std::fs::copy(fp, &copy).unwrap();
    let mut args = base.to_vec();
    args.extend([
        ind.to_str().unwrap(),
        "--resume",
        "--checkpoint",
        copy.to_str().unwrap(),
    ]);
    refused_with(&limpq(&args), &["resume"]);
    // The --init checkpoint itself as the state: refused before it could be replaced.
    let mut args = base.to_vec();
    args.extend([ind.to_str().unwrap(), "--resume", "--checkpoint", fp]);
    refused_with(&limpq(&args), &["is the same file as --ckpt"]);
}

/// `eval --recalibrate-bn` recalibrates as the checkpoint's finetune did (its training
/// images, its draw): on a checkpoint finetuned with `--bn-recalibration N`, which keeps
/// the recalibrated statistics, `--recalibrate-bn N` gives the figure of a plain `eval`.
/// Its `--predictions` and `--logits` come from that recalibrated model, recalibrated once:
/// their count of correct labels is the report's (they came from the statistics as stored).
#[test]
fn eval_recalibrates_as_finetune_did_and_predicts_with_that_model() {
    if !have_gpu_and_data("eval --recalibrate-bn") {
        return;
    }
    let fp = tmp("recal-fp.ckpt");
    let fp = fp.to_str().unwrap();
    train_fp(fp);
    let policy = tmp("recal-w2a2.ron");
    std::fs::write(&policy, common::uniform_policy("small_cnn", 2)).unwrap();
    let finetuned = |recal: &str, out: &std::path::Path, epochs: &str| {
        let o = limpq(&[
            "finetune",
            "--epochs",
            epochs,
            "--ckpt",
            fp,
            "--policy",
            policy.to_str().unwrap(),
            "--data-dir",
            FMNIST,
            "--subset",
            "96",
            "--subset-seed",
            "11",
            "--test-subset",
            "50",
            "--batch",
            "32",
            "--eval-batch",
            "32",
            "--seed",
            "4",
            "--bn-recalibration",
            recal,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "finetune: {}", stderr(&o));
    };
    let eval = |ck: &std::path::Path, more: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "eval",
            "--ckpt",
            ck.to_str().unwrap(),
            "--data-dir",
            FMNIST,
            "--test-subset",
            "50",
            "--eval-batch",
            "32",
            "--format",
            "json",
        ];
        args.extend_from_slice(more);
        let o = limpq(&args);
        assert!(o.status.success(), "eval {more:?}: {}", stderr(&o));
        serde_json::from_str(&stdout(&o)).expect("JSON")
    };
    // Recalibrated by the finetune: a second recalibration of the same draw changes
    // nothing (it took other images, from the whole split, and another seed).
    let recal = tmp("recal-64.ckpt");
    finetuned("64", &recal, "1");
    let plain = eval(&recal, &[]);
    let again = eval(&recal, &["--recalibrate-bn", "64"]);
    assert_eq!(plain["loss"], again["loss"], "{plain}\n{again}");
    assert_eq!(plain["correct"], again["correct"]);
    // The data set named another way is the same data set (the run's subset is used).
    let spelled = eval(&recal, &["--data", "fmnist", "--recalibrate-bn", "64"]);
    assert_eq!(plain["loss"], spelled["loss"], "{plain}\n{spelled}");
    // A finetune of no epochs keeps the statistics it evaluated with (it saved the ones
    // before its recalibration).
    let none = tmp("recal-64-0.ckpt");
    finetuned("64", &none, "0");
    let plain = eval(&none, &[]);
    let again = eval(&none, &["--recalibrate-bn", "64"]);
    assert_eq!(plain["loss"], again["loss"], "{plain}\n{again}");
    // Not recalibrated by the finetune: the report and the predictions both come from the
    // recalibrated model.
    let raw = tmp("recal-0.ckpt");
    finetuned("0", &raw, "1");
    let pred = tmp("recal-pred.npy");
    let logits = tmp("recal-logits.npy");
    // One network for the report and both files: recalibrated once (each recalibration
    // says so on stderr; a second network for the files used to recalibrate again).
    let o = limpq(&[
        "eval",
        "--ckpt",
        raw.to_str().unwrap(),
        "--data-dir",
        FMNIST,
        "--test-subset",
        "50",
        "--eval-batch",
        "32",
        "--format",
        "json",
        "--recalibrate-bn",
        "64",
        "--predictions",
        pred.to_str().unwrap(),
        "--logits",
        logits.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "eval: {}", stderr(&o));
    let said = stderr(&o);
    assert_eq!(
        said.matches("BN statistics recalibrated on 64 of 96 training images (64 asked)")
            .count(),
        1,
        "{said}"
    );
    let rep: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    // The report without the files is the same figure.
    assert_eq!(rep, eval(&raw, &["--recalibrate-bn", "64"]));
    let before = eval(&raw, &[]);
    assert_ne!(rep["loss"], before["loss"], "recalibration changed nothing");
    let payload = |p: &std::path::Path| {
        let bytes = std::fs::read(p).unwrap();
        let header = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        bytes[header..].to_vec()
    };
    let predicted: Vec<i64> = payload(&pred)
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // The logits file is the predictions' model: each row's first largest is the class.
    let rows: Vec<f32> = payload(&logits)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let argmax: Vec<i64> = rows
        .chunks_exact(10)
        .map(|r| {
            let mut arg = 0;
            for (j, v) in r.iter().enumerate() {
                if *v > r[arg] {
                    arg = j;
                }
            }
            arg as i64
        })
        .collect();
    assert_eq!(argmax, predicted);
    let test = limpq_trainer::data::Dataset::load_subset_for(
        &limpq_trainer::data::DataSource {
            name: "fashion-mnist",
            dir: Some(std::path::Path::new(FMNIST)),
            input: None,
            transform: None,
        },
        limpq_trainer::data::Split::Test,
        Some(50),
        limpq_trainer::data::TEST_SUBSET_SEED,
    )
    .unwrap();
    let correct = predicted
        .iter()
        .zip(&test.labels)
        .filter(|(p, l)| **p == i64::from(**l))
        .count();
    assert_eq!(rep["correct"].as_u64(), Some(correct as u64), "{rep}");
}

/// `limpq sensitivity` says how many calibration images it measures on: whole batches of
/// those drawn (80 drawn in batches of 32 are 64 measured; it said 80), as the file records.
#[test]
fn sensitivity_names_the_images_it_measures_on() {
    if !have_gpu_and_data("sensitivity images") {
        return;
    }
    let fp = tmp("sens-fp.ckpt");
    let fp = fp.to_str().unwrap();
    train_fp(fp);
    let ind = tmp("sens-80.ron");
    let out = limpq(&[
        "sensitivity",
        "--model",
        "small_cnn",
        "--init",
        fp,
        "--bits",
        "2,4",
        "--images",
        "80",
        "--batch",
        "32",
        "--data-dir",
        FMNIST,
        "-o",
        ind.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("on 64 calibration images (16 of the 80 drawn left out"),
        "{}",
        stderr(&out)
    );
    let set =
        limpq_solver::IndicatorSet::from_ron_str(&std::fs::read_to_string(&ind).unwrap()).unwrap();
    let recorded = set.meta.iter().find(|(k, _)| k == "calibration_images");
    assert_eq!(recorded.map(|(_, v)| v.as_str()), Some("64"));
}
