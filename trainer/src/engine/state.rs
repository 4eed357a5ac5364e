//! A network's state in and out: parameters, BN running statistics, momentum buffers and
//! LSQ step sizes, read back, written, exported for a checkpoint and imported by name.

use super::{EngineError, LayerSteps, Network, ParamKind};
use crate::checkpoint::{NamedTensor, TensorKind};
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
        let find = |name: &str, kind: TensorKind| {
            tensors.iter().find(|t| t.kind == kind && t.name == name)
        };
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
        let find = |name: &str, kind: TensorKind| -> Option<&NamedTensor> {
            tensors
                .iter()
                .find(|t| t.kind == kind && t.name == name)
                .or_else(|| {
                    let base = strip_set(name)?;
                    tensors.iter().find(|t| t.kind == kind && t.name == base)
                })
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
