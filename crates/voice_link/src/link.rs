//! [`VoiceLink`]: the handle the sound card callbacks and the controls call.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use audio_dsp::mixer::check_gain;
use audio_dsp::DspError;
use sfu_core::Peer;

use crate::config::{CodecSettings, LinkConfig};
use crate::engine::{lock, receive, Engine, Event, Shared};
use crate::stats::LinkStats;

/// Wake-ups and packets queued for the link thread.
const EVENT_QUEUE: usize = 512;

/// Why a [`VoiceLink`] did not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A pipeline refused the settings.
    #[error(transparent)]
    Dsp(#[from] DspError),
    /// A thread could not be started.
    #[error("cannot start the voice link: {0}")]
    Spawn(#[source] std::io::Error),
}

/// The client's voice engine over a client [`Peer`]: microphone samples in, speaker samples
/// out. See the [crate docs](crate).
///
/// Every method takes `&self` and is cheap (atomics, a ring copy or a message to the link
/// thread), so the handle can be shared between the callbacks and the controls.
pub struct VoiceLink {
    shared: Arc<Shared>,
    events: SyncSender<Event>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    config: LinkConfig,
    /// The codec settings last accepted by [`configure`](Self::configure).
    codec: Mutex<CodecSettings>,
}

impl VoiceLink {
    /// Builds both pipelines and starts the link and receive threads over `peer`.
    ///
    /// The link sends through `peer` and reads every packet it receives, so nothing else may
    /// call its `recv`.
    ///
    /// # Errors
    ///
    /// [`LinkError::Dsp`] if a pipeline refuses the settings, [`LinkError::Spawn`] if a thread
    /// cannot be started.
    pub fn start(peer: &Arc<Peer>, config: &LinkConfig) -> Result<Self, LinkError> {
        let shared = Arc::new(Shared::new(config));
        let engine = Engine::new(Arc::clone(&shared), Arc::clone(peer), config)?;
        let (events, inbox) = mpsc::sync_channel(EVENT_QUEUE);
        let link = std::thread::Builder::new()
            .name("voice-link".into())
            .spawn(move || engine.run(&inbox))
            .map_err(LinkError::Spawn)?;
        let receiver = {
            let (peer, shared, events) = (Arc::clone(peer), Arc::clone(&shared), events.clone());
            std::thread::Builder::new()
                .name("voice-link-recv".into())
                .spawn(move || receive(&peer, &shared, &events))
        };
        let receiver = match receiver {
            Ok(handle) => handle,
            Err(err) => {
                shared.stop.store(true, Ordering::Relaxed);
                let _ = events.send(Event::Stop);
                let _ = link.join();
                return Err(LinkError::Spawn(err));
            }
        };
        Ok(Self {
            shared,
            events,
            threads: Mutex::new(vec![link, receiver]),
            config: *config,
            codec: Mutex::new(config.codec()),
        })
    }

    fn post(&self, event: Event) {
        // Only fails once the link thread is gone (closed): then nothing needs the event.
        let _ = self.events.send(event);
    }

    /// Queues microphone samples (mono, 48 kHz); wakes the link thread once a frame is in.
    /// What does not fit in the ring is dropped and counted (`input_dropped`).
    pub fn write_input(&self, data: &[f32]) {
        let input = &self.shared.input;
        if input.push(data) < data.len() {
            self.shared.input_dropped.fetch_add(1, Ordering::Relaxed);
        }
        if input.len() >= self.shared.frame_samples.load(Ordering::Relaxed) {
            // Full: the link thread is awake already and will drain the ring.
            let _ = self.events.try_send(Event::Input);
        }
    }

    /// Fills `buffer` with the next speaker samples, silence where none are ready; returns
    /// how many were real (fewer is an underrun).
    pub fn read_output(&self, buffer: &mut [f32]) -> usize {
        let block = buffer.len();
        let output = &self.shared.output;
        let filled = output.pop_into(buffer);
        buffer[filled..].fill(0.0);
        let late = filled < block;
        let remaining = output.len();
        if late || remaining < 2 * block {
            // The link thread only needs to hear of reads after which a frame is due soon.
            let _ = self.events.try_send(Event::Demand {
                at: Instant::now(),
                remaining,
                block,
                late,
            });
        }
        filled
    }

    /// Changes the codec settings live (a new frame duration rebuilds both pipelines).
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] for settings the encoder does not take; the link keeps
    /// its settings.
    pub fn configure(&self, settings: CodecSettings) -> Result<(), DspError> {
        settings.encoder()?;
        *lock(&self.codec) = settings;
        self.post(Event::Configure(settings));
        Ok(())
    }

    /// Sets how loud `user` plays: a linear gain, 0 (silent) to 4; remembered for a sender
    /// not heard from yet.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] for a gain outside 0 to 4.
    pub fn set_gain(&self, user: &str, gain: f32) -> Result<(), DspError> {
        let gain = check_gain(gain)?;
        self.post(Event::Gain(user.to_owned(), gain));
        Ok(())
    }

    /// Stops and joins both threads (the peer stays open). Idempotent.
    pub fn close(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        if threads.is_empty() {
            return;
        }
        self.post(Event::Stop);
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// The settings the link started with.
    #[must_use]
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// The codec settings last accepted by [`configure`](Self::configure) (or the start's).
    #[must_use]
    pub fn codec(&self) -> CodecSettings {
        *lock(&self.codec)
    }

    /// Whether sending is stopped.
    #[must_use]
    pub fn muted(&self) -> bool {
        self.shared.muted.load(Ordering::Relaxed)
    }

    /// Stops (or resumes) sending.
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    /// Whether the link plays silence and sends nothing.
    #[must_use]
    pub fn deafened(&self) -> bool {
        self.shared.deafened.load(Ordering::Relaxed)
    }

    /// Plays silence and sends nothing (or stops doing so).
    pub fn set_deafened(&self, deafened: bool) {
        self.shared.deafened.store(deafened, Ordering::Relaxed);
    }

    /// Whether the link is in push-to-talk mode (else voice activity).
    #[must_use]
    pub fn push_to_talk(&self) -> bool {
        self.shared.push_to_talk.load(Ordering::Relaxed)
    }

    /// Switches between push-to-talk and voice activity, from the next frame.
    pub fn set_push_to_talk(&self, on: bool) {
        self.shared.push_to_talk.store(on, Ordering::Relaxed);
    }

    /// Whether the push-to-talk key is down.
    #[must_use]
    pub fn key_down(&self) -> bool {
        self.shared.key_down.load(Ordering::Relaxed)
    }

    /// The push-to-talk key went down or up.
    pub fn set_key_down(&self, down: bool) {
        self.shared.key_down.store(down, Ordering::Relaxed);
    }

    /// Samples per frame at the current settings.
    #[must_use]
    pub fn frame_samples(&self) -> usize {
        self.shared.frame_samples.load(Ordering::Relaxed)
    }

    /// Microphone level of the last frame for a meter, 0 (-60 dBov or less) to 1.
    #[must_use]
    pub fn input_level(&self) -> f32 {
        f32::from_bits(self.shared.input_level.load(Ordering::Relaxed))
    }

    /// Whether the last frame was speech (voice activity over the noise floor).
    #[must_use]
    pub fn speaking(&self) -> bool {
        self.shared.speaking.load(Ordering::Relaxed)
    }

    /// Whether the last frame was sent as speaking.
    #[must_use]
    pub fn sending(&self) -> bool {
        self.shared.sending.load(Ordering::Relaxed)
    }

    /// Whether the peer was found closed (nothing is sent any more).
    #[must_use]
    pub fn call_ended(&self) -> bool {
        self.shared.call_ended.load(Ordering::Relaxed)
    }

    /// RFC 6464 level (0 loud .. 127 silent) of each sender's last played frame, by user,
    /// refreshed every [`STATS_INTERVAL`](crate::STATS_INTERVAL).
    #[must_use]
    pub fn remote_levels(&self) -> Vec<(String, u8)> {
        lock(&self.shared.snapshot).remote_levels.clone()
    }

    /// The last stats window's figures and the counters.
    #[must_use]
    pub fn stats(&self) -> LinkStats {
        let snapshot = lock(&self.shared.snapshot).clone();
        let shared = &self.shared;
        let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        LinkStats {
            loss: snapshot.loss,
            jitter: snapshot.jitter,
            jitter_buffer_delay: snapshot.jitter_buffer_delay,
            quality: snapshot.quality,
            senders: snapshot.senders,
            underruns: count(&shared.underruns),
            input_dropped: count(&shared.input_dropped),
            output_dropped: count(&shared.output_dropped),
            frames_sent: count(&shared.frames_sent),
            errors: count(&shared.errors),
        }
    }
}

impl std::fmt::Debug for VoiceLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceLink")
            .field("config", &self.config)
            .field("codec", &self.codec())
            .finish_non_exhaustive()
    }
}

