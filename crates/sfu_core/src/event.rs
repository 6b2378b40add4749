//! What the media plane reports to its controller.

use std::time::Duration;

/// Why a participant left its room.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaveReason {
    /// The controller removed it ([`crate::SfuCore::leave`]).
    Left,
    /// No ICE traffic from it for the configured `ice_timeout` (it vanished).
    IceTimeout,
    /// Its DTLS session was closed or failed.
    Closed,
    /// Its WebRTC state machine failed or panicked; the message says how. Only this
    /// participant was dropped.
    Failed(String),
}

impl LeaveReason {
    /// A short machine-readable name: `left`, `ice_timeout`, `closed` or `failed`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::IceTimeout => "ice_timeout",
            Self::Closed => "closed",
            Self::Failed(_) => "failed",
        }
    }
}

/// An event of the SFU, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SfuEvent {
    /// ICE and DTLS are up: media can flow to and from the participant.
    Connected {
        /// Room of the participant.
        room: String,
        /// The participant.
        participant: String,
    },
    /// The participant is gone; its tracks are being removed from the others.
    Left {
        /// Room it was in.
        room: String,
        /// The participant.
        participant: String,
        /// Why it left.
        reason: LeaveReason,
    },
    /// The participant started or stopped speaking (RFC 6464 level with hysteresis).
    Speaking {
        /// Room of the participant.
        room: String,
        /// The participant.
        participant: String,
        /// Whether it speaks now.
        speaking: bool,
    },
    /// The SFU needs the participant to accept a new offer (tracks were added or removed);
    /// deliver `sdp` to it and pass its answer to [`crate::SfuCore::accept_answer`].
    Offer {
        /// Room of the participant.
        room: String,
        /// The participant that must answer.
        participant: String,
        /// The SDP offer.
        sdp: String,
    },
}

/// Counters and quality figures of one participant, as seen by the SFU.
///
/// Byte counts are RTP payload bytes. `loss`, `jitter` and `rtt` come from RTCP (str0m's
/// periodic stats, once a second) and are `None` until the first report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParticipantStats {
    /// RTP packets received from the participant.
    pub packets_in: u64,
    /// RTP payload bytes received from the participant.
    pub bytes_in: u64,
    /// RTP packets forwarded to the participant (from every other sender).
    pub packets_out: u64,
    /// RTP payload bytes forwarded to the participant.
    pub bytes_out: u64,
    /// Fraction (0..1) of the participant's packets lost on the way to the SFU.
    pub loss_in: Option<f32>,
    /// Interarrival jitter of the participant's stream.
    pub jitter_in: Option<Duration>,
    /// Fraction (0..1) of forwarded packets the participant reports lost (worst track).
    pub loss_out: Option<f32>,
    /// Round-trip time between the SFU and the participant.
    pub rtt: Option<Duration>,
    /// Whether ICE and DTLS are up.
    pub connected: bool,
    /// Whether the participant is muted (not forwarded).
    pub muted: bool,
    /// Whether the participant is speaking.
    pub speaking: bool,
}
