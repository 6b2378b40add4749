//! `voicechat._native.dsp`: audio processing from the `audio_dsp` crate.

use std::time::Duration;

use audio_dsp::denoise::Denoiser as RustDenoiser;
use audio_dsp::jitter::{
    JitterBuffer as RustJitterBuffer, JitterConfig, JitterStats, Playout as RustPlayout,
    PushOutcome, RtpPacket,
};
use audio_dsp::mixer;
use audio_dsp::opus::{self, Decoder, Encoder, EncoderConfig, EncoderConfigBuilder};
use audio_dsp::pcm::{self, ByteOrder};
use audio_dsp::pipeline::{
    CaptureConfig, CapturePipeline as RustCapture, CapturedPacket as RustCaptured, PlaybackConfig,
    PlaybackPipeline as RustPlayback,
};
use audio_dsp::resample::Resampler as RustResampler;
use audio_dsp::vad::{VadConfig, VoiceActivityDetector as RustVad};
use audio_dsp::DspError;
use numpy::{
    Element, IntoPyArray, PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::marker::Ungil;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyMemoryView};

use crate::errors::dsp_error;

/// The submodule's docstring.
pub(crate) const DOC: &str = "Audio processing: Opus, denoising, levels and voice activity, \
    jitter buffering, resampling and mixing (the Rust audio_dsp crate).\n\n\
    Audio is a NumPy array of int16 PCM or float32 in [-1, 1], interleaved if stereo. Work runs \
    without the GIL; errors derive from voicechat._native.DspError.";

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
    without_gil(py, || pcm.decode().map(|s| audio_dsp::audio_level_dbov(&s)))
}

// ---------------------------------------------------------------------------------------------
// NumPy in and out. Arrays are copied out under the GIL (another thread may write them once it
// is released), processed inside `py.detach`, and handed back as new arrays.

/// Runs DSP work with the GIL released; its error becomes the matching Python exception.
fn without_gil<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    F: Ungil + FnOnce() -> Result<T, DspError>,
    Result<T, DspError>: Ungil,
{
    py.detach(work).map_err(|err| dsp_error(py, err))
}

/// A NumPy dtype audio crosses the boundary as: int16 PCM or float32 in [-1, 1]. Conversions
/// between the two are `mixer::to_i16` and `mixer::to_f32`.
trait Sample: Element + Copy {
    /// The same audio in this dtype.
    fn from_i16(samples: Vec<i16>) -> Vec<Self>;
    /// The same audio in this dtype.
    fn from_f32(samples: Vec<f32>) -> Vec<Self>;
}

impl Sample for i16 {
    fn from_i16(samples: Vec<i16>) -> Vec<Self> {
        samples
    }

    fn from_f32(samples: Vec<f32>) -> Vec<Self> {
        mixer::to_i16(&samples)
    }
}

impl Sample for f32 {
    fn from_i16(samples: Vec<i16>) -> Vec<Self> {
        mixer::to_f32(&samples)
    }

    fn from_f32(samples: Vec<f32>) -> Vec<Self> {
        samples
    }
}

/// Samples copied out of a NumPy array.
enum Samples {
    I16(Vec<i16>),
    F32(Vec<f32>),
}

impl Samples {
    fn len(&self) -> usize {
        match self {
            Self::I16(v) => v.len(),
            Self::F32(v) => v.len(),
        }
    }

    /// The samples as `T`, converted if the array had the other dtype.
    fn into_vec<T: Sample>(self) -> Vec<T> {
        match self {
            Self::I16(v) => T::from_i16(v),
            Self::F32(v) => T::from_f32(v),
        }
    }

    fn is_int16(&self) -> bool {
        matches!(self, Self::I16(_))
    }
}

fn input_error(py: Python<'_>, name: &'static str, reason: String) -> PyErr {
    dsp_error(py, DspError::InvalidArgument { name, reason })
}

/// Copies the items out in C order, whatever the array's strides.
fn copy_array<T: Sample>(array: &Bound<'_, PyArrayDyn<T>>) -> PyResult<Vec<T>> {
    let view = array.try_readonly()?;
    Ok(view.as_array().iter().copied().collect())
}

/// Reads a 1-D or 2-D (frames × channels) int16 or float32 array, in C order.
fn read_samples(samples: &Bound<'_, PyAny>) -> PyResult<Samples> {
    let py = samples.py();
    let Ok(untyped) = samples.cast::<PyUntypedArray>() else {
        let type_name = samples.get_type().name()?;
        return Err(PyTypeError::new_err(format!(
            "expected a numpy int16 or float32 array, got {type_name}"
        )));
    };
    if untyped.ndim() > 2 {
        return Err(input_error(
            py,
            "samples",
            format!(
                "{}-dimensional array: expected 1-D, or 2-D frames × channels",
                untyped.ndim()
            ),
        ));
    }
    if let Ok(array) = samples.cast::<PyArrayDyn<i16>>() {
        return copy_array(array).map(Samples::I16);
    }
    if let Ok(array) = samples.cast::<PyArrayDyn<f32>>() {
        let values = copy_array(array)?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(input_error(
                py,
                "samples",
                "float32 samples must be finite".into(),
            ));
        }
        return Ok(Samples::F32(values));
    }
    let dtype = untyped.dtype().getattr("name")?.str()?;
    Err(input_error(
        py,
        "samples",
        format!("{dtype} array: expected int16 or float32"),
    ))
}

