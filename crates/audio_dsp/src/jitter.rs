//! An adaptive jitter buffer for one incoming RTP audio stream, sans-IO.
//!
//! The buffer never reads a clock: [`JitterBuffer::push`] takes a packet and the time it
//! arrived, [`JitterBuffer::pop`] takes the time the sound card wants the next frame. Times
//! are [`Duration`]s since any fixed origin of the caller's monotonic clock, so tests drive
//! it on virtual time.
//!
//! # Model
//!
//! Playout is *pulled*: the caller pops whenever it needs the next frame, and gets the next
//! packet in sequence order, or a [`Playout::Lost`] to conceal (with the next packet's bytes
//! for in-band FEC when that packet is already here), or nothing (`None`: play silence).
//!
//! - **Ordering.** Sequence numbers (16-bit, wrapping) and timestamps (32-bit, wrapping) are
//!   extended to 64 bits; packets are kept sorted, so reordering within the delay is invisible.
//!   A packet seen twice counts as a duplicate; one that arrives after its slot was played or
//!   declared lost counts as late. Both are dropped.
//! - **Loss.** When the next sequence number is missing at pop time and a later packet is
//!   here, the frame is lost: `Lost { fec: Some(next) }` if the very next packet is here,
//!   else `Lost { fec: None }`. When the buffer runs dry while playing (a late packet, a
//!   slower sender clock), pop conceals without consuming a sequence number: the stream is
//!   stretched by a frame and the delay grows. After `max_conceal` of concealment with
//!   nothing to play (the talker stopped, DTX), the buffer goes idle and pop returns `None`.
//! - **Start and resume.** Playout starts (and resumes after idle) once the first packet has
//!   waited `target_delay`.
//! - **Delay estimate.** Each packet's transit time (arrival − timestamp/clock rate) is
//!   compared with the fastest transit of the last 100 packets (2 s of 20 ms frames; short, so
//!   clock drift between the two ends does not read as jitter): that is its *relative delay*.
//!   The target delay is the 98th percentile of the last 500 relative delays (10 s) plus 5 ms,
//!   plus one frame while packets are being lost (so the next packet, which carries the lost
//!   one's FEC, is here in time), clamped to `min_delay..=max_delay` (20–200 ms by default). It
//!   follows rising jitter at once and falls as old samples leave the window.
//! - **Holding the target.** A packet about to be played would be played at a *playout delay*
//!   of (now − arrival) + its relative delay: the delay behind the fastest path. Below
//!   `target − frame/2`, pop inserts one concealed frame first (a *stretch*, never twice in a
//!   row); above `target + frame`, it drops that packet and plays the next. The dead band is
//!   wider than one adjustment, so this never oscillates. The same two moves absorb clock drift:
//!   a fast sender's surplus is dropped, a slow sender's deficit is stretched (or concealed when
//!   the buffer runs dry).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::{DspError, Result};

/// Packets whose relative delays make up the delay estimate.
const TRANSIT_WINDOW: usize = 500;
/// Packets over which the fastest transit (the baseline of relative delay) is taken: short,
/// so that clock drift between sender and receiver does not read as jitter.
const BASELINE_WINDOW: usize = 100;
/// Quantile of relative delay the target covers.
const TARGET_QUANTILE: f64 = 0.98;
/// Added to the quantile so that the pop granularity does not eat the margin.
const TARGET_MARGIN: Duration = Duration::from_millis(5);
/// Played packets per loss-accounting window.
const LOSS_WINDOW: u64 = 100;
/// Losses in a window above which the target leaves room for FEC (one more frame).
const FEC_LOSS_THRESHOLD: u64 = 2;
/// Recently played sequence numbers remembered to tell duplicates from late packets.
const PLAYED_MEMORY: usize = 256;
/// A sequence jump larger than this is a new stream (sender restart), not loss.
const MAX_SEQ_JUMP: i64 = 3_000;
/// Most packets held; beyond it the oldest are dropped.
const MAX_PACKETS: usize = 500;

