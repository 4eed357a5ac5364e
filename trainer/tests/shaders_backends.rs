//! Every pipeline the kernel ops may build ([`limpq_trainer::kernels::pipelines`]: each
//! shader with each set of override constants it is built with) translates through naga to
//! the shading language of every wgpu backend — SPIR-V (Vulkan), MSL (Metal), HLSL (DX12),
//! GLSL ES 3.10 and GLSL core 4.30 (GL) — without a GPU.
//!
//! Where a pipeline needs a device feature a backend cannot offer (f16, subgroups, cooperative
//! matrices), the test checks that kernel selection (`HalfKind::allowed`,
//! `ConvAlgo::allowed`, the same functions the ops call), given the features a device on
//! that backend could have, never builds it; those pipelines are still translated, and
//! the outcome printed, not required.
//!
//! Each pipeline's declared [`Needs`] is also checked against the shader: it validates with
//! exactly the naga capabilities of its needs, and a pipeline that needs something fails to
//! validate without it.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

use std::collections::BTreeMap;
use std::path::PathBuf;

use limpq_trainer::gpu::DeviceCaps;
use limpq_trainer::kernels::{pipelines, Needs, PipelineEntry};
use naga::valid::{Capabilities, ValidationFlags, Validator};

/// A wgpu backend: the features it can offer a pipeline at most, and its shading languages.
struct Backend {
    name: &'static str,
    features: wgpu::Features,
    /// Whether its adapters may list a 16×16×16 f16·f16→f32 cooperative-matrix tile.
    coop_tile: bool,
}

/// What wgpu 30's backends can offer of what the kernels use: Vulkan everything; Metal f16
/// and subgroups (simdgroups) and cooperative matrices; DX12 f16 and subgroups (wave
/// intrinsics), no cooperative matrices; GL none of the three (wgpu-hal's GLES adapter lists
/// neither `SHADER_F16` nor `SUBGROUP`).
fn backends() -> Vec<Backend> {
    use wgpu::Features as F;
    let all = F::SHADER_F16 | F::SUBGROUP | F::EXPERIMENTAL_COOPERATIVE_MATRIX;
    vec![
        Backend {
            name: "vulkan",
            features: all,
            coop_tile: true,
        },
        Backend {
            name: "metal",
            features: all,
            coop_tile: true,
        },
        Backend {
            name: "dx12",
            features: F::SHADER_F16 | F::SUBGROUP,
            coop_tile: false,
        },
        Backend {
            name: "gl",
            features: F::empty(),
            coop_tile: false,
        },
    ]
}

/// The distinct feature sets [`DeviceCaps::planned`] gives devices of `b`: a discrete GPU
/// with subgroups of 32, an integrated one with subgroups of 16–32, a CPU adapter with
/// subgroups of 8 and one without subgroups, each offered all `b` can offer.
fn device_caps(b: &Backend) -> Vec<(String, DeviceCaps)> {
    use wgpu::DeviceType as T;
    let shapes = [
        ("discrete, subgroups of 32", T::DiscreteGpu, (32, 32)),
        ("integrated, subgroups of 16-32", T::IntegratedGpu, (16, 32)),
        ("cpu, subgroups of 8", T::Cpu, (8, 8)),
        ("cpu, subgroups of 4-64", T::Cpu, (4, 64)),
    ];
    let mut out: Vec<(String, DeviceCaps)> = Vec::new();
    for (label, t, sizes) in shapes {
        let caps = DeviceCaps::planned(b.features, sizes, t, b.coop_tile);
        if !out.iter().any(|(_, c)| *c == caps) {
            out.push((label.to_string(), caps));
        }
    }
    out
}

/// The naga capabilities a pipeline with `needs` is validated with.
fn capabilities(needs: Needs) -> Capabilities {
    let mut c = Capabilities::default();
    if needs.f16 {
        c |= Capabilities::SHADER_FLOAT16;
    }
    if needs.subgroup8 {
        c |= Capabilities::SUBGROUP;
    }
    if needs.coop {
        c |= Capabilities::SUBGROUP | Capabilities::COOPERATIVE_MATRIX;
    }
    c
}

fn label(e: &PipelineEntry) -> String {
    let consts: Vec<String> = e
        .constants
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{} (shaders/{}.wgsl entry {}, overrides [{}])",
        e.id,
        shader_file(e),
        e.spec.entry,
        consts.join(", ")
    )
}

/// The file name (without `.wgsl`) the entry's source was loaded from.
fn shader_file(e: &PipelineEntry) -> String {
    shader_files()
        .into_iter()
        .find(|(_, src)| src == e.spec.source)
        .map(|(n, _)| n)
        .unwrap_or_else(|| format!("<{}: source matches no file>", e.spec.id))
}

fn shader_files() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shaders");
    let mut v: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).expect("read shader"),
            )
        })
        .collect();
    v.sort();
    v
}

