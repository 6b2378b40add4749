//! `voicechat._native.sfu`: the SFU media plane from the `sfu_core` crate.
//!
//! Threads: `Sfu` and `Peer` each own one native media thread (in `sfu_core`); every method
//! here sends a command to it and waits for the reply with the GIL released. Media threads
//! never touch Python objects.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sfu_core::{
    LeaveReason, ParticipantStats, Peer, PeerConfig, PeerStats, ReceivedPacket, Sfu, SfuConfig,
    SfuError, SfuEvent,
};

use crate::errors::sfu_error;

/// The submodule's docstring.
pub(crate) const DOC: &str = "The SFU media plane (the Rust sfu_core crate).\n\n\
    Errors derive from voicechat._native.SfuError.";

/// Validated configuration of the SFU media plane (immutable).
///
/// Every argument is keyword-only and optional; the defaults are the ones of the Rust
/// `sfu_core::SfuConfig`.
///
/// Args:
///     bind_ip: Address the UDP media socket binds to.
///     media_port: UDP port all peers are multiplexed on; 0 lets the OS pick one.
///     public_ip: Address put in ICE candidates (VOICECHAT_PUBLIC_IP); None advertises
///         bind_ip. Required when bind_ip is unspecified (0.0.0.0 or ::).
///     worker_threads: Media I/O threads, 1 to 64; thread i listens on media_port + i and each
///         room lives on one thread.
///     max_users_per_room: Most participants one room holds, 1 to 100.
///     ice_timeout: Seconds a participant may go without ICE consent before it is dropped,
///         1 to 300.
///
/// Raises:
///     SfuConfigError: A value outside its accepted range, or an address that does not parse.
///     TypeError: A value of the wrong type (e.g. a str for media_port).
#[pyclass(module = "voicechat._native.sfu", name = "SfuConfig", frozen, eq, hash)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PySfuConfig {
    inner: SfuConfig,
}

/// `SfuError::InvalidConfig` for `field`.
fn invalid(py: Python<'_>, field: &'static str, reason: String) -> PyErr {
    sfu_error(py, SfuError::InvalidConfig { field, reason })
}

fn parse_ip(py: Python<'_>, field: &'static str, text: &str) -> PyResult<IpAddr> {
    text.parse()
        .map_err(|_| invalid(py, field, format!("{text:?} is not an IP address")))
}

/// Extracts an unsigned integer field. A Python int that does not fit `T` is an
/// `SfuConfigError` naming the field and its accepted range, not a bare OverflowError.
fn config_uint<T: TryFrom<u64>>(
    value: &Bound<'_, PyAny>,
    field: &'static str,
    accepted: &str,
) -> PyResult<T> {
    let py = value.py();
    let out_of_range = || match value.repr() {
        Ok(repr) => invalid(py, field, format!("{repr} is outside {accepted}")),
        Err(err) => err,
    };
    match value.extract::<u64>() {
        Ok(wide) => T::try_from(wide).map_err(|_| out_of_range()),
        Err(err) if err.is_instance_of::<PyOverflowError>(py) => Err(out_of_range()),
        Err(err) => Err(err),
    }
}

fn describe(range: &RangeInclusive<usize>) -> String {
    format!("{}..={}", range.start(), range.end())
}

