//! The SFU and client peers wired together in memory, on virtual time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::peer::PeerSession;

const STEP: Duration = Duration::from_millis(5);
/// A 20 ms CELT fullband Opus packet's TOC byte (config 31, one frame).
const TOC_20MS: u8 = 31 << 3;

struct Net {
    now: Instant,
    sfu: SfuCore,
    sfu_addr: SocketAddr,
    peers: Vec<Client>,
    events: Vec<SfuEvent>,
    /// Answer SFU offers automatically.
    auto_answer: bool,
}

struct Client {
    id: String,
    addr: SocketAddr,
    session: PeerSession,
    /// Not stepped any more: it vanished.
    gone: bool,
    received: Vec<crate::peer::ReceivedPacket>,
}

impl Net {
    fn new(config: SfuConfig) -> Self {
        let sfu_addr = SocketAddr::new(config.advertised_ip(), 10_000);
        Self {
            now: Instant::now(),
            sfu: SfuCore::new(config, 10_000),
            sfu_addr,
            peers: Vec::new(),
            events: Vec::new(),
            auto_answer: true,
        }
    }

    fn client(&mut self, id: &str, loss: f64) -> PeerSession {
        let n = u8::try_from(self.peers.len() + 2).unwrap();
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)), 5_000);
        let _ = id;
        PeerSession::new(self.now, addr, loss, u64::from(n) * 7919)
    }

    fn join(&mut self, room: &str, id: &str) -> Result<usize> {
        self.join_lossy(room, id, 0.0)
    }

    fn join_lossy(&mut self, room: &str, id: &str, loss: f64) -> Result<usize> {
        let mut session = self.client(id, loss);
        let offer = session.offer(self.now)?;
        let answer = self.sfu.join(self.now, room, id, &offer)?;
        session.accept_answer(self.now, &answer)?;
        self.peers.push(Client {
            id: id.to_owned(),
            addr: session.local_addr(),
            session,
            gone: false,
            received: Vec::new(),
        });
        Ok(self.peers.len() - 1)
    }

    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        for _ in 0..100 {
            let mut moved = false;
            while let Some((to, data)) = self.sfu.poll_transmit() {
                moved = true;
                if let Some(c) = self.peers.iter_mut().find(|c| c.addr == to && !c.gone) {
                    c.session.handle_datagram(now, self.sfu_addr, &data);
                }
            }
            for c in self.peers.iter_mut().filter(|c| !c.gone) {
                while let Some((to, data)) = c.session.poll_transmit() {
                    moved = true;
                    if to == self.sfu_addr {
                        self.sfu.handle_datagram(now, c.addr, &data);
                    }
                }
                while let Some(packet) = c.session.poll_received() {
                    c.received.push(packet);
                }
            }
            while let Some(event) = self.sfu.poll_event() {
                moved = true;
                if let SfuEvent::Offer {
                    participant, sdp, ..
                } = &event
                {
                    if self.auto_answer {
                        if let Some(c) = self
                            .peers
                            .iter_mut()
                            .find(|c| &c.id == participant && !c.gone)
                        {
                            let answer = c.session.accept_offer(now, sdp).unwrap();
                            self.sfu.accept_answer(now, participant, &answer).unwrap();
                        }
                    }
                }
                self.events.push(event);
            }
            if !moved {
                break;
            }
        }
        if self.sfu.poll_timeout().is_some_and(|t| t <= now) {
            self.sfu.handle_timeout(now);
        }
        for c in self.peers.iter_mut().filter(|c| !c.gone) {
            c.session.handle_timeout(now);
        }
    }

    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.step();
        }
    }

    fn connect(&mut self) {
        for _ in 0..2_000 {
            self.step();
            let all = self
                .peers
                .iter()
                .filter(|c| !c.gone)
                .all(|c| c.session.is_connected());
            if all
                && self
                    .sfu
                    .participants
                    .values()
                    .all(|p| p.pending.is_none() && p.connected)
            {
                // One more second so every track is negotiated and SRTP keys are in place.
                self.run(Duration::from_millis(200));
                return;
            }
        }
        panic!("not connected; events {:?}", self.events);
    }

    /// `count` 20 ms packets from peer `i`, payload `[TOC, i, n]`, at `level` -dBov.
    fn talk(&mut self, i: usize, count: u8, level: u8) {
        for n in 0..count {
            let tag = u8::try_from(i).unwrap();
            let now = self.now;
            assert!(self.peers[i]
                .session
                .send_audio(now, &[TOC_20MS, tag, n], level));
            for _ in 0..4 {
                self.step();
            }
        }
    }

    fn heard_by(&self, i: usize) -> HashMap<Option<String>, usize> {
        let mut counts = HashMap::new();
        for p in &self.peers[i].received {
            *counts.entry(p.participant.clone()).or_default() += 1;
        }
        counts
    }

    fn key_of(&self, id: &str) -> Key {
        self.sfu.ids[id]
    }
}

