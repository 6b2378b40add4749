//! `voicechat._native.dsp`: audio processing from the `audio_dsp` crate.

use audio_dsp::pcm::{self, ByteOrder};
use audio_dsp::DspError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};

use crate::errors::dsp_error;

/// The submodule's docstring.
pub(crate) const DOC: &str =
    "Audio processing on 16-bit PCM frames (the Rust audio_dsp crate).\n\n\
    Functions release the GIL while they compute; errors derive from voicechat._native.DspError.";

/// PCM bytes read from a Python object, ready to hand to code running without the GIL.
enum PcmBytes<'a> {
    /// Borrowed from an immutable `bytes` object, which the caller keeps alive.
    Borrowed(&'a [u8]),
    /// Copied out of any other buffer: a bytearray or array may change once the GIL is released.
    Copied(Vec<u8>, ByteOrder),
}

impl PcmBytes<'_> {
    fn decode(&self) -> Result<Vec<i16>, DspError> {
        match self {
            Self::Borrowed(bytes) => pcm::samples_from_s16le(bytes),
            Self::Copied(bytes, order) => pcm::samples_from_bytes(bytes, *order),
        }
    }
}

/// How the items of a buffer with this `struct` format are read as 16-bit samples.
///
/// Byte items (`B`, `b`, `c`) are a raw `s16le` stream; `h` items are int16 in the byte order
/// the format's prefix gives (none, `@` or `=` is native). Anything else is not PCM we read.
fn byte_order_of(format: &str) -> Option<ByteOrder> {
    let (order, item) = match format.as_bytes() {
        [b'<', item] => (ByteOrder::Little, *item),
        [b'>' | b'!', item] => (ByteOrder::Big, *item),
        [b'@' | b'=', item] | [item] => (ByteOrder::NATIVE, *item),
        _ => return None,
    };
    match item {
        b'B' | b'b' | b'c' => Some(ByteOrder::Little),
        b'h' => Some(order),
        _ => None,
    }
}

/// Reads 16-bit PCM bytes from `bytes` or any object with the buffer protocol.
fn read_pcm<'a>(samples: &'a Bound<'_, PyAny>) -> PyResult<PcmBytes<'a>> {
    if let Ok(bytes) = samples.cast::<PyBytes>() {
        return Ok(PcmBytes::Borrowed(bytes.as_bytes()));
    }
    // memoryview raises TypeError for objects without the buffer protocol, as bytes() would.
    let view = PyMemoryView::from(samples)?;
    let format: String = view.getattr("format")?.extract()?;
    let Some(order) = byte_order_of(&format) else {
        let err = DspError::InvalidSampleFormat(format!("buffer of {format:?} items"));
        return Err(dsp_error(samples.py(), err));
    };
    // tobytes() copies in C order whatever the strides, under the GIL.
    let copy = view.call_method0("tobytes")?;
    let bytes = copy.cast::<PyBytes>()?.as_bytes().to_vec();
    Ok(PcmBytes::Copied(bytes, order))
}

/// Returns the RFC 6464 audio level of one frame of 16-bit PCM, in -dBov.
///
/// `samples` is little-endian signed 16-bit PCM as `bytes`/`bytearray`/`memoryview`, or a
/// buffer of int16 items (`array.array('h')`, a NumPy int16 array). The result is 0 (a
/// full-scale square wave) to 127 (silence, or quieter than -127 dBov); a full-scale sine is 3.
/// An empty frame is silence. Computed without holding the GIL.
///
/// Raises:
///     DspInputError: `samples` holds an odd number of bytes, or items that are neither bytes
///         nor 16-bit integers.
///     TypeError: `samples` does not support the buffer protocol.
#[pyfunction]
#[pyo3(signature = (samples, /))]
fn audio_level_dbov(py: Python<'_>, samples: &Bound<'_, PyAny>) -> PyResult<u8> {
    let pcm = read_pcm(samples)?;
    py.detach(|| pcm.decode().map(|s| audio_dsp::audio_level_dbov(&s)))
        .map_err(|err| dsp_error(py, err))
}

/// Fills the `dsp` submodule.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(audio_level_dbov, module)?)?;
    module.add("SILENCE_DBOV", audio_dsp::SILENCE_DBOV)?;
    Ok(())
}
