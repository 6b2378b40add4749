//! Speaking detection from the RFC 6464 audio level, with hysteresis.
//!
//! The level arrives in the `urn:ietf:params:rtp-hdrext:ssrc-audio-level` header extension of
//! each RTP packet as -dBov, 0 (loudest) to 127 (silence). A participant starts speaking after
//! [`SpeakingDetector::ON_PACKETS`] consecutive packets at or above -[`ON_DBOV`] dBov (about
//! 40 ms of 20 ms frames, so a click or a cough does not count) and stops once no packet has
//! been at or above the quieter -[`HOLD_DBOV`] dBov for [`HANGOVER`] (so pauses between words
//! do not flicker). Silence by absence (Opus DTX sends no packets) ends speaking the same way,
//! through [`SpeakingDetector::handle_timeout`].
//!
//! Pure state on caller-supplied time: the tests drive it on virtual time.

use std::time::{Duration, Instant};

/// Loudness (in -dBov) a packet must reach to count towards starting to speak.
pub const ON_DBOV: u8 = 40;
/// Loudness (in -dBov) that keeps a speaker speaking; quieter packets count as silence.
pub const HOLD_DBOV: u8 = 50;
/// How long a speaker may stay below [`HOLD_DBOV`] (or send nothing) before speaking ends.
pub const HANGOVER: Duration = Duration::from_millis(400);

/// Hysteresis over audio levels; one per participant.
#[derive(Debug, Clone, Default)]
pub struct SpeakingDetector {
    speaking: bool,
    loud_run: u32,
    last_loud: Option<Instant>,
}

impl SpeakingDetector {
    /// Consecutive loud packets that start speaking.
    pub const ON_PACKETS: u32 = 2;

    /// Whether the participant is speaking now.
    #[must_use]
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Feeds one packet's level (-dBov, 0 loudest, 127 silence) received at `now`.
    ///
    /// Returns `Some(new_state)` when the speaking state changed.
    pub fn handle_level(&mut self, now: Instant, level: u8) -> Option<bool> {
        if let Some(change) = self.handle_timeout(now) {
            // The hangover ran out before this packet; report that first, the packet then
            // starts a new run on the next call.
            self.loud_run = u32::from(level <= ON_DBOV);
            if level <= HOLD_DBOV {
                self.last_loud = Some(now);
            }
            return Some(change);
        }
        if self.speaking {
            if level <= HOLD_DBOV {
                self.last_loud = Some(now);
            }
            return None;
        }
        if level <= ON_DBOV {
            self.loud_run = self.loud_run.saturating_add(1);
            self.last_loud = Some(now);
            if self.loud_run >= Self::ON_PACKETS {
                self.speaking = true;
                return Some(true);
            }
        } else {
            self.loud_run = 0;
        }
        None
    }

    /// Ends speaking once the hangover has passed without a loud packet.
    ///
    /// Returns `Some(false)` when speaking just ended.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<bool> {
        match self.deadline() {
            Some(deadline) if now >= deadline => {
                self.speaking = false;
                self.loud_run = 0;
                Some(false)
            }
            _ => None,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) may next change the state.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        if self.speaking {
            self.last_loud.map(|t| t + HANGOVER)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    /// Feeds `levels` at 20 ms intervals from `start`; returns the changes with their frame index.
    fn run(detector: &mut SpeakingDetector, start: Instant, levels: &[u8]) -> Vec<(usize, bool)> {
        let mut changes = Vec::new();
        for (i, &level) in levels.iter().enumerate() {
            let at = start + FRAME * u32::try_from(i).unwrap();
            if let Some(change) = detector.handle_level(at, level) {
                changes.push((i, change));
            }
        }
        changes
    }

    #[test]
    fn two_loud_frames_start_speaking() {
        let mut d = SpeakingDetector::default();
        let t0 = Instant::now();
        assert_eq!(run(&mut d, t0, &[127, 30, 35]), vec![(2, true)]);
        assert!(d.is_speaking());
    }

    #[test]
    fn a_single_click_does_not() {
        let mut d = SpeakingDetector::default();
        let t0 = Instant::now();
        assert_eq!(run(&mut d, t0, &[10, 90, 10, 90, 10, 90]), vec![]);
        assert!(!d.is_speaking());
    }

    #[test]
    fn short_pauses_and_quieter_syllables_keep_speaking() {
        let mut d = SpeakingDetector::default();
        let t0 = Instant::now();
        // Start, then 15 frames (300 ms) of silence, then a syllable at 45 dBov (above the hold
        // threshold but below the start threshold), then loud again.
        let mut levels = vec![20, 20];
        levels.extend([127; 15]);
        levels.push(45);
        levels.extend([127; 15]);
        levels.push(20);
        assert_eq!(run(&mut d, t0, &levels), vec![(1, true)]);
        assert!(d.is_speaking());
    }

    #[test]
    fn hangover_ends_speaking_on_quiet_packets() {
        let mut d = SpeakingDetector::default();
        let t0 = Instant::now();
        let mut levels = vec![20, 20];
        levels.extend([127; 30]);
        // Last loud packet at frame 1 (20 ms); 400 ms later is frame 21.
        assert_eq!(run(&mut d, t0, &levels), vec![(1, true), (21, false)]);
    }

    #[test]
    fn silence_by_absence_ends_speaking_via_timeout() {
        let mut d = SpeakingDetector::default();
        let t0 = Instant::now();
        run(&mut d, t0, &[20, 20]);
        let last_loud = t0 + FRAME;
        assert_eq!(d.deadline(), Some(last_loud + HANGOVER));
        assert_eq!(
            d.handle_timeout(last_loud + HANGOVER - Duration::from_millis(1)),
            None
        );
        assert_eq!(d.handle_timeout(last_loud + HANGOVER), Some(false));
        assert_eq!(d.deadline(), None);
        assert_eq!(d.handle_timeout(last_loud + HANGOVER * 2), None);
    }

    #[test]
    fn a_late_packet_after_the_hangover_reports_the_stop_first() {
        let mut d = SpeakingDetector::default();
        let t0 = Instant::now();
        run(&mut d, t0, &[20, 20]);
        let late = t0 + Duration::from_secs(2);
        assert_eq!(d.handle_level(late, 20), Some(false));
        assert_eq!(d.handle_level(late + FRAME, 20), Some(true));
    }
}
