//! The sans-IO parts of a client's voice link (the engine that runs both pipelines).
//!
//! - [`SampleRing`]: a lock-free single-producer single-consumer ring of `f32` samples between
//!   a sound card callback and the engine's thread (no locks, no allocation after `new`);
//! - [`NoiseFloorGate`]: voice activity over an adaptive noise floor, on top of the capture
//!   pipeline's detector;
//! - [`Gating`]: what decides whether a captured frame is sent (mute, deafen, push-to-talk,
//!   voice activity);
//! - [`quality`] and [`level_to_meter`]: what a UI shows.
//!
//! The threads, the clock and the network are the caller's (`voicechat._native.sfu.VoiceLink`).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

/// A bounded single-producer single-consumer ring of `f32` samples.
///
/// One thread calls [`push`](Self::push) (the producer) and one other thread calls
/// [`pop_into`](Self::pop_into) / [`skip`](Self::skip) (the consumer); [`len`](Self::len) is
/// safe from anywhere. Samples are stored as their bits in atomics, so the ring needs no
/// unsafe code and never blocks; misuse (two producers) garbles samples but is not undefined.
#[derive(Debug)]
pub struct SampleRing {
    slots: Box<[AtomicU32]>,
    /// Samples ever written (the producer's cursor).
    head: AtomicUsize,
    /// Samples ever read (the consumer's cursor).
    tail: AtomicUsize,
}

impl SampleRing {
    /// A ring holding up to `capacity` samples (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let slots = (0..capacity.max(1)).map(|_| AtomicU32::new(0)).collect();
        Self {
            slots,
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// Most samples the ring holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Samples waiting to be read.
    #[must_use]
    pub fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::Acquire);
        let head = self.head.load(Ordering::Acquire);
        head.wrapping_sub(tail).min(self.capacity())
    }

    /// Whether nothing waits to be read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Producer: appends as many of `samples` as fit; returns how many (the rest is dropped).
    pub fn push(&self, samples: &[f32]) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let free = self.capacity() - head.wrapping_sub(tail).min(self.capacity());
        let n = samples.len().min(free);
        let cap = self.capacity();
        for (k, sample) in samples[..n].iter().enumerate() {
            self.slots[head.wrapping_add(k) % cap].store(sample.to_bits(), Ordering::Relaxed);
        }
        self.head.store(head.wrapping_add(n), Ordering::Release);
        n
    }

    /// Producer: appends `n` zero samples as far as they fit; returns how many.
    pub fn push_silence(&self, n: usize) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let cap = self.capacity();
        let n = n.min(cap - head.wrapping_sub(tail).min(cap));
        for k in 0..n {
            self.slots[head.wrapping_add(k) % cap].store(0, Ordering::Relaxed);
        }
        self.head.store(head.wrapping_add(n), Ordering::Release);
        n
    }

    /// Consumer: moves up to `out.len()` samples into `out`; returns how many.
    pub fn pop_into(&self, out: &mut [f32]) -> usize {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let cap = self.capacity();
        let n = out.len().min(head.wrapping_sub(tail).min(cap));
        for (k, sample) in out[..n].iter_mut().enumerate() {
            *sample =
                f32::from_bits(self.slots[tail.wrapping_add(k) % cap].load(Ordering::Relaxed));
        }
        self.tail.store(tail.wrapping_add(n), Ordering::Release);
        n
    }

    /// Consumer: discards up to `n` samples; returns how many.
    pub fn skip(&self, n: usize) -> usize {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let n = n.min(head.wrapping_sub(tail).min(self.capacity()));
        self.tail.store(tail.wrapping_add(n), Ordering::Release);
        n
    }
}

/// Voice activity over an adaptive noise floor, on top of the capture pipeline's detector.
///
/// The pipeline's detector (a fixed -50 dBov threshold and RNNoise's voice probability) passes
/// steady noise louder than the threshold: RNNoise scores white hiss at -40 dBFS as voice. This
/// gate also wants the frame [`MARGIN_DB`](Self::MARGIN_DB) louder than the noise floor,
/// estimated as the [`FLOOR_PERCENTILE`](Self::FLOOR_PERCENTILE)th percentile (towards quiet;
/// levels are -dBov) of the last [`WINDOW`](Self::WINDOW) of frame levels, so a steady fan or
/// hiss stops being sent within that window while speech over it still goes through. The
/// decision holds for [`HANGOVER`](Self::HANGOVER) after the last frame that passed.
#[derive(Debug, Clone)]
pub struct NoiseFloorGate {
    levels: Vec<u8>,
    next: usize,
    sorted: Vec<u8>,
    floor: f64,
    hangover: u32,
    open_for: u32,
    refresh: u64,
    count: u64,
}