fn seconds_to_duration(py: Python<'_>, name: &'static str, seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        input_error(
            py,
            name,
            format!("{seconds} is not a non-negative time in seconds"),
        )
    })
}

/// A result array with the dtype of the input.
fn to_numpy_like<'py>(py: Python<'py>, samples: Vec<f32>, int16: bool) -> Bound<'py, PyAny> {
    if int16 {
        i16::from_f32(samples).into_pyarray(py).into_any()
    } else {
        samples.into_pyarray(py).into_any()
    }
}

// ---------------------------------------------------------------------------------------------
// Opus

/// The version of the statically linked libopus, e.g. 'libopus 1.6.1'.
#[pyfunction]
fn libopus_version() -> String {
    opus::libopus_version()
}

/// Returns the duration of an Opus packet in samples per channel at 48 kHz.
///
/// Raises:
///     CorruptPacketError: The packet is empty or malformed.
#[pyfunction]
#[pyo3(signature = (packet, /))]
fn packet_samples(py: Python<'_>, packet: &[u8]) -> PyResult<usize> {
    opus::packet_samples(packet).map_err(|err| dsp_error(py, err))
}

/// The encoder arguments a Python caller gave; the rest keep the `EncoderConfig` defaults.
///
/// Unset arguments are left to the Rust builders throughout this module: their defaults are
/// the ones documented on the Rust configs, which each `text_signature` and the stubs repeat
/// (tests/test_native.py checks that they agree).
struct EncoderOptions {
    bitrate: Option<u32>,
    frame_ms: Option<u32>,
    complexity: Option<u8>,
    fec: Option<bool>,
    dtx: Option<bool>,
    expected_loss_percent: Option<u8>,
}

impl EncoderOptions {
    fn apply(self, mut builder: EncoderConfigBuilder) -> EncoderConfigBuilder {
        if let Some(bitrate) = self.bitrate {
            builder = builder.bitrate(bitrate);
        }
        if let Some(frame_ms) = self.frame_ms {
            builder = builder.frame_ms(frame_ms);
        }
        if let Some(complexity) = self.complexity {
            builder = builder.complexity(complexity);
        }
        if let Some(fec) = self.fec {
            builder = builder.fec(fec);
        }
        if let Some(dtx) = self.dtx {
            builder = builder.dtx(dtx);
        }
        if let Some(percent) = self.expected_loss_percent {
            builder = builder.expected_loss_percent(percent);
        }
        builder
    }
}

/// An Opus encoder at 48 kHz (libopus, VoIP mode).
#[pyclass(module = "voicechat._native.dsp", name = "OpusEncoder")]
pub(crate) struct PyOpusEncoder {
    inner: Encoder,
}

#[pymethods]
impl PyOpusEncoder {
    #[new]
    #[pyo3(
        signature = (
            *, channels = None, bitrate = None, frame_ms = None, complexity = None, fec = None,
            dtx = None, expected_loss_percent = None,
        ),
        text_signature = "(*, channels=1, bitrate=64000, frame_ms=20, complexity=10, fec=True, \
                          dtx=False, expected_loss_percent=0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        channels: Option<u8>,
        bitrate: Option<u32>,
        frame_ms: Option<u32>,
        complexity: Option<u8>,
        fec: Option<bool>,
        dtx: Option<bool>,
        expected_loss_percent: Option<u8>,
    ) -> PyResult<Self> {
        let mut builder = EncoderConfig::builder();
        if let Some(channels) = channels {
            builder = builder.channels(channels);
        }
        let encoder = EncoderOptions {
            bitrate,
            frame_ms,
            complexity,
            fec,
            dtx,
            expected_loss_percent,
        };
        let config = encoder
            .apply(builder)
            .build()
            .map_err(|err| dsp_error(py, err))?;
        let inner = Encoder::new(config).map_err(|err| dsp_error(py, err))?;
        Ok(Self { inner })
    }

    /// Encodes exactly one frame (frame_samples × channels samples) into a packet.
    #[pyo3(signature = (pcm, /))]
    fn encode<'py>(
        &mut self,
        py: Python<'py>,
        pcm: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let samples = read_samples(pcm)?;
        let encoder = &mut self.inner;
        let packet = without_gil(py, || match samples {
            Samples::I16(v) => encoder.encode(&v),
            Samples::F32(v) => encoder.encode_float(&v),
        })?;
        Ok(PyBytes::new(py, &packet))
    }

    /// Changes the target bitrate (24000 to 96000 bit/s).
    fn set_bitrate(&mut self, py: Python<'_>, bitrate: u32) -> PyResult<()> {
        self.inner
            .set_bitrate(bitrate)
            .map_err(|err| dsp_error(py, err))
    }

    /// Changes the expected packet loss (0 to 100 percent).
    fn set_expected_loss_percent(&mut self, py: Python<'_>, percent: u8) -> PyResult<()> {
        self.inner
            .set_expected_loss_percent(percent)
            .map_err(|err| dsp_error(py, err))
    }

    /// Channels, 1 or 2.
    #[getter]
    fn channels(&self) -> u8 {
        self.inner.config().channels()
    }

    /// Target bitrate in bit/s.
    #[getter]
    fn bitrate(&self) -> u32 {
        self.inner.config().bitrate()
    }

    /// Frame duration in ms.
    #[getter]
    fn frame_ms(&self) -> u32 {
        self.inner.config().frame_ms()
    }

    /// Samples per channel in one frame.
    #[getter]
    fn frame_samples(&self) -> usize {
        self.inner.config().frame_samples()
    }

    /// Complexity, 0 to 10.
    #[getter]
    fn complexity(&self) -> u8 {
        self.inner.config().complexity()
    }

    /// Whether in-band FEC is on.
    #[getter]
    fn fec(&self) -> bool {
        self.inner.config().fec()
    }

    /// Whether DTX is on.
    #[getter]
    fn dtx(&self) -> bool {
        self.inner.config().dtx()
    }

    /// Expected packet loss in percent.
    #[getter]
    fn expected_loss_percent(&self) -> u8 {
        self.inner.config().expected_loss_percent()
    }

    /// Algorithmic delay in samples per channel.
    #[getter]
    fn lookahead(&self) -> usize {
        self.inner.lookahead()
    }
}

