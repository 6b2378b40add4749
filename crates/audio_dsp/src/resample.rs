//! Sample-rate conversion for sound devices that do not run at 48 kHz, with rubato.
//!
//! [`Resampler`] wraps rubato's FFT resampler (`FftFixedIn`, synchronous, fixed ratio) and
//! buffers internally, so it takes blocks of any size and returns whatever output is ready:
//! over time exactly `rate_out / rate_in` times the input, but any one call may return a few
//! samples more or fewer. Channels are interleaved. The resampler delays the signal by
//! [`Resampler::delay`] output samples.

use rubato::{FftFixedIn, Resampler as _};

use crate::{DspError, Result};

/// Sample rates the resampler accepts, in Hz.
pub const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=192_000;

/// A streaming fixed-ratio resampler for interleaved float audio.
pub struct Resampler {
    inner: Option<FftFixedIn<f32>>,
    rate_in: u32,
    rate_out: u32,
    channels: usize,
    chunk: usize,
    /// De-interleaved input waiting for a whole chunk.
    pending: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("rate_in", &self.rate_in)
            .field("rate_out", &self.rate_out)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// A resampler from `rate_in` to `rate_out` Hz for 1 or 2 interleaved channels.
    ///
    /// Input is consumed in chunks of 10 ms; equal rates pass audio through unchanged.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidSampleRate`] for a rate outside 8–192 kHz;
    /// [`DspError::InvalidArgument`] for another channel count.
    pub fn new(rate_in: u32, rate_out: u32, channels: u8) -> Result<Self> {
        for rate in [rate_in, rate_out] {
            if !RATE_RANGE.contains(&rate) {
                return Err(DspError::InvalidSampleRate(rate));
            }
        }
        if !(1..=2).contains(&channels) {
            return Err(DspError::InvalidArgument {
                name: "channels",
                reason: format!("{channels} is not 1 or 2"),
            });
        }
        let channels = usize::from(channels);
        let chunk = (rate_in / 100) as usize;
        let inner = if rate_in == rate_out {
            None
        } else {
            let resampler =
                FftFixedIn::new(rate_in as usize, rate_out as usize, chunk, 1, channels).map_err(
                    |err| DspError::InvalidArgument {
                        name: "sample rate",
                        reason: err.to_string(),
                    },
                )?;
            Some(resampler)
        };
        let output = match &inner {
            Some(r) => r.output_buffer_allocate(true),
            None => Vec::new(),
        };
        Ok(Self {
            inner,
            rate_in,
            rate_out,
            channels,
            chunk,
            pending: vec![Vec::with_capacity(chunk); channels],
            output,
        })
    }

    /// Input rate in Hz.
    #[must_use]
    pub fn rate_in(&self) -> u32 {
        self.rate_in
    }

    /// Output rate in Hz.
    #[must_use]
    pub fn rate_out(&self) -> u32 {
        self.rate_out
    }

    /// Delay the resampler adds, in output samples per channel.
    #[must_use]
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Resamples a block of interleaved samples; returns the interleaved output ready so far.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidFrameSize`] when the block is not a whole number of frames (one
    /// sample per channel).
    pub fn process(&mut self, block: &[f32]) -> Result<Vec<f32>> {
        if block.len() % self.channels != 0 {
            return Err(DspError::InvalidFrameSize {
                len: block.len(),
                expected: "a multiple of the channel count",
            });
        }
        let Some(inner) = self.inner.as_mut() else {
            return Ok(block.to_vec());
        };
        let mut out =
            Vec::with_capacity(block.len() * self.rate_out as usize / self.rate_in as usize + 64);
        for frame in block.chunks_exact(self.channels) {
            for (channel, &sample) in self.pending.iter_mut().zip(frame) {
                channel.push(sample);
            }
            if self.pending[0].len() == self.chunk {
                let (_, produced) = inner
                    .process_into_buffer(&self.pending, &mut self.output, None)
                    .map_err(|err| DspError::InvalidArgument {
                        name: "block",
                        reason: err.to_string(),
                    })?;
                for i in 0..produced {
                    for channel in &self.output {
                        out.push(channel[i]);
                    }
                }
                for channel in &mut self.pending {
                    channel.clear();
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_44100_to_48000_at_the_right_ratio() {
        let mut resampler = Resampler::new(44_100, 48_000, 1).unwrap();
        let input: Vec<f32> = (0..44_100)
            .map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 1_000.0 / 44_100.0).sin() * 0.5)
            .collect();
        let mut out = Vec::new();
        for block in input.chunks(512) {
            out.extend(resampler.process(block).unwrap());
        }
        // All whole 10 ms chunks are converted: 100 chunks of 441 → 480.
        assert_eq!(out.len(), 48_000);
        let delay = resampler.delay();
        // A 1 kHz tone at 48 kHz crosses zero upwards every 48 samples.
        let peak = out[delay..].iter().fold(0.0_f32, |m, s| m.max(s.abs()));
        assert!((peak - 0.5).abs() < 0.02, "{peak}");
    }

    #[test]
    fn equal_rates_pass_through_and_stereo_stays_interleaved() {
        let mut same = Resampler::new(48_000, 48_000, 2).unwrap();
        assert_eq!(same.process(&[0.1, 0.2]).unwrap(), vec![0.1, 0.2]);
        assert!(same.process(&[0.1]).is_err());
        let mut down = Resampler::new(48_000, 16_000, 2).unwrap();
        let out = down.process(&vec![0.0; 960 * 2]).unwrap();
        assert_eq!(out.len(), 320 * 2);
        assert!(Resampler::new(1_000, 48_000, 1).is_err());
        assert!(Resampler::new(48_000, 44_100, 3).is_err());
    }
}
