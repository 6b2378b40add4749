//! Noise suppression with nnnoiseless, a Rust port of RNNoise.
//!
//! RNNoise works on 480-sample (10 ms) frames of 48 kHz mono audio. [`Denoiser`] accepts blocks
//! of any size and returns as many samples as it was given:
//!
//! - while every block is a whole number of 480-sample frames (10, 20, 40, 60 ms: what the
//!   capture pipeline feeds it), blocks are processed in place and add **no delay**;
//! - the first time a block is not, the denoiser switches for good to a 480-sample FIFO and
//!   adds 10 ms of delay, emitting 480 samples of silence once to make room.
//!
//! On top of that, RNNoise itself delays its output by one frame (480 samples, 10 ms) while
//! denoising; in bypass it does not, so switching the bypass shifts the audio by 10 ms once.
//!
//! Samples are float in `[-1, 1]` (the i16 range is used internally, as RNNoise expects).

use std::collections::VecDeque;

use nnnoiseless::DenoiseState;

/// Samples RNNoise processes at a time (10 ms at 48 kHz).
pub const FRAME: usize = DenoiseState::FRAME_SIZE;

/// Scale between float samples in `[-1, 1]` and the i16 range RNNoise works in.
const I16_SCALE: f32 = 32_768.0;

/// A streaming RNNoise denoiser for one 48 kHz mono stream.
pub struct Denoiser {
    state: Box<DenoiseState<'static>>,
    bypass: bool,
    /// Once a block was not a multiple of [`FRAME`]: the input not yet processed and the
    /// output not yet returned.
    fifo: Option<(Vec<f32>, VecDeque<f32>)>,
    voice_probability: f32,
    scratch_in: [f32; FRAME],
    scratch_out: [f32; FRAME],
}

impl std::fmt::Debug for Denoiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Denoiser")
            .field("bypass", &self.bypass)
            .field("latency", &self.latency())
            .field("voice_probability", &self.voice_probability)
            .finish_non_exhaustive()
    }
}

impl Default for Denoiser {
    fn default() -> Self {
        Self::new()
    }
}

impl Denoiser {
    /// A denoiser with RNNoise's built-in model, not bypassed.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: DenoiseState::new(),
            bypass: false,
            fifo: None,
            voice_probability: 0.0,
            scratch_in: [0.0; FRAME],
            scratch_out: [0.0; FRAME],
        }
    }

    /// Whether audio passes through untouched (noise suppression switched off by the user).
    #[must_use]
    pub fn bypass(&self) -> bool {
        self.bypass
    }

    /// Switches noise suppression off (`true`) or on. In bypass the model does not run and the
    /// voice probability stays at its last value; the delay does not change.
    pub fn set_bypass(&mut self, bypass: bool) {
        self.bypass = bypass;
    }

    /// RNNoise's probability (0–1) that the last processed 10 ms frame held speech.
    #[must_use]
    pub fn voice_probability(&self) -> f32 {
        self.voice_probability
    }

    /// Delay the buffering adds, in samples: 0, or [`FRAME`] once a block was not a multiple
    /// of it. RNNoise's own 10 ms delay (when not bypassed) comes on top.
    #[must_use]
    pub fn latency(&self) -> usize {
        if self.fifo.is_some() {
            FRAME
        } else {
            0
        }
    }

    fn run_frame(&mut self, frame: &[f32], out: &mut Vec<f32>) {
        if self.bypass {
            out.extend_from_slice(frame);
            return;
        }
        for (dst, &src) in self.scratch_in.iter_mut().zip(frame) {
            *dst = src * I16_SCALE;
        }
        self.voice_probability = self
            .state
            .process_frame(&mut self.scratch_out, &self.scratch_in);
        out.extend(
            self.scratch_out
                .iter()
                .map(|&s| (s / I16_SCALE).clamp(-1.0, 1.0)),
        );
    }

    /// Denoises a block of any length; returns the same number of samples.
    ///
    /// Returns the block's voice probability alongside: the highest of the 10 ms frames
    /// processed during this call (the last value if none was).
    pub fn process(&mut self, block: &[f32]) -> (Vec<f32>, f32) {
        if self.fifo.is_none() && block.len() % FRAME != 0 {
            self.fifo = Some((Vec::with_capacity(FRAME), VecDeque::from(vec![0.0; FRAME])));
        }
        let mut out = Vec::with_capacity(block.len());
        let mut peak: Option<f32> = None;
        match self.fifo.take() {
            None => {
                for frame in block.chunks_exact(FRAME) {
                    self.run_frame(frame, &mut out);
                    peak = Some(peak.map_or(self.voice_probability, |p: f32| {
                        p.max(self.voice_probability)
                    }));
                }
            }
            Some((mut pending, mut ready)) => {
                let mut processed = Vec::with_capacity(FRAME);
                for &sample in block {
                    pending.push(sample);
                    if pending.len() == FRAME {
                        processed.clear();
                        self.run_frame(&pending, &mut processed);
                        ready.extend(processed.iter().copied());
                        pending.clear();
                        peak = Some(peak.map_or(self.voice_probability, |p: f32| {
                            p.max(self.voice_probability)
                        }));
                    }
                }
                // The FIFO was primed with FRAME samples, so `ready` always holds enough.
                let take = block.len().min(ready.len());
                out.extend(ready.drain(..take));
                self.fifo = Some((pending, ready));
            }
        }
        (out, peak.unwrap_or(self.voice_probability))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u32, amplitude: f32) -> Vec<f32> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                amplitude * ((x >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0)
            })
            .collect()
    }

    #[test]
    fn any_block_size_comes_back_the_same_length() {
        let mut denoiser = Denoiser::new();
        for len in [960, 480, 441, 1, 0, 2048] {
            assert_eq!(denoiser.process(&noise(len, 1, 0.1)).0.len(), len);
        }
        assert_eq!(denoiser.latency(), FRAME);
    }

    #[test]
    fn multiples_of_480_add_no_delay_in_bypass() {
        let mut denoiser = Denoiser::new();
        denoiser.set_bypass(true);
        let input = noise(960, 2, 0.5);
        assert_eq!(denoiser.process(&input).0, input);
        assert_eq!(denoiser.latency(), 0);
    }

    #[test]
    fn white_noise_is_attenuated() {
        let mut denoiser = Denoiser::new();
        let input = noise(48_000, 3, 0.02);
        let (output, _) = denoiser.process(&input);
        let energy = |s: &[f32]| s.iter().map(|x| x * x).sum::<f32>();
        // Skip the first half second while the model settles.
        let ratio = energy(&output[24_000..]) / energy(&input[24_000..]);
        // Stationary white noise is not what RNNoise was trained on; it still takes > 4 dB off.
        assert!(ratio < 0.4, "{ratio}");
    }
}