impl Drop for VoiceLink {
    fn drop(&mut self) {
        // Not joined: dropping may happen anywhere; the threads end by themselves.
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.events.try_send(Event::Stop);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use sfu_core::PeerConfig;

    fn tone(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 1_000.0 * i as f32 / 48_000.0).sin())
            .collect()
    }

    /// Waits up to 5 s for `done`.
    fn eventually(done: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    fn start(push_to_talk: bool) -> (Arc<Peer>, VoiceLink) {
        let peer = Peer::start(&PeerConfig::default()).map(Arc::new);
        let Ok(peer) = peer else {
            unreachable!("a loopback socket binds")
        };
        let config = LinkConfig::builder()
            .denoise(false)
            .push_to_talk(push_to_talk)
            .build();
        let Ok(config) = config else {
            unreachable!("the default settings are valid")
        };
        let Ok(link) = VoiceLink::start(&peer, &config) else {
            unreachable!("the threads start")
        };
        (peer, link)
    }

    /// Whether the link thread has taken every whole frame out of the input ring.
    fn drained(link: &VoiceLink) -> bool {
        link.shared.input.len() < link.frame_samples()
    }

    #[test]
    fn speech_is_encoded_metered_and_gated() {
        let (peer, link) = start(false);
        // 10 ms blocks, as a sound card hands them over.
        for block in tone(24_000).chunks(480) {
            link.write_input(block);
        }
        assert!(eventually(|| link.stats().frames_sent >= 20));
        assert!(link.sending());
        assert!(link.input_level() > 0.5);
        // Muted: still metered, no longer sent.
        link.set_muted(true);
        let sent = link.stats().frames_sent;
        link.write_input(&tone(9_600));
        assert!(eventually(|| drained(&link)));
        assert!(eventually(|| !link.sending()));
        assert!(link.stats().frames_sent <= sent + 1);
        link.close();
        link.close();
        peer.close();
    }

    #[test]
    fn push_to_talk_sends_only_while_the_key_is_down() {
        let (peer, link) = start(true);
        assert!(link.push_to_talk());
        link.write_input(&tone(9_600));
        assert!(eventually(|| drained(&link)));
        assert_eq!(link.stats().frames_sent, 0);
        link.set_key_down(true);
        link.write_input(&tone(9_600));
        assert!(eventually(|| link.stats().frames_sent >= 9));
        link.close();
        peer.close();
    }

    #[test]
    fn nothing_received_plays_silence_and_counts_the_underrun() {
        let (peer, link) = start(false);
        let mut out = [1.0_f32; 480];
        assert_eq!(link.read_output(&mut out), 0);
        assert!(out.iter().all(|&s| s == 0.0));
        assert!(eventually(|| link.stats().underruns >= 1));
        // The link caught up at once: the next read finds a (silent) frame... or skips it,
        // as a silent frame behind is shed; either way the output stays silence.
        std::thread::sleep(Duration::from_millis(30));
        link.read_output(&mut out);
        assert!(out.iter().all(|&s| s == 0.0));
        link.close();
        peer.close();
    }

    #[test]
    fn bad_settings_are_refused_and_a_closed_peer_ends_the_call() {
        let (peer, link) = start(false);
        let bad = CodecSettings {
            frame_ms: 25,
            ..CodecSettings::default()
        };
        assert!(link.configure(bad).is_err());
        assert_eq!(link.codec(), link.config().codec());
        assert!(link.set_gain("alice", 9.0).is_err());
        assert!(link.set_gain("alice", 0.5).is_ok());
        peer.close();
        link.write_input(&tone(4_800));
        assert!(eventually(|| link.call_ended()));
        link.close();
    }

    #[test]
    fn a_new_frame_duration_rebuilds_the_pipelines() {
        let (peer, link) = start(false);
        let ten = CodecSettings {
            frame_ms: 10,
            ..link.codec()
        };
        assert!(link.configure(ten).is_ok());
        assert_eq!(link.codec(), ten);
        assert!(eventually(|| link.frame_samples() == 480));
        for block in tone(9_600).chunks(480) {
            link.write_input(block);
        }
        assert!(eventually(|| link.stats().frames_sent >= 10));
        assert_eq!(link.stats().errors, 0);
        link.close();
        peer.close();
    }
}
