//! What a [`VoiceLink`](crate::VoiceLink) starts with, and the codec settings it changes live.
//!
//! Every default of the link lives here (the Python binding passes only what its caller gave
//! and lets the builder fill in the rest); those it shares with the DSP are the `audio_dsp`
//! defaults themselves, not copies.

use std::time::Duration;

use audio_dsp::jitter::{JitterConfig, JitterConfigBuilder};
use audio_dsp::opus::{samples_per_frame, EncoderConfig};
use audio_dsp::pipeline::CaptureConfig;
use audio_dsp::DspError;

/// The codec settings a running link can change ([`VoiceLink::configure`](crate::VoiceLink::configure)).
///
/// Defaults: the [`EncoderConfig`] defaults (20 ms frames, 64 kbit/s) and the
/// [`CaptureConfig`] default for noise suppression (on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecSettings {
    /// Opus frame duration: 10, 20, 40 or 60 ms.
    pub frame_ms: u32,
    /// Opus bitrate, 24 000 to 96 000 bit/s.
    pub bitrate: u32,
    /// RNNoise on the microphone.
    pub denoise: bool,
}

impl Default for CodecSettings {
    fn default() -> Self {
        let encoder = EncoderConfig::default();
        Self {
            frame_ms: encoder.frame_ms(),
            bitrate: encoder.bitrate(),
            denoise: CaptureConfig::default().denoise,
        }
    }
}

impl CodecSettings {
    /// Samples per (mono, 48 kHz) frame.
    #[must_use]
    pub fn frame_samples(self) -> usize {
        samples_per_frame(self.frame_ms)
    }

    /// The capture encoder these settings ask for: FEC on, DTX off (the link gates itself:
    /// unsent frames still advance the peer's RTP clock).
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] for a frame duration or bitrate libopus does not take.
    pub fn encoder(self) -> Result<EncoderConfig, DspError> {
        EncoderConfig::builder()
            .bitrate(self.bitrate)
            .frame_ms(self.frame_ms)
            .fec(true)
            .dtx(false)
            .build()
    }
}

/// Validated settings of a [`VoiceLink`](crate::VoiceLink); build with [`LinkConfig::builder`].
///
/// | setting        | default                          | accepted                           |
/// |----------------|----------------------------------|------------------------------------|
/// | `frame_ms`     | 20 ([`EncoderConfig`])           | 10, 20, 40, 60                     |
/// | `bitrate`      | 64 000 bit/s ([`EncoderConfig`]) | 24 000 to 96 000                   |
/// | `denoise`      | on ([`CaptureConfig`])           |                                    |
/// | `push_to_talk` | off (voice activity)             |                                    |
/// | `min_delay`    | 20 ms ([`JitterConfig`])         | 0 to `max_delay`                   |
/// | `max_delay`    | 200 ms ([`JitterConfig`])        | `min_delay` to 1 s                 |
/// | `output_lead`  | 6 ms                             | any                                |
/// | `buffer`       | 1 s                              | any; at least four frames are kept |
///
/// `output_lead` is how long before the output callback would run dry the link decodes and
/// mixes the next frame; `buffer` is how many seconds of samples each ring holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    codec: CodecSettings,
    push_to_talk: bool,
    jitter: JitterConfig,
    output_lead: Duration,
    buffer: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            codec: CodecSettings::default(),
            push_to_talk: false,
            jitter: JitterConfig::default(),
            output_lead: Self::DEFAULT_OUTPUT_LEAD,
            buffer: Self::DEFAULT_BUFFER,
        }
    }
}

impl LinkConfig {
    /// Default `output_lead`: enough for one decode and mix on a busy 2-core machine, short
    /// enough that a decoded frame does not wait long in the ring.
    pub const DEFAULT_OUTPUT_LEAD: Duration = Duration::from_millis(6);
    /// Default `buffer`: a second of samples per ring.
    pub const DEFAULT_BUFFER: Duration = Duration::from_secs(1);

    /// A builder holding the defaults listed on [`LinkConfig`].
    #[must_use]
    pub fn builder() -> LinkConfigBuilder {
        let config = Self::default();
        LinkConfigBuilder {
            codec: config.codec,
            push_to_talk: config.push_to_talk,
            jitter: JitterConfig::builder(),
            output_lead: config.output_lead,
            buffer: config.buffer,
        }
    }

