//! `voicechat._native.sfu.VoiceLink`: the binding of the `voice_link` crate's engine.
//!
//! The engine (threads, send gating, DTX, catch-up, stats windows) is `voice_link::VoiceLink`;
//! this file converts arguments and errors, and borrows the sound card callbacks' buffers
//! without copying them into Python objects ([`Samples`]).

use std::collections::HashMap;
use std::time::Duration;

use audio_dsp::DspError;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use voice_link::{CodecSettings, LinkConfig, LinkError, VoiceLink};

use crate::errors::dsp_error;
use crate::sfu::PyPeer;

/// A Python buffer held for the duration of a copy: C-contiguous float32 samples.
///
/// Taken with `PyObject_GetBuffer` into a stack `Py_buffer` (pyo3's `PyBuffer` boxes it), so
/// a callback's copy allocates nothing.
struct Samples {
    view: ffi::Py_buffer,
}

impl Samples {
    /// Borrows `object`'s buffer (writable if asked); it must be float32 ("f") or raw bytes
    /// ("B", taken as native float32, as sounddevice's raw streams hand over).
    fn get(object: &Bound<'_, PyAny>, writable: bool) -> PyResult<Self> {
        let flags = ffi::PyBUF_FORMAT | if writable { ffi::PyBUF_WRITABLE } else { 0 };
        // SAFETY: `view` is a plain C struct that PyObject_GetBuffer fills; we hold the GIL.
        let mut view: ffi::Py_buffer = unsafe { std::mem::zeroed() };
        // SAFETY: `object` is a live object and we hold the GIL.
        if unsafe { ffi::PyObject_GetBuffer(object.as_ptr(), &raw mut view, flags) } != 0 {
            return Err(PyErr::fetch(object.py()));
        }
        let samples = Self { view };
        // SAFETY: a non-null format is a NUL-terminated string owned by the exporter.
        let format = if samples.view.format.is_null() {
            b"B".as_slice()
        } else {
            unsafe { std::ffi::CStr::from_ptr(samples.view.format) }.to_bytes()
        };
        let float = matches!(format, b"f" | b"<f" | b"=f" | b"@f");
        let bytes = matches!(format, b"B" | b"b" | b"c");
        if !(float || bytes) || samples.view.len % 4 != 0 {
            return Err(PyValueError::new_err(
                "samples must be a C-contiguous float32 array (or raw float32 bytes)",
            ));
        }
        Ok(samples)
    }

    fn len(&self) -> usize {
        usize::try_from(self.view.len).unwrap_or(0) / 4
    }

    fn as_slice(&self) -> &[f32] {
        if self.len() == 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: the exporter guarantees `len` contiguous bytes at `buf` while the view is
        // held (without PyBUF_STRIDES it refuses non-contiguous data), float32 is what the
        // caller promised, and an exporter's memory is aligned for its item type (numpy,
        // cffi). We hold the GIL, so no Python code changes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.view.buf.cast::<f32>(), self.len()) }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        if self.len() == 0 || self.view.buf.is_null() {
            return &mut [];
        }
        // SAFETY: as `as_slice`, and the view was taken with PyBUF_WRITABLE.
        unsafe { std::slice::from_raw_parts_mut(self.view.buf.cast::<f32>(), self.len()) }
    }
}

impl Drop for Samples {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer, and the GIL is held
        // wherever a `Samples` lives (it never leaves the method that made it).
        unsafe { ffi::PyBuffer_Release(&raw mut self.view) };
    }
}

/// The client's native voice engine over a client `Peer`: microphone samples in, speaker
/// samples out (the Rust voice_link crate; docs/audio.md, "Client engine").
///
/// Every argument but `peer` is optional; the defaults are voice_link's LinkConfig.
///
/// Args:
///     peer: The call's native peer; the link sends through it and reads every packet it
///         receives (so nothing else may call its `recv`).
///     frame_ms: Opus frame, 10, 20, 40 or 60 ms.
///     bitrate: Opus bitrate, bit/s.
///     denoise: RNNoise on the microphone.
///     push_to_talk: Send while the key is down (`key_down`), else on voice activity.
///     min_delay, max_delay: Jitter buffer bounds, seconds.
///     output_lead: How long before the output would run dry a frame is decoded and mixed.
///     buffer: Seconds of samples each ring holds.
///
/// Raises:
///     DspInputError: A setting out of range.
///     OSError: The threads cannot be started.
#[pyclass(module = "voicechat._native.sfu", name = "VoiceLink", frozen)]
pub(crate) struct PyVoiceLink {
    link: VoiceLink,
}

