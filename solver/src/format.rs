//! The indicator and policy formats: the interface between the trainer and the solver.
//!
//! Field names are part of the file format (see `docs/FORMATS.md`); do not rename them.

use alloc::string::String;
use alloc::vec::Vec;

/// Learned importance indicators of a whole model: one LSQ step size per layer per
/// candidate bit-width, for weights and for activations.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct IndicatorSet {
    /// Model name, e.g. `"resnet20"`.
    pub model: String,
    /// Candidate weight bit-widths; `Layer::weight_scale` is aligned with it.
    pub weight_bits: Vec<u32>,
    /// Candidate activation bit-widths; `Layer::act_scale` is aligned with it.
    pub act_bits: Vec<u32>,
    /// Every quantizable layer, searchable or fixed.
    pub layers: Vec<Layer>,
    /// Free-form provenance (seed, data, settings) written by the trainer.
    #[cfg_attr(feature = "serde", serde(default))]
    pub meta: Vec<(String, String)>,
}

impl IndicatorSet {
    /// Every searchable layer at (`weight`, `act`) bits, fixed layers at theirs (tests
    /// price such uniform policies).
    #[cfg(test)]
    pub(crate) fn uniform_policy(&self, weight: u32, act: u32) -> Vec<LayerBits> {
        self.layers
            .iter()
            .map(|l| {
                let (weight, act) = l.fixed.unwrap_or((weight, act));
                LayerBits {
                    name: l.name.clone(),
                    weight,
                    act,
                }
            })
            .collect()
    }

    /// α of learned step sizes: the method's weight of the weight indicators.
    pub const LEARNED_ALPHA: f64 = 2.0;
    /// α of measured sensitivity: its weight and activation values are both loss
    /// increases, in the same unit, so neither counts double.
    pub const SENSITIVITY_ALPHA: f64 = 1.0;

    /// Whether the set holds measured sensitivity (meta `source: sensitivity`, as `limpq
    /// sensitivity` writes): loss increases, not learned step sizes.
    pub fn is_measured_sensitivity(&self) -> bool {
        self.meta
            .iter()
            .any(|(k, v)| k == "source" && v == "sensitivity")
    }

    /// The α of a search that names none: [`Self::SENSITIVITY_ALPHA`] for measured
    /// sensitivity (meta `source: sensitivity`, as `limpq sensitivity` writes), else
    /// [`Self::LEARNED_ALPHA`].
    pub fn default_alpha(&self) -> f64 {
        if self.is_measured_sensitivity() {
            Self::SENSITIVITY_ALPHA
        } else {
            Self::LEARNED_ALPHA
        }
    }
}

/// One quantizable layer's cost figures and indicators.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Layer {
    pub name: String,
    /// Multiply-accumulates of one forward pass of one input.
    pub macs: u64,
    /// Number of weights.
    pub params: u64,
    /// Learned weight step size at each of `IndicatorSet::weight_bits`.
    pub weight_scale: Vec<f64>,
    /// Learned activation step size at each of `IndicatorSet::act_bits`.
    pub act_scale: Vec<f64>,
    /// `Some((weight_bits, act_bits))` for a layer that is not searched (stem, classifier).
    #[cfg_attr(feature = "serde", serde(default))]
    pub fixed: Option<(u32, u32)>,
}

/// Bits chosen for one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LayerBits {
    pub name: String,
    pub weight: u32,
    pub act: u32,
}

/// A solved bit-width assignment: the solver's output and the finetuner's input.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Policy {
    pub model: String,
    /// Every layer, fixed ones included, in the indicator file's order.
    pub layers: Vec<LayerBits>,
    /// Objective value: Σ act_scale + α · weight_scale over searched layers.
    pub objective: f64,
    /// BitOps of the policy (MACs · weight bits · act bits) over the searched layers (fixed
    /// layers are not counted: their BitOps are the same in every policy).
    pub bitops: u64,
    /// Weight storage of the whole model in bits, fixed layers at their fixed bits.
    pub weight_bits_total: u64,
    /// Whether the solver proved the policy optimal.
    pub optimal: bool,
    /// The BitOps budget the policy was solved under, if any.
    pub bitops_budget: Option<u64>,
    /// The weight-size budget in bits, if any.
    pub size_budget_bits: Option<u64>,
}