/// Settings of a [`JitterBuffer`]; build with [`JitterConfig::builder`].
///
/// Defaults: `min_delay` 20 ms, `max_delay` 200 ms, `clock_rate` 48 000 Hz, `frame_samples`
/// 960 (20 ms, the duration assumed until packets tell otherwise), `max_conceal` 100 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    min_delay: Duration,
    max_delay: Duration,
    clock_rate: u32,
    frame_samples: u32,
    max_conceal: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            clock_rate: 48_000,
            frame_samples: 960,
            max_conceal: Duration::from_millis(100),
        }
    }
}

impl JitterConfig {
    /// A builder starting from the defaults.
    #[must_use]
    pub fn builder() -> JitterConfigBuilder {
        JitterConfigBuilder(Self::default())
    }

    /// Smallest target delay.
    #[must_use]
    pub fn min_delay(&self) -> Duration {
        self.min_delay
    }

    /// Largest target delay.
    #[must_use]
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// RTP clock rate of the timestamps, in Hz.
    #[must_use]
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Frame duration assumed before packets give one, in timestamp units.
    #[must_use]
    pub fn frame_samples(&self) -> u32 {
        self.frame_samples
    }

    /// Concealment after which a dry buffer goes idle.
    #[must_use]
    pub fn max_conceal(&self) -> Duration {
        self.max_conceal
    }
}

/// Builder of [`JitterConfig`].
#[derive(Debug, Clone, Copy)]
pub struct JitterConfigBuilder(JitterConfig);

impl JitterConfigBuilder {
    /// Smallest target delay, 0–1 s (default 20 ms).
    #[must_use]
    pub fn min_delay(mut self, delay: Duration) -> Self {
        self.0.min_delay = delay;
        self
    }

    /// Largest target delay, at least `min_delay`, at most 1 s (default 200 ms).
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.0.max_delay = delay;
        self
    }

    /// RTP clock rate, 8–192 kHz (default 48 000, Opus' RTP clock).
    #[must_use]
    pub fn clock_rate(mut self, rate: u32) -> Self {
        self.0.clock_rate = rate;
        self
    }

    /// Frame duration assumed before packets give one, in timestamp units (default 960).
    #[must_use]
    pub fn frame_samples(mut self, samples: u32) -> Self {
        self.0.frame_samples = samples;
        self
    }

    /// Concealment after which a dry buffer goes idle (default 100 ms).
    #[must_use]
    pub fn max_conceal(mut self, duration: Duration) -> Self {
        self.0.max_conceal = duration;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] for a value outside its range.
    pub fn build(self) -> Result<JitterConfig> {
        let c = self.0;
        let second = Duration::from_secs(1);
        let invalid = |name, reason| Err(DspError::InvalidArgument { name, reason });
        if c.max_delay > second || c.min_delay > c.max_delay {
            return invalid(
                "delay",
                format!(
                    "need min_delay <= max_delay <= 1 s, got {:?} and {:?}",
                    c.min_delay, c.max_delay
                ),
            );
        }
        if !(8_000..=192_000).contains(&c.clock_rate) {
            return invalid(
                "clock_rate",
                format!("{} is outside 8000..=192000", c.clock_rate),
            );
        }
        if c.frame_samples == 0 || c.frame_samples > c.clock_rate {
            return invalid(
                "frame_samples",
                format!("{} is not between 1 and one second", c.frame_samples),
            );
        }
        if c.max_conceal > second {
            return invalid("max_conceal", format!("{:?} is over 1 s", c.max_conceal));
        }
        Ok(c)
    }
}

/// An RTP audio packet as the jitter buffer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// RTP sequence number (wraps at 2^16).
    pub seq: u16,
    /// RTP timestamp of the first sample, in clock-rate units (wraps at 2^32).
    pub timestamp: u32,
    /// Samples (per channel) the payload decodes to, in clock-rate units; 0 if unknown.
    pub duration: u32,
    /// The codec payload.
    pub payload: Vec<u8>,
}

