//! The client's voice engine: the whole per-frame audio path of a call, native.
//!
//! A [`VoiceLink`] runs over a client [`sfu_core::Peer`] with two threads of its own, neither
//! of which ever touches Python:
//!
//! - the link thread ([`engine`](crate::engine), `voice-link`) owns the capture and playback
//!   pipelines of `audio_dsp`: it encodes the microphone's frames from the input ring and
//!   sends them through the peer, gated by mute, deafen, push-to-talk or voice activity over
//!   the noise floor ([`NoiseFloorGate`], [`Gating`]; a gated frame goes out as its TOC byte
//!   alone, a DTX frame, so the RTP clock moves on); it pushes received packets into the
//!   per-sender jitter buffers, and decodes and mixes the next output frame into the output
//!   ring just in time, `output_lead` before the output callback would run dry (catching up
//!   at once after an underrun, and shedding the extra frame at the next silent one); once
//!   per [`STATS_INTERVAL`] it publishes the window's loss, jitter and [`quality`];
//! - the receive thread (`voice-link-recv`) waits for the peer's packets and hands them to
//!   the link thread with their arrival time.
//!
//! The sound card callbacks call [`VoiceLink::write_input`] / [`VoiceLink::read_output`],
//! which copy between the callback's buffer and a lock-free [`SampleRing`] without allocating
//! and, when a frame is in or due, wake the link thread through a bounded channel
//! (`try_send`: never blocks). Settings are in [`LinkConfig`] (every default is there).
//!
//! The Python class `voicechat._native.sfu.VoiceLink` is a thin binding over this crate
//! (docs/audio.md, "Client engine").
#![deny(missing_docs)]
#![deny(unsafe_code)]

use std::time::Duration;

mod config;
mod engine;
mod gate;
mod link;
mod ring;
mod stats;

pub use config::{CodecSettings, LinkConfig, LinkConfigBuilder};
pub use gate::{Gating, NoiseFloorGate};
pub use link::{LinkError, VoiceLink};
pub use ring::SampleRing;
pub use stats::{level_to_meter, quality, LinkStats};

/// How often the link thread refreshes its stats (the window of the loss figures).
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);
