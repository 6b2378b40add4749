//! Speaking detection: per-frame level and voice probability, with hangover.
//!
//! A frame counts as speech when it is loud enough (its RFC 6464 level is at most
//! `threshold_dbov`, i.e. louder than `-threshold_dbov` dBov) and, when a voice probability
//! is given (RNNoise's, from the denoiser), that probability reaches `min_voice_probability`.
//! The decision stays "speaking" for `hangover` after the last speech frame, so the ends of
//! words and short pauses are not cut off — for speaking indicators and for DTX.

use std::time::Duration;

use crate::{audio_level_dbov, DspError, Result};

/// Settings of a [`VoiceActivityDetector`]; build with [`VadConfig::builder`].
///
/// Defaults: `threshold_dbov` 50 (louder than -50 dBov), `min_voice_probability` 0.5,
/// `hangover` 300 ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    threshold_dbov: u8,
    min_voice_probability: f32,
    hangover: Duration,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            threshold_dbov: 50,
            min_voice_probability: 0.5,
            hangover: Duration::from_millis(300),
        }
    }
}

impl VadConfig {
    /// A builder starting from the defaults.
    #[must_use]
    pub fn builder() -> VadConfigBuilder {
        VadConfigBuilder(Self::default())
    }

    /// Level (RFC 6464, -dBov) at or below which (i.e. as loud or louder) a frame may be speech.
    #[must_use]
    pub fn threshold_dbov(&self) -> u8 {
        self.threshold_dbov
    }

    /// Voice probability a frame needs, when one is given.
    #[must_use]
    pub fn min_voice_probability(&self) -> f32 {
        self.min_voice_probability
    }

    /// How long the decision stays "speaking" after the last speech frame.
    #[must_use]
    pub fn hangover(&self) -> Duration {
        self.hangover
    }
}

/// Builder of [`VadConfig`].
#[derive(Debug, Clone, Copy)]
pub struct VadConfigBuilder(VadConfig);

impl VadConfigBuilder {
    /// Level threshold, 0–127 -dBov (default 50).
    #[must_use]
    pub fn threshold_dbov(mut self, level: u8) -> Self {
        self.0.threshold_dbov = level;
        self
    }

    /// Voice probability threshold, 0–1 (default 0.5).
    #[must_use]
    pub fn min_voice_probability(mut self, probability: f32) -> Self {
        self.0.min_voice_probability = probability;
        self
    }

    /// Hangover, up to 5 s (default 300 ms).
    #[must_use]
    pub fn hangover(mut self, hangover: Duration) -> Self {
        self.0.hangover = hangover;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] for a value outside its range.
    pub fn build(self) -> Result<VadConfig> {
        let c = self.0;
        if c.threshold_dbov > 127 {
            return Err(DspError::InvalidArgument {
                name: "threshold_dbov",
                reason: format!("{} is outside 0..=127", c.threshold_dbov),
            });
        }
        if !(0.0..=1.0).contains(&c.min_voice_probability) {
            return Err(DspError::InvalidArgument {
                name: "min_voice_probability",
                reason: format!("{} is outside 0..=1", c.min_voice_probability),
            });
        }
        if c.hangover > Duration::from_secs(5) {
            return Err(DspError::InvalidArgument {
                name: "hangover",
                reason: format!("{:?} is longer than 5 s", c.hangover),
            });
        }
        Ok(c)
    }
}

/// One frame's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoiceActivity {
    /// The frame's RFC 6464 level, 0 (loudest) to 127 (silence).
    pub level: u8,
    /// Whether this frame alone looked like speech.
    pub frame_is_speech: bool,
    /// The decision with hangover: the user is speaking.
    pub speaking: bool,
}

/// Speaking detection for one stream, one frame at a time.
#[derive(Debug, Clone)]
pub struct VoiceActivityDetector {
    config: VadConfig,
    /// Audio time left before the hangover ends.
    hangover_left: Duration,
    speaking: bool,
}

impl VoiceActivityDetector {
    /// A detector that starts out silent.
    #[must_use]
    pub fn new(config: VadConfig) -> Self {
        Self {
            config,
            hangover_left: Duration::ZERO,
            speaking: false,
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &VadConfig {
        &self.config
    }

    /// The current decision.
    #[must_use]
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// Judges one frame of 16-bit PCM lasting `duration`, with RNNoise's voice probability
    /// for it if there is one.
    pub fn process(
        &mut self,
        frame: &[i16],
        duration: Duration,
        voice_probability: Option<f32>,
    ) -> VoiceActivity {
        let level = audio_level_dbov(frame);
        self.judge(level, duration, voice_probability)
    }

    /// As [`process`](Self::process), from a level computed elsewhere.
    pub fn judge(
        &mut self,
        level: u8,
        duration: Duration,
        voice_probability: Option<f32>,
    ) -> VoiceActivity {
        let loud = level <= self.config.threshold_dbov;
        let voiced = voice_probability.is_none_or(|p| p >= self.config.min_voice_probability);
        let frame_is_speech = loud && voiced;
        if frame_is_speech {
            self.speaking = true;
            self.hangover_left = self.config.hangover;
        } else if self.speaking {
            self.hangover_left = self.hangover_left.saturating_sub(duration);
            self.speaking = !self.hangover_left.is_zero();
        }
        VoiceActivity {
            level,
            frame_is_speech,
            speaking: self.speaking,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    fn tone(peak: f64) -> Vec<i16> {
        (0..960)
            .map(|i| (peak * (i as f64 * 0.1).sin()) as i16)
            .collect()
    }

    #[test]
    fn hangover_keeps_speaking_then_stops() {
        let config = VadConfig::builder()
            .hangover(Duration::from_millis(100))
            .build()
            .unwrap();
        let mut vad = VoiceActivityDetector::new(config);
        assert!(!vad.process(&[0; 960], FRAME, None).speaking);
        assert!(vad.process(&tone(10_000.0), FRAME, None).speaking);
        let after: Vec<bool> = (0..7)
            .map(|_| vad.process(&[0; 960], FRAME, None).speaking)
            .collect();
        assert_eq!(after, [true, true, true, true, false, false, false]);
    }

    #[test]
    fn loud_noise_without_voice_is_not_speech() {
        let mut vad = VoiceActivityDetector::new(VadConfig::default());
        let verdict = vad.process(&tone(10_000.0), FRAME, Some(0.05));
        assert!(!verdict.frame_is_speech && !verdict.speaking);
        assert!(vad.process(&tone(10_000.0), FRAME, Some(0.9)).speaking);
        // Quiet frames are never speech, whatever the probability.
        let quiet = vad.process(&tone(10.0), FRAME, Some(1.0));
        assert!(!quiet.frame_is_speech);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(VadConfig::builder().threshold_dbov(128).build().is_err());
        assert!(VadConfig::builder()
            .min_voice_probability(1.5)
            .build()
            .is_err());
        assert!(VadConfig::builder()
            .hangover(Duration::from_secs(10))
            .build()
            .is_err());
    }
}