/// The entry's module parsed, validated with its needs' capabilities, overrides applied.
fn module(e: &PipelineEntry) -> Result<(naga::Module, naga::valid::ModuleInfo), String> {
    let src = limpq_trainer::gpu::expand_includes(e.spec.source)?;
    let module = naga::front::wgsl::parse_str(&src)
        .map_err(|err| format!("parse: {}", err.emit_to_string(&src)))?;
    let info = Validator::new(ValidationFlags::all(), capabilities(e.needs))
        .validate(&module)
        .map_err(|err| format!("validate: {}", err.emit_to_string(&src)))?;
    let mut constants = naga::back::PipelineConstants::default();
    for (k, v) in e.constants {
        constants.insert(k.to_string(), *v);
    }
    let (m, i) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, e.spec.entry)),
        &constants,
    )
    .map_err(|err| format!("overrides: {err}"))?;
    Ok((m.into_owned(), i.into_owned()))
}

/// The languages of `backend`, each translated; `Err` names the language and naga's message.
fn translate(
    backend: &str,
    e: &PipelineEntry,
    m: &naga::Module,
    i: &naga::valid::ModuleInfo,
) -> Vec<(&'static str, Result<usize, String>)> {
    let entry = e.spec.entry.to_string();
    let extended = e.needs != Needs::NONE;
    match backend {
        "vulkan" => {
            let opts = naga::back::spv::Options {
                // Subgroup operations need SPIR-V 1.3, as wgpu asks for with SUBGROUP.
                lang_version: if extended { (1, 3) } else { (1, 0) },
                ..Default::default()
            };
            let po = naga::back::spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: entry,
            };
            vec![(
                "SPIR-V",
                naga::back::spv::write_vec(m, i, &opts, Some(&po))
                    .map(|w| w.len() * 4)
                    .map_err(|err| err.to_string()),
            )]
        }
        "metal" => {
            let opts = naga::back::msl::Options {
                lang_version: (2, 4),
                ..Default::default()
            };
            let po = naga::back::msl::PipelineOptions {
                entry_point: Some((naga::ShaderStage::Compute, entry)),
                ..Default::default()
            };
            vec![(
                "MSL 2.4",
                naga::back::msl::write_string(m, i, &opts, &po)
                    .map(|(s, _)| s.len())
                    .map_err(|err| err.to_string()),
            )]
        }
        "dx12" => {
            // Shader model 5.1 (FXC) for plain kernels, 6.2 (DXC, 16-bit types and wave
            // intrinsics) for those that need f16 or subgroups.
            let opts = naga::back::hlsl::Options {
                shader_model: if extended {
                    naga::back::hlsl::ShaderModel::V6_2
                } else {
                    naga::back::hlsl::ShaderModel::V5_1
                },
                ..Default::default()
            };
            let po = naga::back::hlsl::PipelineOptions {
                entry_point: Some((naga::ShaderStage::Compute, entry)),
            };
            let mut out = String::new();
            let r = naga::back::hlsl::Writer::new(&mut out, &opts, &po)
                .write(m, i, None)
                .map(|_| ())
                .map_err(|err| err.to_string());
            vec![(
                if extended { "HLSL SM6.2" } else { "HLSL SM5.1" },
                r.map(|()| out.len()),
            )]
        }
        "gl" => [
            ("GLSL ES 3.10", naga::back::glsl::Version::new_gles(310)),
            ("GLSL 4.30", naga::back::glsl::Version::Desktop(430)),
        ]
        .into_iter()
        .map(|(lang, version)| {
            let opts = naga::back::glsl::Options {
                version,
                ..Default::default()
            };
            let po = naga::back::glsl::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: entry.clone(),
                multiview: None,
            };
            let mut out = String::new();
            let r = naga::back::glsl::Writer::new(
                &mut out,
                m,
                i,
                &opts,
                &po,
                naga::proc::BoundsCheckPolicies::default(),
            )
            .and_then(|mut w| w.write())
            .map(|_| ())
            .map_err(|err| err.to_string());
            (lang, r.map(|()| out.len()))
        })
        .collect(),
        other => panic!("unknown backend {other}"),
    }
}