/// An extra linear resource (latency, energy, ...): a value per layer per
/// (weight bits, act bits) choice. Its budget is given next to it (`Problem::resource`).
///
/// Every searchable layer must list every (weight, act) pair it may take; a fixed layer
/// may list its fixed pair (counted into the total) or be left out (counted as 0).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ResourceTable {
    /// Name used in reports and errors, e.g. `"latency_us"`.
    pub name: String,
    pub layers: Vec<ResourceLayer>,
}

/// One layer's row of a [`ResourceTable`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ResourceLayer {
    pub name: String,
    /// `(weight_bits, act_bits, value)` triples.
    pub costs: Vec<(u32, u32, f64)>,
}

/// One point of a Pareto sweep over BitOps budgets.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FrontierPoint {
    pub bitops_budget: u64,
    pub objective: f64,
    pub bitops: u64,
    pub weight_bits_total: u64,
    pub optimal: bool,
    pub layers: Vec<LayerBits>,
}

/// The optimal policies for a range of BitOps budgets (output of `limpq solve --sweep`).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Frontier {
    pub model: String,
    pub points: Vec<FrontierPoint>,
}

#[cfg(feature = "serde")]
mod text {
    //! RON and JSON reading and writing. Writing files (atomically) is the caller's job.
    use super::{versioned, Frontier, IndicatorSet, Policy, ResourceTable};
    use crate::error::Error;
    use alloc::format;
    use alloc::string::String;

    macro_rules! text_io {
        ($ty:ty, $what:literal, $version:path) => {
            impl $ty {
                /// The newest `format_version` of this format that this crate reads (and the
                /// one it writes).
                pub const FORMAT_VERSION: u32 = $version;

                #[doc = concat!("Parses ", $what, " from RON text (a newer `format_version` is refused).")]
                pub fn from_ron_str(s: &str) -> Result<Self, Error> {
                    versioned::from_ron(s, $version).map_err(|e| Error::Parse {
                        what: String::from(concat!("RON ", $what)),
                        message: format!("{e}"),
                    })
                }
                #[doc = concat!("Parses ", $what, " from JSON text (a newer `format_version` is refused).")]
                pub fn from_json_str(s: &str) -> Result<Self, Error> {
                    versioned::from_json(s, $version).map_err(|e| Error::Parse {
                        what: String::from(concat!("JSON ", $what)),
                        message: format!("{e}"),
                    })
                }
                /// Pretty RON text, with the current `format_version`.
                pub fn to_ron_string(&self) -> String {
                    versioned::to_ron_pretty(self, $version, ron::ser::PrettyConfig::default())
                        .unwrap_or_else(|e| format!("// serialisation failed: {e}\n"))
                }
                /// Pretty JSON text, with the current `format_version`.
                pub fn to_json_string(&self) -> String {
                    versioned::to_json_pretty(self, $version)
                        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
                }
            }
        };
    }
    text_io!(IndicatorSet, "indicator set", versioned::INDICATORS);
    text_io!(Policy, "policy", versioned::POLICY);
    text_io!(ResourceTable, "resource table", versioned::RESOURCE_TABLE);
    text_io!(Frontier, "frontier", versioned::FRONTIER);
}

/// Format versions of the text files (`format_version`, see `docs/FORMATS.md`).
///
/// Every text format carries an optional top-level `format_version` field: absent means 1,
/// a version newer than the reader knows is refused with an error naming the field (the
/// caller adds the file), and the writers here write the current version. The field is not
/// part of the Rust types: [`from_ron`](versioned::from_ron) and
/// [`from_json`](versioned::from_json) take it out of the top-level struct before the type
/// sees it (so a type with `deny_unknown_fields` still accepts it), and
/// [`to_ron_pretty`](versioned::to_ron_pretty) / [`to_json_pretty`](versioned::to_json_pretty)
/// put it in as the struct's first field.
#[cfg(feature = "serde")]
pub mod versioned {
    use alloc::format;
    use alloc::string::String;
    use core::fmt;
    use core::marker::PhantomData;

    use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde::ser::{self, Serialize, SerializeStruct};