/// An Opus decoder at 48 kHz with loss concealment and FEC.
#[pyclass(module = "voicechat._native.dsp", name = "OpusDecoder")]
pub(crate) struct PyOpusDecoder {
    inner: Decoder,
}

impl PyOpusDecoder {
    /// Runs `job` without the GIL and returns its PCM as an array of `T`.
    fn run<'py, T: Sample>(
        &mut self,
        py: Python<'py>,
        job: impl FnOnce(&mut Decoder) -> Result<Vec<i16>, DspError> + Send,
    ) -> PyResult<Bound<'py, PyArray1<T>>> {
        let decoder = &mut self.inner;
        let pcm = without_gil(py, || job(decoder).map(T::from_i16))?;
        Ok(pcm.into_pyarray(py))
    }
}

#[pymethods]
impl PyOpusDecoder {
    #[new]
    #[pyo3(signature = (channels = 1))]
    fn new(py: Python<'_>, channels: u8) -> PyResult<Self> {
        let inner = Decoder::new(channels).map_err(|err| dsp_error(py, err))?;
        Ok(Self { inner })
    }

    /// Decodes one packet to int16 PCM (interleaved if stereo).
    #[pyo3(signature = (packet, /))]
    fn decode<'py>(
        &mut self,
        py: Python<'py>,
        packet: Vec<u8>,
    ) -> PyResult<Bound<'py, PyArray1<i16>>> {
        self.run(py, move |d| d.decode(&packet))
    }

    /// Decodes one packet to float32 in [-1, 1].
    #[pyo3(signature = (packet, /))]
    fn decode_float<'py>(
        &mut self,
        py: Python<'py>,
        packet: Vec<u8>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        self.run(py, move |d| d.decode(&packet))
    }

    /// Conceals one lost frame (default: as long as the last one).
    #[pyo3(signature = (samples = None))]
    fn conceal<'py>(
        &mut self,
        py: Python<'py>,
        samples: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray1<i16>>> {
        let samples = samples.unwrap_or(self.inner.last_frame_samples());
        self.run(py, move |d| d.conceal(samples))
    }

    /// Rebuilds a lost frame from the FEC data of the packet that followed it.
    #[pyo3(signature = (next_packet, /, samples = None))]
    fn decode_fec<'py>(
        &mut self,
        py: Python<'py>,
        next_packet: Vec<u8>,
        samples: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray1<i16>>> {
        let samples = samples.unwrap_or(self.inner.last_frame_samples());
        self.run(py, move |d| d.decode_fec(&next_packet, samples))
    }

    /// Output channels.
    #[getter]
    fn channels(&self) -> u8 {
        self.inner.channels()
    }
}

// ---------------------------------------------------------------------------------------------
// Denoising, voice activity, resampling, mixing

/// RNNoise noise suppression for one 48 kHz mono stream.
#[pyclass(module = "voicechat._native.dsp", name = "Denoiser")]
pub(crate) struct PyDenoiser {
    inner: RustDenoiser,
}

#[pymethods]
impl PyDenoiser {
    #[new]
    #[pyo3(signature = (*, bypass = None), text_signature = "(*, bypass=False)")]
    fn new(bypass: Option<bool>) -> Self {
        let mut inner = RustDenoiser::new();
        if let Some(bypass) = bypass {
            inner.set_bypass(bypass);
        }
        Self { inner }
    }

    /// Denoises a block of any length; returns (samples of the input's dtype, voice probability).
    #[pyo3(signature = (samples, /))]
    fn process<'py>(
        &mut self,
        py: Python<'py>,
        samples: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, f32)> {
        let input = read_samples(samples)?;
        let int16 = input.is_int16();
        let denoiser = &mut self.inner;
        let (out, probability) = py.detach(|| denoiser.process(&input.into_vec()));
        Ok((to_numpy_like(py, out, int16), probability))
    }

    /// Whether audio passes through untouched.
    #[getter]
    fn get_bypass(&self) -> bool {
        self.inner.bypass()
    }

    #[setter]
    fn set_bypass(&mut self, bypass: bool) {
        self.inner.set_bypass(bypass);
    }

    /// Voice probability (0 to 1) of the last processed 10 ms frame.
    #[getter]
    fn voice_probability(&self) -> f32 {
        self.inner.voice_probability()
    }

    /// Delay the buffering adds, in samples (0 or 480); RNNoise's own 480 come on top.
    #[getter]
    fn latency(&self) -> usize {
        self.inner.latency()
    }
}

