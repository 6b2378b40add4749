"""The SFU media plane (the Rust sfu_core crate).

`Sfu` runs the selective forwarding unit on one native media thread; `Peer` is a native WebRTC
client for bots, the desktop client and load tests. Every method sends a command to the media
thread and waits for it with the GIL released; media never touches Python.

Errors derive from `voicechat._native.SfuError`.
"""

from types import TracebackType
from typing import Literal, final

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Buffer

__all__ = [
    "ParticipantStats",
    "Peer",
    "ReceivedPacket",
    "Sfu",
    "SfuConfig",
    "SfuEvent",
    "VoiceLink",
]

@final
class SfuConfig:
    """Validated, immutable configuration of the SFU media plane.

    Every argument is keyword-only and optional; the defaults are those of the Rust
    `sfu_core::SfuConfig`. Instances compare equal when every field is equal, and are hashable.

    Args:
        bind_ip: Address the UDP media socket binds to.
        media_port: UDP port all peers are multiplexed on (VOICECHAT_MEDIA_PORT); 0 lets the
            OS pick a free one.
        public_ip: Address put in ICE candidates (VOICECHAT_PUBLIC_IP); None advertises
            `bind_ip`. Required when `bind_ip` is unspecified (0.0.0.0 or ::).
        worker_threads: Media I/O threads, 1 to 64; thread i listens on media_port + i and
            each room lives on one thread (chosen by a hash of its id).
        max_users_per_room: Most participants one room holds, 1 to 100.
        ice_timeout: Seconds a participant may go without ICE consent before it is dropped,
            1 to 300.

    Raises:
        SfuConfigError: A value outside its accepted range, or an address that does not parse.
        TypeError: A value of the wrong type, such as a str for `media_port`.
    """

    def __new__(
        cls,
        *,
        bind_ip: str = "127.0.0.1",
        media_port: int = 10000,
        public_ip: str | None = None,
        worker_threads: int = 1,
        max_users_per_room: int = 50,
        ice_timeout: float = 30.0,
    ) -> SfuConfig: ...
    @property
    def bind_ip(self) -> str:
        """Address the UDP media socket binds to."""
    @property
    def media_port(self) -> int:
        """UDP port all peers are multiplexed on; 0 means the OS picks one."""
    @property
    def public_ip(self) -> str | None:
        """Address configured for ICE candidates, or None to advertise `bind_ip`."""
    @property
    def advertised_ip(self) -> str:
        """Address put in ICE candidates: `public_ip` if set, else `bind_ip`."""
    @property
    def worker_threads(self) -> int:
        """Number of media I/O threads."""
    @property
    def max_users_per_room(self) -> int:
        """Most participants one room holds."""
    @property
    def ice_timeout(self) -> float:
        """Seconds a participant may go without ICE consent before it is dropped."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Sfu:
    """The SFU media plane: rooms of WebRTC participants whose Opus is forwarded to each other.

    Creating it binds the UDP media ports and starts `config.worker_threads` native media
    threads; `close()` (or leaving a `with` block) stops them. Participants join with an SDP
    offer (audio, Opus) and get an answer; once connected, tracks for the room's other
    participants follow in server-initiated offers (`SfuEvent` of kind "offer", also
    `pending_offer()`), which the participant answers through `accept_answer()`.

    Args:
        config: The configuration; `SfuConfig()`'s defaults if None.

    Raises:
        SfuIoError: The media port cannot be bound.
    """

    def __new__(cls, config: SfuConfig | None = None) -> Sfu: ...
    @property
    def config(self) -> SfuConfig:
        """The configuration the SFU runs with."""
    @property
    def local_addr(self) -> tuple[str, int]:
        """(host, port) of the first media thread's socket; the OS's pick if media_port was 0."""
    @property
    def local_addrs(self) -> list[tuple[str, int]]:
        """(host, port) of every media thread's socket, thread 0 first."""
    @property
    def socket_buffer_sizes(self) -> list[tuple[int, int]]:
        """(receive, send) buffer sizes in bytes the kernel granted each media thread's socket,
        thread 0 first, as Linux reports them (twice what it set aside). The SFU asks for 4 MiB;
        Linux caps it at `net.core.rmem_max` / `wmem_max`."""
    def create_room(self, room_id: str, user_limit: int | None = None) -> None:
        """Create a room, or change an existing room's user limit.

        Args:
            room_id: 1 to 64 of A-Z a-z 0-9 _ . -.
            user_limit: Most participants; `config.max_users_per_room` if None, and at most that.

        Raises:
            InvalidIdError: A malformed id.
            SfuConfigError: A limit outside 1 to max_users_per_room.
        """
    def close_room(self, room_id: str) -> None:
        """Remove a room; its participants leave (events with reason "left").

        Raises:
            UnknownRoomError: No such room.
        """
    def join(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Add a participant from its SDP offer and return the SDP answer.

        Raises:
            InvalidIdError: A malformed participant id.
            UnknownRoomError: No such room.
            RoomFullError: The room holds its user limit.
            ParticipantExistsError: The id is already in a room.
            InvalidSdpError: The offer does not parse, has no audio, or offers no Opus.
        """
    def accept_answer(self, participant_id: str, sdp: str) -> None:
        """Take a participant's answer to the SFU's pending offer.

        Raises:
            UnknownParticipantError: No such participant.
            InvalidSdpError: The answer does not parse, no offer is pending, or it does not
                match the offer (a new offer then follows).
        """
    def pending_offer(self, participant_id: str) -> str | None:
        """The SFU's offer awaiting this participant's answer, or None.

        Raises:
            UnknownParticipantError: No such participant.
        """
    def leave(self, participant_id: str) -> None:
        """Remove a participant; an event with reason "left" follows.

        Raises:
            UnknownParticipantError: No such participant.
        """
    def set_muted(self, participant_id: str, muted: bool) -> None:
        """Stop (or resume) forwarding a participant's audio.

        Raises:
            UnknownParticipantError: No such participant.
        """
    def stats(self, participant_id: str) -> ParticipantStats:
        """A participant's counters and quality figures.

        Raises:
            UnknownParticipantError: No such participant.
        """
    def participants(self, room_id: str) -> list[str]:
        """Ids of a room's participants, in join order.

        Raises:
            UnknownRoomError: No such room.
        """
    def poll_events(self, timeout: float = 0.0) -> list[SfuEvent]:
        """Wait up to `timeout` seconds for an event, then return every queued event.

        Raises:
            SfuStoppedError: The SFU was closed and no event is left.
            ValueError: A negative or non-finite timeout.
        """
    def close(self) -> None:
        """Stop the media thread; later calls raise SfuStoppedError. Idempotent."""
    def __enter__(self) -> Sfu: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> None: ...

@final
class SfuEvent:
    """An event of the SFU.

    Kinds: "connected" (ICE and DTLS are up), "left" (see `reason`), "speaking" (see
    `speaking`), "offer" (deliver `sdp` to the participant and pass its answer to
    `Sfu.accept_answer`).
    """

    @property
    def kind(self) -> Literal["connected", "left", "speaking", "offer", "unknown"]:
        """What happened."""
    @property
    def room_id(self) -> str:
        """Room of the participant."""
    @property
    def participant_id(self) -> str:
        """The participant the event is about."""
    @property
    def speaking(self) -> bool | None:
        """For "speaking": whether it speaks now; else None."""
    @property
    def reason(self) -> Literal["left", "ice_timeout", "closed", "failed"] | None:
        """For "left": why; else None."""
    @property
    def detail(self) -> str | None:
        """For "left" with reason "failed": what failed; else None."""
    @property
    def sdp(self) -> str | None:
        """For "offer": the SDP offer to answer; else None."""
    def __eq__(self, other: object, /) -> bool: ...
    __hash__: None  # type: ignore[assignment]

@final
class ParticipantStats:
    """Counters and quality figures of one participant, as seen by the SFU.

    Byte counts are RTP payload bytes; loss, jitter and RTT come from RTCP and are None until
    the first report (about a second after media starts).
    """

    @property
    def packets_in(self) -> int:
        """RTP packets received from the participant."""
    @property
    def bytes_in(self) -> int:
        """RTP payload bytes received from the participant."""
    @property
    def packets_out(self) -> int:
        """RTP packets forwarded to the participant."""
    @property
    def bytes_out(self) -> int:
        """RTP payload bytes forwarded to the participant."""
    @property
    def loss_in(self) -> float | None:
        """Fraction (0 to 1) of the participant's packets lost on the way in, or None."""
    @property
    def jitter_in(self) -> float | None:
        """Interarrival jitter of the participant's stream in seconds, or None."""
    @property
    def loss_out(self) -> float | None:
        """Fraction (0 to 1) of forwarded packets the participant reports lost, or None."""
    @property
    def rtt(self) -> float | None:
        """Round-trip time in seconds, or None."""
    @property
    def connected(self) -> bool:
        """Whether ICE and DTLS are up."""
    @property
    def muted(self) -> bool:
        """Whether the participant is muted."""
    @property
    def speaking(self) -> bool:
        """Whether the participant is speaking."""

@final
class Peer:
    """A native WebRTC client peer (full ICE, DTLS-SRTP, Opus RTP) on its own media thread.

    Make an offer, pass it to the SFU's `join`, give the answer to `accept_answer`, answer the
    SFU's renegotiation offers with `accept_offer`; once `connected`, `send` Opus packets and
    `recv` the other participants' packets.

    Args:
        bind_ip: Address its UDP socket binds to (the OS picks the port); also its candidate.
        send_loss: Fraction (0 to 1) of outgoing SRTP/SRTCP datagrams to drop, for tests.
        seed: Seed of the loss pattern and the initial RTP sequence number and timestamp.

    Raises:
        SfuIoError: The socket cannot be bound.
        ValueError: send_loss outside 0 to 1, or bind_ip not an address.
    """

    def __new__(
        cls, *, bind_ip: str = "127.0.0.1", send_loss: float = 0.0, seed: int = 1
    ) -> Peer: ...
    @property
    def local_addr(self) -> tuple[str, int]:
        """(host, port) of the peer's socket."""
    @property
    def connected(self) -> bool:
        """Whether ICE and DTLS are up."""
    def offer(self) -> str:
        """Make the peer's SDP offer (one send-only Opus track).

        Raises:
            InvalidSdpError: An offer was already made.
        """
    def accept_answer(self, sdp: str) -> None:
        """Take the answer to `offer()`.

        Raises:
            InvalidSdpError: It does not parse or does not match the offer.
        """
    def accept_offer(self, sdp: str) -> str:
        """Take an offer from the SFU (renegotiation) and return the answer.

        Raises:
            InvalidSdpError: It does not parse or cannot be accepted.
        """
    def send(self, payload: bytes, audio_level: int = 127) -> None:
        """Send one Opus packet with its RFC 6464 level (0 loudest to 127 silence).

        Does not wait for the network; before the peer is connected packets are dropped (and
        counted in `stats()["packets_not_sent"]`). The RTP timestamp advances by the packet's
        duration, read from its TOC byte. A packet of 2 bytes or less is an Opus DTX frame: as
        WebRTC senders do, it is not sent, only its time passes on the RTP clock.

        Raises:
            ValueError: audio_level above 127.
        """
    def recv(self, timeout: float = 0.0) -> ReceivedPacket | None:
        """Wait up to `timeout` seconds for a packet from another participant; None if none came.

        Raises:
            ValueError: A negative or non-finite timeout.
        """
    def stats(self) -> dict[str, int]:
        """Counters: packets_sent, packets_not_sent, datagrams_lost, packets_received,
        dtx_frames."""
    def close(self) -> None:
        """Stop the peer's thread without a goodbye (the SFU notices by ICE timeout)."""
    def __enter__(self) -> Peer: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> None: ...

@final
class ReceivedPacket:
    """One RTP packet a Peer received from another participant."""

    @property
    def participant_id(self) -> str | None:
        """The sending participant's id (from the track's msid), or None if unknown."""
    @property
    def mid(self) -> str:
        """The m-line (track) the packet arrived on."""
    @property
    def seq(self) -> int:
        """Extended RTP sequence number."""
    @property
    def timestamp(self) -> int:
        """RTP timestamp (48 kHz)."""
    @property
    def audio_level(self) -> int | None:
        """RFC 6464 audio level (0 loudest to 127 silence), or None."""
    @property
    def payload(self) -> bytes:
        """The Opus payload."""

@final
class VoiceLink:
    """The client's native voice engine over a client `Peer`: microphone samples in, speaker
    samples out.

    A native link thread owns the capture pipeline (denoise, level and voice activity, Opus
    encode), the gating (mute, deafen, push-to-talk, or voice activity over an adaptive noise
    floor), sending through `peer`, and the per-sender jitter buffers, decoding and mixing with
    per-user gains; a native receive thread reads `peer`'s packets. Neither takes the GIL. The
    sound card callbacks call `write_input` / `read_output`, which copy into / out of lock-free
    rings without allocating. The engine is the Rust `voice_link` crate; the defaults are its
    `LinkConfig`'s.

    Args:
        peer: The call's peer; the link sends through it and reads every packet it receives (so
            nothing else may call its `recv`).
        frame_ms: Opus frame, 10, 20, 40 or 60 ms.
        bitrate: Opus bitrate, bit/s.
        denoise: RNNoise on the microphone.
        push_to_talk: Send while `key_down`, else on voice activity.
        min_delay: Jitter buffer lower bound, seconds.
        max_delay: Jitter buffer upper bound, seconds.
        output_lead: How long before the output would run dry a frame is decoded and mixed.
        buffer: Seconds of samples each ring holds.

    Raises:
        DspInputError: A setting out of range.
        OSError: The threads cannot be started.
    """

    def __new__(
        cls,
        peer: Peer,
        *,
        frame_ms: int = 20,
        bitrate: int = 64000,
        denoise: bool = True,
        push_to_talk: bool = False,
        min_delay: float = 0.02,
        max_delay: float = 0.2,
        output_lead: float = 0.006,
        buffer: float = 1.0,
    ) -> VoiceLink: ...
    def write_input(self, samples: NDArray[np.float32] | Buffer) -> None:
        """Queue microphone samples: mono 48 kHz float32, a C-contiguous array or the raw
        buffer of a sounddevice raw stream. What does not fit in the ring is dropped (counted
        in `stats()["input_dropped"]`).

        Raises:
            ValueError: Not float32 samples.
        """
    def read_output(self, out: NDArray[np.float32] | Buffer) -> int:
        """Fill `out` (writable, as `write_input`) with the next speaker samples, silence where
        none are ready; return how many were real (fewer: an underrun).

        Raises:
            ValueError: Not writable float32 samples.
        """
    muted: bool
    """Send nothing."""
    deafened: bool
    """Play silence and send nothing."""
    push_to_talk: bool
    """Push-to-talk mode (else voice activity)."""
    key_down: bool
    """The push-to-talk key is down."""
    def configure(self, *, frame_ms: int, bitrate: int, denoise: bool) -> None:
        """Change the codec settings live (a new frame duration rebuilds both pipelines).

        Raises:
            DspInputError: A setting out of range.
        """
    def set_gain(self, user_id: str, gain: float) -> None:
        """Set how loud `user_id` plays: a linear gain, 0 (silent) to 4.

        Raises:
            DspInputError: A gain out of range.
        """
    @property
    def frame_samples(self) -> int:
        """Samples per frame at the current settings."""
    @property
    def frame_ms(self) -> int:
        """Opus frame duration in ms, as last configured."""
    @property
    def bitrate(self) -> int:
        """Opus bitrate in bit/s, as last configured."""
    @property
    def denoise(self) -> bool:
        """Whether RNNoise runs on the microphone, as last configured."""
    @property
    def min_delay(self) -> float:
        """Jitter buffer lower bound, seconds."""
    @property
    def max_delay(self) -> float:
        """Jitter buffer upper bound, seconds."""
    @property
    def output_lead(self) -> float:
        """How long before the output would run dry a frame is decoded and mixed, seconds."""
    @property
    def buffer(self) -> float:
        """Seconds of samples each ring asks to hold."""
    @property
    def input_level(self) -> float:
        """Microphone level of the last frame for a meter, 0 (-60 dBov or less) to 1."""
    @property
    def speaking(self) -> bool:
        """Whether the last frame was speech (voice activity over the noise floor)."""
    @property
    def sending(self) -> bool:
        """Whether the last frame was sent as speaking."""
    @property
    def call_ended(self) -> bool:
        """Whether the peer was found closed (nothing is sent any more)."""
    def remote_levels(self) -> dict[str, int]:
        """RFC 6464 level (0 loud .. 127 silent) of each sender's last played frame, refreshed
        every second."""
    def stats(self) -> dict[str, float | int | str]:
        """The last second's `loss`, `jitter`, `jitter_buffer_delay`, `quality`, `senders`, and
        the counters `underruns`, `input_dropped`, `output_dropped`, `frames_sent`, `errors`."""
    def close(self) -> None:
        """Stop both threads (the peer stays open). Idempotent."""
