//! What decides whether a captured frame is sent: voice activity over an adaptive noise floor
//! ([`NoiseFloorGate`]), then push-to-talk and mute ([`Gating`]).

use std::time::Duration;

use audio_dsp::SILENCE_DBOV;

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
            levels: vec![SILENCE_DBOV; window],
            next: 0,
            sorted: vec![SILENCE_DBOV; window],
            floor: f64::from(SILENCE_DBOV),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
