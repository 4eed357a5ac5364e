//! The run settings a job file chooses: [`RunSpec`], the optional half of [`RunConfig`].
//! One vocabulary for every file that describes a run (the pipeline's stages, the daemon's
//! `Train`, `Indicators` and `Finetune` jobs): the settings sit directly in the job's or
//! stage's parentheses (`(epochs: 3, batch: 64, lr: 0.1, …)`), beside its own fields, and
//! whatever a file leaves out comes from the recipe of the run it describes
//! ([`RunConfig::default`], `JointConfig::default`, `FinetuneConfig::default`), the same
//! recipe the matching CLI command starts from.
//!
//! A struct that composes a `RunSpec` reads its parentheses with [`read_fields`] (the
//! settings, then its own fields through a callback) and writes them with
//! [`RunSpec::write`]: serde's `flatten` is not used, as it loses `deny_unknown_fields`
//! and RON's struct syntax.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize};

use super::RunConfig;
use crate::schedule::LrSchedule;

/// The settings of [`RunConfig`] that a job file chooses (seeds, checkpoints, stops and
/// resumes belong to whoever runs it). Every one is optional: the run's recipe fills what
/// a file leaves out ([`RunSpec::apply`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSpec {
    pub epochs: Option<usize>,
    pub batch: Option<usize>,
    pub lr: Option<f32>,
    /// `PerStep`, or `PerEpoch(floor: F)` ([`LrSchedule`]).
    pub schedule: Option<LrSchedule>,
    pub momentum: Option<f32>,
    pub nesterov: Option<bool>,
    pub weight_decay: Option<f32>,
    pub label_smoothing: Option<f32>,
    /// ±clip of every gradient element.
    pub clip: Option<f32>,
    pub eval_batch: Option<usize>,
    /// Evaluate after every N-th epoch and the last ([`RunConfig::eval_every`]).
    pub eval_every: Option<usize>,
    /// Synchronised batch norm in a data-parallel run ([`RunConfig::sync_bn`]).
    pub sync_bn: Option<bool>,
}

/// `&[…]` of the field names given, then the run settings' ([`RUN_FIELDS`]): the field
/// list of a pair of parentheses holding a [`RunSpec`] and fields of its own, for the
/// parser's errors (one list, so no file kind forgets a setting).
macro_rules! with_run_fields {
    ($($own:literal),* $(,)?) => {
        &[$($own,)* "epochs", "batch", "lr", "schedule", "momentum", "nesterov",
          "weight_decay", "label_smoothing", "clip", "eval_batch", "eval_every", "sync_bn"]
    };
}
pub(crate) use with_run_fields;

/// The field names of [`RunSpec`] in a file.
pub const RUN_FIELDS: &[&str] = with_run_fields!();

impl RunSpec {
    /// `base` with every setting this spec gives.
    pub fn apply(&self, base: RunConfig) -> RunConfig {
        RunConfig {
            epochs: self.epochs.unwrap_or(base.epochs),
            batch: self.batch.unwrap_or(base.batch),
            lr: self.lr.unwrap_or(base.lr),
            schedule: self.schedule.unwrap_or(base.schedule),
            momentum: self.momentum.unwrap_or(base.momentum),
            nesterov: self.nesterov.unwrap_or(base.nesterov),
            weight_decay: self.weight_decay.unwrap_or(base.weight_decay),
            label_smoothing: self.label_smoothing.unwrap_or(base.label_smoothing),
            clip: self.clip.or(base.clip),
            eval_batch: self.eval_batch.unwrap_or(base.eval_batch),
            eval_every: self.eval_every.unwrap_or(base.eval_every),
            sync_bn: self.sync_bn.unwrap_or(base.sync_bn),
            ..base
        }
    }

