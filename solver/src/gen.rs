//! Seeded instance generators for tests and `limpq bench-solver`: ResNet-18/50 layer
//! shapes at 224×224 and random many-layer models, with synthetic indicators shaped like
//! learned LSQ step sizes (weights ∝ 2^(1-b), activations ∝ 1/√(2^b-1), with noise).

use std::format;
use std::string::String;
use std::vec::Vec;

use crate::format::{IndicatorSet, Layer};

/// SplitMix64: small, seedable, good enough for instance generation.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform integer in [lo, hi].
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// A layer's name, MACs, params and whether it is kept at 8 bits (stem, classifier).
#[derive(Clone, Debug)]
pub struct Shape {
    pub name: String,
    pub macs: u64,
    pub params: u64,
    pub fixed: bool,
}

fn conv(
    out: &mut Vec<Shape>,
    name: String,
    cin: u64,
    cout: u64,
    k: u64,
    stride: u64,
    pad: u64,
    hin: u64,
) -> u64 {
    let hout = (hin + 2 * pad - k) / stride + 1;
    out.push(Shape {
        name,
        macs: cin * cout * k * k * hout * hout,
        params: cin * cout * k * k,
        fixed: false,
    });
    hout
}

fn stem(out: &mut Vec<Shape>) -> u64 {
    let h = conv(out, String::from("conv1"), 3, 64, 7, 2, 3, 224);
    out[0].fixed = true;
    (h + 2 - 3) / 2 + 1 // 3×3/2 max pool, padding 1
}

fn fc(out: &mut Vec<Shape>, cin: u64) {
    out.push(Shape {
        name: String::from("fc"),
        macs: cin * 1000,
        params: cin * 1000,
        fixed: true,
    });
}

/// torchvision ResNet-18 at 224×224: 20 convs (stem fixed) and the classifier (fixed).
pub fn resnet18() -> Vec<Shape> {
    let mut v = Vec::new();
    let mut h = stem(&mut v);
    let mut cin = 64;
    for (li, &w) in [64u64, 128, 256, 512].iter().enumerate() {
        for b in 0..2 {
            let s = if li > 0 && b == 0 { 2 } else { 1 };
            let p = format!("layer{}.{b}", li + 1);
            let hin = h;
            h = conv(&mut v, format!("{p}.conv1"), cin, w, 3, s, 1, hin);
            conv(&mut v, format!("{p}.conv2"), w, w, 3, 1, 1, h);
            if s != 1 || cin != w {
                conv(&mut v, format!("{p}.downsample"), cin, w, 1, s, 0, hin);
            }
            cin = w;
        }
    }
    fc(&mut v, 512);
    v
}

/// torchvision ResNet-50 (v1.5, stride on the 3×3) at 224×224: 53 convs, 52 searchable.
pub fn resnet50() -> Vec<Shape> {
    let mut v = Vec::new();
    let mut h = stem(&mut v);
    let mut cin = 64;
    for (li, (&w, &n)) in [64u64, 128, 256, 512].iter().zip(&[3, 4, 6, 3]).enumerate() {
        for b in 0..n {
            let s = if li > 0 && b == 0 { 2 } else { 1 };
            let p = format!("layer{}.{b}", li + 1);
            let hin = h;
            conv(&mut v, format!("{p}.conv1"), cin, w, 1, 1, 0, hin);
            h = conv(&mut v, format!("{p}.conv2"), w, w, 3, s, 1, hin);
            conv(&mut v, format!("{p}.conv3"), w, 4 * w, 1, 1, 0, h);
            if b == 0 {
                conv(&mut v, format!("{p}.downsample"), cin, 4 * w, 1, s, 0, hin);
            }
            cin = 4 * w;
        }
    }
    fc(&mut v, 2048);
    v
}

/// `n` searchable layers with log-uniform MACs (1e5..1e9) and params (1e3..1e6).
pub fn random_shapes(n: usize, rng: &mut Rng) -> Vec<Shape> {
    (0..n)
        .map(|i| {
            let macs = 10f64.powf(5.0 + 4.0 * rng.uniform()) as u64 + 1;
            let params = 10f64.powf(3.0 + 3.0 * rng.uniform()) as u64 + 1;
            Shape {
                name: format!("l{i}"),
                macs,
                params,
                fixed: false,
            }
        })
        .collect()
}

/// Synthetic indicators for `shapes`: monotone in the bits unless `non_monotone` > 0,
/// the chance per layer and list that two neighbouring values are swapped.
pub fn indicators(
    model: &str,
    shapes: &[Shape],
    weight_bits: &[u32],
    act_bits: &[u32],
    non_monotone: f64,
    rng: &mut Rng,
) -> IndicatorSet {
    let mut layers = Vec::with_capacity(shapes.len());
    for s in shapes {
        let sigma = 0.02 + 0.1 * rng.uniform();
        let mu = 0.3 + 1.5 * rng.uniform();
        let mut ws: Vec<f64> = weight_bits
            .iter()
            .map(|&b| sigma * 2f64.powi(1 - b as i32) * (1.0 + 0.3 * rng.uniform()))
            .collect();
        let mut acts: Vec<f64> = act_bits
            .iter()
            .map(|&b| mu * 2.0 / ((2f64.powi(b as i32) - 1.0).sqrt()) * (1.0 + 0.3 * rng.uniform()))
            .collect();
        for v in [&mut ws, &mut acts] {
            if v.len() > 1 && rng.uniform() < non_monotone {
                let i = rng.range(0, v.len() as u64 - 2) as usize;
                v.swap(i, i + 1);
            }
        }
        let fixed = s.fixed;
        layers.push(Layer {
            name: s.name.clone(),
            macs: s.macs,
            params: s.params,
            weight_scale: if fixed { Vec::new() } else { ws },
            act_scale: if fixed { Vec::new() } else { acts },
            fixed: if fixed { Some((8, 8)) } else { None },
        });
    }
    IndicatorSet {
        model: String::from(model),
        weight_bits: weight_bits.to_vec(),
        act_bits: act_bits.to_vec(),
        layers,
        meta: Vec::new(),
    }
}
