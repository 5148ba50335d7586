//! naga validation and portability translation of WGSL.
//!
//! Every shader the executor compiles is first parsed and validated here, so an invalid
//! shader becomes a typed [`ShaderError`] carrying the source and naga's diagnostic instead
//! of a wgpu validation panic. [`translate_all`] additionally pushes a validated module
//! through naga's SPIR-V, MSL, HLSL and GLSL back ends, which checks portability to Vulkan,
//! Metal, DX12 and GL without the hardware. Pipeline-overridable constants are resolved
//! first (`process_overrides`), exactly as wgpu does at pipeline creation.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{Module, ShaderStage};

/// A shader that failed to parse, validate or translate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShaderError {
    /// WGSL syntax or type error.
    #[error("shader `{label}` does not parse:\n{diagnostic}\n--- WGSL ---\n{wgsl}")]
    Parse {
        /// Shader label.
        label: String,
        /// naga's diagnostic, with source spans.
        diagnostic: String,
        /// The WGSL source.
        wgsl: String,
    },
    /// The module parsed but breaks a validation rule.
    #[error("shader `{label}` fails validation:\n{diagnostic}\n--- WGSL ---\n{wgsl}")]
    Validate {
        /// Shader label.
        label: String,
        /// naga's diagnostic, with source spans.
        diagnostic: String,
        /// The WGSL source.
        wgsl: String,
    },
    /// A back end (or override processing) rejected the module.
    #[error("shader `{label}` does not translate to {target}: {message}\n--- WGSL ---\n{wgsl}")]
    Translate {
        /// Shader label.
        label: String,
        /// `overrides`, `SPIR-V`, `MSL`, `HLSL` or `GLSL`.
        target: &'static str,
        /// The back end's error.
        message: String,
        /// The WGSL source.
        wgsl: String,
    },
}

/// A parsed and validated WGSL module.
#[derive(Debug, Clone)]
pub struct ValidatedShader {
    /// Shader label (used in errors).
    pub label: String,
    /// The WGSL source.
    pub wgsl: String,
    /// naga IR.
    pub module: Module,
    /// Validation info.
    pub info: ModuleInfo,
}

/// The module translated by each naga back end.
#[derive(Debug, Clone)]
pub struct Translations {
    /// SPIR-V words (Vulkan).
    pub spirv: Vec<u32>,
    /// Metal Shading Language 2.0.
    pub msl: String,
    /// HLSL shader model 6.0 (DX12).
    pub hlsl: String,
    /// GLSL 4.30 (desktop GL compute).
    pub glsl: String,
}

fn validator() -> Validator {
    let mut v = Validator::new(
        ValidationFlags::all(),
        Capabilities::default() | Capabilities::SUBGROUP,
    );
    v.subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all());
    v
}

/// Parses and validates `wgsl` with naga.
pub fn validate_wgsl(label: &str, wgsl: &str) -> Result<ValidatedShader, ShaderError> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| ShaderError::Parse {
        label: label.to_string(),
        diagnostic: e.emit_to_string(wgsl),
        wgsl: wgsl.to_string(),
    })?;
    let info = validator()
        .validate(&module)
        .map_err(|e| ShaderError::Validate {
            label: label.to_string(),
            diagnostic: e.emit_to_string(wgsl),
            wgsl: wgsl.to_string(),
        })?;
    Ok(ValidatedShader {
        label: label.to_string(),
        wgsl: wgsl.to_string(),
        module,
        info,
    })
}

/// Resolves `constants` for the compute entry point `entry` and translates the module to
/// SPIR-V, MSL, HLSL and GLSL.
pub fn translate_all(
    shader: &ValidatedShader,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<Translations, ShaderError> {
    let fail = |target: &'static str, message: String| ShaderError::Translate {
        label: shader.label.clone(),
        target,
        message,
        wgsl: shader.wgsl.clone(),
    };
    let mut values = naga::back::PipelineConstants::default();
    for &(name, v) in constants {
        values.insert(name.to_string(), v);
    }
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &shader.module,
        &shader.info,
        Some((ShaderStage::Compute, entry)),
        &values,
    )
    .map_err(|e| fail("overrides", e.to_string()))?;

    let spirv = spv::write_vec(
        &module,
        &info,
        &spv::Options::default(),
        Some(&spv::PipelineOptions {
            shader_stage: ShaderStage::Compute,
            entry_point: entry.to_string(),
        }),
    )
    .map_err(|e| fail("SPIR-V", e.to_string()))?;

    let (msl, _) = msl::write_string(
        &module,
        &info,
        &msl::Options {
            lang_version: (2, 0),
            ..Default::default()
        },
        &msl::PipelineOptions {
            entry_point: Some((ShaderStage::Compute, entry.to_string())),
            ..Default::default()
        },
    )
    .map_err(|e| fail("MSL", e.to_string()))?;

    let mut hlsl = String::new();
    hlsl::Writer::new(
        &mut hlsl,
        &hlsl::Options {
            shader_model: hlsl::ShaderModel::V6_0,
            ..Default::default()
        },
        &hlsl::PipelineOptions {
            entry_point: Some((ShaderStage::Compute, entry.to_string())),
        },
    )
    .write(&module, &info, None)
    .map_err(|e| fail("HLSL", e.to_string()))?;

    let mut glsl = String::new();
    glsl::Writer::new(
        &mut glsl,
        &module,
        &info,
        &glsl::Options {
            version: glsl::Version::Desktop(430),
            ..Default::default()
        },
        &glsl::PipelineOptions {
            shader_stage: ShaderStage::Compute,
            entry_point: entry.to_string(),
            multiview: None,
        },
        naga::proc::BoundsCheckPolicies::default(),
    )
    .and_then(|mut w| w.write())
    .map_err(|e| fail("GLSL", e.to_string()))?;

    Ok(Translations {
        spirv,
        msl,
        hlsl,
        glsl,
    })
}

/// Validates `wgsl` and translates it to every back end in one call.
pub fn check_portable(
    label: &str,
    wgsl: &str,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<Translations, ShaderError> {
    translate_all(&validate_wgsl(label, wgsl)?, entry, constants)
}
