//! Mixing decoded streams with per-stream gain, without clipping.
//!
//! Streams are summed with their gains in float, then passed through a soft-knee limiter:
//! samples up to the knee (-3 dBFS, 0.708) are untouched; above it a tanh curve, continuous in
//! value and slope at the knee, approaches full scale without reaching it. So one talker at a
//! normal level is mixed bit-transparently, and any number of loud talkers bends smoothly
//! instead of wrapping or clipping hard. The limiter is memoryless, so it adds no delay.

use crate::{DspError, Result};

/// Where the soft limiter starts to bend, as a linear amplitude (-3 dBFS).
pub const LIMITER_KNEE: f32 = 0.707_945_8;

/// Largest per-stream gain (+12 dB ≈ 4.0).
pub const MAX_GAIN: f32 = 4.0;

/// Applies the soft-knee limiter to one sample.
#[must_use]
pub fn soft_limit(sample: f32) -> f32 {
    let magnitude = sample.abs();
    if magnitude <= LIMITER_KNEE || magnitude.is_nan() {
        return if magnitude.is_nan() { 0.0 } else { sample };
    }
    let headroom = 1.0 - LIMITER_KNEE;
    let bent = LIMITER_KNEE + headroom * ((magnitude - LIMITER_KNEE) / headroom).tanh();
    bent.copysign(sample)
}

/// Checks a per-stream gain: finite and within `0..=MAX_GAIN`.
///
/// # Errors
///
/// [`DspError::InvalidArgument`] otherwise.
pub fn check_gain(gain: f32) -> Result<f32> {
    if gain.is_finite() && (0.0..=MAX_GAIN).contains(&gain) {
        Ok(gain)
    } else {
        Err(DspError::InvalidArgument {
            name: "gain",
            reason: format!("{gain} is outside 0..={MAX_GAIN}"),
        })
    }
}

/// Mixes streams of float samples with their gains into `out`, then limits.
///
/// Streams shorter than `out` count as silence past their end; longer ones are cut.
///
/// # Errors
///
/// [`DspError::InvalidArgument`] for a gain outside `0..=MAX_GAIN`.
pub fn mix_into(out: &mut [f32], streams: &[(&[f32], f32)]) -> Result<()> {
    out.fill(0.0);
    for &(samples, gain) in streams {
        let gain = check_gain(gain)?;
        for (acc, &s) in out.iter_mut().zip(samples) {
            *acc += gain * s;
        }
    }
    for sample in out.iter_mut() {
        *sample = soft_limit(*sample);
    }
    Ok(())
}

/// Mixes streams into a new buffer of `len` samples; see [`mix_into`].
///
/// # Errors
///
/// As [`mix_into`].
pub fn mix(len: usize, streams: &[(&[f32], f32)]) -> Result<Vec<f32>> {
    let mut out = vec![0.0; len];
    mix_into(&mut out, streams)?;
    Ok(out)
}

/// Converts float samples in `[-1, 1]` to 16-bit PCM, rounding and saturating.
#[must_use]
pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    // The clamp keeps the product in i16 range, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    samples
        .iter()
        .map(|&s| (s.clamp(-1.0, 1.0) * 32_767.0).round() as i16)
        .collect()
}

/// Converts 16-bit PCM to float samples in `[-1, 1]`.
#[must_use]
pub fn to_f32(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32_768.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_mix_is_a_plain_weighted_sum() {
        let a = [0.1, -0.2, 0.3];
        let b = [0.2, 0.2];
        let out = mix(3, &[(&a, 1.0), (&b, 0.5)]).unwrap();
        assert_eq!(out, vec![0.1 + 0.1, -0.2 + 0.1, 0.3]);
    }

    #[test]
    fn many_loud_streams_never_clip() {
        let loud = vec![0.9_f32; 480];
        let streams: Vec<(&[f32], f32)> = (0..50).map(|_| (loud.as_slice(), 4.0)).collect();
        let out = mix(480, &streams).unwrap();
        assert!(out.iter().all(|&s| s <= 1.0 && s > LIMITER_KNEE));
        assert!(to_i16(&out).iter().all(|&s| s > 0));
    }

    #[test]
    fn limiter_is_continuous_monotonic_and_odd() {
        let xs: Vec<f32> = (0..4_000).map(|i| i as f32 / 1_000.0).collect();
        let ys: Vec<f32> = xs.iter().map(|&x| soft_limit(x)).collect();
        assert!(ys.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] < 0.0011));
        assert_eq!(soft_limit(-0.9), -soft_limit(0.9));
        assert_eq!(soft_limit(f32::NAN), 0.0);
        assert!(soft_limit(f32::INFINITY) <= 1.0);
    }

    #[test]
    fn bad_gain_is_refused() {
        assert!(mix(1, &[(&[0.0], -1.0)]).is_err());
        assert!(mix(1, &[(&[0.0], f32::NAN)]).is_err());
        assert!(mix(1, &[(&[0.0], 5.0)]).is_err());
    }
}