    /// Reads the value of field `key` (one of [`RUN_FIELDS`]); `false` for another key.
    pub fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "epochs" => once(&mut self.epochs, "epochs", map)?,
            "batch" => once(&mut self.batch, "batch", map)?,
            "lr" => once(&mut self.lr, "lr", map)?,
            "schedule" => once(&mut self.schedule, "schedule", map)?,
            "momentum" => once(&mut self.momentum, "momentum", map)?,
            "nesterov" => once(&mut self.nesterov, "nesterov", map)?,
            "weight_decay" => once(&mut self.weight_decay, "weight_decay", map)?,
            "label_smoothing" => once(&mut self.label_smoothing, "label_smoothing", map)?,
            "clip" => once(&mut self.clip, "clip", map)?,
            "eval_batch" => once(&mut self.eval_batch, "eval_batch", map)?,
            "eval_every" => once(&mut self.eval_every, "eval_every", map)?,
            "sync_bn" => once(&mut self.sync_bn, "sync_bn", map)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Writes the settings that are set.
    pub fn write<S: SerializeStruct>(&self, st: &mut S) -> Result<(), S::Error> {
        write_opt(st, "epochs", &self.epochs)?;
        write_opt(st, "batch", &self.batch)?;
        write_opt(st, "lr", &self.lr)?;
        write_opt(st, "schedule", &self.schedule)?;
        write_opt(st, "momentum", &self.momentum)?;
        write_opt(st, "nesterov", &self.nesterov)?;
        write_opt(st, "weight_decay", &self.weight_decay)?;
        write_opt(st, "label_smoothing", &self.label_smoothing)?;
        write_opt(st, "clip", &self.clip)?;
        write_opt(st, "eval_batch", &self.eval_batch)?;
        write_opt(st, "eval_every", &self.eval_every)?;
        write_opt(st, "sync_bn", &self.sync_bn)
    }

    /// The settings beyond epochs, batch and lr that are set, as `, key: value` (Debug
    /// forms), for a fingerprint text.
    pub fn extra_text(&self) -> String {
        let mut t = String::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                t.push_str(&format!(", {k}: {v}"));
            }
        };
        add("schedule", self.schedule.map(|v| format!("{v:?}")));
        add("momentum", self.momentum.map(|v| format!("{v:?}")));
        add("nesterov", self.nesterov.map(|v| format!("{v:?}")));
        add("weight_decay", self.weight_decay.map(|v| format!("{v:?}")));
        add(
            "label_smoothing",
            self.label_smoothing.map(|v| format!("{v:?}")),
        );
        add("clip", self.clip.map(|v| format!("{v:?}")));
        add("eval_batch", self.eval_batch.map(|v| format!("{v:?}")));
        add("sync_bn", self.sync_bn.map(|v| format!("{v:?}")));
        // Not `eval_every`: it skips evaluations along the way and changes no result, so
        // a finished stage stays valid when a file adds it.
        t
    }
}

/// Reads the next value into `slot`, refusing a field given twice; a bad value's error
/// names the field.
pub fn once<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<T>,
    key: &'static str,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(key));
    }
    // Name the field: a value's own error (`Integer is out of bounds`) does not.
    *slot = Some(
        map.next_value()
            .map_err(|e| de::Error::custom(format_args!("field `{key}`: {e}")))?,
    );
    Ok(())
}

/// Writes `key: value` when `v` is set, skips it otherwise.
pub fn write_opt<T: Serialize, S: SerializeStruct>(
    st: &mut S,
    key: &'static str,
    v: &Option<T>,
) -> Result<(), S::Error> {
    match v {
        Some(v) => st.serialize_field(key, v),
        None => st.skip_field(key),
    }
}

/// A key of a pair of parentheses, read as an identifier (RON) or a string (JSON).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
        }
        d.deserialize_identifier(V)
    }
}

/// Reads one pair of parentheses holding a [`RunSpec`] and fields of the caller's own:
/// `own` reads a field of its own (`false` for a key it does not know, which is refused
/// naming `fields`, every field allowed there).
pub fn read_fields<'de, A: MapAccess<'de>>(
    mut map: A,
    fields: &'static [&'static str],
    mut own: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
) -> Result<RunSpec, A::Error> {
    let mut run = RunSpec::default();
    while let Some(Key(key)) = map.next_key()? {
        if !run.read(&key, &mut map)? && !own(&key, &mut map)? {
            return Err(de::Error::unknown_field(&key, fields));
        }
    }
    Ok(run)
}
