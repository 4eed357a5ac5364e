//! Built-in models, named as torchvision names its modules (`layer1.0.conv1`,
//! `layer1.0.downsample.0`, `fc`). Activation, add and pooling nodes, which are modules
//! reused or functional calls in torchvision, get names of the same style
//! (`layer1.0.relu1`, `layer1.0.add`).

use super::{Model, Node, Op};

/// Names accepted by [`builtin`].
pub const BUILTIN_NAMES: &[&str] = &[
    "small_cnn",
    "resnet20",
    "resnet20-cifar",
    "resnet18",
    "resnet50",
    "mobilenetv2",
];

/// A built-in model by name: `small_cnn` (1×28×28, 10 classes), `resnet20` (1×28×28,
/// Fashion-MNIST), `resnet20-cifar` (3×32×32, CIFAR-10), `resnet18` and `resnet50`
/// (3×224×224, 1000 classes), `mobilenetv2` (3×224×224, 1000 classes).
pub fn builtin(name: &str) -> Option<Model> {
    Some(match name {
        "small_cnn" => small_cnn(),
        "resnet20" => resnet20((1, 28, 28), 10),
        "resnet20-cifar" => {
            let mut m = resnet20((3, 32, 32), 10);
            m.name = "resnet20-cifar".to_string();
            m
        }
        "resnet18" => resnet18(),
        "resnet50" => resnet50(),
        "mobilenetv2" => mobilenet_v2((3, 224, 224), 1000),
        _ => return None,
    })
}

/// Appends nodes; each method returns the new node's name for wiring.
struct Graph {
    nodes: Vec<Node>,
}

impl Graph {
    fn new() -> Self {
        Graph { nodes: Vec::new() }
    }