    /// The name of the version field.
    pub const FIELD: &str = "format_version";

    /// Current version of the indicator format ([`super::IndicatorSet`]).
    pub const INDICATORS: u32 = 1;
    /// Current version of the policy format ([`super::Policy`]).
    pub const POLICY: u32 = 1;
    /// Current version of the frontier format ([`super::Frontier`]).
    pub const FRONTIER: u32 = 1;
    /// Current version of the resource-table format ([`super::ResourceTable`]).
    pub const RESOURCE_TABLE: u32 = 1;

    /// Checks a `format_version` value against the newest version the reader knows.
    pub fn check(found: u64, current: u32) -> Result<(), String> {
        if found == 0 {
            Err(format!(
                "field `{FIELD}`: version 0 does not exist (versions start at 1)"
            ))
        } else if found > u64::from(current) {
            Err(format!(
                "field `{FIELD}`: version {found} is newer than this limpq reads (up to {current}); \
                 use a newer limpq"
            ))
        } else {
            Ok(())
        }
    }

    /// Parses RON text into `T`, checking and removing a top-level `format_version`.
    // The one reader of versioned RON (the workspace's clippy.toml points every other
    // reader here and to `ron_from_str`).
    #[allow(clippy::disallowed_methods)]
    pub fn from_ron<T: DeserializeOwned>(
        text: &str,
        current: u32,
    ) -> Result<T, ron::error::SpannedError> {
        ron::Options::default()
            .from_str_seed(text, Seed::<T>::new(current))
            .map_err(plain_ron_error)
    }

    /// Parses RON text into `T` (no version field): `ron::from_str` with
    /// [`plain_ron_error`]'s wording. Every RON file limpq reads goes through this or
    /// [`from_ron`].
    #[allow(clippy::disallowed_methods)] // this is the reader clippy.toml points to
    pub fn ron_from_str<T: DeserializeOwned>(text: &str) -> Result<T, ron::error::SpannedError> {
        ron::from_str(text).map_err(plain_ron_error)
    }

    /// `e`, with the `ron` crate's message for text nested past its limit (advice to the
    /// programmer about its options) replaced by one for the person who gave the file. The
    /// position is kept. The limit (the crate's default, 128, which keeps hostile text from
    /// overflowing the stack) counts about two for each level of brackets.
    pub fn plain_ron_error(mut e: ron::error::SpannedError) -> ron::error::SpannedError {
        if matches!(e.code, ron::Error::ExceededRecursionLimit) {
            e.code = ron::Error::Message(String::from(
                "nested too deeply: brackets or parentheses inside each other past the \
                 reader's limit (about 60 levels); no limpq file nests more than a few",
            ));
        }
        e
    }

    /// Parses JSON text into `T`, checking and removing a top-level `format_version`.
    pub fn from_json<T: DeserializeOwned>(text: &str, current: u32) -> serde_json::Result<T> {
        let mut de = serde_json::Deserializer::from_str(text);
        let value = Seed::<T>::new(current).deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }

    /// Pretty RON of `value` with `format_version: current` as its first field.
    pub fn to_ron_pretty<T: Serialize>(
        value: &T,
        current: u32,
        config: ron::ser::PrettyConfig,
    ) -> ron::Result<String> {
        ron::Options::default().to_string_pretty(&Versioned(value, current), config)
    }

    /// Pretty JSON of `value` with `"format_version": current` as its first field.
    pub fn to_json_pretty<T: Serialize>(value: &T, current: u32) -> serde_json::Result<String> {
        serde_json::to_string_pretty(&Versioned(value, current))
    }