#[pymethods]
impl PySfuConfig {
    #[new]
    #[pyo3(
        signature = (
            *,
            bind_ip = None,
            media_port = None,
            public_ip = None,
            worker_threads = None,
            max_users_per_room = None,
            ice_timeout = None,
        ),
        text_signature = "(*, bind_ip='127.0.0.1', media_port=10000, public_ip=None, \
                          worker_threads=1, max_users_per_room=50, ice_timeout=30.0)"
    )]
    fn new(
        py: Python<'_>,
        bind_ip: Option<&str>,
        media_port: Option<&Bound<'_, PyAny>>,
        public_ip: Option<&str>,
        worker_threads: Option<&Bound<'_, PyAny>>,
        max_users_per_room: Option<&Bound<'_, PyAny>>,
        ice_timeout: Option<f64>,
    ) -> PyResult<Self> {
        // Unset arguments keep the Rust defaults, which text_signature and the stub repeat
        // (tests/test_native.py checks that they agree).
        let mut builder = SfuConfig::builder();
        if let Some(ip) = bind_ip {
            builder = builder.bind_ip(parse_ip(py, "bind_ip", ip)?);
        }
        if let Some(port) = media_port {
            builder = builder.media_port(config_uint(port, "media_port", "0..=65535")?);
        }
        if let Some(ip) = public_ip {
            builder = builder.public_ip(Some(parse_ip(py, "public_ip", ip)?));
        }
        if let Some(threads) = worker_threads {
            builder = builder.worker_threads(config_uint(
                threads,
                "worker_threads",
                &describe(&SfuConfig::WORKER_THREADS_RANGE),
            )?);
        }
        if let Some(users) = max_users_per_room {
            builder = builder.max_users_per_room(config_uint(
                users,
                "max_users_per_room",
                &describe(&SfuConfig::MAX_USERS_PER_ROOM_RANGE),
            )?);
        }
        if let Some(seconds) = ice_timeout {
            let timeout = Duration::try_from_secs_f64(seconds)
                .map_err(|_| invalid(py, "ice_timeout", format!("{seconds} is not a duration")))?;
            builder = builder.ice_timeout(timeout);
        }
        let inner = builder.build().map_err(|err| sfu_error(py, err))?;
        Ok(Self { inner })
    }

    /// Address the UDP media socket binds to.
    #[getter]
    fn bind_ip(&self) -> String {
        self.inner.bind_ip().to_string()
    }

    /// UDP port all peers are multiplexed on; 0 means the OS picks one.
    #[getter]
    fn media_port(&self) -> u16 {
        self.inner.media_port()
    }

    /// Address configured for ICE candidates, or None to advertise bind_ip.
    #[getter]
    fn public_ip(&self) -> Option<String> {
        self.inner.public_ip().map(|ip| ip.to_string())
    }

    /// Address put in ICE candidates: public_ip if set, else bind_ip.
    #[getter]
    fn advertised_ip(&self) -> String {
        self.inner.advertised_ip().to_string()
    }

    /// Number of media I/O threads.
    #[getter]
    fn worker_threads(&self) -> usize {
        self.inner.worker_threads()
    }

    /// Most participants one room holds.
    #[getter]
    fn max_users_per_room(&self) -> usize {
        self.inner.max_users_per_room()
    }

    /// Seconds a participant may go without ICE consent before it is dropped.
    #[getter]
    fn ice_timeout(&self) -> f64 {
        self.inner.ice_timeout().as_secs_f64()
    }

    fn __repr__(&self) -> String {
        let public_ip = match self.inner.public_ip() {
            Some(ip) => format!("'{ip}'"),
            None => "None".to_owned(),
        };
        format!(
            "SfuConfig(bind_ip='{}', media_port={}, public_ip={}, worker_threads={}, \
             max_users_per_room={}, ice_timeout={:?})",
            self.inner.bind_ip(),
            self.inner.media_port(),
            public_ip,
            self.inner.worker_threads(),
            self.inner.max_users_per_room(),
            self.inner.ice_timeout().as_secs_f64(),
        )
    }
}

/// A timeout in seconds from Python: finite and not negative.
fn timeout(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| PyValueError::new_err(format!("timeout must be >= 0 seconds, got {seconds}")))
}

/// The SFU media plane: rooms of WebRTC participants whose Opus is forwarded to each other.
///
/// Starting it binds the UDP media port and starts one native media thread; `close()` (or
/// leaving a `with` block) stops it.
///
/// Args:
///     config: The configuration; the defaults of SfuConfig() if None.
///
/// Raises:
///     SfuIoError: The media port cannot be bound.
#[pyclass(module = "voicechat._native.sfu", name = "Sfu", frozen)]
pub(crate) struct PySfu {
    inner: Sfu,
    config: PySfuConfig,
}

