//! Model descriptions: built-in MAC/param sums against torchvision's published figures,
//! RON round trips, and errors (never panics) on broken descriptions.

#[cfg(unix)]
#[path = "common/blocking.rs"]
mod blocking;

use limpq_solver::format::versioned::ron_from_str;
use limpq_trainer::model::{
    builtin, resnet20, LayerKind, Model, ModelError, Node, Op, Shape, BUILTIN_NAMES,
};

fn conv_sums(model: &Model) -> (u64, u64) {
    let layers = model.quantizable_layers().expect("built-in is valid");
    let convs = layers.iter().filter(|l| l.kind == LayerKind::Conv);
    (
        convs.clone().map(|l| l.macs).sum(),
        convs.map(|l| l.params).sum(),
    )
}

#[test]
fn conv_sums_match_the_issue() {
    // Issue 2: conv-layer sums with integer output sizes, weights only.
    assert_eq!(
        conv_sums(&builtin("resnet18").unwrap()),
        (1_813_561_344, 11_166_912)
    );
    assert_eq!(
        conv_sums(&builtin("resnet50").unwrap()),
        (4_087_136_256, 23_454_912)
    );
    assert_eq!(
        conv_sums(&builtin("resnet20").unwrap()),
        (31_021_312, 269_968)
    );
}

#[test]
fn whole_model_params_match_torchvision() {
    // torchvision's parameter counts include BN (2 per channel) and the fc bias; add them
    // from the graph to check the conv and fc weights independently of the issue's sums.
    for (name, torchvision_total) in [("resnet18", 11_689_512u64), ("resnet50", 25_557_032)] {
        let m = builtin(name).unwrap();
        let infos = m.analyze().unwrap();
        let weights: u64 = infos.iter().map(|i| i.params).sum();
        let bn: u64 = m
            .nodes
            .iter()
            .zip(&infos)
            .filter(|(n, _)| n.op == Op::BatchNorm)
            .map(|(_, i)| 2 * i.output.c as u64)
            .sum();
        assert_eq!(weights + bn + 1000, torchvision_total, "{name}");
    }
}

/// torchvision's `mobilenet_v2()` at width 1.0: 3,504,872 parameters (convs, BN's 2 per
/// channel, classifier weights and bias) and 300.8M multiply-accumulates at 224² (the
/// figure torchvision and the paper publish: "300M mult-adds").
#[test]
fn mobilenetv2_matches_torchvision() {
    let m = builtin("mobilenetv2").unwrap();
    let infos = m.analyze().unwrap();
    let weights: u64 = infos.iter().map(|i| i.params).sum();
    let bn: u64 = m
        .nodes
        .iter()
        .zip(&infos)
        .filter(|(n, _)| n.op == Op::BatchNorm)
        .map(|(_, i)| 2 * i.output.c as u64)
        .sum();
    assert_eq!(weights + bn + 1000, 3_504_872);
    let macs: u64 = infos.iter().map(|i| i.macs).sum();
    let published = 300_800_000f64;
    assert!(
        (macs as f64 - published).abs() / published < 0.005,
        "{macs} MACs, torchvision publishes 300.8M"
    );
    let layers = m.quantizable_layers().unwrap();
    // 52 convs (stem, 17 blocks of 2 or 3, the last 1×1) and the classifier.
    assert_eq!(layers.len(), 53);
    let names: Vec<&str> = m.nodes.iter().map(|n| n.name.as_str()).collect();
    for expected in [
        "features.0.0",
        "features.0.1",
        "features.1.conv.0.0",
        "features.1.conv.1",
        "features.2.conv.1.0",
        "features.2.conv.3",
        "features.18.0",
        "classifier.1",
    ] {
        assert!(names.contains(&expected), "{expected} missing");
    }
    let dw = m
        .nodes
        .iter()
        .find(|n| n.name == "features.2.conv.1.0")
        .unwrap();
    assert!(matches!(
        dw.op,
        Op::Conv2d {
            groups: 96,
            stride: 2,
            ..
        }
    ));
}