/// Speaking detection with hangover.
#[pyclass(module = "voicechat._native.dsp", name = "VoiceActivityDetector")]
pub(crate) struct PyVoiceActivityDetector {
    inner: RustVad,
}

/// A `VadConfig` from the arguments a Python caller gave; the rest keep the defaults.
fn vad_config(
    py: Python<'_>,
    threshold_dbov: Option<u8>,
    min_voice_probability: Option<f32>,
    hangover: Option<f64>,
) -> PyResult<VadConfig> {
    let mut builder = VadConfig::builder();
    if let Some(level) = threshold_dbov {
        builder = builder.threshold_dbov(level);
    }
    if let Some(probability) = min_voice_probability {
        builder = builder.min_voice_probability(probability);
    }
    if let Some(hangover) = hangover {
        builder = builder.hangover(seconds_to_duration(py, "hangover", hangover)?);
    }
    builder.build().map_err(|err| dsp_error(py, err))
}

#[pymethods]
impl PyVoiceActivityDetector {
    #[new]
    #[pyo3(
        signature = (*, threshold_dbov = None, min_voice_probability = None, hangover = None),
        text_signature = "(*, threshold_dbov=50, min_voice_probability=0.5, hangover=0.3)"
    )]
    fn new(
        py: Python<'_>,
        threshold_dbov: Option<u8>,
        min_voice_probability: Option<f32>,
        hangover: Option<f64>,
    ) -> PyResult<Self> {
        let config = vad_config(py, threshold_dbov, min_voice_probability, hangover)?;
        Ok(Self {
            inner: RustVad::new(config),
        })
    }

    /// Judges one 48 kHz mono frame; returns (RFC 6464 level, speaking).
    #[pyo3(signature = (frame, /, voice_probability = None))]
    fn process(
        &mut self,
        py: Python<'_>,
        frame: &Bound<'_, PyAny>,
        voice_probability: Option<f32>,
    ) -> PyResult<(u8, bool)> {
        let samples: Vec<i16> = read_samples(frame)?.into_vec();
        if samples.is_empty() {
            return Err(dsp_error(
                py,
                DspError::InvalidFrameSize {
                    len: 0,
                    expected: "a non-empty frame",
                },
            ));
        }
        let duration = Duration::from_secs_f64(samples.len() as f64 / 48_000.0);
        let vad = &mut self.inner;
        let verdict = py.detach(|| vad.process(&samples, duration, voice_probability));
        Ok((verdict.level, verdict.speaking))
    }

    /// The current decision.
    #[getter]
    fn speaking(&self) -> bool {
        self.inner.speaking()
    }

    /// Level (RFC 6464, -dBov) at or below which a frame may be speech.
    #[getter]
    fn threshold_dbov(&self) -> u8 {
        self.inner.config().threshold_dbov()
    }

    /// Voice probability a frame needs, when one is given.
    #[getter]
    fn min_voice_probability(&self) -> f32 {
        self.inner.config().min_voice_probability()
    }

    /// Seconds the decision stays "speaking" after the last speech frame.
    #[getter]
    fn hangover(&self) -> f64 {
        self.inner.config().hangover().as_secs_f64()
    }
}

/// A streaming fixed-ratio resampler (rubato, FFT based).
#[pyclass(module = "voicechat._native.dsp", name = "Resampler")]
pub(crate) struct PyResampler {
    inner: RustResampler,
}

#[pymethods]
impl PyResampler {
    #[new]
    #[pyo3(signature = (rate_in, rate_out, channels = 1))]
    fn new(py: Python<'_>, rate_in: u32, rate_out: u32, channels: u8) -> PyResult<Self> {
        let inner =
            RustResampler::new(rate_in, rate_out, channels).map_err(|err| dsp_error(py, err))?;
        Ok(Self { inner })
    }

    /// Resamples a block; returns the output ready so far, in the input's dtype.
    #[pyo3(signature = (samples, /))]
    fn process<'py>(
        &mut self,
        py: Python<'py>,
        samples: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let input = read_samples(samples)?;
        let int16 = input.is_int16();
        let resampler = &mut self.inner;
        let out = without_gil(py, || resampler.process(&input.into_vec()))?;
        Ok(to_numpy_like(py, out, int16))
    }

    /// Input rate in Hz.
    #[getter]
    fn rate_in(&self) -> u32 {
        self.inner.rate_in()
    }

    /// Output rate in Hz.
    #[getter]
    fn rate_out(&self) -> u32 {
        self.inner.rate_out()
    }

    /// Delay in output samples per channel.
    #[getter]
    fn delay(&self) -> usize {
        self.inner.delay()
    }
}

/// Mixes streams with per-stream gains and a soft limiter.
#[pyfunction]
#[pyo3(signature = (streams, /, gains = None))]
fn mix<'py>(
    py: Python<'py>,
    streams: Vec<Bound<'py, PyAny>>,
    gains: Option<Vec<f32>>,
) -> PyResult<Bound<'py, PyAny>> {
    let inputs = streams
        .iter()
        .map(read_samples)
        .collect::<PyResult<Vec<Samples>>>()?;
    let gains = gains.unwrap_or_else(|| vec![1.0; inputs.len()]);
    if gains.len() != inputs.len() {
        return Err(input_error(
            py,
            "gains",
            format!("{} gains for {} streams", gains.len(), inputs.len()),
        ));
    }
    let int16 = inputs.first().is_some_and(Samples::is_int16);
    if inputs.iter().any(|s| s.is_int16() != int16) {
        return Err(input_error(
            py,
            "streams",
            "streams mix int16 and float32 arrays".into(),
        ));
    }
    let len = inputs.iter().map(Samples::len).max().unwrap_or(0);
    let out = without_gil(py, || {
        let floats: Vec<Vec<f32>> = inputs.into_iter().map(Samples::into_vec).collect();
        let refs: Vec<(&[f32], f32)> = floats
            .iter()
            .map(Vec::as_slice)
            .zip(gains.iter().copied())
            .collect();
        mixer::mix(len, &refs)
    })?;
    Ok(to_numpy_like(py, out, int16))
}