/// What to play next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this packet.
    Packet(RtpPacket),
    /// A frame is missing: conceal `samples` samples, or rebuild them from the in-band FEC of
    /// `fec` (the next packet, which pop returns afterwards for normal decoding).
    Lost {
        /// Duration of the missing frame, in clock-rate units.
        samples: u32,
        /// The following packet's payload, if it is already buffered.
        fec: Option<Vec<u8>>,
    },
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Buffered for playout.
    Buffered,
    /// Already buffered or played: dropped.
    Duplicate,
    /// Its slot was already played or declared lost: dropped.
    Late,
}

/// Counters and delays of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// The delay the buffer currently aims for.
    pub target_delay: Duration,
    /// How long the last played packet waited in the buffer (its playout delay).
    pub current_delay: Duration,
    /// Audio currently buffered, from the next packet to play to the end of the newest.
    pub buffered: Duration,
    /// RFC 3550 interarrival jitter estimate.
    pub jitter: Duration,
    /// Packets pushed, duplicates and late ones included.
    pub received: u64,
    /// Packets returned for decoding.
    pub played: u64,
    /// Packets that arrived after their slot.
    pub late: u64,
    /// Sequence numbers declared lost at playout.
    pub lost: u64,
    /// Frames returned as [`Playout::Lost`] (losses and dry-buffer concealment).
    pub concealed: u64,
    /// Of those, frames for which the next packet's FEC was offered.
    pub fec: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets dropped to shed surplus delay (or on overflow).
    pub dropped: u64,
    /// Frames inserted (concealed, counted in `concealed` too) to grow the delay.
    pub stretched: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    timestamp: i64,
    duration: u32,
    payload: Vec<u8>,
    arrival: Duration,
    /// How much later than the fastest recent packet this one arrived, in seconds.
    relative_delay: f64,
    seq: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the first packet, or idle after the talker stopped.
    Idle,
    /// Packets are here; playout starts at the deadline or when enough is buffered.
    Buffering { deadline: Duration },
    /// Playing; `dry` is how much has been concealed in a row with nothing buffered.
    Playing { dry: Duration },
}

