//! Conversions between 16-bit PCM samples and their byte form.
//!
//! Sound devices, WAV files and the native client's capture path hand over little-endian signed
//! 16-bit PCM (`s16le`); interleaved channels stay interleaved.

use crate::{DspError, Result};

/// Byte order of 16-bit samples in a byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Least significant byte first (`s16le`): WAV, sound devices, every platform we ship on.
    Little,
    /// Most significant byte first (`s16be`, "network order").
    Big,
}

impl ByteOrder {
    /// The byte order of the machine this code runs on.
    pub const NATIVE: Self = if cfg!(target_endian = "big") {
        Self::Big
    } else {
        Self::Little
    };
}

/// Decodes signed 16-bit PCM in the given byte order into samples.
///
/// # Errors
///
/// [`DspError::InvalidFrameSize`] when `bytes` is not a whole number of samples (odd length).
pub fn samples_from_bytes(bytes: &[u8], order: ByteOrder) -> Result<Vec<i16>> {
    if bytes.len() % 2 != 0 {
        return Err(DspError::InvalidFrameSize {
            len: bytes.len(),
            expected: "an even number of bytes (16-bit samples)",
        });
    }
    let decode = match order {
        ByteOrder::Little => i16::from_le_bytes,
        ByteOrder::Big => i16::from_be_bytes,
    };
    Ok(bytes
        .chunks_exact(2)
        .map(|pair| decode([pair[0], pair[1]]))
        .collect())
}

/// Decodes little-endian signed 16-bit PCM (`s16le`) into samples.
///
/// # Errors
///
/// [`DspError::InvalidFrameSize`] when `bytes` is not a whole number of samples (odd length).
pub fn samples_from_s16le(bytes: &[u8]) -> Result<Vec<i16>> {
    samples_from_bytes(bytes, ByteOrder::Little)
}

/// Encodes samples as little-endian signed 16-bit PCM (`s16le`).
#[must_use]
pub fn samples_to_s16le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_extreme_values() {
        let samples = [0, 1, -1, i16::MAX, i16::MIN, 12_345];
        let bytes = samples_to_s16le(&samples);
        assert_eq!(bytes.len(), 2 * samples.len());
        assert_eq!(&bytes[6..10], &[0xff, 0x7f, 0x00, 0x80]);
        assert_eq!(samples_from_s16le(&bytes).unwrap(), samples);
    }

    #[test]
    fn big_endian_reads_the_other_way_round() {
        let bytes = [0x7f, 0xff, 0x80, 0x00];
        assert_eq!(
            samples_from_bytes(&bytes, ByteOrder::Big).unwrap(),
            [i16::MAX, i16::MIN]
        );
        assert_eq!(
            samples_from_bytes(&bytes, ByteOrder::Little).unwrap(),
            [-129, 128]
        );
    }

    #[test]
    fn native_order_matches_the_target() {
        let sample: i16 = 0x1234;
        assert_eq!(
            samples_from_bytes(&sample.to_ne_bytes(), ByteOrder::NATIVE).unwrap(),
            [sample]
        );
    }

    #[test]
    fn empty_input_is_zero_samples() {
        assert_eq!(samples_from_s16le(&[]).unwrap(), Vec::<i16>::new());
    }

    #[test]
    fn odd_length_is_refused() {
        let err = samples_from_s16le(&[1, 2, 3]).unwrap_err();
        assert!(
            matches!(err, DspError::InvalidFrameSize { len: 3, .. }),
            "{err:?}"
        );
    }
}