// ---------------------------------------------------------------------------------------------
// Jitter buffer

fn stats_dict<'py>(py: Python<'py>, stats: &JitterStats) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("target_delay", stats.target_delay.as_secs_f64())?;
    dict.set_item("current_delay", stats.current_delay.as_secs_f64())?;
    dict.set_item("buffered", stats.buffered.as_secs_f64())?;
    dict.set_item("jitter", stats.jitter.as_secs_f64())?;
    dict.set_item("received", stats.received)?;
    dict.set_item("played", stats.played)?;
    dict.set_item("late", stats.late)?;
    dict.set_item("lost", stats.lost)?;
    dict.set_item("concealed", stats.concealed)?;
    dict.set_item("fec", stats.fec)?;
    dict.set_item("duplicates", stats.duplicates)?;
    dict.set_item("dropped", stats.dropped)?;
    dict.set_item("stretched", stats.stretched)?;
    Ok(dict)
}

fn outcome_name(outcome: PushOutcome) -> &'static str {
    match outcome {
        PushOutcome::Buffered => "buffered",
        PushOutcome::Duplicate => "duplicate",
        PushOutcome::Late => "late",
    }
}

/// A `JitterConfig` from the arguments a Python caller gave; the rest keep the defaults.
fn jitter_config(
    py: Python<'_>,
    min_delay: Option<f64>,
    max_delay: Option<f64>,
    clock_rate: Option<u32>,
    frame_samples: Option<u32>,
    max_conceal: Option<f64>,
) -> PyResult<JitterConfig> {
    let mut builder = JitterConfig::builder();
    if let Some(delay) = min_delay {
        builder = builder.min_delay(seconds_to_duration(py, "min_delay", delay)?);
    }
    if let Some(delay) = max_delay {
        builder = builder.max_delay(seconds_to_duration(py, "max_delay", delay)?);
    }
    if let Some(rate) = clock_rate {
        builder = builder.clock_rate(rate);
    }
    if let Some(samples) = frame_samples {
        builder = builder.frame_samples(samples);
    }
    if let Some(duration) = max_conceal {
        builder = builder.max_conceal(seconds_to_duration(py, "max_conceal", duration)?);
    }
    builder.build().map_err(|err| dsp_error(py, err))
}

/// What a jitter buffer says to play next.
#[pyclass(module = "voicechat._native.dsp", name = "Playout", frozen)]
pub(crate) struct PyPlayout {
    lost: bool,
    seq: Option<u16>,
    timestamp: Option<u32>,
    samples: u32,
    payload: Option<Py<PyBytes>>,
}

#[pymethods]
impl PyPlayout {
    /// True for a missing frame to conceal (or rebuild from `payload`, the next packet).
    #[getter]
    fn lost(&self) -> bool {
        self.lost
    }

    /// Sequence number of the packet to decode; None for a lost frame.
    #[getter]
    fn seq(&self) -> Option<u16> {
        self.seq
    }

    /// RTP timestamp of the packet to decode; None for a lost frame.
    #[getter]
    fn timestamp(&self) -> Option<u32> {
        self.timestamp
    }

    /// Duration in samples per channel.
    #[getter]
    fn samples(&self) -> u32 {
        self.samples
    }

    /// The packet to decode; for a lost frame, the next packet (for FEC) or None.
    #[getter]
    fn payload(&self, py: Python<'_>) -> Option<Py<PyBytes>> {
        self.payload.as_ref().map(|p| p.clone_ref(py))
    }

    fn __repr__(&self) -> String {
        if self.lost {
            format!(
                "Playout(lost=True, samples={}, fec={})",
                self.samples,
                self.payload.is_some()
            )
        } else {
            format!(
                "Playout(seq={}, timestamp={}, samples={})",
                self.seq.unwrap_or(0),
                self.timestamp.unwrap_or(0),
                self.samples
            )
        }
    }
}

/// The adaptive jitter buffer of one incoming RTP stream (sans-IO: times are passed in).
#[pyclass(module = "voicechat._native.dsp", name = "JitterBuffer")]
pub(crate) struct PyJitterBuffer {
    inner: RustJitterBuffer,
}