/// ICE timeout of the tests: above str0m's consent interval (at most 3 s when idle), as a
/// deployment's must be above its clients' (browsers check about every 5 s).
const ICE_TIMEOUT: Duration = Duration::from_secs(5);

fn config() -> SfuConfig {
    SfuConfig::builder()
        .ice_timeout(ICE_TIMEOUT)
        .build()
        .unwrap()
}

fn offer_sdp() -> String {
    let mut session = PeerSession::new(Instant::now(), "127.0.0.9:5000".parse().unwrap(), 0.0, 3);
    session.offer(Instant::now()).unwrap()
}

#[test]
fn two_peers_hear_each_other_and_never_themselves() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    net.join("r", "alice").unwrap();
    net.join("r", "bob").unwrap();
    net.connect();
    net.talk(0, 50, 30);
    net.run(Duration::from_secs(1));
    net.talk(1, 30, 30);
    net.run(Duration::from_secs(1));
    let alice = net.heard_by(0);
    let bob = net.heard_by(1);
    assert_eq!(bob.get(&Some("alice".into())), Some(&50), "{bob:?}");
    assert_eq!(alice.get(&Some("bob".into())), Some(&30), "{alice:?}");
    assert_eq!(alice.len(), 1);
    assert_eq!(bob.len(), 1);
    // Payload unchanged, sequence contiguous.
    let from_alice: Vec<_> = net.peers[1].received.iter().collect();
    assert_eq!(from_alice[7].payload, vec![TOC_20MS, 0, 7]);
    assert!(from_alice.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert!(from_alice
        .windows(2)
        .all(|w| w[1].timestamp.wrapping_sub(w[0].timestamp) == 960));
    assert_eq!(from_alice[0].audio_level, Some(30));
    let stats = net.sfu.stats("alice").unwrap();
    assert_eq!(stats.packets_in, 50);
    assert_eq!(stats.packets_out, 30);
    assert_eq!(stats.bytes_in, 150);
    assert!(stats.connected);
    let speaking: Vec<_> = net
        .events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::Speaking {
                participant,
                speaking,
                ..
            } => Some((participant.as_str(), *speaking)),
            _ => None,
        })
        .collect();
    assert_eq!(
        speaking,
        vec![
            ("alice", true),
            ("alice", false),
            ("bob", true),
            ("bob", false)
        ]
    );
}

#[test]
fn answers_carry_the_audio_level_and_mid_extensions_only() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    let answer = net.sfu.join(net.now, "r", "a", &offer_sdp()).unwrap();
    let extmaps: Vec<_> = answer
        .lines()
        .filter(|l| l.starts_with("a=extmap:"))
        .collect();
    assert!(
        extmaps.iter().any(|l| l.ends_with("ssrc-audio-level")),
        "{extmaps:?}"
    );
    assert!(
        extmaps.iter().any(|l| l.ends_with("sdes:mid")),
        "{extmaps:?}"
    );
    assert_eq!(extmaps.len(), 2, "{extmaps:?}");
}

#[test]
fn a_full_room_of_fifty_gets_every_track_with_distinct_mids() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    for i in 0..50 {
        net.join("r", &format!("p{i}")).unwrap();
    }
    net.connect();
    for event in &net.events {
        if let SfuEvent::Offer { sdp, .. } = event {
            let mut mids: Vec<_> = sdp.lines().filter(|l| l.starts_with("a=mid:")).collect();
            let count = mids.len();
            mids.sort_unstable();
            mids.dedup();
            assert_eq!(mids.len(), count, "an offer repeats a mid");
        }
    }
    assert!(net
        .sfu
        .participants
        .values()
        .all(|p| p.out_tracks.len() == 49));
    net.talk(49, 2, 20);
    assert!((0..49).all(|i| net.heard_by(i).get(&Some("p49".into())) == Some(&2)));
}

