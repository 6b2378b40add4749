//! What a UI shows of a link: the meter, the connection quality and the figures of the last
//! stats window.

use std::time::Duration;

/// The figures of a [`VoiceLink`](crate::VoiceLink): the last stats window's (refreshed every
/// [`STATS_INTERVAL`](crate::STATS_INTERVAL)) and the counters since the start.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStats {
    /// Fraction of the window's frames that were lost (before FEC and concealment).
    pub loss: f64,
    /// The largest interarrival jitter over the senders.
    pub jitter: Duration,
    /// The largest jitter buffer target delay over the senders.
    pub jitter_buffer_delay: Duration,
    /// [`quality`] of the window.
    pub quality: &'static str,
    /// Senders heard from since the start.
    pub senders: usize,
    /// Output reads that found too few samples.
    pub underruns: u64,
    /// Writes whose samples did not all fit in the input ring.
    pub input_dropped: u64,
    /// Frames that did not all fit in the output ring.
    pub output_dropped: u64,
    /// Frames sent as speech.
    pub frames_sent: u64,
    /// Frames the pipelines failed on, and settings that could not be applied.
    pub errors: u64,
}

/// An RFC 6464 level (0 loud .. 127 silent) as a 0..1 meter value over 60 dB.
#[must_use]
pub fn level_to_meter(level: u8) -> f32 {
    1.0 - f32::from(level.min(60)) / 60.0
}

/// Connection quality from one window's figures: "unknown" before anything was played, then
/// "poor" (over 10 % lost or 150 ms of jitter buffer), "fair" (2 %, 80 ms) or "good".
#[must_use]
pub fn quality(played_ever: u64, loss: f64, delay: Duration) -> &'static str {
    let delay = delay.as_secs_f64();
    if played_ever == 0 {
        "unknown"
    } else if loss > 0.1 || delay > 0.15 {
        "poor"
    } else if loss > 0.02 || delay > 0.08 {
        "fair"
    } else {
        "good"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_and_quality() {
        assert!((level_to_meter(0) - 1.0).abs() < 1e-6);
        assert!(level_to_meter(127).abs() < 1e-6);
        assert!((level_to_meter(30) - 0.5).abs() < 1e-6);
        assert_eq!(quality(0, 0.0, Duration::ZERO), "unknown");
        assert_eq!(quality(5, 0.0, Duration::from_millis(40)), "good");
        assert_eq!(quality(5, 0.05, Duration::from_millis(40)), "fair");
        assert_eq!(quality(5, 0.0, Duration::from_millis(160)), "poor");
    }
}