#[pymethods]
impl PyJitterBuffer {
    #[new]
    #[pyo3(
        signature = (
            *, min_delay = None, max_delay = None, clock_rate = None, frame_samples = None,
            max_conceal = None,
        ),
        text_signature = "(*, min_delay=0.02, max_delay=0.2, clock_rate=48000, \
                          frame_samples=960, max_conceal=0.1)"
    )]
    fn new(
        py: Python<'_>,
        min_delay: Option<f64>,
        max_delay: Option<f64>,
        clock_rate: Option<u32>,
        frame_samples: Option<u32>,
        max_conceal: Option<f64>,
    ) -> PyResult<Self> {
        let config = jitter_config(
            py,
            min_delay,
            max_delay,
            clock_rate,
            frame_samples,
            max_conceal,
        )?;
        Ok(Self {
            inner: RustJitterBuffer::new(config),
        })
    }

    /// Adds a packet that arrived at `arrival` (seconds); returns 'buffered', 'duplicate' or 'late'.
    #[pyo3(signature = (seq, timestamp, payload, arrival, *, duration = 0))]
    fn push(
        &mut self,
        py: Python<'_>,
        seq: u16,
        timestamp: u32,
        payload: Vec<u8>,
        arrival: f64,
        duration: u32,
    ) -> PyResult<&'static str> {
        let arrival = seconds_to_duration(py, "arrival", arrival)?;
        let packet = RtpPacket {
            seq,
            timestamp,
            duration,
            payload,
        };
        Ok(outcome_name(self.inner.push(packet, arrival)))
    }

    /// The next frame to play at `now` (seconds), or None to play silence.
    fn pop(&mut self, py: Python<'_>, now: f64) -> PyResult<Option<PyPlayout>> {
        let now = seconds_to_duration(py, "now", now)?;
        Ok(self.inner.pop(now).map(|playout| match playout {
            RustPlayout::Packet(packet) => PyPlayout {
                lost: false,
                seq: Some(packet.seq),
                timestamp: Some(packet.timestamp),
                samples: packet.duration,
                payload: Some(PyBytes::new(py, &packet.payload).unbind()),
            },
            RustPlayout::Lost { samples, fec } => PyPlayout {
                lost: true,
                seq: None,
                timestamp: None,
                samples,
                payload: fec.map(|p| PyBytes::new(py, &p).unbind()),
            },
        }))
    }

    /// Counters and delays (delays in seconds).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.inner.stats())
    }

    /// The delay the buffer aims for, in seconds.
    #[getter]
    fn target_delay(&self) -> f64 {
        self.inner.target_delay().as_secs_f64()
    }

    /// Smallest target delay, seconds.
    #[getter]
    fn min_delay(&self) -> f64 {
        self.inner.config().min_delay().as_secs_f64()
    }

    /// Largest target delay, seconds.
    #[getter]
    fn max_delay(&self) -> f64 {
        self.inner.config().max_delay().as_secs_f64()
    }

    /// RTP clock rate of the timestamps, Hz.
    #[getter]
    fn clock_rate(&self) -> u32 {
        self.inner.config().clock_rate()
    }

    /// Frame duration assumed before packets give one, in timestamp units.
    #[getter]
    fn frame_samples(&self) -> u32 {
        self.inner.config().frame_samples()
    }

    /// Seconds of concealment after which a dry buffer goes idle.
    #[getter]
    fn max_conceal(&self) -> f64 {
        self.inner.config().max_conceal().as_secs_f64()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Pipelines

/// One encoded frame from a CapturePipeline, ready for an RTP packet.
#[pyclass(module = "voicechat._native.dsp", name = "CapturedPacket", frozen)]
pub(crate) struct PyCapturedPacket {
    inner: RustCaptured,
}

#[pymethods]
impl PyCapturedPacket {
    /// RTP sequence number.
    #[getter]
    fn seq(&self) -> u16 {
        self.inner.seq
    }

    /// RTP timestamp (48 kHz).
    #[getter]
    fn timestamp(&self) -> u32 {
        self.inner.timestamp
    }

    /// RTP marker bit: first packet of a talk spurt.
    #[getter]
    fn marker(&self) -> bool {
        self.inner.marker
    }

    /// The Opus packet.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.payload)
    }

    /// RFC 6464 level, 0 to 127 -dBov.
    #[getter]
    fn level(&self) -> u8 {
        self.inner.level
    }

    /// RFC 6464 voice flag (speaking, with hangover).
    #[getter]
    fn voice(&self) -> bool {
        self.inner.voice
    }

    fn __repr__(&self) -> String {
        format!(
            "CapturedPacket(seq={}, timestamp={}, marker={}, bytes={}, level={}, voice={})",
            self.inner.seq,
            self.inner.timestamp,
            if self.inner.marker { "True" } else { "False" },
            self.inner.payload.len(),
            self.inner.level,
            if self.inner.voice { "True" } else { "False" },
        )
    }
}

/// Microphone to packets: denoise, level and voice activity, Opus encode.
#[pyclass(module = "voicechat._native.dsp", name = "CapturePipeline")]
pub(crate) struct PyCapturePipeline {
    inner: RustCapture,
}

