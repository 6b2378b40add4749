//! The jitter buffer on virtual time: a simulated sender, network and sound card.

use super::*;

const FRAME_MS: u64 = 20;

/// What the sound card got from one pop.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Play(u16),
    Lost { fec: bool },
    Silence,
}

/// A scenario: which packets are sent, when they arrive, when the card pops.
struct Network {
    /// First sequence number and timestamp (to exercise wraparound).
    seq0: u16,
    ts0: u32,
    packets: usize,
    /// Extra one-way delay of packet `i` in ms beyond a fixed 30 ms path, or None if lost.
    delay: Box<dyn Fn(usize) -> Option<f64>>,
    /// Packets that arrive twice.
    duplicate: Box<dyn Fn(usize) -> bool>,
    /// Sender clock relative to the receiver's: 1.001 sends 0.1 % fast.
    sender_speed: f64,
    /// Packet indices during which the sender is silent (DTX): nothing sent, seq not used.
    dtx: Box<dyn Fn(usize) -> bool>,
}

impl Network {
    fn steady(packets: usize) -> Self {
        Self {
            seq0: 0,
            ts0: 0,
            packets,
            delay: Box::new(|_| Some(0.0)),
            duplicate: Box::new(|_| false),
            sender_speed: 1.0,
            dtx: Box::new(|_| false),
        }
    }

    /// Runs the scenario; returns what was played and the buffer.
    fn run(self, config: JitterConfig) -> (Vec<Out>, JitterBuffer) {
        let mut arrivals: Vec<(f64, RtpPacket)> = Vec::new();
        let mut seq = self.seq0;
        let mut sent_count = 0_u64;
        for i in 0..self.packets {
            if (self.dtx)(i) {
                continue;
            }
            let sent = i as f64 * FRAME_MS as f64 / self.sender_speed;
            let packet = RtpPacket {
                seq,
                timestamp: self.ts0.wrapping_add((i as u32) * 960),
                duration: 960,
                payload: vec![(i % 251) as u8; 3],
            };
            seq = seq.wrapping_add(1);
            sent_count += 1;
            let Some(extra) = (self.delay)(i) else {
                continue;
            };
            let at = sent + 30.0 + extra;
            if (self.duplicate)(i) {
                arrivals.push((at + 1.0, packet.clone()));
            }
            arrivals.push((at, packet));
        }
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut buffer = JitterBuffer::new(config);
        let mut out = Vec::new();
        let mut next_arrival = 0;
        // The card pops every 20 ms of its own clock, offset by 7 ms from the sender's.
        let end = self.packets as f64 * FRAME_MS as f64 + 400.0;
        let mut pop_at = 7.0;
        // Stop once every sent packet was played, lost or dropped: the talker is done.
        let settled = |b: &JitterBuffer| {
            let s = b.stats();
            s.played + s.lost + s.dropped >= sent_count
        };
        while pop_at < end && !(next_arrival == arrivals.len() && settled(&buffer)) {
            while next_arrival < arrivals.len() && arrivals[next_arrival].0 <= pop_at {
                let (at, packet) = arrivals[next_arrival].clone();
                buffer.push(packet, Duration::from_secs_f64(at / 1000.0));
                next_arrival += 1;
            }
            let now = Duration::from_secs_f64(pop_at / 1000.0);
            out.push(match buffer.pop(now) {
                Some(Playout::Packet(p)) => Out::Play(p.seq),
                Some(Playout::Lost { fec, .. }) => Out::Lost { fec: fec.is_some() },
                None => Out::Silence,
            });
            pop_at += FRAME_MS as f64;
        }
        (out, buffer)
    }
}

fn played(out: &[Out]) -> Vec<u16> {
    out.iter()
        .filter_map(|o| match o {
            Out::Play(seq) => Some(*seq),
            _ => None,
        })
        .collect()
}

/// Deterministic pseudo-random numbers in [0, 1).
fn uniform(i: usize, salt: u64) -> f64 {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1_u64 << 53) as f64
}