#[pymethods]
impl PySfu {
    #[new]
    #[pyo3(signature = (config = None))]
    fn new(py: Python<'_>, config: Option<PyRef<'_, PySfuConfig>>) -> PyResult<Self> {
        let config = config.map_or_else(
            || PySfuConfig {
                inner: SfuConfig::default(),
            },
            |config| config.clone(),
        );
        let sfu_config = config.inner.clone();
        let inner = py
            .detach(|| Sfu::start(sfu_config))
            .map_err(|err| sfu_error(py, err))?;
        Ok(Self { inner, config })
    }

    /// The configuration the SFU runs with.
    #[getter]
    fn config(&self) -> PySfuConfig {
        self.config.clone()
    }

    /// (host, port) of the first media thread's socket; the OS's pick if media_port was 0.
    #[getter]
    fn local_addr(&self) -> (String, u16) {
        let addr = self.inner.local_addr();
        (addr.ip().to_string(), addr.port())
    }

    /// (host, port) of every media thread's socket, thread 0 first.
    #[getter]
    fn local_addrs(&self) -> Vec<(String, u16)> {
        self.inner
            .local_addrs()
            .into_iter()
            .map(|addr| (addr.ip().to_string(), addr.port()))
            .collect()
    }

    /// (receive, send) buffer sizes in bytes the kernel granted each media thread's socket,
    /// thread 0 first, as Linux reports them (twice what it set aside).
    #[getter]
    fn socket_buffer_sizes(&self) -> Vec<(usize, usize)> {
        self.inner.socket_buffer_sizes()
    }

    /// Create a room, or change an existing room's user limit.
    #[pyo3(signature = (room_id, user_limit = None))]
    fn create_room(
        &self,
        py: Python<'_>,
        room_id: &str,
        user_limit: Option<usize>,
    ) -> PyResult<()> {
        py.detach(|| self.inner.create_room(room_id, user_limit))
            .map_err(|err| sfu_error(py, err))
    }

    /// Remove a room; its participants leave (reason "left").
    fn close_room(&self, py: Python<'_>, room_id: &str) -> PyResult<()> {
        py.detach(|| self.inner.close_room(room_id))
            .map_err(|err| sfu_error(py, err))
    }

    /// Add a participant from its SDP offer; return the SDP answer.
    fn join(
        &self,
        py: Python<'_>,
        room_id: &str,
        participant_id: &str,
        offer_sdp: &str,
    ) -> PyResult<String> {
        py.detach(|| self.inner.join(room_id, participant_id, offer_sdp))
            .map_err(|err| sfu_error(py, err))
    }

    /// Take a participant's answer to the SFU's pending offer.
    fn accept_answer(&self, py: Python<'_>, participant_id: &str, sdp: &str) -> PyResult<()> {
        py.detach(|| self.inner.accept_answer(participant_id, sdp))
            .map_err(|err| sfu_error(py, err))
    }

    /// The SFU's offer awaiting this participant's answer, or None.
    fn pending_offer(&self, py: Python<'_>, participant_id: &str) -> PyResult<Option<String>> {
        py.detach(|| self.inner.pending_offer(participant_id))
            .map_err(|err| sfu_error(py, err))
    }

    /// Remove a participant (an event with reason "left" follows).
    fn leave(&self, py: Python<'_>, participant_id: &str) -> PyResult<()> {
        py.detach(|| self.inner.leave(participant_id))
            .map_err(|err| sfu_error(py, err))
    }

    /// Stop or resume forwarding a participant's audio.
    fn set_muted(&self, py: Python<'_>, participant_id: &str, muted: bool) -> PyResult<()> {
        py.detach(|| self.inner.set_muted(participant_id, muted))
            .map_err(|err| sfu_error(py, err))
    }

    /// A participant's counters and quality figures.
    fn stats(&self, py: Python<'_>, participant_id: &str) -> PyResult<PyParticipantStats> {
        py.detach(|| self.inner.stats(participant_id))
            .map(|inner| PyParticipantStats { inner })
            .map_err(|err| sfu_error(py, err))
    }

    /// Ids of a room's participants, in join order.
    fn participants(&self, py: Python<'_>, room_id: &str) -> PyResult<Vec<String>> {
        py.detach(|| self.inner.participants(room_id))
            .map_err(|err| sfu_error(py, err))
    }

