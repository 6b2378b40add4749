//! The voicechat SFU media plane.
//!
//! A selective forwarding unit: every participant sends its Opus stream once and the SFU
//! forwards it, without decoding, to the other participants of the room. str0m in RTP mode
//! does the WebRTC protocol work (ICE-lite, DTLS-SRTP, RTP/RTCP); this crate owns rooms,
//! participants, forwarding policy, speaking detection and the UDP I/O loop around it, and a
//! native client peer for bots, the desktop client and load tests.
//!
//! Layers:
//!
//! - sans-IO state machines driven by `(now, input)`: [`SfuCore`] (the SFU) and
//!   [`PeerSession`] (the client peer), with [`SpeakingDetector`] and [`Demux`];
//! - the I/O loops, one thread per [`Sfu`] or [`Peer`], owning the UDP socket; controllers talk
//!   to them over channels only, so the media path never waits on its controller (Python).
//!
//! It is a plain library: it never reads the environment on its own behalf. Python settings
//! build an [`SfuConfig`] and pass it in.
#![deny(missing_docs)]
// Only the batched socket calls (`media_socket`, Linux) are unsafe, behind a safe interface.
#![deny(unsafe_code)]

mod config;
mod core;
mod demux;
mod drive;
mod error;
mod event;
mod media_socket;
mod opus;
mod peer;
mod server;
mod speaking;

pub use crate::core::{check_id, SfuCore, MAX_ID_LEN};
pub use config::{SfuConfig, SfuConfigBuilder};
pub use demux::{stun_local_ufrag, Demux, MAX_ADDRESSES_PER_PARTICIPANT};
pub use error::{Result, SfuError};
pub use event::{LeaveReason, ParticipantStats, SfuEvent};
pub use opus::packet_samples;
pub use peer::{PeerSession, PeerStats, ReceivedPacket};
pub use server::{Peer, PeerConfig, Sfu};
pub use speaking::{SpeakingDetector, HANGOVER, HOLD_DBOV, ON_DBOV};