#[test]
fn steady_stream_plays_everything_in_order_at_minimum_delay() {
    let (out, buffer) = Network::steady(500).run(JitterConfig::default());
    let seqs = played(&out);
    assert_eq!(seqs, (0..500).collect::<Vec<u16>>());
    let stats = buffer.stats();
    assert_eq!(stats.target_delay, Duration::from_millis(20));
    assert_eq!(
        (stats.lost, stats.late, stats.concealed, stats.dropped),
        (0, 0, 0, 0)
    );
    assert!(
        stats.current_delay <= Duration::from_millis(40),
        "{stats:?}"
    );
}

#[test]
fn sequence_and_timestamp_wrap_around() {
    let mut network = Network::steady(300);
    network.seq0 = 65_500;
    network.ts0 = u32::MAX - 960 * 50;
    network.delay = Box::new(|i| if i == 100 { None } else { Some(0.0) });
    let (out, buffer) = network.run(JitterConfig::default());
    let seqs = played(&out);
    assert_eq!(seqs.len(), 299);
    assert_eq!(seqs[0], 65_500);
    assert_eq!(seqs[35], 65_535);
    assert_eq!(seqs[36], 0);
    assert_eq!(buffer.stats().lost, 1);
}

#[test]
fn reordering_within_the_delay_is_invisible() {
    let mut network = Network::steady(400);
    // Every 10th packet is held back 15 ms, landing after its successor.
    network.delay = Box::new(|i| Some(if i % 10 == 5 { 35.0 } else { 0.0 }));
    let (out, buffer) = network.run(JitterConfig::default());
    assert_eq!(played(&out), (0..400).collect::<Vec<u16>>());
    let stats = buffer.stats();
    assert_eq!((stats.lost, stats.late), (0, 0), "{stats:?}");
    // It had to grow the delay to cover 35 ms of reordering.
    assert!(stats.target_delay >= Duration::from_millis(35), "{stats:?}");
}

#[test]
fn duplicates_are_counted_and_played_once() {
    let mut network = Network::steady(200);
    network.duplicate = Box::new(|i| i % 7 == 0);
    let (out, buffer) = network.run(JitterConfig::default());
    assert_eq!(played(&out), (0..200).collect::<Vec<u16>>());
    assert_eq!(buffer.stats().duplicates, 29);
}

#[test]
fn a_single_loss_is_rebuilt_from_the_next_packets_fec() {
    let mut network = Network::steady(200);
    network.delay = Box::new(|i| if i == 50 { None } else { Some(0.0) });
    let config = JitterConfig::builder()
        .min_delay(Duration::from_millis(40))
        .build()
        .unwrap();
    let (out, buffer) = network.run(config);
    let at = out.iter().position(|o| *o == Out::Play(49)).unwrap();
    assert_eq!(out[at + 1], Out::Lost { fec: true });
    assert_eq!(out[at + 2], Out::Play(51));
    let stats = buffer.stats();
    assert_eq!((stats.lost, stats.concealed, stats.fec), (1, 1, 1));
}

#[test]
fn a_burst_loss_conceals_each_frame_and_fec_only_the_last() {
    let mut network = Network::steady(200);
    network.delay = Box::new(|i| {
        if (60..64).contains(&i) {
            None
        } else {
            Some(0.0)
        }
    });
    let config = JitterConfig::builder()
        .min_delay(Duration::from_millis(40))
        .build()
        .unwrap();
    let (out, buffer) = network.run(config);
    let at = out.iter().position(|o| *o == Out::Play(59)).unwrap();
    assert_eq!(
        out[at + 1..at + 6],
        [
            Out::Lost { fec: false },
            Out::Lost { fec: false },
            Out::Lost { fec: false },
            Out::Lost { fec: true },
            Out::Play(64)
        ]
    );
    let stats = buffer.stats();
    assert_eq!((stats.lost, stats.concealed, stats.fec), (4, 4, 1));
    assert_eq!(played(&out).len(), 196);
}