#[test]
fn repeated_mids_are_detected() {
    let mid = |s: &str| Mid::from(s);
    assert!(!has_repeated_mid(&[
        (1, mid("a")),
        (2, mid("b")),
        (3, mid("c"))
    ]));
    assert!(has_repeated_mid(&[
        (1, mid("a")),
        (2, mid("b")),
        (3, mid("a"))
    ]));
    assert!(!has_repeated_mid(&[]));
}

#[test]
fn three_peers_get_one_track_per_sender() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    for id in ["a", "b", "c"] {
        net.join("r", id).unwrap();
    }
    net.connect();
    for i in 0..3 {
        net.talk(i, 10, 20);
    }
    for (i, me) in ["a", "b", "c"].iter().enumerate() {
        let heard = net.heard_by(i);
        assert_eq!(heard.len(), 2, "{me}: {heard:?}");
        assert!(!heard.contains_key(&Some((*me).to_owned())));
        assert!(heard.values().all(|n| *n == 10), "{me}: {heard:?}");
    }
}

#[test]
fn muted_participants_are_not_forwarded_and_resume_contiguously() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    net.join("r", "a").unwrap();
    net.join("r", "b").unwrap();
    net.connect();
    net.talk(0, 5, 20);
    net.sfu.set_muted("a", true).unwrap();
    net.talk(0, 5, 20);
    assert!(net.sfu.stats("a").unwrap().muted);
    net.sfu.set_muted("a", false).unwrap();
    net.talk(0, 5, 20);
    let got: Vec<_> = net.peers[1].received.iter().map(|p| p.payload[2]).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    let seqs: Vec<_> = net.peers[1].received.iter().map(|p| p.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(net.sfu.stats("a").unwrap().packets_in, 15);
}