/// The adaptive jitter buffer of one incoming stream. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    config: JitterConfig,
    state: State,
    packets: BTreeMap<i64, Entry>,
    /// Highest extended sequence number seen, and the timestamp reference for unwrapping.
    highest_seq: Option<i64>,
    last_timestamp: i64,
    /// Next extended sequence number to play.
    next_seq: Option<i64>,
    /// Extended timestamp and duration of the last played or concealed frame.
    last_played: Option<(i64, u32)>,
    played_recently: VecDeque<i64>,
    /// Frames concealed with nothing buffered since the last packet played: if the packets
    /// for them turn out lost, they were already concealed.
    dry_frames: i64,
    transits: VecDeque<f64>,
    relative_delays: VecDeque<f64>,
    /// Whether the last pop inserted a frame: stretches alternate with real frames.
    stretched_last: bool,
    /// Losses counted in the current window of played packets (halved every window).
    recent_losses: u64,
    played_slots: u64,
    /// RFC 3550 jitter, in seconds, and the previous packet's (arrival, transit).
    jitter: f64,
    previous_transit: Option<f64>,
    target: Duration,
    stats: JitterStats,
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl JitterBuffer {
    /// An empty buffer with the given settings.
    #[must_use]
    pub fn new(config: JitterConfig) -> Self {
        Self {
            config,
            state: State::Idle,
            packets: BTreeMap::new(),
            highest_seq: None,
            last_timestamp: 0,
            next_seq: None,
            last_played: None,
            played_recently: VecDeque::with_capacity(PLAYED_MEMORY),
            dry_frames: 0,
            transits: VecDeque::with_capacity(BASELINE_WINDOW),
            relative_delays: VecDeque::with_capacity(TRANSIT_WINDOW),
            stretched_last: false,
            recent_losses: 0,
            played_slots: 0,
            jitter: 0.0,
            previous_transit: None,
            target: config.min_delay,
            stats: JitterStats {
                target_delay: config.min_delay,
                ..JitterStats::default()
            },
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &JitterConfig {
        &self.config
    }

    /// Counters and delays.
    #[must_use]
    pub fn stats(&self) -> JitterStats {
        let mut stats = self.stats;
        stats.target_delay = self.target;
        stats.buffered = self.buffered();
        stats.jitter = Duration::try_from_secs_f64(self.jitter).unwrap_or_default();
        stats
    }

    /// The delay the buffer aims for now.
    #[must_use]
    pub fn target_delay(&self) -> Duration {
        self.target
    }

    /// Packets held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether no packet is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    fn units_to_duration(&self, units: i64) -> Duration {
        let secs = units.max(0) as f64 / f64::from(self.config.clock_rate);
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }

    fn buffered(&self) -> Duration {
        let (Some((_, first)), Some((_, last))) = (
            self.packets.first_key_value(),
            self.packets.last_key_value(),
        ) else {
            return Duration::ZERO;
        };
        let end = last.timestamp + i64::from(self.duration_of(last));
        self.units_to_duration(end - first.timestamp)
    }

    fn duration_of(&self, entry: &Entry) -> u32 {
        if entry.duration > 0 {
            entry.duration
        } else {
            self.last_played
                .map_or(self.config.frame_samples, |(_, d)| d)
        }
    }

    fn extend_seq(&self, seq: u16) -> i64 {
        match self.highest_seq {
            None => i64::from(seq),
            Some(highest) => {
                #[allow(clippy::cast_possible_truncation)]
                let diff = seq.wrapping_sub(highest as u16) as i16;
                highest + i64::from(diff)
            }
        }
    }

    fn extend_timestamp(&self, timestamp: u32) -> i64 {
        if self.highest_seq.is_none() {
            return i64::from(timestamp);
        }
        #[allow(clippy::cast_possible_truncation)]
        let diff = timestamp.wrapping_sub(self.last_timestamp as u32) as i32;
        self.last_timestamp + i64::from(diff)
    }

    /// Forgets the stream (a new sender, or a jump in sequence numbers); counters stay.
    fn reset_stream(&mut self) {
        self.packets.clear();
        self.highest_seq = None;
        self.next_seq = None;
        self.last_played = None;
        self.played_recently.clear();
        self.transits.clear();
        self.relative_delays.clear();
        self.previous_transit = None;
        self.dry_frames = 0;
        self.state = State::Idle;
    }

    /// Adds a packet that arrived at `arrival`.
    pub fn push(&mut self, packet: RtpPacket, arrival: Duration) -> PushOutcome {
        self.stats.received += 1;
        let mut seq = self.extend_seq(packet.seq);
        if let Some(highest) = self.highest_seq {
            if (seq - highest).abs() > MAX_SEQ_JUMP {
                self.reset_stream();
                seq = self.extend_seq(packet.seq);
            }
        }
        let timestamp = self.extend_timestamp(packet.timestamp);
        if self.highest_seq.is_none_or(|h| seq > h) {
            self.highest_seq = Some(seq);
            self.last_timestamp = timestamp;
        }
        let relative_delay = self.observe_transit(timestamp, arrival);

        if self.packets.contains_key(&seq) || self.played_recently.contains(&seq) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        if self.next_seq.is_some_and(|next| seq < next) {
            self.stats.late += 1;
            return PushOutcome::Late;
        }
        self.packets.insert(
            seq,
            Entry {
                timestamp,
                duration: packet.duration,
                payload: packet.payload,
                arrival,
                relative_delay,
                seq: packet.seq,
            },
        );
        while self.packets.len() > MAX_PACKETS {
            self.packets.pop_first();
            self.stats.dropped += 1;
        }
        if self.state == State::Idle {
            self.state = State::Buffering {
                deadline: arrival + self.target,
            };
        }
        PushOutcome::Buffered
    }

    /// Records a packet's transit time; returns its relative delay in seconds.
    fn observe_transit(&mut self, timestamp: i64, arrival: Duration) -> f64 {
        let transit = seconds(arrival) - timestamp as f64 / f64::from(self.config.clock_rate);
        if let Some(previous) = self.previous_transit {
            // RFC 3550 §6.4.1: J += (|D| - J) / 16.
            let d = (transit - previous).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.previous_transit = Some(transit);
        if self.transits.len() == BASELINE_WINDOW {
            self.transits.pop_front();
        }
        self.transits.push_back(transit);
        let fastest = self.transits.iter().copied().fold(transit, f64::min);
        if self.relative_delays.len() == TRANSIT_WINDOW {
            self.relative_delays.pop_front();
        }
        self.relative_delays.push_back(transit - fastest);
        self.update_target();
        transit - fastest
    }

    fn update_target(&mut self) {
        if self.relative_delays.is_empty() {
            return;
        }
        let mut relative: Vec<f64> = self.relative_delays.iter().copied().collect();
        relative.sort_by(f64::total_cmp);
        // Nearest-rank quantile.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank =
            ((relative.len() as f64 * TARGET_QUANTILE).ceil() as usize).clamp(1, relative.len());
        let quantile = relative[rank - 1];
        let wanted = Duration::try_from_secs_f64(quantile.max(0.0)).unwrap_or(Duration::MAX);
        // Under loss, one more frame of delay lets the next packet (and its FEC) be here in
        // time to rebuild a lost one.
        let fec_room = if self.recent_losses >= FEC_LOSS_THRESHOLD {
            let frame = self
                .last_played
                .map_or(self.config.frame_samples, |(_, d)| d);
            self.units_to_duration(i64::from(frame))
        } else {
            Duration::ZERO
        };
        self.target = wanted
            .saturating_add(TARGET_MARGIN)
            .saturating_add(fec_room)
            .clamp(self.config.min_delay, self.config.max_delay);
    }

    /// The next frame to play at `now`, or `None` to play silence (nothing has arrived yet,
    /// the buffer is still filling, or the talker stopped).
    pub fn pop(&mut self, now: Duration) -> Option<Playout> {
        let stretched_last = std::mem::take(&mut self.stretched_last);
        match self.state {
            State::Idle => return None,
            State::Buffering { deadline } => {
                if now < deadline {
                    return None;
                }
                self.start_playing();
            }
            State::Playing { .. } => {}
        }
        let mut next = self.next_seq?;
        if let Some(entry) = self.packets.remove(&next) {
            return Some(self.play_or_adjust(next, entry, now, stretched_last));
        }
        // The next packet is missing.
        let Some((&later, _)) = self.packets.first_key_value() else {
            return self.conceal_dry();
        };
        // Frames concealed while the buffer was dry stood in for the first missing packets.
        let covered = self.dry_frames.min(later - next);
        if covered > 0 {
            self.dry_frames = 0;
            self.count_losses(covered);
            next += covered;
            self.next_seq = Some(next);
            if let Some(entry) = self.packets.remove(&next) {
                return Some(self.play(next, entry, now));
            }
        }
        let samples = self.lost_duration(next, later);
        self.count_losses(1);
        self.stats.concealed += 1;
        self.next_seq = Some(next + 1);
        let timestamp = self.last_played.map_or(0, |(ts, d)| ts + i64::from(d));
        self.last_played = Some((timestamp, samples));
        self.state = State::Playing {
            dry: Duration::ZERO,
        };
        let fec = (later == next + 1)
            .then(|| self.packets.get(&later).map(|e| e.payload.clone()))
            .flatten();
        if fec.is_some() {
            self.stats.fec += 1;
        }
        Some(Playout::Lost { samples, fec })
    }

    /// Plays `entry` (sequence number `seq`), unless the playout delay it would be played at
    /// is off target: then a frame is inserted (stretch) or the packet is dropped (shrink).
    fn play_or_adjust(
        &mut self,
        seq: i64,
        entry: Entry,
        now: Duration,
        stretched_last: bool,
    ) -> Playout {
        let duration = self.duration_of(&entry);
        let frame = self.units_to_duration(i64::from(duration));
        let delay = self.playout_delay(&entry, now);
        // Dead band [target - frame/2, target + frame]: one adjustment lands inside it.
        if delay + frame / 2 < self.target && !stretched_last {
            self.packets.insert(seq, entry);
            self.stretched_last = true;
            self.stats.stretched += 1;
            self.stats.concealed += 1;
            return Playout::Lost {
                samples: duration,
                fec: None,
            };
        }
        if delay > self.target + frame {
            if let Some(following) = self.packets.remove(&(seq + 1)) {
                self.last_played = Some((entry.timestamp, duration));
                self.remember_played(seq);
                self.stats.dropped += 1;
                return self.play(seq + 1, following, now);
            }
        }
        self.play(seq, entry, now)
    }

    /// The delay `entry` is played at, measured from the fastest path: how long it waited
    /// here plus how much later than the fastest packets it arrived.
    fn playout_delay(&self, entry: &Entry, now: Duration) -> Duration {
        let relative = Duration::try_from_secs_f64(entry.relative_delay).unwrap_or_default();
        now.saturating_sub(entry.arrival) + relative
    }

    fn count_losses(&mut self, lost: i64) {
        let lost = u64::try_from(lost).unwrap_or(0);
        self.stats.lost += lost;
        self.recent_losses = self.recent_losses.saturating_add(lost);
        self.update_target();
    }

    fn start_playing(&mut self) {
        let Some((&first, _)) = self.packets.first_key_value() else {
            self.state = State::Idle;
            return;
        };
        // After idle, a gap in sequence numbers was lost while nobody listened: skip it.
        if let Some(next) = self.next_seq {
            if first > next {
                self.stats.lost += u64::try_from(first - next).unwrap_or(0);
            }
        }
        self.next_seq = Some(first);
        self.last_played = None;
        self.state = State::Playing {
            dry: Duration::ZERO,
        };
    }

    fn play(&mut self, seq: i64, entry: Entry, now: Duration) -> Playout {
        self.stats.current_delay = self.playout_delay(&entry, now);
        let duration = self.duration_of(&entry);
        self.last_played = Some((entry.timestamp, duration));
        self.next_seq = Some(seq + 1);
        self.remember_played(seq);
        self.dry_frames = 0;
        self.stats.played += 1;
        self.played_slots += 1;
        if self.played_slots >= LOSS_WINDOW {
            // Losses decay: a window with no loss drops the FEC allowance again.
            self.played_slots = 0;
            self.recent_losses /= 2;
            self.update_target();
        }
        self.state = State::Playing {
            dry: Duration::ZERO,
        };
        Playout::Packet(RtpPacket {
            seq: entry.seq,
            timestamp: u32::try_from(entry.timestamp.rem_euclid(1 << 32)).unwrap_or(0),
            duration,
            payload: entry.payload,
        })
    }

    fn conceal_dry(&mut self) -> Option<Playout> {
        let State::Playing { dry } = self.state else {
            return None;
        };
        let samples = self
            .last_played
            .map_or(self.config.frame_samples, |(_, d)| d);
        if dry >= self.config.max_conceal {
            self.state = State::Idle;
            self.dry_frames = 0;
            return None;
        }
        self.state = State::Playing {
            dry: dry + self.units_to_duration(i64::from(samples)),
        };
        self.stats.concealed += 1;
        self.dry_frames += 1;
        Some(Playout::Lost { samples, fec: None })
    }

    /// Duration of the missing `next` when `later` is the first packet buffered after it.
    fn lost_duration(&self, next: i64, later: i64) -> u32 {
        let fallback = self
            .last_played
            .map_or(self.config.frame_samples, |(_, d)| d);
        let (Some((played_ts, played_duration)), Some(entry)) =
            (self.last_played, self.packets.get(&later))
        else {
            return fallback;
        };
        let gap_units = entry.timestamp - (played_ts + i64::from(played_duration));
        let missing = later - next;
        if missing <= 0 || gap_units <= 0 {
            return fallback;
        }
        let each = gap_units / missing;
        // A lost frame is a whole number of 2.5 ms at 48 kHz; anything else keeps the fallback.
        u32::try_from(each)
            .ok()
            .filter(|&e| e > 0 && e <= self.config.clock_rate / 8 && e % 120 == 0)
            .unwrap_or(fallback)
    }

    fn remember_played(&mut self, seq: i64) {
        if self.played_recently.len() == PLAYED_MEMORY {
            self.played_recently.pop_front();
        }
        self.played_recently.push_back(seq);
    }
}

#[cfg(test)]
mod tests;