#[test]
fn every_pipeline_translates_for_every_backend() {
    let entries = pipelines();
    let mut failures = Vec::new();
    // Shader file -> backends on which a pipeline of it is never built, with why.
    let mut report: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut translated = 0usize;
    let mut ids = std::collections::HashSet::new();
    for e in &entries {
        if !ids.insert(e.id) {
            failures.push(format!("pipeline id {} listed twice", e.id));
        }
    }
    for e in &entries {
        let (m, i) = match module(e) {
            Ok(x) => x,
            Err(err) => {
                failures.push(format!("{}: {err}", label(e)));
                continue;
            }
        };
        for b in backends() {
            let caps = device_caps(&b);
            let selected: Vec<&(String, DeviceCaps)> =
                caps.iter().filter(|(_, c)| e.selectable(c)).collect();
            for (device, c) in &selected {
                if !e.needs.met_by(c) {
                    failures.push(format!(
                        "{}: kernel selection builds it on a {} {device} device lacking {} \
                         ({c:?})",
                        label(e),
                        b.name,
                        e.needs.describe()
                    ));
                }
            }
            let required = !selected.is_empty();
            for (lang, r) in translate(b.name, e, &m, &i) {
                match (r, required) {
                    (Ok(_), true) => translated += 1,
                    (Err(err), true) => {
                        failures.push(format!("{} on {} ({lang}): naga: {err}", label(e), b.name))
                    }
                    (r, false) => {
                        let outcome = match r {
                            Ok(_) => "translates".to_string(),
                            Err(err) => format!("naga: {err}"),
                        };
                        report.entry(e.id.to_string()).or_default().push(format!(
                            "{} {lang}: never built (needs {}); {outcome}",
                            b.name,
                            e.needs.describe()
                        ));
                    }
                }
            }
        }
    }
    for (id, lines) in &report {
        for l in lines {
            eprintln!("not built: {id} on {l}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!(
        "{} pipelines, {translated} required translations passed",
        entries.len()
    );
}

/// Every shader file is built by some listed pipeline, so a new kernel cannot be left out
/// of [`pipelines`] (and with it out of the translation above).
#[test]
fn every_shader_file_is_listed() {
    let entries = pipelines();
    for (name, src) in shader_files() {
        assert!(
            entries.iter().any(|e| e.spec.source == src),
            "shaders/{name}.wgsl is built by no pipeline of kernels::pipelines(); list it in \
             its module's pipelines()"
        );
    }
}

/// A pipeline's declared needs are what its shader asks for: with no extra capability a
/// shader that needs one fails to validate, and one that needs none validates.
#[test]
fn declared_needs_match_the_shaders() {
    for e in pipelines() {
        let src = limpq_trainer::gpu::expand_includes(e.spec.source).expect("includes");
        let module = naga::front::wgsl::parse_str(&src);
        let plain = module.as_ref().ok().map(|m| {
            Validator::new(ValidationFlags::all(), Capabilities::default())
                .validate(m)
                .is_ok()
        });
        match (e.needs == Needs::NONE, plain) {
            (true, Some(true)) | (false, Some(false)) | (false, None) => {}
            (true, _) => panic!(
                "{}: declared as needing nothing, but does not validate without extra \
                 capabilities",
                label(&e)
            ),
            (false, Some(true)) => panic!(
                "{}: declared as needing {}, but validates without it",
                label(&e),
                e.needs.describe()
            ),
        }
    }
}

/// The feature plan of the adapters this project meets: lavapipe (CPU, subgroups of 8, f16)
/// gets the broadcast conv kernels and f16 storage; llvmpipe on GL gets none; an H200 gets
/// cooperative matrices; an Intel GPU with subgroups of 16-32 gets f16 but no cooperative
/// matrices.
#[test]
fn feature_plans_of_known_adapters() {
    use wgpu::{DeviceType as T, Features as F};
    let all = F::SHADER_F16 | F::SUBGROUP | F::EXPERIMENTAL_COOPERATIVE_MATRIX;
    let lavapipe = DeviceCaps::planned(F::SHADER_F16 | F::SUBGROUP, (8, 8), T::Cpu, false);
    assert!(lavapipe.subgroup8 && lavapipe.shader_f16 && lavapipe.cpu && !lavapipe.coop_f16);
    let gl = DeviceCaps::planned(F::empty(), (0, 0), T::Cpu, false);
    assert_eq!(
        gl,
        DeviceCaps {
            cpu: true,
            ..DeviceCaps::default()
        }
    );
    let h200 = DeviceCaps::planned(all, (32, 32), T::DiscreteGpu, true);
    assert!(h200.coop_f16 && h200.subgroup32 && h200.shader_f16 && !h200.subgroup8);
    let intel = DeviceCaps::planned(all, (16, 32), T::IntegratedGpu, true);
    assert!(intel.shader_f16 && !intel.coop_f16 && !intel.subgroup32);
    // The selection on GL: no f16 kind, the blocked conv kernels for `Auto`.
    use limpq_trainer::kernels::conv::ConvAlgo;
    use limpq_trainer::kernels::gemm_f16::HalfKind;
    assert_eq!(HalfKind::best_for(&gl), None);
    assert_eq!(ConvAlgo::auto_choices(&gl), &[ConvAlgo::Blocked]);
    assert!(!ConvAlgo::Broadcast.allowed(&gl) && !ConvAlgo::F16Gemm.allowed(&gl));
    assert_eq!(ConvAlgo::auto_choices(&lavapipe), &[ConvAlgo::Broadcast]);
    assert_eq!(HalfKind::best_for(&h200), Some(HalfKind::Coop));
    assert_eq!(HalfKind::best_for(&lavapipe), Some(HalfKind::F16));
}
