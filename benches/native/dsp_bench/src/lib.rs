//! `dsp_bench`: the `native` rows of benches/test_dsp.py, audio_dsp's per-frame work timed
//! without the Python boundary.
//!
//! Bench-only: a module of its own, so the shipped `voicechat._native` carries none of it.
//! [`Workload`] is the plain Rust part (set up ahead, then `run` does only the per-frame work);
//! [`NativeBench`] is its Python class.

use std::time::Duration;

use audio_dsp::denoise::Denoiser;
use audio_dsp::mixer;
use audio_dsp::opus::{Decoder, Encoder, EncoderConfig};
use audio_dsp::pipeline::{CaptureConfig, CapturePipeline, PlaybackConfig, PlaybackPipeline};
use audio_dsp::DspError;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// The operations a [`Workload`] times, as benches/test_dsp.py names them.
pub const KINDS: [&str; 5] = ["encode", "decode", "denoise", "capture", "playback"];

/// Frames of the generated signal (one second of 20 ms frames); runs cycle over them.
const SIGNAL_FRAMES: usize = 50;
/// Samples in one 20 ms frame at 48 kHz.
const FRAME: usize = 960;

/// A tone pair (220 Hz and a quieter 3.1 kHz), the same signal the Python rows use.
fn tone(len: usize, offset: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let t = (offset + i) as f32 / 48_000.0;
            0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                + 0.05 * (2.0 * std::f32::consts::PI * 3_100.0 * t).sin()
        })
        .collect()
}

/// One operation's state over a generated signal, set up ahead so that only the work is timed.
pub struct Workload {
    kind: &'static str,
    signal: Vec<Vec<f32>>,
    pcm: Vec<Vec<i16>>,
    packets: Vec<Vec<u8>>,
    encoder: Encoder,
    decoder: Decoder,
    denoiser: Denoiser,
    capture: CapturePipeline,
    playback: PlaybackPipeline,
    frame: usize,
}

impl Workload {
    /// The state for `kind` (one of [`KINDS`]), or `None` for another name.
    ///
    /// # Errors
    ///
    /// A [`DspError`] if a codec or pipeline cannot be built.
    pub fn new(kind: &str) -> Result<Option<Self>, DspError> {
        let Some(kind) = KINDS.iter().copied().find(|&k| k == kind) else {
            return Ok(None);
        };
        let signal: Vec<Vec<f32>> = (0..SIGNAL_FRAMES).map(|k| tone(FRAME, k * FRAME)).collect();
        let pcm: Vec<Vec<i16>> = signal.iter().map(|s| mixer::to_i16(s)).collect();
        let mut encoder = Encoder::new(EncoderConfig::default())?;
        let packets = pcm
            .iter()
            .map(|p| encoder.encode(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Self {
            kind,
            signal,
            pcm,
            packets,
            encoder,
            decoder: Decoder::new(1)?,
            denoiser: Denoiser::new(),
            capture: CapturePipeline::new(CaptureConfig::default())?,
            playback: PlaybackPipeline::new(PlaybackConfig::default())?,
            frame: 0,
        }))
    }

    /// Runs `frames` 20 ms frames of the operation.
    ///
    /// # Errors
    ///
    /// A [`DspError`] from the codec or a pipeline.
    pub fn run(&mut self, frames: usize) -> Result<(), DspError> {
        for _ in 0..frames {
            let k = self.frame;
            self.frame += 1;
            let i = k % self.signal.len();
            match self.kind {
                "encode" => {
                    std::hint::black_box(self.encoder.encode(&self.pcm[i])?);
                }
                "decode" => {
                    std::hint::black_box(self.decoder.decode(&self.packets[i])?);
                }
                "denoise" => {
                    std::hint::black_box(self.denoiser.process(&self.signal[i]));
                }
                "capture" => {
                    std::hint::black_box(self.capture.push(&self.signal[i])?);
                }
                _ => {
                    let now = Duration::from_millis(20 * k as u64);
                    let seq = (k % 65_536) as u16;
                    let timestamp = (k as u32).wrapping_mul(960);
                    self.playback
                        .push(1, seq, timestamp, &self.packets[i], now)?;
                    std::hint::black_box(self.playback.pop(now));
                }
            }
        }
        Ok(())
    }
}

/// The state of one operation ('encode', 'decode', 'denoise', 'capture', 'playback') on a
/// generated signal, set up ahead so that `run` times only the per-frame work, in Rust.
///
/// Raises:
///     ValueError: `kind` is not one of those.
///     RuntimeError: A codec or pipeline failed.
#[pyclass(module = "dsp_bench", name = "NativeBench")]
struct NativeBench {
    workload: Workload,
}

fn runtime_error(err: DspError) -> PyErr {
    PyRuntimeError::new_err(err.to_string())
}

#[pymethods]
impl NativeBench {
    #[new]
    fn new(kind: &str) -> PyResult<Self> {
        match Workload::new(kind).map_err(runtime_error)? {
            Some(workload) => Ok(Self { workload }),
            None => Err(PyValueError::new_err(format!(
                "{kind:?} is not a benchmark, expected one of {KINDS:?}"
            ))),
        }
    }

    /// Process `frames` 20 ms frames, with the GIL released.
    fn run(&mut self, py: Python<'_>, frames: usize) -> PyResult<()> {
        let workload = &mut self.workload;
        py.detach(|| workload.run(frames)).map_err(runtime_error)
    }
}

/// Bench-only: audio_dsp's per-frame work timed inside Rust (benches/test_dsp.py).
#[pymodule]
fn dsp_bench(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<NativeBench>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_runs_and_others_are_refused() {
        for kind in KINDS {
            let Ok(Some(mut workload)) = Workload::new(kind) else {
                unreachable!("{kind} sets up")
            };
            // Past the end of the signal, so the runs cycle over it.
            assert!(workload.run(SIGNAL_FRAMES + 3).is_ok(), "{kind}");
        }
        assert!(matches!(Workload::new("mix"), Ok(None)));
    }
}