#[test]
fn random_loss_is_concealed_frame_for_frame() {
    let mut network = Network::steady(1_000);
    network.delay = Box::new(|i| (uniform(i, 1) >= 0.05).then_some(0.0));
    let (out, buffer) = network.run(JitterConfig::default());
    let lost = (0..1_000).filter(|&i| uniform(i, 1) < 0.05).count() as u64;
    let stats = buffer.stats();
    assert_eq!(stats.lost, lost);
    assert_eq!(played(&out).len() as u64, 1_000 - lost);
    // Every loss was concealed; with the next packet present most got FEC.
    assert!(stats.concealed >= lost, "{stats:?}");
    assert!(stats.fec * 10 >= lost * 8, "{stats:?}");
}

#[test]
fn target_delay_follows_uniform_jitter() {
    let mut network = Network::steady(1_500);
    network.delay = Box::new(|i| Some(60.0 * uniform(i, 2)));
    let (out, buffer) = network.run(JitterConfig::default());
    let stats = buffer.stats();
    // 60 ms of jitter needs about 60 ms of buffer, and not much more.
    assert!(
        stats.target_delay >= Duration::from_millis(55)
            && stats.target_delay <= Duration::from_millis(80),
        "{stats:?}"
    );
    // Nothing was lost on the wire; very few frames were late for their slot.
    assert!(stats.late + stats.lost <= 30, "{stats:?}");
    assert!(played(&out).len() >= 1_470, "{stats:?}");
}

#[test]
fn target_delay_is_clamped_to_200_ms() {
    let mut network = Network::steady(600);
    network.delay = Box::new(|i| Some(400.0 * uniform(i, 3)));
    let (_, buffer) = network.run(JitterConfig::default());
    assert_eq!(buffer.stats().target_delay, Duration::from_millis(200));
}

#[test]
fn a_network_stall_raises_the_delay_then_it_decays() {
    // A 120 ms stall at packet 200 (packets pile up and arrive together), then calm.
    let mut network = Network::steady(1_500);
    network.delay = Box::new(|i| {
        Some(if (200..206).contains(&i) {
            120.0 - (i - 200) as f64 * 20.0
        } else {
            0.0
        })
    });
    let config = JitterConfig::default();
    let (out, buffer) = network.run(config);
    let stats = buffer.stats();
    // The stall costs a few frames, then the buffer covers it...
    assert!(stats.concealed <= 12, "{stats:?}");
    assert!(played(&out).len() >= 1_490, "{stats:?}");
    // ...and 10 s of calm later, the stall has left the window: back to the minimum, and the
    // surplus has been shed.
    assert_eq!(stats.target_delay, Duration::from_millis(20), "{stats:?}");
    assert!(stats.dropped >= 1, "{stats:?}");
    assert!(
        stats.current_delay <= Duration::from_millis(45),
        "{stats:?}"
    );
}

#[test]
fn jitter_that_grows_midway_grows_the_target() {
    let mut network = Network::steady(1_000);
    network.delay = Box::new(|i| Some(if i < 500 { 0.0 } else { 100.0 * uniform(i, 4) }));
    let (out, buffer) = network.run(JitterConfig::default());
    let stats = buffer.stats();
    assert!(stats.target_delay >= Duration::from_millis(90), "{stats:?}");
    // Adapting costs some frames right after the change, then it holds.
    let tail = &out[out.len() - 300..out.len() - 25];
    let concealed_in_tail = tail
        .iter()
        .filter(|o| matches!(o, Out::Lost { .. }))
        .count();
    assert!(concealed_in_tail <= 5, "{concealed_in_tail} {stats:?}");
}

