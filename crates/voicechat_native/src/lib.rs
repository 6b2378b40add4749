//! `voicechat._native`: the one Python extension module of voicechat.
//!
//! A thin binding layer over the `audio_dsp`, `sfu_core` and `voice_link` crates: it converts
//! arguments and errors and does nothing else. Layout (see `docs/native.md`):
//!
//! - `voicechat._native`: `__version__` and the exception classes ([`errors`]);
//! - `voicechat._native.dsp`: audio processing ([`dsp`]);
//! - `voicechat._native.sfu`: the SFU media plane ([`sfu`]) and the client's voice engine
//!   over its peer ([`link`], the `voice_link` crate).
//!
//! Rules every function here follows: errors from the crates go through
//! [`errors::dsp_error`] / [`errors::sfu_error`]; work longer than a few microseconds runs in
//! `Python::detach` so other Python threads keep going; nothing panics (the workspace denies
//! `unwrap`, `expect` and `panic!`; should a dependency panic anyway, pyo3 raises
//! `pyo3_runtime.PanicException` rather than unwinding into the interpreter).

use pyo3::prelude::*;
use pyo3::types::PyDict;

mod dsp;
mod errors;
mod link;
mod sfu;

/// Name of the top-level module as Python imports it; classes and submodules live under it.
pub(crate) const MODULE_NAME: &str = "voicechat._native";

/// Native core of voicechat: audio DSP (`dsp`) and the SFU media plane (`sfu`).
///
/// Import the submodules as `from voicechat._native import dsp, sfu` or
/// `import voicechat._native.dsp`. Every exception raised here derives from NativeError.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    // setattr rather than add: a dunder does not belong in __all__.
    module.setattr("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(module)?;
    add_submodule(module, "dsp", dsp::DOC, dsp::register)?;
    add_submodule(module, "sfu", sfu::DOC, sfu::register)?;
    Ok(())
}

/// Creates `voicechat._native.<name>`, fills it and makes it importable.
///
/// An extension module is not a package, so `import voicechat._native.dsp` only works because
/// the submodule is in `sys.modules` under its full name before anyone asks for it.
fn add_submodule(
    parent: &Bound<'_, PyModule>,
    name: &str,
    doc: &str,
    fill: fn(&Bound<'_, PyModule>) -> PyResult<()>,
) -> PyResult<()> {
    let py = parent.py();
    let full_name = format!("{MODULE_NAME}.{name}");
    let submodule = PyModule::new(py, &full_name)?;
    submodule.setattr("__doc__", doc)?;
    fill(&submodule)?;
    parent.add(name, &submodule)?;
    py.import("sys")?
        .getattr("modules")?
        .cast_into::<PyDict>()?
        .set_item(full_name, submodule)?;
    Ok(())
}
