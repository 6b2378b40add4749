//! Audio level as carried by the RTP header extension of RFC 6464.
//!
//! The level is the frame's RMS power in dB relative to the overload point of the system
//! (dBov), negated: 0 is as loud as 16-bit PCM gets, 127 is -127 dBov or quieter. RFC 6464 §3
//! defines 0 dBov as a full-scale square wave, so a full-scale *sine* is about 3 (its RMS is
//! 3 dB below its peak). The computation matches WebRTC's `RmsLevel`, so levels we send compare
//! with those browsers send.

/// The level of digital silence, and of anything quieter than -127 dBov.
pub const SILENCE_DBOV: u8 = 127;

/// Mean square of the 0 dBov reference: a square wave at the most negative 16-bit value.
const FULL_SCALE_MEAN_SQUARE: f64 = 32_768.0 * 32_768.0;

/// Returns the RFC 6464 audio level of one frame of 16-bit PCM, in -dBov (`0..=127`).
///
/// `samples` is usually one 10–60 ms packet's worth of (interleaved) samples; the level is the
/// RMS over all of them, rounded to the nearest dB. An empty frame carries no energy and is
/// silence ([`SILENCE_DBOV`]).
///
/// ```
/// use audio_dsp::{audio_level_dbov, SILENCE_DBOV};
///
/// assert_eq!(audio_level_dbov(&[0; 960]), SILENCE_DBOV);
/// let square: Vec<i16> = (0..960).map(|i| if i % 2 == 0 { i16::MAX } else { -i16::MAX }).collect();
/// assert_eq!(audio_level_dbov(&square), 0);
/// ```
#[must_use]
pub fn audio_level_dbov(samples: &[i16]) -> u8 {
    if samples.is_empty() {
        return SILENCE_DBOV;
    }
    // Exact integer sum: each square is at most 2^30, so u128 cannot overflow for any slice.
    let sum_of_squares: u128 = samples
        .iter()
        .map(|&s| {
            let magnitude = u64::from(s.unsigned_abs());
            u128::from(magnitude * magnitude)
        })
        .sum();
    // Precision loss in these casts is far below the 1 dB resolution of the result.
    #[allow(clippy::cast_precision_loss)]
    let mean_square = sum_of_squares as f64 / samples.len() as f64;
    if mean_square <= 0.0 {
        return SILENCE_DBOV;
    }
    let dbov = 10.0 * (mean_square / FULL_SCALE_MEAN_SQUARE).log10();
    // dbov is in [-90.3 - 10·log10(len), 0]; clamping first makes the cast exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let level = (-dbov).round().clamp(0.0, f64::from(SILENCE_DBOV)) as u8;
    level
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// One 20 ms frame at 48 kHz.
    const FRAME: usize = 960;

    /// A 1 kHz sine at 48 kHz with the given peak amplitude (a whole number of periods).
    fn sine(peak: f64) -> Vec<i16> {
        (0..FRAME)
            .map(|i| {
                let phase = 2.0 * PI * 1_000.0 * i as f64 / 48_000.0;
                (peak * phase.sin()).round() as i16
            })
            .collect()
    }

    #[test]
    fn silence_is_127() {
        assert_eq!(audio_level_dbov(&[0; FRAME]), 127);
        assert_eq!(audio_level_dbov(&[]), 127);
    }

    #[test]
    fn full_scale_square_is_0() {
        let square: Vec<i16> = (0..FRAME)
            .map(|i| if i % 2 == 0 { i16::MAX } else { -i16::MAX })
            .collect();
        assert_eq!(audio_level_dbov(&square), 0);
        assert_eq!(audio_level_dbov(&[i16::MIN; FRAME]), 0);
    }

    #[test]
    fn full_scale_sine_is_3() {
        assert_eq!(audio_level_dbov(&sine(f64::from(i16::MAX))), 3);
    }

    #[test]
    fn sine_at_minus_20_dbov_rms_is_20() {
        // RMS 20 dB below the full-scale square: peak = 0.1 · 32768 · √2.
        let peak = 0.1 * 32_768.0 * 2.0_f64.sqrt();
        assert_eq!(audio_level_dbov(&sine(peak)), 20);
    }

    #[test]
    fn sine_peaking_at_minus_20_dbfs_is_23() {
        // Peak 20 dB below full scale; the sine's crest factor adds 3 dB.
        assert_eq!(audio_level_dbov(&sine(0.1 * 32_768.0)), 23);
    }

    #[test]
    fn one_lsb_everywhere_is_90() {
        // 20·log10(1/32768) = -90.3 dBov.
        let lsb: Vec<i16> = (0..FRAME)
            .map(|i| if i % 2 == 0 { 1 } else { -1 })
            .collect();
        assert_eq!(audio_level_dbov(&lsb), 90);
    }

    #[test]
    fn quieter_than_minus_127_dbov_clamps_to_silence() {
        let mut frame = vec![0_i16; 48_000];
        frame[0] = 1; // -90.3 dB spread over a second: about -137 dBov.
        assert_eq!(audio_level_dbov(&frame), 127);
    }

    #[test]
    fn louder_is_never_a_higher_level() {
        let levels: Vec<u8> = (0..=15)
            .map(|shift| audio_level_dbov(&sine(f64::from(i16::MAX >> shift))))
            .collect();
        assert!(levels.windows(2).all(|w| w[0] <= w[1]), "{levels:?}");
        // Each halving of amplitude is 6 dB.
        assert_eq!(levels[1] - levels[0], 6);
    }
}