/// `DspError::InvalidArgument` unless `value` is a duration in seconds.
fn seconds(py: Python<'_>, name: &'static str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        dsp_error(
            py,
            DspError::InvalidArgument {
                name,
                reason: format!("{value} is not a duration in seconds"),
            },
        )
    })
}

#[pymethods]
impl PyVoiceLink {
    #[new]
    #[pyo3(
        signature = (
            peer, *, frame_ms = None, bitrate = None, denoise = None, push_to_talk = None,
            min_delay = None, max_delay = None, output_lead = None, buffer = None,
        ),
        text_signature = "(peer, *, frame_ms=20, bitrate=64000, denoise=True, \
                          push_to_talk=False, min_delay=0.02, max_delay=0.2, \
                          output_lead=0.006, buffer=1.0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        peer: PyRef<'_, PyPeer>,
        frame_ms: Option<u32>,
        bitrate: Option<u32>,
        denoise: Option<bool>,
        push_to_talk: Option<bool>,
        min_delay: Option<f64>,
        max_delay: Option<f64>,
        output_lead: Option<f64>,
        buffer: Option<f64>,
    ) -> PyResult<Self> {
        // Unset arguments keep the defaults of voice_link::LinkConfig, which text_signature
        // and the stub repeat (tests/test_native.py checks that they agree).
        let mut builder = LinkConfig::builder();
        if let Some(frame_ms) = frame_ms {
            builder = builder.frame_ms(frame_ms);
        }
        if let Some(bitrate) = bitrate {
            builder = builder.bitrate(bitrate);
        }
        if let Some(denoise) = denoise {
            builder = builder.denoise(denoise);
        }
        if let Some(push_to_talk) = push_to_talk {
            builder = builder.push_to_talk(push_to_talk);
        }
        if let Some(delay) = min_delay {
            builder = builder.min_delay(seconds(py, "min_delay", delay)?);
        }
        if let Some(delay) = max_delay {
            builder = builder.max_delay(seconds(py, "max_delay", delay)?);
        }
        if let Some(lead) = output_lead {
            builder = builder.output_lead(seconds(py, "output_lead", lead)?);
        }
        if let Some(buffer) = buffer {
            builder = builder.buffer(seconds(py, "buffer", buffer)?);
        }
        let config = builder.build().map_err(|err| dsp_error(py, err))?;
        let peer = peer.shared();
        match py.detach(|| VoiceLink::start(&peer, &config)) {
            Ok(link) => Ok(Self { link }),
            Err(LinkError::Dsp(err)) => Err(dsp_error(py, err)),
            Err(err @ LinkError::Spawn(_)) => Err(PyOSError::new_err(err.to_string())),
        }
    }

    /// Queue microphone samples (mono 48 kHz float32: a contiguous array, or the raw buffer of
    /// a sounddevice raw stream); what does not fit in the ring is dropped and counted.
    fn write_input(&self, samples: &Bound<'_, PyAny>) -> PyResult<()> {
        let samples = Samples::get(samples, false)?;
        self.link.write_input(samples.as_slice());
        Ok(())
    }

    /// Fill `out` (writable mono float32) with the next speaker samples, silence where none
    /// are ready; returns how many samples were real (the rest is an underrun).
    fn read_output(&self, out: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut samples = Samples::get(out, true)?;
        Ok(self.link.read_output(samples.as_mut_slice()))
    }

    /// Stop sending (the session also tells the server).
    #[getter]
    fn get_muted(&self) -> bool {
        self.link.muted()
    }

    #[setter]
    fn set_muted(&self, muted: bool) {
        self.link.set_muted(muted);
    }

    /// Play silence and send nothing.
    #[getter]
    fn get_deafened(&self) -> bool {
        self.link.deafened()
    }

    #[setter]
    fn set_deafened(&self, deafened: bool) {
        self.link.set_deafened(deafened);
    }

    /// Push-to-talk mode (else voice activity).
    #[getter]
    fn get_push_to_talk(&self) -> bool {
        self.link.push_to_talk()
    }

    #[setter]
    fn set_push_to_talk(&self, on: bool) {
        self.link.set_push_to_talk(on);
    }

    /// The push-to-talk key is down.
    #[getter]
    fn get_key_down(&self) -> bool {
        self.link.key_down()
    }

    #[setter]
    fn set_key_down(&self, down: bool) {
        self.link.set_key_down(down);
    }

    /// Change the codec settings live (a new frame duration rebuilds both pipelines).
    #[pyo3(signature = (*, frame_ms, bitrate, denoise))]
    fn configure(
        &self,
        py: Python<'_>,
        frame_ms: u32,
        bitrate: u32,
        denoise: bool,
    ) -> PyResult<()> {
        let settings = CodecSettings {
            frame_ms,
            bitrate,
            denoise,
        };
        py.detach(|| self.link.configure(settings))
            .map_err(|err| dsp_error(py, err))
    }

    /// Set how loud `user_id` plays: a linear gain, 0 (silent) to 4.
    fn set_gain(&self, py: Python<'_>, user_id: &str, gain: f32) -> PyResult<()> {
        py.detach(|| self.link.set_gain(user_id, gain))
            .map_err(|err| dsp_error(py, err))
    }

    /// Samples per frame at the current settings.
    #[getter]
    fn frame_samples(&self) -> usize {
        self.link.frame_samples()
    }

    /// Microphone level of the last frame for a meter, 0 (-60 dBov or less) to 1.
    #[getter]
    fn input_level(&self) -> f32 {
        self.link.input_level()
    }

    /// Whether the last frame was speech (voice activity over the noise floor).
    #[getter]
    fn speaking(&self) -> bool {
        self.link.speaking()
    }

    /// Whether the last frame was sent as speaking.
    #[getter]
    fn sending(&self) -> bool {
        self.link.sending()
    }

    /// Whether the peer was found closed (nothing is sent any more).
    #[getter]
    fn call_ended(&self) -> bool {
        self.link.call_ended()
    }

    /// RFC 6464 level (0 loud .. 127 silent) of each sender's last played frame, refreshed
    /// every second.
    fn remote_levels(&self) -> HashMap<String, u8> {
        self.link.remote_levels().into_iter().collect()
    }

    /// The last second's figures: loss, jitter, jitter_buffer_delay, quality, senders, and
    /// the counters underruns, input_dropped, output_dropped, frames_sent, errors.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.link.stats();
        let dict = PyDict::new(py);
        dict.set_item("loss", stats.loss)?;
        dict.set_item("jitter", stats.jitter.as_secs_f64())?;
        dict.set_item(
            "jitter_buffer_delay",
            stats.jitter_buffer_delay.as_secs_f64(),
        )?;
        dict.set_item("quality", stats.quality)?;
        dict.set_item("senders", stats.senders)?;
        dict.set_item("underruns", stats.underruns)?;
        dict.set_item("input_dropped", stats.input_dropped)?;
        dict.set_item("output_dropped", stats.output_dropped)?;
        dict.set_item("frames_sent", stats.frames_sent)?;
        dict.set_item("errors", stats.errors)?;
        Ok(dict)
    }

    /// Opus frame duration in ms, as last configured.
    #[getter]
    fn frame_ms(&self) -> u32 {
        self.link.codec().frame_ms
    }

    /// Opus bitrate in bit/s, as last configured.
    #[getter]
    fn bitrate(&self) -> u32 {
        self.link.codec().bitrate
    }

    /// Whether RNNoise runs on the microphone, as last configured.
    #[getter]
    fn denoise(&self) -> bool {
        self.link.codec().denoise
    }

    /// Jitter buffer lower bound, seconds.
    #[getter]
    fn min_delay(&self) -> f64 {
        self.link.config().jitter().min_delay().as_secs_f64()
    }

    /// Jitter buffer upper bound, seconds.
    #[getter]
    fn max_delay(&self) -> f64 {
        self.link.config().jitter().max_delay().as_secs_f64()
    }

    /// How long before the output would run dry a frame is decoded and mixed, seconds.
    #[getter]
    fn output_lead(&self) -> f64 {
        self.link.config().output_lead().as_secs_f64()
    }

    /// Seconds of samples each ring asks to hold.
    #[getter]
    fn buffer(&self) -> f64 {
        self.link.config().buffer().as_secs_f64()
    }

    /// Stop both threads (the peer stays open). Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.link.close());
    }
}

/// Adds `VoiceLink` to the `sfu` submodule.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PyVoiceLink>()
}
