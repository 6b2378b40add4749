//! The native client peer: the sans-IO side ([`PeerSession`]).
//!
//! A full ICE agent (controlling; the SFU is ICE-lite), DTLS-SRTP, one send-only Opus track
//! of its own and any number of receive tracks the SFU offers, one per remote participant.
//! The remote participant of a track is the msid stream id the SFU puts on its m-line.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Rtc};

use crate::drive::{drive, fenced, Datagram, Fatal, Feed};
use crate::opus::packet_samples;
use crate::{Result, SfuError};

/// One RTP packet received from another participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPacket {
    /// The sending participant (msid stream id of the track), if the SFU named it.
    pub participant: Option<String>,
    /// The m-line (track) it arrived on.
    pub mid: String,
    /// Extended RTP sequence number.
    pub seq: u64,
    /// RTP timestamp (48 kHz).
    pub timestamp: u32,
    /// RFC 6464 level (-dBov, 0 loudest, 127 silence), if the sender set it.
    pub audio_level: Option<u8>,
    /// The Opus payload.
    pub payload: Vec<u8>,
}

/// Counters of one [`PeerSession`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Packets handed to [`PeerSession::send_audio`] and written to the network.
    pub packets_sent: u64,
    /// Packets dropped by [`PeerSession::send_audio`] because the peer was not connected.
    pub packets_not_sent: u64,
    /// SRTP/SRTCP datagrams dropped by the configured loss.
    pub datagrams_lost: u64,
    /// RTP packets received.
    pub packets_received: u64,
    /// Opus DTX frames (2 bytes or less) not sent, their time skipped on the RTP clock.
    pub dtx_frames: u64,
}

/// Drops a fraction of outgoing datagrams, deterministically (xorshift64*).
#[derive(Debug, Clone)]
struct Loss {
    threshold: u64,
    state: u64,
}

impl Loss {
    fn new(rate: f64, seed: u64) -> Self {
        let rate = if rate.is_finite() {
            rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // 2^64 * rate, saturating at u64::MAX for rate 1.0.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let threshold = (rate * 18_446_744_073_709_551_616.0) as u64;
        Self {
            threshold,
            state: seed | 1,
        }
    }

    fn drop_next(&mut self) -> bool {
        if self.threshold == 0 {
            return false;
        }
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) < self.threshold
    }
}

/// The client peer's state machine; see the module docs.
#[derive(Debug)]
pub struct PeerSession {
    rtc: Rtc,
    local: SocketAddr,
    send_mid: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    connected: bool,
    failed: Option<String>,
    seq: u64,
    timestamp: u32,
    next_timeout: Option<Instant>,
    transmits: VecDeque<Datagram>,
    received: VecDeque<ReceivedPacket>,
    loss: Loss,
    stats: PeerStats,
    /// Incoming SSRC → (mid, participant), learnt on the first packet of each stream.
    senders: HashMap<u32, (Mid, Option<String>)>,
}

impl PeerSession {
    /// A peer whose host candidate is `local` (its socket's address). `send_loss` (0..1) of
    /// its outgoing SRTP/SRTCP datagrams are dropped, to test loss; 0 in normal use. `seed`
    /// seeds the loss pattern and the initial sequence number and timestamp.
    #[must_use]
    pub fn new(now: Instant, local: SocketAddr, send_loss: f64, seed: u64) -> Self {
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .build(now);
        if let Ok(candidate) = Candidate::host(local, "udp") {
            rtc.add_local_candidate(candidate);
        }
        Self {
            rtc,
            local,
            send_mid: None,
            pending: None,
            connected: false,
            failed: None,
            seq: seed & 0x7fff,
            timestamp: (seed >> 16) as u32,
            next_timeout: None,
            transmits: VecDeque::new(),
            received: VecDeque::new(),
            loss: Loss::new(send_loss, seed),
            stats: PeerStats::default(),
            senders: HashMap::new(),
        }
    }

