//! The sans-IO SFU: rooms, participants and forwarding, driven by `(now, input)`.
//!
//! [`SfuCore`] never reads the clock or touches a socket. Its owner (the I/O loop in
//! [`crate::server`], or a test on virtual time) feeds it datagrams, timeouts and controller
//! calls, and takes out datagrams to send ([`SfuCore::poll_transmit`]) and events
//! ([`SfuCore::poll_event`]).
//!
//! Each participant has one str0m `Rtc` in RTP mode, ICE-lite, Opus only. What a participant
//! sends arrives on its own m-line; for every *other* participant of the room the SFU adds one
//! send-only m-line (msid `<sender id> <sender id>`) to the receiver's session, so a receiver
//! tells senders apart by track, and writes the sender's packets there unchanged in payload,
//! with its own SSRC, a contiguous sequence number and a shifted timestamp (see [`SeqMap`]).
//!
//! Cost: str0m's per-`Rtc` work (timeouts, queue state, polling) walks every stream of that
//! `Rtc`, and a receiver in a room of `n` has `n - 1` of them. So a forwarded packet is only
//! written into each receiver's `Rtc`; the receivers written to are driven once per batch of
//! input (when [`SfuCore::poll_transmit`] or [`SfuCore::handle_timeout`] is next called), not
//! once per packet, and timers live in an ordered set so a deadline wakes only its own
//! participant.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Rtc};

use crate::demux::Demux;
use crate::drive::{drive, fenced, Datagram, Driven, Fatal, Feed};
use crate::event::{LeaveReason, ParticipantStats, SfuEvent};
use crate::speaking::SpeakingDetector;
use crate::{Result, SfuConfig, SfuError};

/// Internal participant handle; never reused within one [`SfuCore`].
type Key = u64;

/// Longest accepted room or participant id.
pub const MAX_ID_LEN: usize = 64;
/// Interval of str0m's stats events (loss, jitter, RTT).
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Most times a renegotiation's new mids are drawn before a repeat is given up on (each draw
/// repeats with a probability of a few per cent at most).
const MID_DRAWS: u32 = 20;
/// Samples per 20 ms Opus frame at 48 kHz: the timestamp step assumed across a sender restart.
const FRAME_SAMPLES: u32 = 960;

/// The RTP header extensions the SFU negotiates: the audio level (speaking detection, copied to
/// receivers) and the MID (receivers map tracks by it), at the ids browsers use.
///
/// Not transport-wide sequence numbers (TWCC): the SFU runs no bandwidth estimation for a
/// fixed-bitrate audio stream, and with TWCC every session keeps a register of its last 1,000
/// sent packets and parses a feedback report from the receiver every 100 ms, while sending one
/// of its own for what it receives. Nor absolute send time or the video-only extensions.
fn extension_map() -> ExtensionMap {
    let mut map = ExtensionMap::empty();
    map.set(1, Extension::AudioLevel);
    map.set(4, Extension::RtpMid);
    map
}

/// Checks a room or participant id: 1 to 64 of `A-Z a-z 0-9 _ . -`, so it can be used as an
/// SDP msid token unchanged.
pub fn check_id(what: &'static str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SfuError::InvalidId {
            what,
            id: id.chars().take(80).collect(),
        })
    }
}

/// Whether two of the tracks added in one change got the same mid.
fn has_repeated_mid(added: &[(Key, Mid)]) -> bool {
    let mut mids: Vec<Mid> = added.iter().map(|(_, mid)| *mid).collect();
    mids.sort_unstable();
    mids.windows(2).any(|pair| pair[0] == pair[1])
}

/// The offer with every m-line narrowed to "the SFU only receives here".
///
/// The SFU never sends on a client's own m-lines (other participants arrive on tracks of
/// their own), so it answers them `recvonly`. Otherwise a client that offered `sendrecv` (as
/// browsers and aiortc do for a microphone track) would see a remote track on its own m-line
/// that never carries media.
fn receive_only(sdp: &str) -> String {
    sdp.lines()
        .map(|line| match line.trim_end() {
            "a=sendrecv" => "a=sendonly",
            "a=recvonly" => "a=inactive",
            _ => line,
        })
        .fold(String::with_capacity(sdp.len()), |mut out, line| {
            out.push_str(line);
            out.push_str("\r\n");
            out
        })
}