#[pymethods]
impl PyCapturePipeline {
    #[new]
    #[pyo3(
        signature = (
            *, bitrate = None, frame_ms = None, complexity = None, fec = None, dtx = None,
            expected_loss_percent = None, denoise = None, input_rate = None,
            threshold_dbov = None, min_voice_probability = None, hangover = None,
            initial_seq = None, initial_timestamp = None,
        ),
        text_signature = "(*, bitrate=64000, frame_ms=20, complexity=10, fec=True, dtx=False, \
                          expected_loss_percent=0, denoise=True, input_rate=48000, \
                          threshold_dbov=50, min_voice_probability=0.5, hangover=0.3, \
                          initial_seq=0, initial_timestamp=0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        bitrate: Option<u32>,
        frame_ms: Option<u32>,
        complexity: Option<u8>,
        fec: Option<bool>,
        dtx: Option<bool>,
        expected_loss_percent: Option<u8>,
        denoise: Option<bool>,
        input_rate: Option<u32>,
        threshold_dbov: Option<u8>,
        min_voice_probability: Option<f32>,
        hangover: Option<f64>,
        initial_seq: Option<u16>,
        initial_timestamp: Option<u32>,
    ) -> PyResult<Self> {
        let encoder = EncoderOptions {
            bitrate,
            frame_ms,
            complexity,
            fec,
            dtx,
            expected_loss_percent,
        };
        let defaults = CaptureConfig::default();
        let config = CaptureConfig {
            encoder: encoder
                .apply(EncoderConfig::builder())
                .build()
                .map_err(|err| dsp_error(py, err))?,
            vad: vad_config(py, threshold_dbov, min_voice_probability, hangover)?,
            denoise: denoise.unwrap_or(defaults.denoise),
            input_rate: input_rate.unwrap_or(defaults.input_rate),
            initial_seq: initial_seq.unwrap_or(defaults.initial_seq),
            initial_timestamp: initial_timestamp.unwrap_or(defaults.initial_timestamp),
        };
        let inner = RustCapture::new(config).map_err(|err| dsp_error(py, err))?;
        Ok(Self { inner })
    }

    /// Takes a mono block of any length; returns the packets of the frames it completed.
    #[pyo3(signature = (samples, /))]
    fn push(
        &mut self,
        py: Python<'_>,
        samples: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<PyCapturedPacket>> {
        let input: Vec<f32> = read_samples(samples)?.into_vec();
        let pipeline = &mut self.inner;
        let packets = without_gil(py, || pipeline.push(&input))?;
        Ok(packets
            .into_iter()
            .map(|inner| PyCapturedPacket { inner })
            .collect())
    }

    /// Whether noise suppression runs.
    #[getter]
    fn get_denoise(&self) -> bool {
        self.inner.denoise()
    }

    #[setter]
    fn set_denoise(&mut self, on: bool) {
        self.inner.set_denoise(on);
    }

    /// The current speaking decision.
    #[getter]
    fn speaking(&self) -> bool {
        self.inner.speaking()
    }

    /// The encoder's target bitrate in bit/s.
    #[getter]
    fn bitrate(&self) -> u32 {
        self.inner.encoder_config().bitrate()
    }

    /// Frame duration in ms.
    #[getter]
    fn frame_ms(&self) -> u32 {
        self.inner.encoder_config().frame_ms()
    }

    /// Encoder complexity, 0 to 10.
    #[getter]
    fn complexity(&self) -> u8 {
        self.inner.encoder_config().complexity()
    }

    /// Whether in-band FEC is on.
    #[getter]
    fn fec(&self) -> bool {
        self.inner.encoder_config().fec()
    }

    /// Whether DTX is on.
    #[getter]
    fn dtx(&self) -> bool {
        self.inner.encoder_config().dtx()
    }

    /// The encoder's expected packet loss in percent.
    #[getter]
    fn expected_loss_percent(&self) -> u8 {
        self.inner.encoder_config().expected_loss_percent()
    }

    /// The microphone's sample rate, Hz.
    #[getter]
    fn input_rate(&self) -> u32 {
        self.inner.input_rate()
    }

    /// Speaking detection: level (RFC 6464, -dBov) at or below which a frame may be speech.
    #[getter]
    fn threshold_dbov(&self) -> u8 {
        self.inner.vad_config().threshold_dbov()
    }

    /// Speaking detection: voice probability a frame needs while denoising.
    #[getter]
    fn min_voice_probability(&self) -> f32 {
        self.inner.vad_config().min_voice_probability()
    }

    /// Speaking detection: seconds of hangover after the last speech frame.
    #[getter]
    fn hangover(&self) -> f64 {
        self.inner.vad_config().hangover().as_secs_f64()
    }

    /// Changes the encoder's bitrate (24000 to 96000 bit/s).
    fn set_bitrate(&mut self, py: Python<'_>, bitrate: u32) -> PyResult<()> {
        self.inner
            .encoder_mut()
            .set_bitrate(bitrate)
            .map_err(|err| dsp_error(py, err))
    }

    /// Changes the encoder's expected packet loss (0 to 100 percent).
    fn set_expected_loss_percent(&mut self, py: Python<'_>, percent: u8) -> PyResult<()> {
        self.inner
            .encoder_mut()
            .set_expected_loss_percent(percent)
            .map_err(|err| dsp_error(py, err))
    }

    /// Frames encoded, packets produced, frames withheld by DTX.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.inner.stats();
        let dict = PyDict::new(py);
        dict.set_item("frames", stats.frames)?;
        dict.set_item("packets", stats.packets)?;
        dict.set_item("dtx_frames", stats.dtx_frames)?;
        Ok(dict)
    }
}

/// Packets per sender to mixed output frames: jitter buffers, decode, mix.
#[pyclass(module = "voicechat._native.dsp", name = "PlaybackPipeline")]
pub(crate) struct PyPlaybackPipeline {
    inner: RustPlayback,
}

