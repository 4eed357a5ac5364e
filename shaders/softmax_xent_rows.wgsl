// Softmax cross-entropy with label smoothing, one thread per row of [n, classes] logits.
//   lse = max + log(sum exp(l - max)),  -log p_j = lse - l_j
//   row loss = (1 - eps) * (-log p_y) + eps * mean_j(-log p_j)
//   dlogits_j = (p_j - (eps / classes + (1 - eps) * [j == y])) / n
// rows[r] = row loss, rows[n + r] = 1.0 if the first maximum is at y else 0.0; summed by
// softmax_xent_reduce. A label >= classes gives a NaN row loss and NaN gradients.

struct Params {
    n: u32,
    classes: u32,
    eps: f32,
    inv_n: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> rows: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = (wid.x + wid.y * nwg.x) * 256u + lid;
    if r >= p.n {
        return;
    }
    let base = r * p.classes;
    let y = labels[r];
    if y >= p.classes {
        // Not a const expression (depends on y), so no compile-time NaN.
        let nan = bitcast<f32>(0x7fc00000u | (y & 0u));
        for (var j = 0u; j < p.classes; j++) {
            dlogits[base + j] = nan;
        }
        rows[r] = nan;
        rows[p.n + r] = 0.0;
        return;
    }
    var mx = logits[base];
    var arg = 0u;
    for (var j = 1u; j < p.classes; j++) {
        let v = logits[base + j];
        if v > mx {
            mx = v;
            arg = j;
        }
    }
    var s = 0.0;
    var sum_l = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        let v = logits[base + j];
        s += exp(v - mx);
        sum_l += v - mx;
    }
    let log_s = log(s);
    // Everything relative to the max: -log p_j = log_s - (l_j - mx).
    let k = f32(p.classes);
    let nll_y = log_s - (logits[base + y] - mx);
    let mean_nll = log_s - sum_l / k;
    rows[r] = (1.0 - p.eps) * nll_y + p.eps * mean_nll;
    rows[p.n + r] = select(0.0, 1.0, arg == y);
    let spread = p.eps / k;
    for (var j = 0u; j < p.classes; j++) {
        let prob = exp(logits[base + j] - mx - log_s);
        let tgt = spread + select(0.0, 1.0 - p.eps, j == y);
        dlogits[base + j] = (prob - tgt) * p.inv_n;
    }
}
