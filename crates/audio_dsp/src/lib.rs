//! Audio signal processing for voicechat's media path.
//!
//! Everything between the sound card and the network, for the desktop client and for bots
//! (SPEC §6, §9):
//!
//! - [`opus`]: Opus encoder and decoder (libopus 1.5, vendored and linked statically), with
//!   packet loss concealment and in-band FEC;
//! - [`denoise`]: RNNoise noise suppression (nnnoiseless) with its voice probability;
//! - [`level`] and [`vad`]: RFC 6464 audio levels and speaking detection with hangover;
//! - [`jitter`]: the adaptive, sans-IO jitter buffer of one incoming stream;
//! - [`resample`] and [`mixer`]: rate conversion for devices not at 48 kHz (rubato), and
//!   mixing with per-stream gain and a soft limiter;
//! - [`pipeline`]: the two composed paths, capture (denoise → level/VAD → encode → packets) and
//!   playback (packets per sender → jitter buffers → decode → mix → frames).
//!
//! The client's voice engine, which runs both pipelines on its own threads over a network
//! peer, is the `voice_link` crate.
//!
//! It is a plain library: no Python, no threads, no I/O, no clock and no environment
//! variables. Callers (the `voicechat._native` binding, the client's audio thread) pass every
//! parameter and every timestamp in.
//!
//! Samples are 16-bit signed PCM (`i16`) or float in `[-1, 1]` (`f32`), interleaved when
//! stereo; [`pcm`] converts the little-endian byte form used on the wire and by devices.
#![deny(missing_docs)]
// Only `opus` (the libopus FFI) may use unsafe code, and it says why each block is sound.
#![deny(unsafe_code)]

pub mod denoise;
mod error;
pub mod jitter;
pub mod level;
pub mod mixer;
pub mod opus;
pub mod pcm;
pub mod pipeline;
pub mod resample;
pub mod vad;

pub use error::{DspError, Result};
pub use level::{audio_level_dbov, SILENCE_DBOV};