impl PyPlaybackPipeline {
    /// `pop` and `pop_int16`: the next frame, mixed as float32, in the dtype `T`.
    fn pop_as<'py, T: Sample>(
        &mut self,
        py: Python<'py>,
        now: f64,
    ) -> PyResult<Bound<'py, PyArray1<T>>> {
        let now = seconds_to_duration(py, "now", now)?;
        let pipeline = &mut self.inner;
        let frame = py.detach(|| T::from_f32(pipeline.pop(now)));
        Ok(frame.into_pyarray(py))
    }
}

#[pymethods]
impl PyPlaybackPipeline {
    #[new]
    #[pyo3(
        signature = (
            *, frame_ms = None, output_rate = None, min_delay = None, max_delay = None,
            max_conceal = None,
        ),
        text_signature = "(*, frame_ms=20, output_rate=48000, min_delay=0.02, max_delay=0.2, \
                          max_conceal=0.1)"
    )]
    fn new(
        py: Python<'_>,
        frame_ms: Option<u32>,
        output_rate: Option<u32>,
        min_delay: Option<f64>,
        max_delay: Option<f64>,
        max_conceal: Option<f64>,
    ) -> PyResult<Self> {
        let defaults = PlaybackConfig::default();
        let config = PlaybackConfig {
            jitter: jitter_config(py, min_delay, max_delay, None, None, max_conceal)?,
            frame_ms: frame_ms.unwrap_or(defaults.frame_ms),
            output_rate: output_rate.unwrap_or(defaults.output_rate),
        };
        let inner = RustPlayback::new(config).map_err(|err| dsp_error(py, err))?;
        Ok(Self { inner })
    }

    /// Adds a packet from `sender`; returns 'buffered', 'duplicate' or 'late'.
    #[pyo3(signature = (sender, seq, timestamp, payload, arrival))]
    fn push(
        &mut self,
        py: Python<'_>,
        sender: u32,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
        arrival: f64,
    ) -> PyResult<&'static str> {
        let arrival = seconds_to_duration(py, "arrival", arrival)?;
        self.inner
            .push(sender, seq, timestamp, payload, arrival)
            .map(outcome_name)
            .map_err(|err| dsp_error(py, err))
    }

    /// The next mixed output frame at `now` (seconds), float32 in [-1, 1].
    fn pop<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<Bound<'py, PyArray1<f32>>> {
        self.pop_as(py, now)
    }

    /// As pop, as int16 PCM.
    fn pop_int16<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<Bound<'py, PyArray1<i16>>> {
        self.pop_as(py, now)
    }

    /// Sets a sender's volume, 0 (muted) to 4 (+12 dB).
    fn set_gain(&mut self, py: Python<'_>, sender: u32, gain: f32) -> PyResult<()> {
        self.inner
            .set_gain(sender, gain)
            .map_err(|err| dsp_error(py, err))
    }

    /// Forgets a sender; returns whether it was known.
    fn remove(&mut self, sender: u32) -> bool {
        self.inner.remove(sender)
    }

    /// Senders with a stream.
    fn senders(&self) -> Vec<u32> {
        self.inner.senders()
    }

    /// A sender's jitter buffer counters, or None.
    fn stats<'py>(&self, py: Python<'py>, sender: u32) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.inner
            .stats(sender)
            .map(|stats| stats_dict(py, &stats))
            .transpose()
    }

    /// RFC 6464 level of each sender's last frame.
    fn levels(&self) -> Vec<(u32, u8)> {
        self.inner.levels()
    }

    /// Samples in each output frame.
    #[getter]
    fn frame_samples(&self) -> usize {
        self.inner.frame_samples()
    }

    /// Duration of each output frame in ms.
    #[getter]
    fn frame_ms(&self) -> u32 {
        self.inner.config().frame_ms
    }

    /// The sound card's sample rate, Hz.
    #[getter]
    fn output_rate(&self) -> u32 {
        self.inner.config().output_rate
    }

    /// Smallest jitter buffer target delay, seconds.
    #[getter]
    fn min_delay(&self) -> f64 {
        self.inner.config().jitter.min_delay().as_secs_f64()
    }

    /// Largest jitter buffer target delay, seconds.
    #[getter]
    fn max_delay(&self) -> f64 {
        self.inner.config().jitter.max_delay().as_secs_f64()
    }

    /// Seconds of concealment after which a sender's dry buffer goes idle.
    #[getter]
    fn max_conceal(&self) -> f64 {
        self.inner.config().jitter.max_conceal().as_secs_f64()
    }
}

/// Fills the `dsp` submodule.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(audio_level_dbov, module)?)?;
    module.add("SILENCE_DBOV", audio_dsp::SILENCE_DBOV)?;
    module.add("SAMPLE_RATE", opus::SAMPLE_RATE)?;
    module.add_function(wrap_pyfunction!(libopus_version, module)?)?;
    module.add_function(wrap_pyfunction!(packet_samples, module)?)?;
    module.add_function(wrap_pyfunction!(mix, module)?)?;
    module.add_class::<PyOpusEncoder>()?;
    module.add_class::<PyOpusDecoder>()?;
    module.add_class::<PyDenoiser>()?;
    module.add_class::<PyVoiceActivityDetector>()?;
    module.add_class::<PyResampler>()?;
    module.add_class::<PyJitterBuffer>()?;
    module.add_class::<PyPlayout>()?;
    module.add_class::<PyCapturedPacket>()?;
    module.add_class::<PyCapturePipeline>()?;
    module.add_class::<PyPlaybackPipeline>()?;
    Ok(())
}