    /// The codec settings the link starts with.
    #[must_use]
    pub fn codec(&self) -> CodecSettings {
        self.codec
    }

    /// Whether the link starts in push-to-talk mode (else voice activity).
    #[must_use]
    pub fn push_to_talk(&self) -> bool {
        self.push_to_talk
    }

    /// The settings of each sender's jitter buffer.
    #[must_use]
    pub fn jitter(&self) -> JitterConfig {
        self.jitter
    }

    /// How long before the output would run dry the next frame is decoded and mixed.
    #[must_use]
    pub fn output_lead(&self) -> Duration {
        self.output_lead
    }

    /// How many seconds of samples each ring holds.
    #[must_use]
    pub fn buffer(&self) -> Duration {
        self.buffer
    }
}

/// Builder of [`LinkConfig`]; [`build`](Self::build) validates.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfigBuilder {
    codec: CodecSettings,
    push_to_talk: bool,
    jitter: JitterConfigBuilder,
    output_lead: Duration,
    buffer: Duration,
}

impl LinkConfigBuilder {
    /// Opus frame duration: 10, 20 (default), 40 or 60 ms.
    #[must_use]
    pub fn frame_ms(mut self, frame_ms: u32) -> Self {
        self.codec.frame_ms = frame_ms;
        self
    }

    /// Opus bitrate, 24 000 to 96 000 bit/s (default 64 000).
    #[must_use]
    pub fn bitrate(mut self, bitrate: u32) -> Self {
        self.codec.bitrate = bitrate;
        self
    }

    /// RNNoise on the microphone (default on).
    #[must_use]
    pub fn denoise(mut self, denoise: bool) -> Self {
        self.codec.denoise = denoise;
        self
    }

    /// Send while the key is down, else on voice activity (default).
    #[must_use]
    pub fn push_to_talk(mut self, push_to_talk: bool) -> Self {
        self.push_to_talk = push_to_talk;
        self
    }

    /// Smallest jitter buffer delay (default 20 ms).
    #[must_use]
    pub fn min_delay(mut self, delay: Duration) -> Self {
        self.jitter = self.jitter.min_delay(delay);
        self
    }

    /// Largest jitter buffer delay, at most 1 s (default 200 ms).
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.jitter = self.jitter.max_delay(delay);
        self
    }

    /// How long before the output would run dry a frame is decoded and mixed (default 6 ms).
    #[must_use]
    pub fn output_lead(mut self, lead: Duration) -> Self {
        self.output_lead = lead;
        self
    }

    /// Seconds of samples each ring holds (default 1 s).
    #[must_use]
    pub fn buffer(mut self, buffer: Duration) -> Self {
        self.buffer = buffer;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] for a codec setting or jitter delay out of range.
    pub fn build(self) -> Result<LinkConfig, DspError> {
        self.codec.encoder()?;
        Ok(LinkConfig {
            codec: self.codec,
            push_to_talk: self.push_to_talk,
            jitter: self.jitter.build()?,
            output_lead: self.output_lead,
            buffer: self.buffer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let Ok(config) = LinkConfig::builder().build() else {
            unreachable!("the defaults are valid")
        };
        assert_eq!(config, LinkConfig::default());
        let codec = config.codec();
        assert_eq!(
            (codec.frame_ms, codec.bitrate, codec.denoise),
            (20, 64_000, true)
        );
        assert_eq!(codec.frame_samples(), 960);
        assert!(!config.push_to_talk());
        assert_eq!(config.jitter().min_delay(), Duration::from_millis(20));
        assert_eq!(config.jitter().max_delay(), Duration::from_millis(200));
        assert_eq!(config.output_lead(), Duration::from_millis(6));
        assert_eq!(config.buffer(), Duration::from_secs(1));
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        assert!(LinkConfig::builder().frame_ms(25).build().is_err());
        assert!(LinkConfig::builder().bitrate(1_000).build().is_err());
        let inverted = LinkConfig::builder()
            .min_delay(Duration::from_millis(300))
            .max_delay(Duration::from_millis(100));
        assert!(inverted.build().is_err());
        let Ok(config) = LinkConfig::builder()
            .frame_ms(10)
            .push_to_talk(true)
            .buffer(Duration::from_millis(500))
            .build()
        else {
            unreachable!("valid settings")
        };
        assert_eq!(config.codec().frame_samples(), 480);
        assert!(config.push_to_talk());
        assert_eq!(config.buffer(), Duration::from_millis(500));
    }
}