#[test]
fn the_room_limit_is_enforced() {
    let mut net = Net::new(config());
    net.sfu.create_room("small", Some(2)).unwrap();
    net.join("small", "a").unwrap();
    net.join("small", "b").unwrap();
    match net.join("small", "c") {
        Err(SfuError::RoomFull { limit: 2, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        net.sfu.create_room("big", Some(51)),
        Err(SfuError::InvalidConfig {
            field: "user_limit",
            ..
        })
    ));
    assert!(matches!(
        net.join("nowhere", "d"),
        Err(SfuError::UnknownRoom(_))
    ));
    assert!(matches!(
        net.join("small", "a"),
        Err(SfuError::ParticipantExists(_))
    ));
    assert!(matches!(
        net.join("small", "a b"),
        Err(SfuError::InvalidId { .. })
    ));
    net.sfu.leave(net.now, "b").unwrap();
    net.join("small", "c").unwrap();
}

#[test]
fn bad_offers_get_invalid_sdp() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    let good = offer_sdp();
    let no_audio = good.replace("m=audio", "m=video");
    let no_opus: String = good
        .lines()
        .filter(|l| !l.to_ascii_lowercase().contains("opus"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    for (what, sdp) in [
        ("garbage", "hello"),
        ("empty", ""),
        ("no audio", no_audio.as_str()),
        ("no opus", no_opus.as_str()),
    ] {
        match net.sfu.join(net.now, "r", "x", sdp) {
            Err(SfuError::InvalidSdp(msg)) => assert!(!msg.is_empty(), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(net.sfu.participants("r").unwrap().is_empty());
    net.sfu.join(net.now, "r", "x", &good).unwrap();
}

#[test]
fn a_vanished_peer_is_removed_within_the_ice_timeout() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    net.join("r", "a").unwrap();
    net.join("r", "b").unwrap();
    net.connect();
    net.peers[1].gone = true;
    let vanished = net.now;
    net.run(ICE_TIMEOUT + Duration::from_millis(500));
    let left = net.events.iter().find_map(|e| match e {
        SfuEvent::Left {
            participant,
            reason,
            ..
        } if participant == "b" => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(left, Some(LeaveReason::IceTimeout));
    assert_eq!(net.sfu.participants("r").unwrap(), vec!["a".to_owned()]);
    // a got an offer removing b's track, and answered it.
    assert!(net
        .sfu
        .participants
        .values()
        .all(|p| p.pending.is_none() && p.out_tracks.is_empty()));
    assert!(net.now - vanished < ICE_TIMEOUT + Duration::from_secs(1));
}

#[test]
fn a_panicking_peer_is_dropped_alone() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    for id in ["a", "b", "c"] {
        net.join("r", id).unwrap();
    }
    net.connect();
    net.sfu.panic_next = Some(net.key_of("b"));
    net.talk(1, 3, 20);
    assert!(net.events.iter().any(|e| matches!(
        e,
        SfuEvent::Left { participant, reason: LeaveReason::Failed(_), .. } if participant == "b"
    )));
    net.peers[1].gone = true;
    net.run(Duration::from_millis(300));
    net.talk(0, 10, 20);
    net.talk(2, 10, 20);
    assert_eq!(net.heard_by(2).get(&Some("a".into())), Some(&10));
    assert_eq!(net.heard_by(0).get(&Some("c".into())), Some(&10));
}

#[test]
fn ten_percent_uplink_loss_arrives_as_ninety_percent() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    net.join_lossy("r", "a", 0.1).unwrap();
    net.join("r", "b").unwrap();
    net.connect();
    net.talk(0, 200, 20);
    let heard = net.heard_by(1)[&Some("a".into())];
    assert!((160..=195).contains(&heard), "{heard}");
    let lost = net.peers[0].session.stats().datagrams_lost;
    assert!(lost >= 5, "{lost}");
}

#[test]
fn garbage_datagrams_do_not_disturb_a_call() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    net.join("r", "a").unwrap();
    net.join("r", "b").unwrap();
    net.connect();
    let mut state = 0x1234_5678_9abc_def0_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let a_addr = net.peers[0].addr;
    let stranger: SocketAddr = "127.0.0.200:7000".parse().unwrap();
    for i in 0..20_000_u32 {
        let len = usize::try_from(next() % 300).unwrap();
        let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(first) = data.first_mut() {
            // STUN, DTLS, RTP/RTCP first-byte ranges (RFC 7983) in turn.
            *first = [0, 1, 22, 23, 128, 129, 200, 144][(i % 8) as usize];
        }
        // From the participant's own address (spoofed) and from a stranger.
        let source = if i % 2 == 0 { a_addr } else { stranger };
        net.sfu.handle_datagram(net.now, source, &data);
    }
    net.step();
    net.talk(0, 10, 20);
    assert_eq!(net.heard_by(1).get(&Some("a".into())), Some(&10));
    assert!(net.sfu.dropped_datagrams() >= 10_000);
}

#[test]
fn garbage_from_a_vanished_peers_address_does_not_keep_it_alive() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    net.join("r", "a").unwrap();
    net.join("r", "b").unwrap();
    net.connect();
    net.peers[1].gone = true;
    let b_addr = net.peers[1].addr;
    for i in 0..60_u8 {
        // SRTP-looking junk with b's source address, every 100 ms.
        net.sfu.handle_datagram(
            net.now,
            b_addr,
            &[0x80, 111, 0, i, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        );
        net.run(Duration::from_millis(100));
    }
    assert!(net.events.iter().any(|e| matches!(
        e,
        SfuEvent::Left { participant, reason: LeaveReason::IceTimeout, .. } if participant == "b"
    )));
}

#[test]
fn silent_peers_stay_by_ice_consent() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    net.join("r", "a").unwrap();
    net.join("r", "b").unwrap();
    net.connect();
    // Nobody sends media for 3x the ICE timeout: STUN consent checks keep both in.
    net.run(ICE_TIMEOUT * 3);
    assert!(
        !net.events
            .iter()
            .any(|e| matches!(e, SfuEvent::Left { .. })),
        "{:?}",
        net.events
    );
    net.talk(0, 5, 20);
    assert_eq!(net.heard_by(1).get(&Some("a".into())), Some(&5));
}

/// Rough cost of the SFU's share of forwarding (SRTP in, one SRTP out per receiver, timers),
/// on virtual time in memory, driven as the I/O loop drives it: every 20 ms each speaker's
/// packet arrives (all of one round in one batch, as one `recvmmsg` would return them), and
/// in between time advances in 1 ms steps with `handle_timeout` whenever it is due.
/// `cargo test --release -p sfu_core -- --ignored --nocapture forwarding_cost`.
#[test]
#[ignore = "a measurement, not a check; run in release"]
fn forwarding_cost() {
    for (members, speakers) in [(10, 2), (50, 5)] {
        for batched in [false, true] {
            forwarding_cost_of(members, speakers, batched);
        }
    }
}

/// Takes every queued datagram; returns how many were RTP media (RFC 7983 first byte, not
/// RTCP packet types 200..=206).
fn drain_media(sfu: &mut SfuCore) -> u64 {
    let mut media = 0;
    while let Some((_, data)) = sfu.poll_transmit() {
        if data.first().is_some_and(|b| (128..=191).contains(b))
            && !data.get(1).is_some_and(|t| (200..=206).contains(t))
        {
            media += 1;
        }
    }
    media
}

fn forwarding_cost_of(members: usize, speakers: usize, batched: bool) {
    let mut net = Net::new(config());
    net.sfu.create_room("r", Some(members)).unwrap();
    for i in 0..members {
        net.join("r", &format!("p{i}")).unwrap();
    }
    net.connect();
    let mut sfu_time = Duration::ZERO;
    let mut forwarded = 0_u64;
    let mut timeouts = 0_u64;
    let payload = [TOC_20MS; 160];
    let rounds = 500_u32;
    let mut batch = Vec::new();
    for round in 0..rounds {
        let now = net.now;
        batch.clear();
        for speaker in 0..speakers {
            let session = &mut net.peers[speaker].session;
            assert!(session.send_audio(now, &payload, 20));
            // str0m sends a written packet on its next timeout, as the peer's loop does.
            session.handle_timeout(now);
            while let Some((_, data)) = net.peers[speaker].session.poll_transmit() {
                batch.push((net.peers[speaker].addr, data));
            }
        }
        let started = Instant::now();
        for (source, data) in &batch {
            net.sfu.handle_datagram(now, *source, data);
            if !batched {
                if net.sfu.poll_timeout().is_some_and(|at| at <= now) {
                    net.sfu.handle_timeout(now);
                }
                forwarded += drain_media(&mut net.sfu);
            }
        }
        if net.sfu.poll_timeout().is_some_and(|at| at <= now) {
            net.sfu.handle_timeout(now);
        }
        forwarded += drain_media(&mut net.sfu);
        sfu_time += started.elapsed();
        for _ in 0..20 {
            net.now += Duration::from_millis(1);
            let now = net.now;
            let started = Instant::now();
            if net.sfu.poll_timeout().is_some_and(|at| at <= now) {
                timeouts += 1;
                net.sfu.handle_timeout(now);
            }
            forwarded += drain_media(&mut net.sfu);
            sfu_time += started.elapsed();
        }
        if round % 50 == 0 {
            // Let the peers' RTCP and consent checks through now and then.
            net.step();
        }
    }
    let incoming = u32::try_from(speakers).unwrap() * rounds;
    eprintln!(
        "{members} members, {speakers} speakers, batched {batched}: {forwarded} copies of {incoming} packets; \
         {:?} per forwarded copy, {:.0} copies/s/core; {:.1} timer wake-ups/s",
        sfu_time / u32::try_from(forwarded.max(1)).unwrap(),
        forwarded as f64 / sfu_time.as_secs_f64(),
        timeouts as f64 / (f64::from(rounds) * 0.02),
    );
}

#[test]
fn dtx_frames_are_skipped_on_the_wire_but_not_on_the_clock() {
    let mut net = Net::new(config());
    net.sfu.create_room("r", None).unwrap();
    net.join("r", "a").unwrap();
    net.join("r", "b").unwrap();
    net.connect();
    net.talk(0, 2, 20);
    for _ in 0..10 {
        let now = net.now;
        assert!(!net.peers[0].session.send_audio(now, &[TOC_20MS], 127));
        net.step();
    }
    net.talk(0, 1, 20);
    let got = &net.peers[1].received;
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].seq, got[1].seq + 1, "no sequence gap: not loss");
    assert_eq!(got[2].timestamp - got[1].timestamp, 960 * 11, "a pause");
    assert_eq!(net.peers[0].session.stats().dtx_frames, 10);
}
