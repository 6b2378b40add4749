//! The voicechat SFU media plane.
//!
//! A selective forwarding unit: every participant sends its Opus stream once and the SFU
//! forwards it, without decoding, to the other participants of the room. The WebRTC protocol
//! work (ICE, DTLS-SRTP, RTP) will be done by str0m in RTP mode; this crate owns rooms,
//! participants, forwarding policy and the UDP I/O loop around it.
//!
//! It is a plain library: it never reads the environment or the clock on its own behalf.
//! Python settings build an [`SfuConfig`] and pass it in.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod error;

pub use config::{SfuConfig, SfuConfigBuilder};
pub use error::{Result, SfuError};
