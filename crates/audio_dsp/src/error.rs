//! The crate's single error type.

use thiserror::Error;

/// Everything that can go wrong in `audio_dsp`.
///
/// New variants may be added as codecs and filters land, so matches outside this crate need a
/// wildcard arm. The Python binding maps each variant to an exception under
/// `voicechat._native.DspError` (see `docs/native.md`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DspError {
    /// A frame's length is not one the operation accepts: a byte buffer that is not a whole
    /// number of samples, or a frame that is not a supported duration at its sample rate.
    #[error("invalid frame size: got {len} bytes or samples, expected {expected}")]
    InvalidFrameSize {
        /// Length that was passed, in the unit the operation documents (bytes or samples).
        len: usize,
        /// What the operation accepts, for the message, e.g. `"an even number of bytes"`.
        expected: &'static str,
    },

    /// A sample rate the operation does not support.
    #[error("unsupported sample rate {0} Hz")]
    InvalidSampleRate(u32),

    /// Samples are not in a format the operation reads (it expects signed 16-bit PCM).
    #[error("unsupported sample format {0}: expected signed 16-bit PCM")]
    InvalidSampleFormat(String),

    /// A parameter outside its documented range (bitrate, frame duration, channel count, ...).
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// Name of the parameter as the caller knows it.
        name: &'static str,
        /// Why the value was refused, including the accepted range.
        reason: String,
    },

    /// The codec reported an error while encoding or decoding.
    #[error("codec error: {0}")]
    Codec(String),

    /// A received packet could not be parsed; it is dropped, the stream goes on.
    #[error("corrupt packet: {0}")]
    CorruptPacket(String),
}

/// `Result` with [`DspError`] as the error type.
pub type Result<T, E = DspError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_problem() {
        let err = DspError::InvalidFrameSize {
            len: 3,
            expected: "an even number of bytes",
        };
        assert_eq!(
            err.to_string(),
            "invalid frame size: got 3 bytes or samples, expected an even number of bytes"
        );
        assert_eq!(
            DspError::InvalidSampleRate(44_100).to_string(),
            "unsupported sample rate 44100 Hz"
        );
    }
}