#[test]
fn quantizable_layers_fix_stem_and_fc() {
    let m = builtin("resnet20").unwrap();
    let layers = m.quantizable_layers().unwrap();
    // 19 convs + 2 projection shortcuts + fc.
    assert_eq!(layers.len(), 22);
    let fixed: Vec<&str> = layers
        .iter()
        .filter(|l| l.fixed)
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(fixed, ["conv1", "fc"]);
    let fc = layers.last().unwrap();
    assert_eq!((fc.kind, fc.macs, fc.params), (LayerKind::Linear, 640, 640));
    let c = layers.iter().find(|l| l.name == "layer1.0.conv1").unwrap();
    assert_eq!((c.macs, c.params), (1_806_336, 2304));
    let d = layers
        .iter()
        .find(|l| l.name == "layer3.0.downsample.0")
        .unwrap();
    assert_eq!(
        d.input,
        Shape {
            c: 32,
            h: 14,
            w: 14
        }
    );
    assert_eq!(d.output, Shape { c: 64, h: 7, w: 7 });
    assert_eq!((d.macs, d.params), (100_352, 2048));
}

#[test]
fn resnet_names_follow_torchvision() {
    let m = builtin("resnet50").unwrap();
    let names: Vec<&str> = m.nodes.iter().map(|n| n.name.as_str()).collect();
    for expected in [
        "conv1",
        "bn1",
        "maxpool",
        "layer1.0.conv1",
        "layer1.0.bn3",
        "layer1.0.downsample.0",
        "layer1.0.downsample.1",
        "layer4.2.conv3",
        "fc",
    ] {
        assert!(names.contains(&expected), "{expected} missing");
    }
    // v1.5: the stride of a downsampling bottleneck sits on its 3×3 conv.
    let conv = |name: &str| m.nodes.iter().find(|n| n.name == name).unwrap().op.clone();
    assert!(matches!(
        conv("layer2.0.conv1"),
        Op::Conv2d {
            kernel: 1,
            stride: 1,
            ..
        }
    ));
    assert!(matches!(
        conv("layer2.0.conv2"),
        Op::Conv2d {
            kernel: 3,
            stride: 2,
            ..
        }
    ));
    let r18 = builtin("resnet18").unwrap();
    assert!(!r18.nodes.iter().any(|n| n.name == "layer1.0.downsample.0"));
    assert!(r18.nodes.iter().any(|n| n.name == "layer2.0.downsample.0"));
}

#[test]
fn resnet20_input_is_configurable() {
    let cifar = builtin("resnet20-cifar").unwrap();
    assert_eq!(cifar.input, (3, 32, 32));
    let layers = cifar.quantizable_layers().unwrap();
    assert_eq!(layers[0].macs, 3 * 16 * 9 * 32 * 32);
    let custom = resnet20((3, 28, 28), 7);
    assert_eq!(
        custom.quantizable_layers().unwrap().last().unwrap().params,
        64 * 7
    );
}

#[test]
fn small_cnn_is_small_and_has_a_residual() {
    let m = builtin("small_cnn").unwrap();
    assert!(m.nodes.iter().any(|n| n.op == Op::Add));
    let macs: u64 = m.quantizable_layers().unwrap().iter().map(|l| l.macs).sum();
    assert_eq!(macs, 257_504);
}

#[test]
fn every_builtin_round_trips_through_ron() {
    for name in BUILTIN_NAMES {
        let m = builtin(name).unwrap();
        let text = m.to_ron();
        let back: Model = ron_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, m, "{name}");
        // One node per line keeps files diffable.
        assert!(text.lines().count() > m.nodes.len(), "{name}");
    }
}

#[test]
fn example_file_is_the_builtin_small_cnn() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/small_cnn.model.ron"
    );
    let m = Model::from_ron_file(path).unwrap();
    assert_eq!(m, builtin("small_cnn").unwrap());
    assert_eq!(Model::resolve(path).unwrap(), m);
}