    /// The local address in the peer's candidate.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Makes the peer's SDP offer: one send-only Opus track.
    ///
    /// # Errors
    ///
    /// [`SfuError::InvalidSdp`] if an offer was already made.
    pub fn offer(&mut self, now: Instant) -> Result<String> {
        if self.send_mid.is_some() {
            return Err(SfuError::InvalidSdp(
                "the peer has already made its offer".into(),
            ));
        }
        let outcome = fenced(|| {
            let mut api = self.rtc.sdp_api();
            let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
            (mid, api.apply())
        });
        let (mid, applied) = outcome.map_err(|Fatal(msg)| self.fail(msg))?;
        let Some((offer, pending)) = applied else {
            return Err(SfuError::InvalidSdp("no offer to make".into()));
        };
        self.send_mid = Some(mid);
        self.pending = Some(pending);
        self.poll(now);
        Ok(offer.to_sdp_string())
    }

    /// Takes the answer to [`offer`](Self::offer) (the SFU's `join` result).
    ///
    /// # Errors
    ///
    /// [`SfuError::InvalidSdp`] when it does not parse, no offer is pending, or it does not
    /// match the offer.
    pub fn accept_answer(&mut self, now: Instant, sdp: &str) -> Result<()> {
        let answer = SdpAnswer::from_sdp_string(sdp)
            .map_err(|err| SfuError::InvalidSdp(format!("{err}")))?;
        let pending = self
            .pending
            .take()
            .ok_or_else(|| SfuError::InvalidSdp("no offer is pending".into()))?;
        fenced(|| self.rtc.sdp_api().accept_answer(pending, answer))
            .map_err(|Fatal(msg)| self.fail(msg))?
            .map_err(|err| SfuError::InvalidSdp(format!("{err}")))?;
        self.poll(now);
        Ok(())
    }