impl NoiseFloorGate {
    /// Length of the level history the floor is estimated from.
    pub const WINDOW: Duration = Duration::from_secs(3);
    /// Percentile of the history's levels (in -dBov, so towards the quiet end) taken as floor.
    pub const FLOOR_PERCENTILE: f64 = 90.0;
    /// How much louder than the floor a frame must be.
    pub const MARGIN_DB: f64 = 6.0;
    /// How long the gate stays open after the last frame that passed.
    pub const HANGOVER: Duration = Duration::from_millis(300);
    /// How often the floor is re-estimated.
    pub const REFRESH: Duration = Duration::from_millis(200);

    /// A gate for frames of `frame_ms` milliseconds (at least 1), starting from silence: until
    /// a window of input is in, only the pipeline's fixed threshold counts.
    #[must_use]
    pub fn new(frame_ms: u32) -> Self {
        let frame_ms = u128::from(frame_ms.max(1));
        let frames = |d: Duration| {
            usize::try_from(d.as_millis() / frame_ms)
                .unwrap_or(1)
                .max(1)
        };
        let window = frames(Self::WINDOW);
        Self {
            levels: vec![crate::SILENCE_DBOV; window],
            next: 0,
            sorted: vec![crate::SILENCE_DBOV; window],
            floor: f64::from(crate::SILENCE_DBOV),
            hangover: u32::try_from(frames(Self::HANGOVER)).unwrap_or(u32::MAX),
            open_for: 0,
            refresh: frames(Self::REFRESH) as u64,
            count: 0,
        }
    }

    /// The current noise floor estimate, in -dBov (127 is silence).
    #[must_use]
    pub fn floor(&self) -> f64 {
        self.floor
    }

    /// Takes one frame's RFC 6464 level and the pipeline's decision; returns the gate's.
    pub fn update(&mut self, level: u8, voice: bool) -> bool {
        self.levels[self.next] = level;
        self.next = (self.next + 1) % self.levels.len();
        self.count += 1;
        if self.count % self.refresh == 0 {
            self.floor = self.percentile();
        }
        if voice && f64::from(level) <= self.floor - Self::MARGIN_DB {
            self.open_for = self.hangover;
        } else if self.open_for > 0 {
            self.open_for -= 1;
        }
        self.open_for > 0
    }

    /// The history's percentile with linear interpolation between ranks (as numpy's default).
    fn percentile(&mut self) -> f64 {
        self.sorted.copy_from_slice(&self.levels);
        self.sorted.sort_unstable();
        let last = self.sorted.len() - 1;
        let rank = Self::FLOOR_PERCENTILE / 100.0 * last as f64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let below = rank.floor() as usize;
        let above = (below + 1).min(last);
        let fraction = rank - below as f64;
        let low = f64::from(self.sorted[below]);
        low + (f64::from(self.sorted[above]) - low) * fraction
    }
}

/// How a captured frame is gated: push-to-talk or voice activity, then mute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gating {
    /// Push-to-talk mode (else voice activity).
    pub push_to_talk: bool,
    /// The push-to-talk key is down.
    pub key_down: bool,
    /// Muted, or deafened (which implies muted).
    pub muted: bool,
}

impl Gating {
    /// Whether a frame with the voice activity decision `speech` is sent.
    #[must_use]
    pub fn sends(self, speech: bool) -> bool {
        let open = if self.push_to_talk {
            self.key_down
        } else {
            speech
        };
        open && !self.muted
    }
}

/// An RFC 6464 level (0 loud .. 127 silent) as a 0..1 meter value over 60 dB.
#[must_use]
pub fn level_to_meter(level: u8) -> f32 {
    1.0 - f32::from(level.min(60)) / 60.0
}

