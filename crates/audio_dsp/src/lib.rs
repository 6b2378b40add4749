//! Audio signal processing for voicechat's media path.
//!
//! This crate holds the per-frame DSP that both the desktop client and the server need:
//! audio levels for the RFC 6464 header extension and speaking detection today; Opus,
//! denoising, voice activity, jitter buffering and resampling as they land.
//!
//! It is a plain library: no Python, no threads, no I/O and no environment variables. Callers
//! (the `voicechat._native` binding, the SFU I/O loop) pass every parameter in.
//!
//! Audio is 16-bit signed PCM (`i16`) throughout; [`pcm`] converts the little-endian byte form
//! used on the wire and by sound devices.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod error;
pub mod level;
pub mod pcm;

pub use error::{DspError, Result};
pub use level::{audio_level_dbov, SILENCE_DBOV};