    /// Takes an offer from the SFU (renegotiation: tracks added or removed) and returns the
    /// answer.
    ///
    /// # Errors
    ///
    /// [`SfuError::InvalidSdp`] when it does not parse or cannot be accepted.
    pub fn accept_offer(&mut self, now: Instant, sdp: &str) -> Result<String> {
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|err| SfuError::InvalidSdp(format!("{err}")))?;
        let answer = fenced(|| self.rtc.sdp_api().accept_offer(offer))
            .map_err(|Fatal(msg)| self.fail(msg))?
            .map_err(|err| SfuError::InvalidSdp(format!("{err}")))?;
        self.poll(now);
        Ok(answer.to_sdp_string())
    }

    /// Sends one Opus packet with its RFC 6464 level (-dBov, 0 loudest, 127 silence).
    ///
    /// The RTP timestamp advances by the packet's duration (read from its TOC byte). An Opus
    /// packet of 2 bytes or less is a DTX frame (the encoder has nothing to say): as WebRTC
    /// senders do, it is not sent, only its time passes on the RTP clock, so the receiver
    /// sees a pause rather than loss. Returns whether a packet was written: before ICE and
    /// DTLS are up, packets are dropped (and counted).
    pub fn send_audio(&mut self, now: Instant, payload: &[u8], audio_level: u8) -> bool {
        let samples = packet_samples(payload).unwrap_or(960);
        if payload.len() <= 2 {
            self.timestamp = self.timestamp.wrapping_add(samples);
            self.stats.dtx_frames += 1;
            return false;
        }
        let seq = self.seq;
        let timestamp = self.timestamp;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        let Some(mid) = self.send_mid.filter(|_| self.connected) else {
            self.stats.packets_not_sent += 1;
            return false;
        };
        let level = audio_level.min(127);
        let ext_vals = ExtensionValues {
            audio_level: Some(-i8::try_from(level).unwrap_or(127)),
            voice_activity: Some(level < 127),
            ..ExtensionValues::default()
        };
        let payload: Arc<[u8]> = payload.into();
        let written = fenced(|| {
            let Some(pt) = self
                .rtc
                .codec_config()
                .find(|c| c.spec().codec == Codec::Opus)
                .map(|c| c.pt())
            else {
                return false;
            };
            match self.rtc.direct_api().stream_tx_by_mid(mid, None) {
                Some(stream) => {
                    stream.write_rtp(
                        RtpWrite::new(pt, SeqNo::from(seq), timestamp, now, payload)
                            .ext_vals(ext_vals),
                    );
                    true
                }
                None => false,
            }
        });
        match written {
            Ok(true) => {
                self.stats.packets_sent += 1;
                self.poll(now);
                true
            }
            Ok(false) => {
                self.stats.packets_not_sent += 1;
                false
            }
            Err(Fatal(msg)) => {
                self.fail(msg);
                false
            }
        }
    }

    /// Handles one datagram received on the peer's socket.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        let feed = Feed::Datagram {
            now,
            source,
            destination: self.local,
            contents,
        };
        self.run(now, feed);
    }

    /// Advances time.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_timeout.is_some_and(|t| t <= now) {
            self.run(now, Feed::Timeout(now));
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout
    }

    /// Next datagram to send: `(destination, bytes)`.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        while let Some((destination, datagram)) = self.transmits.pop_front() {
            // RFC 7983: 128..=191 is RTP/RTCP; only media is subject to the test loss, so
            // ICE and DTLS still come up.
            let media = datagram.first().is_some_and(|b| (128..=191).contains(b));
            if media && self.loss.drop_next() {
                self.stats.datagrams_lost += 1;
                continue;
            }
            return Some((destination, datagram));
        }
        None
    }

    /// Next packet received from another participant.
    pub fn poll_received(&mut self) -> Option<ReceivedPacket> {
        self.received.pop_front()
    }

    /// Whether ICE and DTLS are up.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Why the session failed, if it did (it then does nothing more).
    #[must_use]
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The peer's counters.
    #[must_use]
    pub fn stats(&self) -> PeerStats {
        self.stats
    }

    fn poll(&mut self, now: Instant) {
        self.run(now, Feed::Nothing);
    }

    fn run(&mut self, _now: Instant, feed: Feed<'_>) {
        if self.failed.is_some() {
            return;
        }
        match drive(&mut self.rtc, feed, &mut self.transmits) {
            Ok(Some(driven)) => {
                if let Some(at) = driven.next_timeout {
                    self.next_timeout = Some(at);
                }
                for event in driven.events {
                    match event {
                        Event::Connected => self.connected = true,
                        Event::RtpPacket(packet) => self.receive(&packet),
                        _ => {}
                    }
                }
                if !self.rtc.is_alive() {
                    self.connected = false;
                    self.failed = Some("the DTLS session was closed".into());
                }
            }
            Ok(None) => {}
            Err(Fatal(msg)) => {
                self.fail(msg);
            }
        }
    }

    fn receive(&mut self, packet: &RtpPacket) {
        self.stats.packets_received += 1;
        let ssrc = packet.header.ssrc;
        let rtc = &mut self.rtc;
        let (mid, participant) = self
            .senders
            .entry(*ssrc)
            .or_insert_with(|| {
                let mid = rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|s| s.mid())
                    .or(packet.header.ext_vals.mid);
                let participant = mid
                    .and_then(|m| rtc.media(m))
                    .map(|m| m.stream_id().to_owned())
                    .filter(|s| !s.is_empty() && s != "-");
                (mid.unwrap_or_else(|| Mid::from("?")), participant)
            })
            .clone();
        self.received.push_back(ReceivedPacket {
            participant,
            mid: mid.to_string(),
            seq: *packet.seq_no,
            timestamp: packet.header.timestamp,
            audio_level: packet
                .header
                .ext_vals
                .audio_level
                .map(|l| l.unsigned_abs().min(127)),
            payload: packet.payload.to_vec(),
        });
    }

    fn fail(&mut self, msg: String) -> SfuError {
        self.connected = false;
        self.failed = Some(msg.clone());
        SfuError::InvalidSdp(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_rate_is_close_to_the_configured_one() {
        let mut loss = Loss::new(0.1, 42);
        let dropped = (0..100_000).filter(|_| loss.drop_next()).count();
        assert!((9_000..11_000).contains(&dropped), "{dropped}");
        let mut none = Loss::new(0.0, 42);
        assert!((0..1000).all(|_| !none.drop_next()));
        let mut all = Loss::new(1.0, 42);
        assert!((0..1000).all(|_| all.drop_next()));
    }
}