/// Connection quality from one window's figures: "unknown" before anything was played, then
/// "poor" (over 10 % lost or 150 ms of jitter buffer), "fair" (2 %, 80 ms) or "good".
#[must_use]
pub fn quality(played_ever: u64, loss: f64, delay: Duration) -> &'static str {
    let delay = delay.as_secs_f64();
    if played_ever == 0 {
        "unknown"
    } else if loss > 0.1 || delay > 0.15 {
        "poor"
    } else if loss > 0.02 || delay > 0.08 {
        "fair"
    } else {
        "good"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_moves_samples_in_order_and_drops_what_does_not_fit() {
        let ring = SampleRing::new(8);
        assert!(ring.is_empty());
        assert_eq!(ring.push(&[1.0, 2.0, 3.0, 4.0, 5.0]), 5);
        let mut out = [0.0; 3];
        assert_eq!(ring.pop_into(&mut out), 3);
        assert_eq!(out, [1.0, 2.0, 3.0]);
        // Wraps around the end of the slots.
        assert_eq!(ring.push(&[6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]), 6);
        assert_eq!(ring.len(), 8);
        assert_eq!(ring.push(&[13.0]), 0);
        assert_eq!(ring.skip(2), 2);
        let mut out = [0.0; 10];
        assert_eq!(ring.pop_into(&mut out), 6);
        assert_eq!(out[..6], [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(ring.push_silence(3), 3);
        assert_eq!(ring.pop_into(&mut out), 3);
        assert_eq!(out[..3], [0.0; 3]);
    }

    #[test]
    fn ring_between_two_threads_loses_nothing() {
        let ring = std::sync::Arc::new(SampleRing::new(64));
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut next = 0_u32;
                while next < 10_000 {
                    let block: Vec<f32> = (next..next + 7).map(|v| v as f32).collect();
                    next += ring.push(&block) as u32;
                }
            })
        };
        let mut seen = 0_u32;
        let mut out = [0.0; 5];
        while seen < 10_000 {
            let n = ring.pop_into(&mut out);
            for sample in &out[..n] {
                assert_eq!(*sample, seen as f32);
                seen += 1;
            }
        }
        assert!(producer.join().is_ok());
    }

    #[test]
    fn gate_learns_a_steady_noise_floor_and_still_passes_speech_over_it() {
        let mut gate = NoiseFloorGate::new(20);
        // Steady hiss at -40 dBov that the pipeline calls voice: passes at first...
        assert!(gate.update(40, true));
        for _ in 0..200 {
            gate.update(40, true);
        }
        // ...but not once the floor has been learnt (3 s) and the hangover ran out.
        assert!((gate.floor() - 40.0).abs() < 1e-9);
        assert!(!gate.update(40, true));
        // Speech 20 dB over the floor passes, and holds 300 ms (15 frames) after it.
        assert!(gate.update(20, true));
        for _ in 0..14 {
            assert!(gate.update(40, false));
        }
        assert!(!gate.update(40, false));
    }

    #[test]
    fn gate_percentile_interpolates_like_numpy() {
        let mut gate = NoiseFloorGate::new(1_000);
        // Window of 3 frames: levels 10, 20, 127; numpy.percentile(..., 90) gives 105.6.
        gate.update(10, false);
        gate.update(20, false);
        assert!(
            (gate.percentile() - 105.6).abs() < 1e-9,
            "{}",
            gate.percentile()
        );
    }

    #[test]
    fn gating_follows_mode_key_and_mute() {
        let voice = Gating::default();
        assert!(voice.sends(true) && !voice.sends(false));
        let ptt = Gating {
            push_to_talk: true,
            ..Gating::default()
        };
        assert!(!ptt.sends(true));
        let pressed = Gating {
            key_down: true,
            ..ptt
        };
        assert!(pressed.sends(false));
        assert!(!Gating {
            muted: true,
            ..pressed
        }
        .sends(true));
    }

    #[test]
    fn meter_and_quality() {
        assert!((level_to_meter(0) - 1.0).abs() < 1e-6);
        assert!(level_to_meter(127).abs() < 1e-6);
        assert!((level_to_meter(30) - 0.5).abs() < 1e-6);
        assert_eq!(quality(0, 0.0, Duration::ZERO), "unknown");
        assert_eq!(quality(5, 0.0, Duration::from_millis(40)), "good");
        assert_eq!(quality(5, 0.05, Duration::from_millis(40)), "fair");
        assert_eq!(quality(5, 0.0, Duration::from_millis(160)), "poor");
    }
}