#[test]
fn optional_fields_take_defaults() {
    let text = r#"Model(name: "tiny", input: (1, 8, 8), classes: 3, nodes: [
        Node(name: "c", op: Conv2d(out_channels: 4, kernel: 3), inputs: ["input"]),
        Node(name: "p", op: MaxPool(kernel: 2, stride: 2), inputs: ["c"]),
        Node(name: "f", op: Flatten, inputs: ["p"]),
        Node(name: "fc", op: Linear(out_features: 3), inputs: ["f"]),
    ])"#;
    let m: Model = ron_from_str(text).unwrap();
    let infos = m.analyze().unwrap();
    assert_eq!(infos[0].output, Shape { c: 4, h: 6, w: 6 });
    assert_eq!(infos[1].output, Shape { c: 4, h: 3, w: 3 });
    assert_eq!(infos[2].output, Shape { c: 36, h: 1, w: 1 });
    assert_eq!((infos[3].macs, infos[3].params), (108, 108));
}

fn tiny() -> Model {
    let node = |name: &str, op: Op, inputs: &[&str]| Node {
        name: name.to_string(),
        op,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
    };
    let conv = |out, stride| Op::Conv2d {
        out_channels: out,
        kernel: 3,
        stride,
        padding: 1,
        groups: 1,
        bias: false,
    };
    Model {
        name: "tiny".into(),
        input: (2, 6, 6),
        classes: 3,
        nodes: vec![
            node("a", conv(4, 1), &["input"]),
            node("b", conv(4, 1), &["a"]),
            node("sum", Op::Add, &["a", "b"]),
            node("gap", Op::GlobalAvgPool, &["sum"]),
            node(
                "fc",
                Op::Linear {
                    out_features: 3,
                    bias: true,
                },
                &["gap"],
            ),
        ],
    }
}