    /// Wait up to `timeout` seconds for an event, then return every queued event.
    #[pyo3(signature = (timeout = 0.0))]
    fn poll_events(&self, py: Python<'_>, timeout: f64) -> PyResult<Vec<PySfuEvent>> {
        let wait = self::timeout(timeout)?;
        py.detach(|| self.inner.poll_events(wait))
            .map(|events| events.into_iter().map(PySfuEvent::from).collect())
            .map_err(|err| sfu_error(py, err))
    }

    /// Stop the media thread; later calls raise SfuStoppedError. Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.close());
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) {
        self.close(py);
    }

    fn __repr__(&self) -> String {
        let addr = self.inner.local_addr();
        format!("Sfu(local_addr=('{}', {}))", addr.ip(), addr.port())
    }
}

/// An event of the SFU: see `kind`.
#[pyclass(module = "voicechat._native.sfu", name = "SfuEvent", frozen, eq)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PySfuEvent {
    kind: &'static str,
    room_id: String,
    participant_id: String,
    speaking: Option<bool>,
    reason: Option<&'static str>,
    detail: Option<String>,
    sdp: Option<String>,
}

impl From<SfuEvent> for PySfuEvent {
    fn from(event: SfuEvent) -> Self {
        let blank = |kind, room_id, participant_id| Self {
            kind,
            room_id,
            participant_id,
            speaking: None,
            reason: None,
            detail: None,
            sdp: None,
        };
        match event {
            SfuEvent::Connected { room, participant } => blank("connected", room, participant),
            SfuEvent::Left {
                room,
                participant,
                reason,
            } => Self {
                reason: Some(reason.as_str()),
                detail: match reason {
                    LeaveReason::Failed(msg) => Some(msg),
                    _ => None,
                },
                ..blank("left", room, participant)
            },
            SfuEvent::Speaking {
                room,
                participant,
                speaking,
            } => Self {
                speaking: Some(speaking),
                ..blank("speaking", room, participant)
            },
            SfuEvent::Offer {
                room,
                participant,
                sdp,
            } => Self {
                sdp: Some(sdp),
                ..blank("offer", room, participant)
            },
            // sfu_core's enum is #[non_exhaustive]; a newer event surfaces by name only.
            _ => blank("unknown", String::new(), String::new()),
        }
    }
}

#[pymethods]
impl PySfuEvent {
    /// "connected", "left", "speaking" or "offer".
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind
    }
    /// Room of the participant.
    #[getter]
    fn room_id(&self) -> &str {
        &self.room_id
    }
    /// The participant the event is about.
    #[getter]
    fn participant_id(&self) -> &str {
        &self.participant_id
    }
    /// For "speaking": whether it speaks now; else None.
    #[getter]
    fn speaking(&self) -> Option<bool> {
        self.speaking
    }
    /// For "left": "left", "ice_timeout", "closed" or "failed"; else None.
    #[getter]
    fn reason(&self) -> Option<&'static str> {
        self.reason
    }
    /// For "left" with reason "failed": what failed; else None.
    #[getter]
    fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
    /// For "offer": the SDP offer the participant must answer; else None.
    #[getter]
    fn sdp(&self) -> Option<&str> {
        self.sdp.as_deref()
    }

    fn __repr__(&self) -> String {
        let mut extra = String::new();
        if let Some(speaking) = self.speaking {
            extra = format!(", speaking={}", if speaking { "True" } else { "False" });
        }
        if let Some(reason) = self.reason {
            extra = format!(", reason='{reason}'");
        }
        format!(
            "SfuEvent(kind='{}', room_id='{}', participant_id='{}'{extra})",
            self.kind, self.room_id, self.participant_id
        )
    }
}

/// Counters and quality figures of one participant, as seen by the SFU.
#[pyclass(module = "voicechat._native.sfu", name = "ParticipantStats", frozen)]
pub(crate) struct PyParticipantStats {
    inner: ParticipantStats,
}