    /// `value` serialised with a leading `format_version` field (when it is a struct).
    pub struct Versioned<'a, T>(pub &'a T, pub u32);

    impl<T: Serialize> Serialize for Versioned<'_, T> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            self.0.serialize(Ser(s, self.1))
        }
    }

    /// A seed deserialising `T` with the version check.
    pub struct Seed<T>(u32, PhantomData<fn() -> T>);

    impl<T> Seed<T> {
        pub fn new(current: u32) -> Self {
            Seed(current, PhantomData)
        }
    }

    impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for Seed<T> {
        type Value = T;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
            T::deserialize(De(d, self.0))
        }
    }

    /// Forwards everything to the wrapped serializer but adds the version field to the
    /// top-level struct.
    struct Ser<S>(S, u32);

    macro_rules! fwd_ser {
        ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
            fn $name(self, $($arg: $ty),*) -> Result<Self::Ok, Self::Error> {
                self.0.$name($($arg),*)
            }
        )*};
    }

    impl<S: ser::Serializer> ser::Serializer for Ser<S> {
        type Ok = S::Ok;
        type Error = S::Error;
        type SerializeSeq = S::SerializeSeq;
        type SerializeTuple = S::SerializeTuple;
        type SerializeTupleStruct = S::SerializeTupleStruct;
        type SerializeTupleVariant = S::SerializeTupleVariant;
        type SerializeMap = S::SerializeMap;
        type SerializeStruct = S::SerializeStruct;
        type SerializeStructVariant = S::SerializeStructVariant;

        fwd_ser! {
            serialize_bool(v: bool);
            serialize_i8(v: i8);
            serialize_i16(v: i16);
            serialize_i32(v: i32);
            serialize_i64(v: i64);
            serialize_i128(v: i128);
            serialize_u8(v: u8);
            serialize_u16(v: u16);
            serialize_u32(v: u32);
            serialize_u64(v: u64);
            serialize_u128(v: u128);
            serialize_f32(v: f32);
            serialize_f64(v: f64);
            serialize_char(v: char);
            serialize_str(v: &str);
            serialize_bytes(v: &[u8]);
            serialize_none();
            serialize_unit();
            serialize_unit_struct(name: &'static str);
            serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
        }

        fn serialize_some<V: ?Sized + Serialize>(self, v: &V) -> Result<S::Ok, S::Error> {
            self.0.serialize_some(v)
        }
        fn serialize_newtype_struct<V: ?Sized + Serialize>(
            self,
            name: &'static str,
            v: &V,
        ) -> Result<S::Ok, S::Error> {
            self.0.serialize_newtype_struct(name, v)
        }
        fn serialize_newtype_variant<V: ?Sized + Serialize>(
            self,
            name: &'static str,
            index: u32,
            variant: &'static str,
            v: &V,
        ) -> Result<S::Ok, S::Error> {
            self.0.serialize_newtype_variant(name, index, variant, v)
        }
        fn serialize_seq(self, len: Option<usize>) -> Result<S::SerializeSeq, S::Error> {
            self.0.serialize_seq(len)
        }
        fn serialize_tuple(self, len: usize) -> Result<S::SerializeTuple, S::Error> {
            self.0.serialize_tuple(len)
        }
        fn serialize_tuple_struct(
            self,
            name: &'static str,
            len: usize,
        ) -> Result<S::SerializeTupleStruct, S::Error> {
            self.0.serialize_tuple_struct(name, len)
        }
        fn serialize_tuple_variant(
            self,
            name: &'static str,
            index: u32,
            variant: &'static str,
            len: usize,
        ) -> Result<S::SerializeTupleVariant, S::Error> {
            self.0.serialize_tuple_variant(name, index, variant, len)
        }
        fn serialize_map(self, len: Option<usize>) -> Result<S::SerializeMap, S::Error> {
            self.0.serialize_map(len)
        }
        fn serialize_struct(
            self,
            name: &'static str,
            len: usize,
        ) -> Result<S::SerializeStruct, S::Error> {
            let mut st = self.0.serialize_struct(name, len + 1)?;
            st.serialize_field(FIELD, &self.1)?;
            Ok(st)
        }
        fn serialize_struct_variant(
            self,
            name: &'static str,
            index: u32,
            variant: &'static str,
            len: usize,
        ) -> Result<S::SerializeStructVariant, S::Error> {
            self.0.serialize_struct_variant(name, index, variant, len)
        }
        fn is_human_readable(&self) -> bool {
            self.0.is_human_readable()
        }
    }

    /// Forwards everything to the wrapped deserializer but, for the top-level struct, takes
    /// the version field out of its map and checks it.
    struct De<D>(D, u32);

    macro_rules! fwd_de {
        ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
            fn $name<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.0.$name($($arg,)* visitor)
            }
        )*};
    }

    impl<'de, D: de::Deserializer<'de>> de::Deserializer<'de> for De<D> {
        type Error = D::Error;

        fwd_de! {
            deserialize_any();
            deserialize_bool();
            deserialize_i8();
            deserialize_i16();
            deserialize_i32();
            deserialize_i64();
            deserialize_i128();
            deserialize_u8();
            deserialize_u16();
            deserialize_u32();
            deserialize_u64();
            deserialize_u128();
            deserialize_f32();
            deserialize_f64();
            deserialize_char();
            deserialize_str();
            deserialize_string();
            deserialize_bytes();
            deserialize_byte_buf();
            deserialize_option();
            deserialize_unit();
            deserialize_unit_struct(name: &'static str);
            deserialize_newtype_struct(name: &'static str);
            deserialize_seq();
            deserialize_tuple(len: usize);
            deserialize_tuple_struct(name: &'static str, len: usize);
            deserialize_map();
            deserialize_enum(name: &'static str, variants: &'static [&'static str]);
            deserialize_identifier();
            deserialize_ignored_any();
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_struct(
                name,
                fields,
                StructVisitor {
                    visitor,
                    current: self.1,
                    name,
                    fields,
                },
            )
        }

        fn is_human_readable(&self) -> bool {
            self.0.is_human_readable()
        }
    }

    struct StructVisitor<V> {
        visitor: V,
        current: u32,
        /// The type's name and fields, for the refusal of a newer version.
        name: &'static str,
        fields: &'static [&'static str],
    }

    impl<'de, V: Visitor<'de>> Visitor<'de> for StructVisitor<V> {
        type Value = V::Value;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.visitor.expecting(f)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
            self.visitor.visit_map(Fields {
                inner: map,
                current: self.current,
                name: self.name,
                fields: self.fields,
                newer: None,
            })
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
            self.visitor.visit_seq(seq)
        }
    }

    /// The struct's fields, less `format_version` (checked on the way past).
    ///
    /// A version newer than the reader's is refused at the key that follows it, which is
    /// looked at first: when the type has no such field, the file is likely of another
    /// kind (a daemon job, version 2, given where an indicator set, version 1, belongs),
    /// and the refusal says so rather than only sending its reader for a newer limpq.
    struct Fields<A> {
        inner: A,
        current: u32,
        name: &'static str,
        fields: &'static [&'static str],
        /// A newer version found, its refusal held until the next key is seen.
        newer: Option<u64>,
    }

    impl<'de, A: MapAccess<'de>> MapAccess<'de> for Fields<A> {
        type Error = A::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, A::Error> {
            loop {
                let key = match (self.inner.next_key::<String>(), self.newer.take()) {
                    (Ok(Some(key)), None) => key,
                    (Ok(Some(key)), Some(found)) if !self.fields.contains(&key.as_str()) => {
                        return Err(de::Error::custom(format!(
                            "field `{FIELD}`: version {found} is newer than this limpq reads \
                             (up to {}), and field `{key}` is not one of `{}`'s: is this \
                             another kind of file? (If not, use a newer limpq.)",
                            self.current, self.name
                        )))
                    }
                    (Ok(None), None) => return Ok(None),
                    (Err(e), None) => return Err(e),
                    (_, Some(found)) => {
                        let refusal = check(found, self.current).err().unwrap_or_default();
                        return Err(de::Error::custom(refusal));
                    }
                };
                if key == FIELD {
                    let found: u64 = self.inner.next_value()?;
                    match check(found, self.current) {
                        Ok(()) => {}
                        Err(_) if found > u64::from(self.current) && !self.fields.is_empty() => {
                            self.newer = Some(found)
                        }
                        Err(m) => return Err(de::Error::custom(m)),
                    }
                    continue;
                }
                return seed
                    .deserialize(de::value::StringDeserializer::<A::Error>::new(key))
                    .map(Some);
            }
        }

        fn next_value_seed<S: DeserializeSeed<'de>>(
            &mut self,
            seed: S,
        ) -> Result<S::Value, A::Error> {
            self.inner.next_value_seed(seed)
        }

        fn size_hint(&self) -> Option<usize> {
            self.inner.size_hint()
        }
    }
}