/// The error message for `tiny()` after `edit`.
fn error_of(edit: impl FnOnce(&mut Model)) -> String {
    let mut m = tiny();
    m.analyze().expect("tiny is valid");
    edit(&mut m);
    match m.analyze() {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn set_op(m: &mut Model, node: &str, op: Op) {
    m.nodes.iter_mut().find(|n| n.name == node).unwrap().op = op;
}

#[test]
fn broken_graphs_are_errors_naming_node_and_field() {
    let e = error_of(|m| m.nodes[1].inputs = vec!["nope".into()]);
    assert!(
        e.contains("node 'b'") && e.contains("'inputs'") && e.contains("unknown input 'nope'"),
        "{e}"
    );

    let e = error_of(|m| m.nodes[1].inputs = vec!["sum".into()]);
    assert!(e.contains("topological order"), "{e}");

    let e = error_of(|m| m.nodes[1].name = "a".into());
    assert!(e.contains("node 'a'") && e.contains("duplicate"), "{e}");

    let e = error_of(|m| m.nodes[0].name = "input".into());
    assert!(e.contains("reserved"), "{e}");

    let e = error_of(|m| {
        set_op(
            m,
            "b",
            Op::Conv2d {
                out_channels: 5,
                kernel: 3,
                stride: 1,
                padding: 1,
                groups: 1,
                bias: false,
            },
        )
    });
    assert!(
        e.contains("node 'sum'") && e.contains("4×6×6") && e.contains("5×6×6"),
        "{e}"
    );

    let e = error_of(|m| {
        set_op(
            m,
            "b",
            Op::Conv2d {
                out_channels: 4,
                kernel: 3,
                stride: 1,
                padding: 1,
                groups: 3,
                bias: false,
            },
        )
    });
    assert!(
        e.contains("node 'b'") && e.contains("'groups'") && e.contains("do not divide"),
        "{e}"
    );

    let e = error_of(|m| {
        set_op(
            m,
            "a",
            Op::Conv2d {
                out_channels: 4,
                kernel: 9,
                stride: 1,
                padding: 1,
                groups: 1,
                bias: false,
            },
        )
    });
    assert!(
        e.contains("node 'a'")
            && e.contains("'kernel'")
            && e.contains("larger than the padded input"),
        "{e}"
    );

    let e = error_of(|m| {
        set_op(
            m,
            "a",
            Op::Conv2d {
                out_channels: 4,
                kernel: 3,
                stride: 0,
                padding: 1,
                groups: 1,
                bias: false,
            },
        )
    });
    assert!(e.contains("'stride'") && e.contains("positive"), "{e}");

    let e = error_of(|m| m.nodes[2].inputs = vec!["a".into()]);
    assert!(e.contains("node 'sum'") && e.contains("two or more"), "{e}");

    let e = error_of(|m| m.classes = 10);
    assert!(e.contains("node 'fc'") && e.contains("10×1×1"), "{e}");

    let e = error_of(|m| m.nodes[3].inputs = vec!["a".into()]);
    assert!(e.contains("node 'sum'") && e.contains("never used"), "{e}");

    let e = error_of(|m| {
        set_op(
            m,
            "gap",
            Op::MaxPool {
                kernel: 2,
                stride: 1,
                padding: 2,
            },
        )
    });
    assert!(e.contains("node 'gap'") && e.contains("'padding'"), "{e}");

    let e = error_of(|m| m.input = (2, 0, 6));
    assert!(e.contains("'input'"), "{e}");
}

#[test]
fn absurd_sizes_are_errors_not_panics() {
    let conv = |out_channels, kernel, stride, padding| Op::Conv2d {
        out_channels,
        kernel,
        stride,
        padding,
        groups: 1,
        bias: false,
    };
    // The engine indexes with 32 bits: a size, kernel, stride or padding past u32, or an
    // image's tensor of more values, is refused when the model is read, naming the field.
    for (op, field) in [
        (conv(usize::MAX, 3, 1, 1), "'out_channels'"),
        (conv(4, usize::MAX, 1, usize::MAX), "'kernel'"),
        (conv(4, 3, 1 << 33, 1), "'stride'"),
        (conv(4, 3, 1, 1 << 33), "'padding'"),
        // 2^27 channels of 6×6: 2^27 · 36 values an image.
        (conv(1 << 27, 3, 1, 1), "'output'"),
    ] {
        let e = error_of(|m| set_op(m, "a", op));
        assert!(
            e.contains("node 'a'") && e.contains(field) && e.contains("32-bit indices"),
            "{e}"
        );
    }
    // 4 inputs × 2^31 outputs: a weight of 2^33 values.
    let e = error_of(|m| {
        set_op(
            m,
            "fc",
            Op::Linear {
                out_features: 1 << 31,
                bias: true,
            },
        )
    });
    assert!(
        e.contains("node 'fc'") && e.contains("'weights'") && e.contains("32-bit indices"),
        "{e}"
    );
    for input in [(usize::MAX, usize::MAX, 2), (1, 1 << 16, 1 << 16)] {
        let e = error_of(|m| m.input = input);
        assert!(e.contains("'input'") && e.contains("32-bit indices"), "{e}");
    }
}

/// A model file that is a device or a FIFO is refused before a byte is read: `/dev/zero`
/// was read until memory ran out, and a FIFO with no writer blocked the reader (the
/// daemon's, for a job naming one) forever.
#[cfg(unix)]
#[test]
fn devices_and_fifos_are_refused_as_model_files() {
    use blocking::{mkfifo, within_20s};
    let e = within_20s(|| Model::from_ron_file("/dev/zero").unwrap_err().to_string());
    assert!(
        e.contains("/dev/zero") && e.contains("not a regular file"),
        "{e}"
    );
    let dir = std::env::temp_dir().join(format!("limpq-model-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("m.ron");
    if mkfifo(&fifo) {
        let f = fifo.clone();
        let e = within_20s(move || Model::resolve(f.to_str().unwrap()).unwrap_err());
        assert!(matches!(e, ModelError::File(_)), "{e:?}");
        assert!(
            e.to_string().contains("m.ron") && e.to_string().contains("FIFO"),
            "{e}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("limpq-model-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let missing = dir.join("missing.ron");
    let e = Model::from_ron_file(&missing).unwrap_err();
    assert!(matches!(e, ModelError::File(_)));
    assert!(e.to_string().contains("missing.ron"), "{e}");

    let bad_syntax = dir.join("syntax.ron");
    std::fs::write(
        &bad_syntax,
        "Model(name: \"x\", input: (1, 2), classes: 3, nodes: [])",
    )
    .unwrap();
    let e = Model::from_ron_file(&bad_syntax).unwrap_err();
    assert!(matches!(e, ModelError::Parse { .. }));
    assert!(
        e.to_string().contains("syntax.ron") && e.to_string().contains("1:"),
        "{e}"
    );

    let bad_graph = dir.join("graph.ron");
    let mut m = tiny();
    m.nodes[1].inputs = vec!["ghost".into()];
    std::fs::write(&bad_graph, m.to_ron()).unwrap();
    let e = Model::from_ron_file(&bad_graph).unwrap_err().to_string();
    assert!(
        e.contains("graph.ron") && e.contains("node 'b'") && e.contains("ghost"),
        "{e}"
    );

    let e = Model::resolve("resnet19").unwrap_err().to_string();
    assert!(e.contains("resnet19") && e.contains("resnet18"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn indicator_skeleton_carries_costs_and_fixed_layers() {
    let m = builtin("resnet20").unwrap();
    let set = m.indicator_skeleton(&[2, 3, 4], &[2, 3, 4, 5]).unwrap();
    assert_eq!(set.model, "resnet20");
    assert_eq!(set.layers.len(), 22);
    let macs: u64 = set.layers.iter().map(|l| l.macs).sum();
    assert_eq!(macs, 31_021_312 + 640);
    for l in &set.layers {
        assert_eq!(
            (l.weight_scale.len(), l.act_scale.len()),
            (3, 4),
            "{}",
            l.name
        );
        if l.name == "conv1" || l.name == "fc" {
            assert_eq!(l.fixed, Some((8, 8)));
            assert!(l.weight_scale.iter().all(|&s| s == 1.0));
        } else {
            assert_eq!(l.fixed, None);
            assert!(l
                .weight_scale
                .iter()
                .chain(&l.act_scale)
                .all(|s| s.is_nan()));
        }
    }
}

#[test]
fn resnet20_indicator_example_matches_the_model() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/resnet20.indicators.ron"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let set: limpq_solver::IndicatorSet = ron_from_str(&text).unwrap();
    let skeleton = builtin("resnet20")
        .unwrap()
        .indicator_skeleton(&[2, 3, 4, 5, 6], &[2, 3, 4, 5, 6])
        .unwrap();
    assert_eq!(
        (&set.model, &set.weight_bits, &set.act_bits),
        (&skeleton.model, &skeleton.weight_bits, &skeleton.act_bits)
    );
    assert_eq!(set.layers.len(), skeleton.layers.len());
    for (l, s) in set.layers.iter().zip(&skeleton.layers) {
        assert_eq!(
            (&l.name, l.macs, l.params, l.fixed),
            (&s.name, s.macs, s.params, s.fixed)
        );
        assert_eq!(
            (l.weight_scale.len(), l.act_scale.len()),
            (5, 5),
            "{}",
            l.name
        );
        assert!(
            l.weight_scale
                .iter()
                .chain(&l.act_scale)
                .all(|&v| v > 0.0 && v <= 1.0),
            "{}",
            l.name
        );
        if l.fixed.is_none() {
            // Illustrative, but shaped like trained LSQ steps: 2-bit steps well above 6-bit ones.
            assert!(l.weight_scale[0] > 4.0 * l.weight_scale[4], "{}", l.name);
            assert!(l.act_scale[0] > 4.0 * l.act_scale[4], "{}", l.name);
        }
    }
    assert!(set
        .meta
        .iter()
        .any(|(k, v)| k == "source" && v == "illustrative values for the docs, not trained"));
}

#[test]
fn misspelt_fields_are_errors_not_defaults() {
    let dir = std::env::temp_dir().join(format!("limpq-model-typo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("typo.ron");
    let text = builtin("small_cnn")
        .unwrap()
        .to_ron()
        .replacen("stride: 2", "strid: 2", 1);
    std::fs::write(&path, text).unwrap();
    let e = Model::from_ron_file(&path).unwrap_err().to_string();
    assert!(e.contains("typo.ron") && e.contains("strid"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// xorshift64: a seeded generator for the edit test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// A size: mostly small, sometimes 0 or near usize::MAX.
    fn size(&mut self) -> usize {
        match self.next() % 6 {
            0 => 0,
            1 => usize::MAX,
            2 => usize::MAX / 2 + self.below(3),
            _ => self.below(40),
        }
    }
}

/// Seeded random edits of the numeric fields and wiring of small_cnn: `analyze` must
/// return Ok or Err, never panic (the test harness fails on a panic).
#[test]
fn random_edits_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let base = builtin("small_cnn").unwrap();
    let names: Vec<String> = base.nodes.iter().map(|n| n.name.clone()).collect();
    let (mut ok, mut err) = (0, 0);
    for _case in 0..5000 {
        let mut m = base.clone();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(m.nodes.len());
            match rng.below(8) {
                0 => m.input = (rng.size(), rng.size(), rng.size()),
                1 => m.classes = rng.size(),
                2 => m.nodes[i].inputs = vec![names[rng.below(names.len())].clone()],
                3 => m.nodes[i]
                    .inputs
                    .push(names[rng.below(names.len())].clone()),
                4 => {
                    m.nodes[i].op = Op::MaxPool {
                        kernel: rng.size(),
                        stride: rng.size(),
                        padding: rng.size(),
                    }
                }
                5 => {
                    m.nodes[i].op = Op::Linear {
                        out_features: rng.size(),
                        bias: false,
                    }
                }
                _ => {
                    m.nodes[i].op = Op::Conv2d {
                        out_channels: rng.size(),
                        kernel: rng.size(),
                        stride: rng.size(),
                        padding: rng.size(),
                        groups: rng.size(),
                        bias: false,
                    }
                }
            }
        }
        match m.quantizable_layers() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(e.to_string().starts_with("model 'small_cnn': "), "{e}");
                err += 1;
            }
        }
    }
    // Both outcomes occur, so the edits reach past the first check.
    assert!(ok > 50 && err > 50, "ok {ok}, err {err}");
}

/// `method::policy_cost` prices a policy with the solver's accounting: checked against sums
/// written out here from the model's own layer table, for a mixed policy with and without
/// its fixed layers listed. (`method` comes with the default `gpu` feature.)
#[cfg(feature = "gpu")]
#[test]
fn policy_cost_matches_the_layer_table() {
    use limpq_solver::{LayerBits, Policy};
    let model = Model::resolve("resnet20").unwrap();
    let layers = model.quantizable_layers().unwrap();
    let bits = |i: usize| [(2u32, 3u32), (4, 4), (3, 6), (5, 2)][i % 4];
    let mut listed = Vec::new();
    let (mut bitops, mut fixed_bitops, mut size) = (0u64, 0u64, 0u64);
    for (i, l) in layers.iter().enumerate() {
        let (w, a) = if l.fixed { (8, 8) } else { bits(i) };
        if l.fixed {
            fixed_bitops += l.macs * u64::from(w * a);
        } else {
            bitops += l.macs * u64::from(w * a);
        }
        size += l.params * u64::from(w);
        listed.push(LayerBits {
            name: l.name.clone(),
            weight: w,
            act: a,
        });
    }
    let policy = |layers: Vec<LayerBits>| Policy {
        model: model.name.clone(),
        layers,
        objective: 0.0,
        bitops: 0,
        weight_bits_total: 0,
        optimal: false,
        bitops_budget: None,
        size_budget_bits: None,
    };
    let full = limpq_trainer::method::policy_cost(&model, &policy(listed.clone())).unwrap();
    assert_eq!(full, (bitops, fixed_bitops, size));
    // Fixed layers left out count at their fixed bits.
    let searchable: Vec<LayerBits> = listed
        .iter()
        .zip(&layers)
        .filter(|(_, l)| !l.fixed)
        .map(|(b, _)| b.clone())
        .collect();
    let short = limpq_trainer::method::policy_cost(&model, &policy(searchable)).unwrap();
    assert_eq!(short, full);
    // A searchable layer missing is an error naming it.
    let mut missing = listed.clone();
    let gone = layers.iter().position(|l| !l.fixed).unwrap();
    missing.remove(gone);
    let e = limpq_trainer::method::policy_cost(&model, &policy(missing))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&layers[gone].name), "{e}");
}

/// An activation quantizer is unsigned only where its input cannot be negative (after a
/// ReLU, through pooling, views and sums of such); the model input and MobileNetV2's
/// linear bottlenecks (a BatchNorm or a residual sum of them, feeding the next block's
/// expansion conv) are signed: unsigned, their negative values were clamped to 0.
#[test]
fn activation_quantizers_are_signed_where_inputs_can_be_negative() {
    let signed_layers = |name: &str| -> Vec<String> {
        let m = limpq_trainer::model::builtin(name).unwrap();
        let infos = m.analyze().unwrap();
        let signs = m.act_signs(&infos);
        m.quantizable_layers()
            .unwrap()
            .into_iter()
            .filter(|l| signs[l.node])
            .map(|l| l.name)
            .collect()
    };
    // Every ResNet layer but the stem reads a ReLU (or a pooling of one).
    assert_eq!(signed_layers("resnet20"), ["conv1"]);
    assert_eq!(signed_layers("resnet50"), ["conv1"]);
    assert_eq!(signed_layers("small_cnn"), ["conv1"]);
    let mut want = vec!["features.0.0".to_string()];
    want.extend((2..=17).map(|n| format!("features.{n}.conv.0.0")));
    want.push("features.18.0".into());
    assert_eq!(signed_layers("mobilenetv2"), want);
}

/// A quantized checkpoint made when only the model input's activation quantizer was signed
/// (no `act_signs` meta) names the layers now quantized otherwise: for MobileNetV2 the 17
/// reading a linear bottleneck; none for a ResNet, a full-precision checkpoint, or one
/// written under today's rule.
#[cfg(feature = "gpu")]
#[test]
fn checkpoints_of_the_old_sign_rule_name_the_layers_it_changed() {
    use limpq_trainer::checkpoint::{Checkpoint, NamedTensor, TensorKind};
    use limpq_trainer::method::{act_signs_changed, ACT_SIGNS_META, ACT_SIGNS_RULE};
    let ck = |model: &str, quantized: bool, meta: Vec<(String, String)>| Checkpoint {
        origin: None,
        model: builtin(model).unwrap(),
        seed: 0,
        epoch: 1,
        step: 1,
        meta,
        tensors: vec![NamedTensor {
            name: if quantized { "x.act_step" } else { "x.weight" }.into(),
            kind: TensorKind::Param,
            data: vec![1.0],
        }],
    };
    let changed = act_signs_changed(&ck("mobilenetv2", true, vec![]));
    assert_eq!(changed.len(), 17, "{changed:?}");
    assert_eq!(changed[0], "features.2.conv.0.0");
    assert!(act_signs_changed(&ck("resnet20", true, vec![])).is_empty());
    assert!(act_signs_changed(&ck("mobilenetv2", false, vec![])).is_empty());
    let today = vec![(ACT_SIGNS_META.to_string(), ACT_SIGNS_RULE.to_string())];
    assert!(act_signs_changed(&ck("mobilenetv2", true, today)).is_empty());
}