#[pymethods]
impl PyParticipantStats {
    /// RTP packets received from the participant.
    #[getter]
    fn packets_in(&self) -> u64 {
        self.inner.packets_in
    }
    /// RTP payload bytes received from the participant.
    #[getter]
    fn bytes_in(&self) -> u64 {
        self.inner.bytes_in
    }
    /// RTP packets forwarded to the participant.
    #[getter]
    fn packets_out(&self) -> u64 {
        self.inner.packets_out
    }
    /// RTP payload bytes forwarded to the participant.
    #[getter]
    fn bytes_out(&self) -> u64 {
        self.inner.bytes_out
    }
    /// Fraction (0 to 1) of the participant's packets lost on the way in, or None.
    #[getter]
    fn loss_in(&self) -> Option<f32> {
        self.inner.loss_in
    }
    /// Interarrival jitter of the participant's stream in seconds, or None.
    #[getter]
    fn jitter_in(&self) -> Option<f64> {
        self.inner.jitter_in.map(|d| d.as_secs_f64())
    }
    /// Fraction (0 to 1) of forwarded packets the participant reports lost, or None.
    #[getter]
    fn loss_out(&self) -> Option<f32> {
        self.inner.loss_out
    }
    /// Round-trip time in seconds, or None.
    #[getter]
    fn rtt(&self) -> Option<f64> {
        self.inner.rtt.map(|d| d.as_secs_f64())
    }
    /// Whether ICE and DTLS are up.
    #[getter]
    fn connected(&self) -> bool {
        self.inner.connected
    }
    /// Whether the participant is muted.
    #[getter]
    fn muted(&self) -> bool {
        self.inner.muted
    }
    /// Whether the participant is speaking.
    #[getter]
    fn speaking(&self) -> bool {
        self.inner.speaking
    }

    fn __repr__(&self) -> String {
        format!(
            "ParticipantStats(packets_in={}, packets_out={}, connected={})",
            self.inner.packets_in,
            self.inner.packets_out,
            if self.inner.connected {
                "True"
            } else {
                "False"
            }
        )
    }
}

/// A native WebRTC client peer (ICE, DTLS-SRTP, Opus RTP) on its own media thread.
///
/// Args:
///     bind_ip: Address its UDP socket binds to (the OS picks the port); also its candidate.
///     send_loss: Fraction (0 to 1) of outgoing SRTP/SRTCP datagrams to drop, for tests.
///     seed: Seed of the loss pattern and the initial RTP sequence number and timestamp.
///
/// Raises:
///     SfuIoError: The socket cannot be bound.
///     ValueError: send_loss outside 0 to 1, or bind_ip not an address.
#[pyclass(module = "voicechat._native.sfu", name = "Peer", frozen)]
pub(crate) struct PyPeer {
    inner: Arc<Peer>,
}

impl PyPeer {
    /// The native peer, shared with a `VoiceLink` that sends and receives through it.
    pub(crate) fn shared(&self) -> Arc<Peer> {
        Arc::clone(&self.inner)
    }
}

#[pymethods]
impl PyPeer {
    #[new]
    #[pyo3(signature = (*, bind_ip = "127.0.0.1", send_loss = 0.0, seed = 1))]
    fn new(py: Python<'_>, bind_ip: &str, send_loss: f64, seed: u64) -> PyResult<Self> {
        let bind_ip: IpAddr = bind_ip
            .parse()
            .map_err(|_| PyValueError::new_err(format!("{bind_ip:?} is not an IP address")))?;
        if !(0.0..=1.0).contains(&send_loss) {
            return Err(PyValueError::new_err(format!(
                "send_loss must be within 0..=1, got {send_loss}"
            )));
        }
        let config = PeerConfig {
            bind_ip,
            send_loss,
            seed,
        };
        let inner = py
            .detach(|| Peer::start(&config))
            .map_err(|err| sfu_error(py, err))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// (host, port) of the peer's socket.
    #[getter]
    fn local_addr(&self) -> (String, u16) {
        let addr = self.inner.local_addr();
        (addr.ip().to_string(), addr.port())
    }

    /// Make the peer's SDP offer (one send-only Opus track).
    fn offer(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| self.inner.offer())
            .map_err(|err| sfu_error(py, err))
    }

