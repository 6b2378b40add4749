//! The crate's single error type.

use thiserror::Error;

/// Everything that can go wrong in `sfu_core`.
///
/// New variants may be added as the media plane grows, so matches outside this crate need a
/// wildcard arm. The Python binding maps each variant to an exception under
/// `voicechat._native.SfuError` (see `docs/native.md`).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SfuError {
    /// A configuration value outside its documented range; see [`crate::SfuConfig`].
    #[error("invalid SFU config {field}: {reason}")]
    InvalidConfig {
        /// Name of the field, as in [`crate::SfuConfigBuilder`]'s setters.
        field: &'static str,
        /// Why the value was refused, including the accepted range.
        reason: String,
    },

    /// An SDP offer or answer that could not be parsed or negotiated.
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),

    /// The room already holds its maximum number of participants.
    #[error("room {room} is full ({limit} participants)")]
    RoomFull {
        /// The room that refused the participant.
        room: String,
        /// Its participant limit.
        limit: usize,
    },

    /// No room with this id exists in the SFU.
    #[error("unknown room {0}")]
    UnknownRoom(String),

    /// No participant with this id is in the room.
    #[error("unknown participant {0}")]
    UnknownParticipant(String),

    /// A participant with this id is already in a room of this SFU.
    #[error("participant {0} is already in a room")]
    ParticipantExists(String),

    /// A room or participant id that is empty, too long or has characters other than
    /// `A-Z a-z 0-9 _ . -` (ids appear in SDP as msid tokens).
    #[error("invalid {what} id {id:?}: use 1 to 64 of A-Z a-z 0-9 _ . -")]
    InvalidId {
        /// `room` or `participant`.
        what: &'static str,
        /// The refused id (truncated to 80 characters).
        id: String,
    },

    /// The media thread has stopped (the SFU or peer was closed); nothing more can be done.
    #[error("the media thread has stopped")]
    Stopped,

    /// A socket operation failed (binding the media port, sending or receiving).
    #[error("SFU I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with [`SfuError`] as the error type.
pub type Result<T, E = SfuError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_convert_and_keep_their_os_code() {
        let err: SfuError = std::io::Error::from_raw_os_error(98).into();
        let SfuError::Io(io) = &err else {
            panic!("expected Io, got {err:?}");
        };
        assert_eq!(io.raw_os_error(), Some(98));
        assert!(err.to_string().starts_with("SFU I/O error: "), "{err}");
    }

    #[test]
    fn room_full_names_room_and_limit() {
        let err = SfuError::RoomFull {
            room: "general".into(),
            limit: 50,
        };
        assert_eq!(err.to_string(), "room general is full (50 participants)");
    }
}