/// Refuses offers str0m would accept but that carry no usable voice.
fn check_offer(sdp: &str) -> Result<SdpOffer> {
    if !sdp.trim_start().starts_with("v=0") {
        return Err(SfuError::InvalidSdp(
            "not an SDP session description (it must start with v=0)".into(),
        ));
    }
    let mut audio = false;
    let mut opus = false;
    for line in sdp.lines() {
        let line = line.trim();
        if line.starts_with("m=audio ") {
            audio = true;
        }
        if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            if let Some((_, codec)) = rest.split_once(' ') {
                opus |= codec.to_ascii_lowercase().starts_with("opus/48000");
            }
        }
    }
    if !audio {
        return Err(SfuError::InvalidSdp("the offer has no audio m-line".into()));
    }
    if !opus {
        return Err(SfuError::InvalidSdp(
            "the offer's audio has no Opus codec (opus/48000)".into(),
        ));
    }
    SdpOffer::from_sdp_string(&receive_only(sdp))
        .map_err(|err| SfuError::InvalidSdp(format!("the offer does not parse: {err}")))
}

/// Maps one sender's sequence numbers and timestamps into one outgoing stream.
///
/// The outgoing sequence is contiguous across mutes (a receiver must not count muted time as
/// loss) and across a sender's SSRC change; timestamps keep the sender's spacing, so a pause
/// stays a pause for the receiver's jitter buffer.
#[derive(Debug, Clone)]
struct SeqMap {
    in_ssrc: Ssrc,
    seq_offset: u64,
    ts_offset: u32,
    max_out_seq: u64,
    last_out_ts: u32,
}

impl SeqMap {
    fn map(&mut self, ssrc: Ssrc, in_seq: u64, in_ts: u32, resync: bool) -> (u64, u32) {
        if ssrc != self.in_ssrc {
            self.in_ssrc = ssrc;
            self.ts_offset = self
                .last_out_ts
                .wrapping_add(FRAME_SAMPLES)
                .wrapping_sub(in_ts);
            self.seq_offset = (self.max_out_seq + 1).wrapping_sub(in_seq);
        } else if resync {
            self.seq_offset = (self.max_out_seq + 1).wrapping_sub(in_seq);
        }
        let out_seq = in_seq.wrapping_add(self.seq_offset);
        let out_ts = in_ts.wrapping_add(self.ts_offset);
        if out_seq > self.max_out_seq {
            self.max_out_seq = out_seq;
            self.last_out_ts = out_ts;
        }
        (out_seq, out_ts)
    }
}

/// One outgoing track: another participant's voice, on a send-only m-line.
#[derive(Debug)]
struct OutTrack {
    mid: Mid,
    pt: Option<Pt>,
    seq: Option<SeqMap>,
    /// Set when the sender unmutes: the next packet continues the sequence.
    resync: bool,
}

/// A renegotiation offered to the participant and not answered yet.
#[derive(Debug)]
struct Pending {
    pending: SdpPendingOffer,
    sdp: String,
    /// Senders whose tracks this offer adds.
    adds: Vec<Key>,
}

#[derive(Debug)]
struct Participant {
    id: String,
    room: String,
    ufrag: String,
    rtc: Rtc,
    connected: bool,
    muted: bool,
    last_seen: Instant,
    /// When str0m wants its next timeout.
    next_timeout: Instant,
    /// This participant's entry in `SfuCore::timers`: never later than its earliest deadline
    /// (str0m's timeout, ICE consent expiry, speaking hangover); waking early only
    /// recomputes.
    wake_at: Instant,
    /// Packets were written into its `Rtc` since it was last driven (it is in
    /// `SfuCore::dirty`).
    dirty: bool,
    speaking: SpeakingDetector,
    out_tracks: HashMap<Key, OutTrack>,
    queued_adds: Vec<Key>,
    queued_removes: Vec<Mid>,
    pending: Option<Pending>,
    stats: ParticipantStats,
    /// Latest receiver-reported loss per outgoing track.
    loss_out: HashMap<Mid, f32>,
}

#[derive(Debug)]
struct Room {
    limit: usize,
    members: Vec<Key>,
}

/// The SFU state machine; see the module docs.
#[derive(Debug)]
pub struct SfuCore {
    config: SfuConfig,
    /// Our address as put in candidates and as the destination of every received datagram.
    local: SocketAddr,
    rooms: HashMap<String, Room>,
    participants: HashMap<Key, Participant>,
    ids: HashMap<String, Key>,
    next_key: Key,
    demux: Demux<Key>,
    transmits: VecDeque<Datagram>,
    events: VecDeque<SfuEvent>,
    dropped_datagrams: u64,
    /// Every participant's `wake_at`, soonest first.
    timers: BTreeSet<(Instant, Key)>,
    /// Receivers with forwarded packets written but not yet sent (see `settle`).
    dirty: Vec<Key>,
    /// Scratch list of `handle_timeout` (kept for its allocation).
    due: Vec<Key>,
    /// The latest `now` given to any input.
    last_now: Option<Instant>,
    /// Test hook: the next drive of this participant panics inside the fence.
    #[cfg(test)]
    panic_next: Option<Key>,
}