    /// Take the answer to offer().
    fn accept_answer(&self, py: Python<'_>, sdp: &str) -> PyResult<()> {
        py.detach(|| self.inner.accept_answer(sdp))
            .map_err(|err| sfu_error(py, err))
    }

    /// Take an offer from the SFU (renegotiation) and return the answer.
    fn accept_offer(&self, py: Python<'_>, sdp: &str) -> PyResult<String> {
        py.detach(|| self.inner.accept_offer(sdp))
            .map_err(|err| sfu_error(py, err))
    }

    /// Send one Opus packet with its RFC 6464 level (0 loudest to 127 silence).
    #[pyo3(signature = (payload, audio_level = 127))]
    fn send(&self, py: Python<'_>, payload: &[u8], audio_level: u8) -> PyResult<()> {
        if audio_level > 127 {
            return Err(PyValueError::new_err(format!(
                "audio_level must be within 0..=127, got {audio_level}"
            )));
        }
        let payload = payload.to_vec();
        py.detach(|| self.inner.send(payload, audio_level))
            .map_err(|err| sfu_error(py, err))
    }

    /// Wait up to `timeout` seconds for a packet from another participant; None if none came.
    #[pyo3(signature = (timeout = 0.0))]
    fn recv(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<PyReceivedPacket>> {
        let wait = self::timeout(timeout)?;
        py.detach(|| self.inner.recv(wait))
            .map(|packet| packet.map(|inner| PyReceivedPacket { inner }))
            .map_err(|err| sfu_error(py, err))
    }

    /// Whether ICE and DTLS are up.
    #[getter]
    fn connected(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.inner.is_connected())
            .map_err(|err| sfu_error(py, err))
    }

    /// The peer's counters: packets_sent, packets_not_sent, datagrams_lost, packets_received,
    /// dtx_frames.
    fn stats(&self, py: Python<'_>) -> PyResult<std::collections::HashMap<&'static str, u64>> {
        let stats: PeerStats = py
            .detach(|| self.inner.stats())
            .map_err(|err| sfu_error(py, err))?;
        Ok(std::collections::HashMap::from([
            ("packets_sent", stats.packets_sent),
            ("packets_not_sent", stats.packets_not_sent),
            ("datagrams_lost", stats.datagrams_lost),
            ("packets_received", stats.packets_received),
            ("dtx_frames", stats.dtx_frames),
        ]))
    }

    /// Stop the peer's thread without a goodbye (the SFU notices by ICE timeout). Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.close());
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) {
        self.close(py);
    }
}

/// One RTP packet a Peer received from another participant.
#[pyclass(module = "voicechat._native.sfu", name = "ReceivedPacket", frozen)]
pub(crate) struct PyReceivedPacket {
    inner: ReceivedPacket,
}

#[pymethods]
impl PyReceivedPacket {
    /// The sending participant's id (from the track's msid), or None if unknown.
    #[getter]
    fn participant_id(&self) -> Option<&str> {
        self.inner.participant.as_deref()
    }
    /// The m-line (track) the packet arrived on.
    #[getter]
    fn mid(&self) -> &str {
        &self.inner.mid
    }
    /// Extended RTP sequence number.
    #[getter]
    fn seq(&self) -> u64 {
        self.inner.seq
    }
    /// RTP timestamp (48 kHz).
    #[getter]
    fn timestamp(&self) -> u32 {
        self.inner.timestamp
    }
    /// RFC 6464 audio level (0 loudest to 127 silence), or None.
    #[getter]
    fn audio_level(&self) -> Option<u8> {
        self.inner.audio_level
    }
    /// The Opus payload.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.payload)
    }

    fn __repr__(&self) -> String {
        format!(
            "ReceivedPacket(participant_id={:?}, seq={}, len={})",
            self.inner.participant,
            self.inner.seq,
            self.inner.payload.len()
        )
    }
}

/// Fills the `sfu` submodule.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PySfuConfig>()?;
    module.add_class::<PySfu>()?;
    module.add_class::<PySfuEvent>()?;
    module.add_class::<PyParticipantStats>()?;
    module.add_class::<PyPeer>()?;
    module.add_class::<PyReceivedPacket>()?;
    crate::link::register(module)?;
    Ok(())
}