    fn push(&mut self, name: String, op: Op, inputs: &[&str]) -> String {
        self.nodes.push(Node {
            name: name.clone(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
        });
        name
    }

    fn conv(
        &mut self,
        name: String,
        x: &str,
        out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> String {
        self.grouped_conv(name, x, out, k, stride, pad, 1)
    }

    #[allow(clippy::too_many_arguments)]
    fn grouped_conv(
        &mut self,
        name: String,
        x: &str,
        out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> String {
        let op = Op::Conv2d {
            out_channels: out,
            kernel: k,
            stride,
            padding: pad,
            groups,
            bias: false,
        };
        self.push(name, op, &[x])
    }

    /// torchvision's `Conv2dNormActivation` with ReLU6: `{prefix}0` conv (padding k/2),
    /// `{prefix}1` BN, `{prefix}2` ReLU6.
    #[allow(clippy::too_many_arguments)]
    fn conv_bn_relu6(
        &mut self,
        prefix: &str,
        x: &str,
        out: usize,
        k: usize,
        stride: usize,
        groups: usize,
    ) -> String {
        let c = self.grouped_conv(format!("{prefix}0"), x, out, k, stride, k / 2, groups);
        let b = self.unary(format!("{prefix}1"), Op::BatchNorm, &c);
        self.unary(format!("{prefix}2"), Op::Relu6, &b)
    }

    /// torchvision's MobileNetV2 `InvertedResidual` `{prefix}` (= `features.{i}.`): an
    /// expansion 1×1 (unless `expand` is 1), a depthwise 3×3 with the stride, a linear 1×1
    /// projection and its BN, and the residual add when stride is 1 and `c_in == out`.
    fn inverted_residual(
        &mut self,
        prefix: &str,
        x: &str,
        c_in: usize,
        out: usize,
        stride: usize,
        expand: usize,
    ) -> String {
        let hidden = c_in * expand;
        let mut y = x.to_string();
        let mut i = 0;
        if expand != 1 {
            y = self.conv_bn_relu6(&format!("{prefix}conv.{i}."), &y, hidden, 1, 1, 1);
            i += 1;
        }
        y = self.conv_bn_relu6(&format!("{prefix}conv.{i}."), &y, hidden, 3, stride, hidden);
        let p = self.conv(format!("{prefix}conv.{}", i + 1), &y, out, 1, 1, 0);
        let b = self.unary(format!("{prefix}conv.{}", i + 2), Op::BatchNorm, &p);
        if stride == 1 && c_in == out {
            self.add(format!("{prefix}add"), &b, x)
        } else {
            b
        }
    }

    fn unary(&mut self, name: String, op: Op, x: &str) -> String {
        self.push(name, op, &[x])
    }

    fn add(&mut self, name: String, a: &str, b: &str) -> String {
        self.push(name, Op::Add, &[a, b])
    }

    /// `conv → bn`, torchvision-named `{prefix}conv{i}` / `{prefix}bn{i}`.
    fn conv_bn(
        &mut self,
        prefix: &str,
        i: usize,
        x: &str,
        out: usize,
        k: usize,
        stride: usize,
    ) -> String {
        let c = self.conv(format!("{prefix}conv{i}"), x, out, k, stride, k / 2);
        self.unary(format!("{prefix}bn{i}"), Op::BatchNorm, &c)
    }

    /// 1×1 projection shortcut `{prefix}downsample.0` + its BN `{prefix}downsample.1`.
    fn downsample(&mut self, prefix: &str, x: &str, out: usize, stride: usize) -> String {
        let c = self.conv(format!("{prefix}downsample.0"), x, out, 1, stride, 0);
        self.unary(format!("{prefix}downsample.1"), Op::BatchNorm, &c)
    }

    /// torchvision's BasicBlock: two 3×3 convs, projection shortcut when the shape changes.
    fn basic_block(
        &mut self,
        prefix: &str,
        x: &str,
        c_in: usize,
        out: usize,
        stride: usize,
    ) -> String {
        let a = self.conv_bn(prefix, 1, x, out, 3, stride);
        let a = self.unary(format!("{prefix}relu1"), Op::Relu, &a);
        let b = self.conv_bn(prefix, 2, &a, out, 3, 1);
        let skip = if stride != 1 || c_in != out {
            self.downsample(prefix, x, out, stride)
        } else {
            x.to_string()
        };
        let s = self.add(format!("{prefix}add"), &b, &skip);
        self.unary(format!("{prefix}relu2"), Op::Relu, &s)
    }

    /// torchvision's Bottleneck (v1.5: the stride sits on the 3×3 conv), expansion 4.
    fn bottleneck(
        &mut self,
        prefix: &str,
        x: &str,
        c_in: usize,
        width: usize,
        stride: usize,
    ) -> String {
        let out = width * 4;
        let a = self.conv_bn(prefix, 1, x, width, 1, 1);
        let a = self.unary(format!("{prefix}relu1"), Op::Relu, &a);
        let b = self.conv_bn(prefix, 2, &a, width, 3, stride);
        let b = self.unary(format!("{prefix}relu2"), Op::Relu, &b);
        let c = self.conv_bn(prefix, 3, &b, out, 1, 1);
        let skip = if stride != 1 || c_in != out {
            self.downsample(prefix, x, out, stride)
        } else {
            x.to_string()
        };
        let s = self.add(format!("{prefix}add"), &c, &skip);
        self.unary(format!("{prefix}relu3"), Op::Relu, &s)
    }

    /// `avgpool` (global) → `fc`.
    fn head(&mut self, x: &str, classes: usize) {
        let p = self.unary("avgpool".to_string(), Op::GlobalAvgPool, x);
        self.unary(
            "fc".to_string(),
            Op::Linear {
                out_features: classes,
                bias: true,
            },
            &p,
        );
    }

    fn finish(self, name: &str, input: (usize, usize, usize), classes: usize) -> Model {
        Model {
            name: name.to_string(),
            input,
            classes,
            nodes: self.nodes,
        }
    }
}

/// A tiny CNN for the software adapter on 1×28×28 Fashion-MNIST, with one residual add:
/// conv 8/s2 → conv 16/s2 → residual 3×3 conv 16 → conv 32/s2 → GAP → fc 10.
/// 257,504 MACs (about 0.5 MFLOP) per image.
pub fn small_cnn() -> Model {
    let mut g = Graph::new();
    let x = g.conv_bn("", 1, "input", 8, 3, 2); // 8×14×14
    let x = g.unary("relu1".to_string(), Op::Relu, &x);
    let x = g.conv_bn("", 2, &x, 16, 3, 2); // 16×7×7
    let x = g.unary("relu2".to_string(), Op::Relu, &x);
    let r = g.conv_bn("layer1.0.", 1, &x, 16, 3, 1);
    let s = g.add("layer1.0.add".to_string(), &r, &x);
    let x = g.unary("layer1.0.relu1".to_string(), Op::Relu, &s);
    let x = g.conv_bn("", 3, &x, 32, 3, 2); // 32×4×4
    let x = g.unary("relu3".to_string(), Op::Relu, &x);
    g.head(&x, 10);
    g.finish("small_cnn", (1, 28, 28), 10)
}

/// CIFAR-style ResNet-20 (He et al. 2016): 3×3 stem of 16, three stages of three basic
/// blocks at 16/32/64 channels, stride 2 at the start of stages 2 and 3 with 1×1
/// projection shortcuts there (option B).
pub fn resnet20(input: (usize, usize, usize), classes: usize) -> Model {
    let mut g = Graph::new();
    let x = g.conv_bn("", 1, "input", 16, 3, 1);
    let mut x = g.unary("relu".to_string(), Op::Relu, &x);
    let mut c_in = 16;
    for (stage, &width) in [16, 32, 64].iter().enumerate() {
        for block in 0..3 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            x = g.basic_block(
                &format!("layer{}.{block}.", stage + 1),
                &x,
                c_in,
                width,
                stride,
            );
            c_in = width;
        }
    }
    g.head(&x, classes);
    g.finish("resnet20", input, classes)
}

/// The ImageNet stem: 7×7/2 conv of 64, BN, ReLU, 3×3/2 max pool.
fn imagenet_stem(g: &mut Graph) -> String {
    let x = g.conv("conv1".to_string(), "input", 64, 7, 2, 3);
    let x = g.unary("bn1".to_string(), Op::BatchNorm, &x);
    let x = g.unary("relu".to_string(), Op::Relu, &x);
    g.unary(
        "maxpool".to_string(),
        Op::MaxPool {
            kernel: 3,
            stride: 2,
            padding: 1,
        },
        &x,
    )
}

/// torchvision's resnet18: 3×224×224, 1000 classes.
pub fn resnet18() -> Model {
    let mut g = Graph::new();
    let mut x = imagenet_stem(&mut g);
    let mut c_in = 64;
    for (stage, &width) in [64, 128, 256, 512].iter().enumerate() {
        for block in 0..2 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            x = g.basic_block(
                &format!("layer{}.{block}.", stage + 1),
                &x,
                c_in,
                width,
                stride,
            );
            c_in = width;
        }
    }
    g.head(&x, 1000);
    g.finish("resnet18", (3, 224, 224), 1000)
}

/// torchvision's resnet50 (v1.5): 3×224×224, 1000 classes.
pub fn resnet50() -> Model {
    let mut g = Graph::new();
    let mut x = imagenet_stem(&mut g);
    let mut c_in = 64;
    for (stage, (&width, &blocks)) in [64, 128, 256, 512].iter().zip(&[3, 4, 6, 3]).enumerate() {
        for block in 0..blocks {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            x = g.bottleneck(
                &format!("layer{}.{block}.", stage + 1),
                &x,
                c_in,
                width,
                stride,
            );
            c_in = width * 4;
        }
    }
    g.head(&x, 1000);
    g.finish("resnet50", (3, 224, 224), 1000)
}

/// torchvision's `mobilenet_v2` (width 1.0, ReLU6, inverted residuals), named as its
/// modules: `features.0.0` (stem conv), `features.{1..17}.conv.*`, `features.18.0` (last
/// 1×1 conv), `avgpool`, `classifier.1` (the linear layer; `classifier.0` is the dropout,
/// absent in evaluation). `stages` keeps the first that many `[t, c, n, s]` rows of the
/// paper's table (7 for the real network), for small test variants.
pub fn mobilenet_v2_stages(
    input: (usize, usize, usize),
    classes: usize,
    stages: usize,
    last_channels: usize,
) -> Model {
    const SETTINGS: [(usize, usize, usize, usize); 7] = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let mut g = Graph::new();
    let mut x = g.conv_bn_relu6("features.0.", "input", 32, 3, 2, 1);
    let mut c_in = 32;
    let mut index = 1;
    for &(t, c, n, s) in SETTINGS.iter().take(stages) {
        for k in 0..n {
            let stride = if k == 0 { s } else { 1 };
            x = g.inverted_residual(&format!("features.{index}."), &x, c_in, c, stride, t);
            c_in = c;
            index += 1;
        }
    }
    let x = g.conv_bn_relu6(&format!("features.{index}."), &x, last_channels, 1, 1, 1);
    let p = g.unary("avgpool".to_string(), Op::GlobalAvgPool, &x);
    g.unary(
        "classifier.1".to_string(),
        Op::Linear {
            out_features: classes,
            bias: true,
        },
        &p,
    );
    g.finish("mobilenetv2", input, classes)
}

/// torchvision's `mobilenet_v2` at width 1.0: [`mobilenet_v2_stages`] with all 7 stages and
/// 1280 last channels.
pub fn mobilenet_v2(input: (usize, usize, usize), classes: usize) -> Model {
    mobilenet_v2_stages(input, classes, 7, 1280)
}