impl SfuCore {
    /// A core whose candidates advertise `config.advertised_ip()` on `local_port` (the port
    /// the I/O loop's socket is bound to).
    #[must_use]
    pub fn new(config: SfuConfig, local_port: u16) -> Self {
        let local = SocketAddr::new(config.advertised_ip(), local_port);
        Self {
            config,
            local,
            rooms: HashMap::new(),
            participants: HashMap::new(),
            ids: HashMap::new(),
            next_key: 0,
            demux: Demux::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            dropped_datagrams: 0,
            timers: BTreeSet::new(),
            dirty: Vec::new(),
            due: Vec::new(),
            last_now: None,
            #[cfg(test)]
            panic_next: None,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SfuConfig {
        &self.config
    }

    /// Creates a room, or changes the limit of an existing one. `user_limit` defaults to the
    /// config's `max_users_per_room` and may not exceed it.
    ///
    /// # Errors
    ///
    /// [`SfuError::InvalidId`] for a malformed id, [`SfuError::InvalidConfig`] for a limit
    /// outside `1..=max_users_per_room`.
    pub fn create_room(&mut self, room: &str, user_limit: Option<usize>) -> Result<()> {
        check_id("room", room)?;
        let max = self.config.max_users_per_room();
        let limit = user_limit.unwrap_or(max);
        if !(1..=max).contains(&limit) {
            return Err(SfuError::InvalidConfig {
                field: "user_limit",
                reason: format!("{limit} is outside 1..={max}"),
            });
        }
        self.rooms
            .entry(room.to_owned())
            .and_modify(|r| r.limit = limit)
            .or_insert_with(|| Room {
                limit,
                members: Vec::new(),
            });
        Ok(())
    }

    /// Removes a room; its participants leave with [`LeaveReason::Left`].
    ///
    /// # Errors
    ///
    /// [`SfuError::UnknownRoom`].
    pub fn close_room(&mut self, now: Instant, room: &str) -> Result<()> {
        let members = self
            .rooms
            .get(room)
            .map(|r| r.members.clone())
            .ok_or_else(|| SfuError::UnknownRoom(room.to_owned()))?;
        for key in members {
            self.remove(now, key, LeaveReason::Left);
        }
        self.rooms.remove(room);
        Ok(())
    }

    /// Adds a participant to a room from its SDP offer and returns the SDP answer.
    ///
    /// The answer covers the participant's own audio. Tracks for the room's other
    /// participants follow in a server-initiated offer ([`SfuEvent::Offer`]) once the
    /// participant is connected.
    ///
    /// # Errors
    ///
    /// [`SfuError::InvalidId`], [`SfuError::UnknownRoom`], [`SfuError::RoomFull`],
    /// [`SfuError::ParticipantExists`], or [`SfuError::InvalidSdp`] for an offer that does not
    /// parse, has no audio, or offers no Opus.
    pub fn join(
        &mut self,
        now: Instant,
        room_id: &str,
        participant: &str,
        offer_sdp: &str,
    ) -> Result<String> {
        check_id("participant", participant)?;
        self.note_time(now);
        let room = self
            .rooms
            .get(room_id)
            .ok_or_else(|| SfuError::UnknownRoom(room_id.to_owned()))?;
        if self.ids.contains_key(participant) {
            return Err(SfuError::ParticipantExists(participant.to_owned()));
        }
        if room.members.len() >= room.limit {
            return Err(SfuError::RoomFull {
                room: room_id.to_owned(),
                limit: room.limit,
            });
        }
        let offer = check_offer(offer_sdp)?;

        let creds = IceCreds::new();
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .set_extension_map(extension_map())
            .set_local_ice_credentials(creds.clone())
            .set_stats_interval(Some(STATS_INTERVAL))
            .build(now);
        let candidate = Candidate::host(self.local, "udp").map_err(|err| {
            SfuError::InvalidSdp(format!("local candidate {}: {err}", self.local))
        })?;
        rtc.add_local_candidate(candidate);
        let answer = fenced(|| rtc.sdp_api().accept_offer(offer))
            .map_err(|Fatal(msg)| SfuError::InvalidSdp(msg))?
            .map_err(|err| SfuError::InvalidSdp(format!("{err}")))?;
        let answer_sdp = answer.to_sdp_string();
        if !answer_sdp
            .lines()
            .any(|l| l.starts_with("m=audio ") && !l.starts_with("m=audio 0 "))
        {
            return Err(SfuError::InvalidSdp(
                "no audio m-line could be negotiated".into(),
            ));
        }

        let key = self.next_key;
        self.next_key += 1;
        self.demux.insert(key, creds.ufrag.clone());
        self.ids.insert(participant.to_owned(), key);
        self.timers.insert((now, key));
        let others = room.members.clone();
        self.participants.insert(
            key,
            Participant {
                id: participant.to_owned(),
                room: room_id.to_owned(),
                ufrag: creds.ufrag,
                rtc,
                connected: false,
                muted: false,
                last_seen: now,
                next_timeout: now,
                wake_at: now,
                dirty: false,
                speaking: SpeakingDetector::default(),
                out_tracks: HashMap::new(),
                queued_adds: others.clone(),
                queued_removes: Vec::new(),
                pending: None,
                stats: ParticipantStats::default(),
                loss_out: HashMap::new(),
            },
        );
        if let Some(room) = self.rooms.get_mut(room_id) {
            room.members.push(key);
        }
        self.renegotiate(now, key);
        for other in others {
            if let Some(p) = self.participants.get_mut(&other) {
                p.queued_adds.push(key);
            }
            self.renegotiate(now, other);
        }
        self.poll(now, key);
        Ok(answer_sdp)
    }

    /// Takes the participant's answer to the SFU's pending offer.
    ///
    /// # Errors
    ///
    /// [`SfuError::UnknownParticipant`]; [`SfuError::InvalidSdp`] when the answer does not parse,
    /// no offer is pending, or str0m refuses it (a new offer is then made).
    pub fn accept_answer(
        &mut self,
        now: Instant,
        participant: &str,
        answer_sdp: &str,
    ) -> Result<()> {
        let key = self.key(participant)?;
        let answer = SdpAnswer::from_sdp_string(answer_sdp)
            .map_err(|err| SfuError::InvalidSdp(format!("{err}")))?;
        let Some(p) = self.participants.get_mut(&key) else {
            return Err(SfuError::UnknownParticipant(participant.to_owned()));
        };
        let Some(pending) = p.pending.take() else {
            return Err(SfuError::InvalidSdp(format!(
                "no offer is pending for participant {participant}"
            )));
        };
        let adds = pending.adds;
        match fenced(|| p.rtc.sdp_api().accept_answer(pending.pending, answer)) {
            Ok(Ok(())) => {
                // A sender that left while this offer was out: remove its fresh track again.
                for sender in adds {
                    if !self.ids.values().any(|k| *k == sender) {
                        if let Some(track) = p.out_tracks.remove(&sender) {
                            p.queued_removes.push(track.mid);
                        }
                    }
                }
                self.renegotiate(now, key);
                self.poll(now, key);
                Ok(())
            }
            Ok(Err(err)) => {
                for sender in adds {
                    p.out_tracks.remove(&sender);
                    p.queued_adds.push(sender);
                }
                self.renegotiate(now, key);
                Err(SfuError::InvalidSdp(format!("{err}")))
            }
            Err(Fatal(msg)) => {
                self.remove(now, key, LeaveReason::Failed(msg.clone()));
                Err(SfuError::InvalidSdp(msg))
            }
        }
    }

    /// The SFU's offer waiting for this participant's answer, if any.
    ///
    /// # Errors
    ///
    /// [`SfuError::UnknownParticipant`].
    pub fn pending_offer(&self, participant: &str) -> Result<Option<String>> {
        let key = self.key(participant)?;
        Ok(self
            .participants
            .get(&key)
            .and_then(|p| p.pending.as_ref())
            .map(|p| p.sdp.clone()))
    }

    /// Removes a participant ([`SfuEvent::Left`] with [`LeaveReason::Left`] follows).
    ///
    /// # Errors
    ///
    /// [`SfuError::UnknownParticipant`].
    pub fn leave(&mut self, now: Instant, participant: &str) -> Result<()> {
        let key = self.key(participant)?;
        self.remove(now, key, LeaveReason::Left);
        Ok(())
    }

    /// Mutes or unmutes a participant: a muted participant's packets are not forwarded and
    /// it does not count as speaking.
    ///
    /// # Errors
    ///
    /// [`SfuError::UnknownParticipant`].
    pub fn set_muted(&mut self, participant: &str, muted: bool) -> Result<()> {
        let key = self.key(participant)?;
        let Some(p) = self.participants.get_mut(&key) else {
            return Err(SfuError::UnknownParticipant(participant.to_owned()));
        };
        if p.muted == muted {
            return Ok(());
        }
        p.muted = muted;
        let room = p.room.clone();
        if muted && p.speaking.is_speaking() {
            p.speaking = SpeakingDetector::default();
            self.events.push_back(SfuEvent::Speaking {
                room: room.clone(),
                participant: participant.to_owned(),
                speaking: false,
            });
        }
        if !muted {
            let members = self
                .rooms
                .get(&room)
                .map(|r| r.members.clone())
                .unwrap_or_default();
            for member in members {
                if let Some(track) = self
                    .participants
                    .get_mut(&member)
                    .and_then(|m| m.out_tracks.get_mut(&key))
                {
                    track.resync = true;
                }
            }
        }
        Ok(())
    }

    /// The participant's counters and quality figures.
    ///
    /// # Errors
    ///
    /// [`SfuError::UnknownParticipant`].
    pub fn stats(&self, participant: &str) -> Result<ParticipantStats> {
        let key = self.key(participant)?;
        let p = self
            .participants
            .get(&key)
            .ok_or_else(|| SfuError::UnknownParticipant(participant.to_owned()))?;
        let mut stats = p.stats.clone();
        stats.connected = p.connected;
        stats.muted = p.muted;
        stats.speaking = p.speaking.is_speaking();
        stats.loss_out = p.loss_out.values().copied().reduce(f32::max);
        Ok(stats)
    }

    /// Ids of a room's participants, in join order.
    ///
    /// # Errors
    ///
    /// [`SfuError::UnknownRoom`].
    pub fn participants(&self, room: &str) -> Result<Vec<String>> {
        let room = self
            .rooms
            .get(room)
            .ok_or_else(|| SfuError::UnknownRoom(room.to_owned()))?;
        Ok(room
            .members
            .iter()
            .filter_map(|k| self.participants.get(k).map(|p| p.id.clone()))
            .collect())
    }

    /// Datagrams that reached no participant (unknown source and not a STUN request for a
    /// known ufrag).
    #[must_use]
    pub fn dropped_datagrams(&self) -> u64 {
        self.dropped_datagrams
    }

    /// Handles one datagram received on the media socket.
    ///
    /// Packets it carries are written into the receivers' sessions; they go out, with
    /// everything else the batch produced, from the next [`poll_transmit`](Self::poll_transmit).
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        self.note_time(now);
        let Some(key) = self.demux.route(source, contents) else {
            self.dropped_datagrams += 1;
            return;
        };
        let destination = self.local;
        let feed = Feed::Datagram {
            now,
            source,
            destination,
            contents,
        };
        let is_stun = crate::demux::stun_local_ufrag(contents).is_some();
        let transmits_before = self.transmits.len();
        if let Some(driven) = self.drive(now, key, feed) {
            // Liveness (RFC 7675 consent) needs proof the datagram came from the peer, not
            // just from its address: a STUN request the ICE agent answered (so its
            // MESSAGE-INTEGRITY held) or an RTP packet that passed SRTP authentication.
            let answered_stun = is_stun && self.transmits.len() > transmits_before;
            let media = driven
                .events
                .iter()
                .any(|e| matches!(e, Event::RtpPacket(_)));
            if driven.accepted && (answered_stun || media) {
                if let Some(p) = self.participants.get_mut(&key) {
                    p.last_seen = now;
                }
            }
            self.after_drive(now, key, driven);
        }
    }

    /// Advances time: str0m timers, ICE consent timeouts, speaking hangovers.
    ///
    /// Visits only the participants whose wake-up time has come (O(log n) each), and first
    /// sends what earlier input left written (see [`poll_transmit`](Self::poll_transmit)).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.note_time(now);
        self.settle(now);
        let mut due = std::mem::take(&mut self.due);
        while let Some(&(at, key)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            due.push(key);
        }
        let ice_timeout = self.config.ice_timeout();
        for &key in &due {
            let Some(p) = self.participants.get_mut(&key) else {
                continue;
            };
            if now.saturating_duration_since(p.last_seen) >= ice_timeout {
                self.remove(now, key, LeaveReason::IceTimeout);
                continue;
            }
            if p.speaking.handle_timeout(now).is_some() {
                self.events.push_back(SfuEvent::Speaking {
                    room: p.room.clone(),
                    participant: p.id.clone(),
                    speaking: false,
                });
            }
            if p.next_timeout <= now {
                if let Some(driven) = self.drive(now, key, Feed::Timeout(now)) {
                    self.after_drive(now, key, driven);
                }
            }
            self.reschedule(key);
        }
        due.clear();
        self.due = due;
        self.settle(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called (O(1); may be
    /// early, never late).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.dirty.is_empty() {
            self.timers.first().map(|&(at, _)| at)
        } else {
            self.last_now
        }
    }

    /// Next datagram to send: `(destination, bytes)`, from the media socket.
    ///
    /// The first call after a batch of input drives every receiver that packets were
    /// written to, once, so a batch of `k` incoming packets costs each receiver one pass of
    /// str0m's per-session work instead of `k`.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        if !self.dirty.is_empty() {
            if let Some(now) = self.last_now {
                self.settle(now);
            }
        }
        self.transmits.pop_front()
    }

    /// Records the time of an input; str0m needs it never to go back.
    fn note_time(&mut self, now: Instant) {
        self.last_now = Some(self.last_now.map_or(now, |last| last.max(now)));
    }

    /// Drives each receiver that forwarded packets were written to since it was last driven:
    /// str0m sends written packets on its next timeout.
    fn settle(&mut self, now: Instant) {
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            for &key in &dirty {
                let Some(p) = self.participants.get_mut(&key) else {
                    continue;
                };
                p.dirty = false;
                if let Some(driven) = self.drive(now, key, Feed::Timeout(now)) {
                    self.after_drive(now, key, driven);
                }
            }
            dirty.clear();
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
        }
    }

    /// Moves the participant's timer entry to its earliest deadline.
    fn reschedule(&mut self, key: Key) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let consent = p.last_seen + self.config.ice_timeout();
        let at = p
            .speaking
            .deadline()
            .map_or(consent, |speaking| speaking.min(consent))
            .min(p.next_timeout);
        self.timers.remove(&(p.wake_at, key));
        p.wake_at = at;
        self.timers.insert((at, key));
    }

    /// Lowers the participant's wake-up to `at` if that is sooner. Deadlines that only move
    /// later (consent, a running hangover) need no call: waking early just recomputes.
    fn wake_by(timers: &mut BTreeSet<(Instant, Key)>, key: Key, p: &mut Participant, at: Instant) {
        if at < p.wake_at {
            timers.remove(&(p.wake_at, key));
            p.wake_at = at;
            timers.insert((at, key));
        }
    }

    /// Next event for the controller.
    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    fn key(&self, participant: &str) -> Result<Key> {
        self.ids
            .get(participant)
            .copied()
            .ok_or_else(|| SfuError::UnknownParticipant(participant.to_owned()))
    }

    /// Drives one participant's `Rtc`; a fatal outcome removes that participant only.
    fn drive(&mut self, now: Instant, key: Key, feed: Feed<'_>) -> Option<Driven> {
        let p = self.participants.get_mut(&key)?;
        #[cfg(test)]
        let outcome = if self.panic_next == Some(key) {
            self.panic_next = None;
            fenced(|| -> Option<Driven> {
                #[allow(clippy::panic)]
                {
                    panic!("injected test panic")
                }
            })
        } else {
            drive(&mut p.rtc, feed, &mut self.transmits)
        };
        #[cfg(not(test))]
        let outcome = drive(&mut p.rtc, feed, &mut self.transmits);
        match outcome {
            Ok(Some(driven)) => {
                if let Some(at) = driven.next_timeout {
                    p.next_timeout = at;
                    Self::wake_by(&mut self.timers, key, p, at);
                }
                Some(driven)
            }
            Ok(None) => None,
            Err(Fatal(msg)) => {
                self.remove(now, key, LeaveReason::Failed(msg));
                None
            }
        }
    }

    /// Collects outputs after an API call on the participant's `Rtc`.
    fn poll(&mut self, now: Instant, key: Key) {
        if let Some(driven) = self.drive(now, key, Feed::Nothing) {
            self.after_drive(now, key, driven);
        }
    }

    fn after_drive(&mut self, now: Instant, key: Key, driven: Driven) {
        for event in driven.events {
            match event {
                Event::RtpPacket(packet) => self.forward(now, key, &packet),
                Event::Connected => self.set_connected(now, key),
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    // ICE-lite sees no consent failures itself; the ice_timeout does that.
                }
                Event::MediaIngressStats(s) => {
                    if let Some(p) = self.participants.get_mut(&key) {
                        p.stats.loss_in = s.loss.or(p.stats.loss_in);
                        p.stats.jitter_in =
                            Some(Duration::from_secs_f64(f64::from(s.jitter) / 48_000.0));
                        p.stats.rtt = s.rtt.or(p.stats.rtt);
                    }
                }
                Event::MediaEgressStats(s) => {
                    if let Some(p) = self.participants.get_mut(&key) {
                        if let Some(loss) = s.loss {
                            p.loss_out.insert(s.mid, loss);
                        }
                        p.stats.rtt = s.rtt.or(p.stats.rtt);
                    }
                }
                Event::PeerStats(s) => {
                    if let Some(p) = self.participants.get_mut(&key) {
                        if let Some(rtt) = s.rtt {
                            p.stats.rtt = Some(rtt);
                        }
                    }
                }
                _ => {}
            }
        }
        let alive = self
            .participants
            .get(&key)
            .map(|p| p.rtc.is_alive())
            .unwrap_or(true);
        if !alive {
            self.remove(now, key, LeaveReason::Closed);
        }
    }

    fn set_connected(&mut self, now: Instant, key: Key) {
        if let Some(p) = self.participants.get_mut(&key) {
            if !p.connected {
                p.connected = true;
                self.events.push_back(SfuEvent::Connected {
                    room: p.room.clone(),
                    participant: p.id.clone(),
                });
                self.renegotiate(now, key);
                self.poll(now, key);
            }
        }
    }

    /// Forwards one packet of `sender` to every other participant of its room.
    fn forward(&mut self, now: Instant, sender: Key, packet: &RtpPacket) {
        let Some(p) = self.participants.get_mut(&sender) else {
            return;
        };
        p.stats.packets_in += 1;
        p.stats.bytes_in += packet.payload.len() as u64;
        // Padding-only packets (bandwidth probes, e.g. from Chromium) carry no audio.
        if p.muted || packet.payload.is_empty() {
            return;
        }
        if let Some(level) = packet.header.ext_vals.audio_level {
            // str0m gives the RFC 6464 level negated (-127..=0).
            let level = level.unsigned_abs().min(127);
            if let Some(speaking) = p.speaking.handle_level(now, level) {
                self.events.push_back(SfuEvent::Speaking {
                    room: p.room.clone(),
                    participant: p.id.clone(),
                    speaking,
                });
                if let Some(at) = p.speaking.deadline() {
                    Self::wake_by(&mut self.timers, sender, p, at);
                }
            }
        }
        let Some(room) = self.rooms.get(&p.room) else {
            return;
        };
        let ext_vals = ExtensionValues {
            audio_level: packet.header.ext_vals.audio_level,
            voice_activity: packet.header.ext_vals.voice_activity,
            ..ExtensionValues::default()
        };
        let in_seq: u64 = *packet.seq_no;
        let mut failed = Vec::new();
        for &receiver in &room.members {
            if receiver == sender {
                continue;
            }
            let Some(r) = self.participants.get_mut(&receiver) else {
                continue;
            };
            let Some(track) = r.out_tracks.get_mut(&sender) else {
                continue;
            };
            let pt = match track.pt {
                Some(pt) => pt,
                None => {
                    let Some(pt) = r
                        .rtc
                        .codec_config()
                        .find(|c| c.spec().codec == Codec::Opus)
                        .map(|c| c.pt())
                    else {
                        continue;
                    };
                    track.pt = Some(pt);
                    pt
                }
            };
            let mid = track.mid;
            let resync = std::mem::take(&mut track.resync);
            let seq = track.seq.get_or_insert(SeqMap {
                in_ssrc: packet.header.ssrc,
                seq_offset: 1_u64.wrapping_sub(in_seq),
                ts_offset: 0,
                max_out_seq: 0,
                last_out_ts: packet.header.timestamp,
            });
            let (out_seq, out_ts) =
                seq.map(packet.header.ssrc, in_seq, packet.header.timestamp, resync);
            let payload = packet.payload.clone();
            let written = fenced(|| {
                let mut direct = r.rtc.direct_api();
                match direct.stream_tx_by_mid(mid, None) {
                    Some(stream) => {
                        stream.write_rtp(
                            RtpWrite::new(
                                pt,
                                SeqNo::from(out_seq),
                                out_ts,
                                packet.timestamp,
                                payload,
                            )
                            .marker(packet.header.marker)
                            .ext_vals(ext_vals.clone()),
                        );
                        true
                    }
                    // Not negotiated yet: the receiver has not answered the offer adding it.
                    None => false,
                }
            });
            match written {
                Ok(true) => {
                    r.stats.packets_out += 1;
                    r.stats.bytes_out += packet.payload.len() as u64;
                    if !r.dirty {
                        r.dirty = true;
                        self.dirty.push(receiver);
                    }
                }
                Ok(false) => {}
                Err(Fatal(msg)) => failed.push((receiver, msg)),
            }
        }
        for (receiver, msg) in failed {
            self.remove(now, receiver, LeaveReason::Failed(msg));
        }
    }

    /// Starts a renegotiation for queued track changes unless one is already pending.
    ///
    /// Only once the participant is connected: that proves it applied the SFU's answer to its
    /// own offer, so this offer cannot overtake that answer on the signaling path (the
    /// controller sends join results and offer events independently).
    fn renegotiate(&mut self, now: Instant, key: Key) {
        let Some(p) = self.participants.get(&key) else {
            return;
        };
        if !p.connected
            || p.pending.is_some()
            || (p.queued_adds.is_empty() && p.queued_removes.is_empty())
        {
            return;
        }
        let senders: Vec<(Key, String)> = p
            .queued_adds
            .iter()
            .filter_map(|s| self.participants.get(s).map(|sp| (*s, sp.id.clone())))
            .collect();
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        p.queued_adds.clear();
        let removes = std::mem::take(&mut p.queued_removes);
        let outcome = fenced(|| {
            // str0m 0.24 draws a new m-line's mid (3 random characters) checking it against the
            // session's m-lines only, not against those added earlier in the same change, so a
            // batch of n new tracks repeats a mid with a probability growing as n² (a few per
            // cent for a 49-track batch). The client then rejects the offer ("Changed order for
            // m-line"). A batch with a repeat is dropped unapplied (nothing of it reaches the
            // session) and drawn again.
            let mut attempts = 0;
            loop {
                attempts += 1;
                let mut api = p.rtc.sdp_api();
                let mut added = Vec::with_capacity(senders.len());
                for (sender, id) in &senders {
                    let mid = api.add_media(
                        MediaKind::Audio,
                        Direction::SendOnly,
                        Some(id.clone()),
                        Some(id.clone()),
                        None,
                    );
                    added.push((*sender, mid));
                }
                if has_repeated_mid(&added) && attempts < MID_DRAWS {
                    continue;
                }
                for mid in &removes {
                    api.stop_media(*mid);
                }
                break (added, api.apply());
            }
        });
        match outcome {
            Ok((added, applied)) => {
                for (sender, mid) in &added {
                    p.out_tracks.insert(
                        *sender,
                        OutTrack {
                            mid: *mid,
                            pt: None,
                            seq: None,
                            resync: false,
                        },
                    );
                }
                if let Some((offer, pending)) = applied {
                    let sdp = offer.to_sdp_string();
                    self.events.push_back(SfuEvent::Offer {
                        room: p.room.clone(),
                        participant: p.id.clone(),
                        sdp: sdp.clone(),
                    });
                    p.pending = Some(Pending {
                        pending,
                        sdp,
                        adds: added.into_iter().map(|(s, _)| s).collect(),
                    });
                }
            }
            Err(Fatal(msg)) => self.remove(now, key, LeaveReason::Failed(msg)),
        }
    }

    /// Removes a participant everywhere and renegotiates the others' tracks.
    fn remove(&mut self, now: Instant, key: Key, reason: LeaveReason) {
        let Some(mut p) = self.participants.remove(&key) else {
            return;
        };
        self.ids.remove(&p.id);
        self.demux.remove(key, &p.ufrag);
        self.timers.remove(&(p.wake_at, key));
        // Say goodbye (DTLS close_notify) unless the peer is already gone or broken.
        if matches!(reason, LeaveReason::Left) {
            let _ = fenced(|| p.rtc.disconnect());
            let _ = drive(&mut p.rtc, Feed::Nothing, &mut self.transmits);
        }
        let members = match self.rooms.get_mut(&p.room) {
            Some(room) => {
                room.members.retain(|k| *k != key);
                room.members.clone()
            }
            None => Vec::new(),
        };
        if p.speaking.is_speaking() {
            self.events.push_back(SfuEvent::Speaking {
                room: p.room.clone(),
                participant: p.id.clone(),
                speaking: false,
            });
        }
        self.events.push_back(SfuEvent::Left {
            room: p.room.clone(),
            participant: p.id.clone(),
            reason,
        });
        for member in members {
            if let Some(m) = self.participants.get_mut(&member) {
                m.queued_adds.retain(|s| *s != key);
                if let Some(track) = m.out_tracks.remove(&key) {
                    m.queued_removes.push(track.mid);
                }
            }
            self.renegotiate(now, member);
            self.poll(now, member);
        }
    }
}

#[cfg(test)]
mod tests;