#[test]
fn a_fast_sender_clock_is_absorbed_by_dropping() {
    let mut network = Network::steady(3_000);
    network.sender_speed = 1.005; // 0.5 % fast: 5 ms more audio per second.
    let (out, buffer) = network.run(JitterConfig::default());
    let stats = buffer.stats();
    // 60 s of 0.5 % drift is 300 ms, i.e. 15 frames to shed; the delay stays bounded.
    assert!((10..=20).contains(&stats.dropped), "{stats:?}");
    assert!(
        stats.current_delay <= Duration::from_millis(60),
        "{stats:?}"
    );
    assert_eq!(stats.lost, 0);
    assert_eq!(played(&out).len() as u64 + stats.dropped, 3_000);
}

#[test]
fn a_slow_sender_clock_is_absorbed_by_stretching() {
    let mut network = Network::steady(3_000);
    network.sender_speed = 0.995;
    let (out, buffer) = network.run(JitterConfig::default());
    let stats = buffer.stats();
    // 15 frames short over a minute: each underrun is filled by concealment.
    assert!((10..=20).contains(&stats.concealed), "{stats:?}");
    assert_eq!((stats.lost, stats.late), (0, 0), "{stats:?}");
    assert_eq!(played(&out).len(), 3_000);
}

#[test]
fn late_packets_are_counted_and_dropped() {
    let mut network = Network::steady(300);
    network.delay = Box::new(|i| Some(if i == 100 { 300.0 } else { 0.0 }));
    let (out, buffer) = network.run(JitterConfig::default());
    let stats = buffer.stats();
    assert_eq!((stats.late, stats.lost), (1, 1), "{stats:?}");
    assert!(!played(&out).contains(&100));
}

#[test]
fn dtx_silence_goes_idle_without_counting_loss() {
    let mut network = Network::steady(600);
    // The talker pauses for 2 s: no packets, sequence numbers continue after.
    network.dtx = Box::new(|i| (200..300).contains(&i));
    let (out, buffer) = network.run(JitterConfig::default());
    let stats = buffer.stats();
    assert_eq!((stats.lost, stats.late), (0, 0), "{stats:?}");
    assert_eq!(played(&out).len(), 500);
    // A few frames of concealment fade the talker out, then silence until they resume.
    assert!(stats.concealed <= 6, "{stats:?}");
    let silent = out.iter().filter(|o| **o == Out::Silence).count();
    assert!(silent >= 90, "{silent}");
}

#[test]
fn a_sequence_jump_restarts_the_stream() {
    let config = JitterConfig::builder()
        .min_delay(Duration::from_millis(40))
        .build()
        .unwrap();
    let mut buffer = JitterBuffer::new(config);
    let packet = |seq, timestamp| RtpPacket {
        seq,
        timestamp,
        duration: 960,
        payload: vec![1],
    };
    let ms = Duration::from_millis;
    buffer.push(packet(10, 0), ms(0));
    assert!(matches!(buffer.pop(ms(40)), Some(Playout::Packet(p)) if p.seq == 10));
    // A restarted sender: far away sequence number and timestamp.
    assert_eq!(
        buffer.push(packet(40_000, 5_000_000), ms(40)),
        PushOutcome::Buffered
    );
    assert_eq!(buffer.pop(ms(41)), None, "re-buffering");
    assert!(matches!(buffer.pop(ms(80)), Some(Playout::Packet(p)) if p.seq == 40_000));
    assert_eq!(
        buffer.push(packet(40_000, 5_000_000), ms(81)),
        PushOutcome::Duplicate
    );
    assert_eq!(
        buffer.push(packet(39_999, 4_999_040), ms(82)),
        PushOutcome::Late
    );
}

#[test]
fn bad_settings_are_refused() {
    let ms = Duration::from_millis;
    assert!(JitterConfig::builder().min_delay(ms(300)).build().is_err());
    assert!(JitterConfig::builder()
        .max_delay(ms(2_000))
        .build()
        .is_err());
    assert!(JitterConfig::builder().clock_rate(1).build().is_err());
    assert!(JitterConfig::builder().frame_samples(0).build().is_err());
}
