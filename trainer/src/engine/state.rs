//! A network's state in and out: parameters, BN running statistics, momentum buffers and
//! LSQ step sizes, read back, written, exported for a checkpoint and imported by name.

use super::seg::Seg;
use super::{EngineError, LayerSteps, Network, ParamKind};
use crate::checkpoint::{by_kind_and_name, NamedTensor, TensorKind};
use crate::kernels::norm::BN_EPS;
use crate::kernels::Recorder;

impl<'g> Network<'g> {
    pub(super) fn read_many(&self, ids: &[usize]) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut rec = Recorder::new(self.gpu);
        let idx: Vec<usize> = ids.iter().map(|&t| rec.read(&self.tensors[t])).collect();
        let out = rec.submit()?;
        Ok(idx.iter().map(|&i| out.f32(i).to_vec()).collect())
    }

    /// Current parameter values, in [`Network::param_infos`] order.
    pub fn read_params(&self) -> Result<Vec<Vec<f32>>, EngineError> {
        self.read_many(&self.params.iter().map(|p| p.value).collect::<Vec<_>>())
    }

    /// Gradients of the last [`Network::forward_backward`] / [`Network::train_step`].
    pub fn read_grads(&self) -> Result<Vec<Vec<f32>>, EngineError> {
        self.read_many(&self.params.iter().map(|p| p.grad).collect::<Vec<_>>())
    }

    /// Overwrite one parameter by name.
    pub fn set_param(&mut self, name: &str, data: &[f32]) -> Result<(), EngineError> {
        let p = self
            .params
            .iter()
            .find(|p| p.info.name == name)
            .ok_or_else(|| EngineError::Input(format!("no parameter named '{name}'")))?;
        if data.len() != p.info.len {
            return Err(EngineError::Input(format!(
                "parameter '{name}': {} values given, it has {}",
                data.len(),
                p.info.len
            )));
        }
        self.tensors[p.value].write_f32(self.gpu, data)?;
        Ok(())
    }

    /// BN recalibration, as the reference does before evaluating a quantized model: the
    /// running statistics of every BN set the current selection uses are replaced by the
    /// mean over the batches `next` gives (each exactly [`Network::batch`] images) of each
    /// batch's statistics in a train-mode forward — its mean and its unbiased variance —
    /// which is what PyTorch's BN computes with `momentum = None` after
    /// `reset_running_stats()`. Nothing else changes (no backward, no update). Returns the
    /// number of batches; with none, the statistics are left as they were.
    pub fn recalibrate_bn(
        &mut self,
        next: &mut dyn FnMut() -> Option<(Vec<f32>, Vec<u32>)>,
    ) -> Result<usize, EngineError> {
        let sel = self.sel.clone();
        let lens: Vec<usize> = (self.bn_saved.iter())
            .map(|b| self.tensors[b.saved_mean].len())
            .collect();
        let mut sums: Vec<(Vec<f64>, Vec<f64>)> =
            lens.iter().map(|&c| (vec![0.0; c], vec![0.0; c])).collect();
        let mut batches = 0usize;
        while let Some((x, y)) = next() {
            self.upload(&x, &y)?;
            let mut rec = Seg::new(self.gpu, None);
            self.record_forward(&mut rec, true, &sel);
            let reads: Vec<(usize, usize)> = (self.bn_saved.iter())
                .map(|b| {
                    let m = rec.read(&self.tensors[b.saved_mean]);
                    (m, rec.read(&self.tensors[b.saved_invstd]))
                })
                .collect();
            let out = rec.submit()?;
            for ((b, (m, v)), (rm, ri)) in self.bn_saved.iter().zip(sums.iter_mut()).zip(reads) {
                let n = b.count as f64;
                let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
                for (c, (&mean, &invstd)) in out.f32(rm).iter().zip(out.f32(ri)).enumerate() {
                    let invstd = invstd as f64;
                    // invstd = 1 / sqrt(biased var + eps)
                    let biased = (1.0 / (invstd * invstd) - BN_EPS as f64).max(0.0);
                    m[c] += mean as f64;
                    v[c] += biased * unbias;
                }
            }
            batches += 1;
        }
        if batches == 0 {
            return Ok(0);
        }
        for (b, (m, v)) in self.bn_saved.iter().zip(&sums) {
            let sets = self.bn_sets.iter().find(|(n, _)| *n == b.node);
            let Some((_, sets)) = sets else { continue };
            let k = b.slot.map_or(0, |s| sel[s]);
            let Some(set) = sets.get(k) else { continue };
            let avg =
                |s: &[f64]| -> Vec<f32> { s.iter().map(|x| (x / batches as f64) as f32).collect() };
            self.tensors[set.running_mean].write_f32(self.gpu, &avg(m))?;
            self.tensors[set.running_var].write_f32(self.gpu, &avg(v))?;
        }
        Ok(batches)
    }

    /// Parameters, BN running statistics and momentum buffers, named for a checkpoint.
    pub fn export_state(&self) -> Result<Vec<NamedTensor>, EngineError> {
        let mut ids = Vec::new();
        let mut meta = Vec::new();
        for p in &self.params {
            ids.push(p.value);
            meta.push((p.info.name.clone(), TensorKind::Param));
        }
        for (name, t) in &self.running {
            ids.push(*t);
            meta.push((name.clone(), TensorKind::RunningStat));
        }
        for p in &self.params {
            ids.push(p.momentum);
            meta.push((format!("{}.momentum", p.info.name), TensorKind::Momentum));
        }
        let data = self.read_many(&ids)?;
        Ok(meta
            .into_iter()
            .zip(data)
            .map(|((name, kind), data)| NamedTensor { name, kind, data })
            .collect())
    }

    /// Write `(tensor id, name, data)` triples, all or none: every length is checked (the
    /// error names the tensor) before the first write.
    fn write_checked(&self, writes: &[(usize, String, &[f32])]) -> Result<(), EngineError> {
        for (id, name, data) in writes {
            if data.len() != self.tensors[*id].len() {
                return Err(EngineError::Input(format!(
                    "tensor '{name}': {} values stored, the model needs {}",
                    data.len(),
                    self.tensors[*id].len()
                )));
            }
        }
        for (id, _, data) in writes {
            self.tensors[*id].write_f32(self.gpu, data)?;
        }
        Ok(())
    }

    /// Load tensors by name. Every parameter and running statistic must be present with the
    /// right length; momentum buffers are loaded when present and `with_momentum`, else zeroed.
    pub fn import_state(
        &mut self,
        tensors: &[NamedTensor],
        with_momentum: bool,
    ) -> Result<(), EngineError> {
        let map = by_kind_and_name(tensors);
        let find = |name: &str, kind: TensorKind| map.get(&(kind, name)).copied();
        let mut writes: Vec<(usize, String, &[f32])> = Vec::new();
        let zeros: Vec<Vec<f32>> = self.params.iter().map(|p| vec![0.0; p.info.len]).collect();
        for (p, z) in self.params.iter().zip(&zeros) {
            let t = find(&p.info.name, TensorKind::Param).ok_or_else(|| {
                EngineError::Input(format!("missing parameter '{}'", p.info.name))
            })?;
            writes.push((p.value, p.info.name.clone(), &t.data));
            let m = if with_momentum {
                find(&format!("{}.momentum", p.info.name), TensorKind::Momentum)
            } else {
                None
            };
            let name = format!("{}.momentum", p.info.name);
            writes.push((
                p.momentum,
                name,
                m.map_or(z.as_slice(), |m| m.data.as_slice()),
            ));
        }
        for (name, id) in &self.running {
            let t = find(name, TensorKind::RunningStat)
                .ok_or_else(|| EngineError::Input(format!("missing running statistic '{name}'")))?;
            writes.push((*id, name.clone(), &t.data));
        }
        self.write_checked(&writes)
    }

    /// Load a (full-precision or quantized) state by name: parameters and running
    /// statistics present in `tensors` are loaded; a switchable BN set `{bn}.wWaA.*` missing
    /// there is loaded from the plain `{bn}.*`; step tensors missing, or stored with another
    /// number of variants, are left as they are and their names returned. Anything else
    /// missing is an error. Momentum buffers are zeroed.
    pub fn import_state_lenient(
        &mut self,
        tensors: &[NamedTensor],
    ) -> Result<Vec<String>, EngineError> {
        let mut left = Vec::new();
        let map = by_kind_and_name(tensors);
        let find = |name: &str, kind: TensorKind| -> Option<&NamedTensor> {
            if let Some(t) = map.get(&(kind, name)) {
                return Some(t);
            }
            let base = strip_set(name)?;
            map.get(&(kind, base.as_str())).copied()
        };
        let mut writes: Vec<(usize, String, &[f32])> = Vec::new();
        let zeros: Vec<Vec<f32>> = self.params.iter().map(|p| vec![0.0; p.info.len]).collect();
        for (p, z) in self.params.iter().zip(&zeros) {
            match find(&p.info.name, TensorKind::Param) {
                Some(t) if p.info.kind == ParamKind::LsqStep && t.data.len() != p.info.len => {
                    left.push(p.info.name.clone())
                }
                Some(t) => writes.push((p.value, p.info.name.clone(), &t.data)),
                None if p.info.kind == ParamKind::LsqStep => left.push(p.info.name.clone()),
                None => {
                    return Err(EngineError::Input(format!(
                        "missing parameter '{}'",
                        p.info.name
                    )))
                }
            }
            writes.push((p.momentum, p.info.name.clone(), z));
        }
        for (name, id) in &self.running {
            let t = find(name, TensorKind::RunningStat)
                .ok_or_else(|| EngineError::Input(format!("missing running statistic '{name}'")))?;
            writes.push((*id, name.clone(), &t.data));
        }
        self.write_checked(&writes)?;
        Ok(left)
    }

    /// Step sizes of every quantized layer: `(weight steps, act steps)` per variant.
    pub fn read_steps(&self) -> Result<Vec<LayerSteps>, EngineError> {
        let q = self.qnet()?;
        let mut ids = Vec::new();
        for l in &q.layers {
            ids.push(self.params[l.w_steps].value);
            ids.push(self.params[l.a_steps].value);
        }
        let data = self.read_many(&ids)?;
        Ok(data
            .chunks_exact(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect())
    }

    /// Overwrite the step sizes of quantized layer `layer` (index into
    /// [`Network::quant_layers`]).
    pub fn write_steps(
        &mut self,
        layer: usize,
        weight: &[f32],
        act: &[f32],
    ) -> Result<(), EngineError> {
        let q = self.qnet()?;
        let l = q
            .layers
            .get(layer)
            .ok_or_else(|| EngineError::Input(format!("no quantized layer {layer}")))?;
        let nv = l.info.variants.len();
        if weight.len() != nv || act.len() != nv {
            return Err(EngineError::Input(format!(
                "layer '{}': {} variants, {} weight and {} act steps given",
                l.info.name,
                nv,
                weight.len(),
                act.len()
            )));
        }
        let (w, a) = (self.params[l.w_steps].value, self.params[l.a_steps].value);
        self.tensors[w].write_f32(self.gpu, weight)?;
        self.tensors[a].write_f32(self.gpu, act)?;
        Ok(())
    }
}

/// `layer1.0.bn1.w4a4.weight` → `layer1.0.bn1.weight` (a switchable-BN set name).
fn strip_set(name: &str) -> Option<String> {
    let (head, field) = name.rsplit_once('.')?;
    let (base, set) = head.rsplit_once('.')?;
    let rest = set.strip_prefix('w')?;
    let (w, a) = rest.split_once('a')?;
    if w.is_empty() || a.is_empty() || !w.bytes().chain(a.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("{base}.{field}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn strip_set_names() {
        assert_eq!(
            super::strip_set("layer1.0.bn1.w4a4.weight").as_deref(),
            Some("layer1.0.bn1.weight")
        );
        assert_eq!(
            super::strip_set("bn1.w12a3.running_var").as_deref(),
            Some("bn1.running_var")
        );
        assert_eq!(super::strip_set("layer1.0.bn1.weight"), None);
        assert_eq!(super::strip_set("bn1.wxa4.weight"), None);
    }
}
