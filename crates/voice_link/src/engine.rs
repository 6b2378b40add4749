//! The link thread: both pipelines, the gate and everything per sender, woken by the
//! callbacks, the receive thread and the controls through one bounded channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use audio_dsp::jitter::JitterConfig;
use audio_dsp::opus::SAMPLE_RATE;
use audio_dsp::pipeline::{CaptureConfig, CapturePipeline, PlaybackConfig, PlaybackPipeline};
use audio_dsp::DspError;
use sfu_core::{Peer, ReceivedPacket, SfuError};

use crate::config::{CodecSettings, LinkConfig};
use crate::gate::{Gating, NoiseFloorGate};
use crate::ring::SampleRing;
use crate::stats::{level_to_meter, quality};
use crate::STATS_INTERVAL;

/// How long the receive thread waits for a packet before it looks at the stop flag.
const RECEIVE_POLL: Duration = Duration::from_millis(100);

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the link thread is woken for.
pub(crate) enum Event {
    /// The input ring holds a frame or more.
    Input,
    /// The output callback took samples at `at`, leaving `remaining`, in blocks of `block`;
    /// `late` if it found too few.
    Demand {
        at: Instant,
        remaining: usize,
        block: usize,
        late: bool,
    },
    /// A packet from the peer and when it arrived.
    Packet(ReceivedPacket, Instant),
    /// New codec settings.
    Configure(CodecSettings),
    /// A user's playback volume.
    Gain(String, f32),
    /// The peer is gone (the call ended under the link).
    PeerStopped,
    /// Stop the thread.
    Stop,
}

/// The stats the link thread publishes once per [`STATS_INTERVAL`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) loss: f64,
    pub(crate) jitter: Duration,
    pub(crate) jitter_buffer_delay: Duration,
    pub(crate) quality: &'static str,
    pub(crate) senders: usize,
    pub(crate) remote_levels: Vec<(String, u8)>,
}

/// State shared by the [`VoiceLink`](crate::VoiceLink) handle, the callbacks and the link
/// thread.
pub(crate) struct Shared {
    pub(crate) input: SampleRing,
    pub(crate) output: SampleRing,
    /// Samples per frame (the input callback wakes the link thread once one is in).
    pub(crate) frame_samples: AtomicUsize,
    pub(crate) muted: AtomicBool,
    pub(crate) deafened: AtomicBool,
    pub(crate) key_down: AtomicBool,
    pub(crate) push_to_talk: AtomicBool,
    pub(crate) input_level: AtomicU32,
    pub(crate) speaking: AtomicBool,
    pub(crate) sending: AtomicBool,
    pub(crate) underruns: AtomicU64,
    pub(crate) input_dropped: AtomicU64,
    pub(crate) output_dropped: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) frames_sent: AtomicU64,
    pub(crate) call_ended: AtomicBool,
    pub(crate) stop: AtomicBool,
    pub(crate) snapshot: Mutex<Snapshot>,
}

impl Shared {
    /// Fresh state for a link started with `config`.
    pub(crate) fn new(config: &LinkConfig) -> Self {
        let frame_samples = config.codec().frame_samples();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ring = ((config.buffer().as_secs_f64() * f64::from(SAMPLE_RATE)) as usize)
            .max(4 * frame_samples);
        Self {
            input: SampleRing::new(ring),
            output: SampleRing::new(ring),
            frame_samples: AtomicUsize::new(frame_samples),
            muted: AtomicBool::new(false),
            deafened: AtomicBool::new(false),
            key_down: AtomicBool::new(false),
            push_to_talk: AtomicBool::new(config.push_to_talk()),
            input_level: AtomicU32::new(0),
            speaking: AtomicBool::new(false),
            sending: AtomicBool::new(false),
            underruns: AtomicU64::new(0),
            input_dropped: AtomicU64::new(0),
            output_dropped: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            call_ended: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            snapshot: Mutex::new(Snapshot {
                quality: "unknown",
                ..Snapshot::default()
            }),
        }
    }
}

/// The link thread's state: both pipelines and everything per sender.
pub(crate) struct Engine {
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    epoch: Instant,
    lead: Duration,
    jitter: JitterConfig,
    settings: CodecSettings,
    capture: CapturePipeline,
    playback: PlaybackPipeline,
    gate: NoiseFloorGate,
    frame: Vec<f32>,
    senders: HashMap<String, u32>,
    names: Vec<String>,
    volumes: HashMap<String, f32>,
    due: Option<Instant>,
    next_stats: Instant,
    previous: (u64, u64),
}

fn capture_pipeline(settings: CodecSettings) -> Result<CapturePipeline, DspError> {
    CapturePipeline::new(CaptureConfig {
        encoder: settings.encoder()?,
        denoise: settings.denoise,
        ..CaptureConfig::default()
    })
}

fn playback_pipeline(
    settings: CodecSettings,
    jitter: JitterConfig,
) -> Result<PlaybackPipeline, DspError> {
    PlaybackPipeline::new(PlaybackConfig {
        jitter,
        frame_ms: settings.frame_ms,
        output_rate: SAMPLE_RATE,
    })
}

impl Engine {
    /// Builds both pipelines for `config`; the engine runs once [`run`](Self::run) is called
    /// on its thread.
    pub(crate) fn new(
        shared: Arc<Shared>,
        peer: Arc<Peer>,
        config: &LinkConfig,
    ) -> Result<Self, DspError> {
        let settings = config.codec();
        let now = Instant::now();
        Ok(Self {
            capture: capture_pipeline(settings)?,
            playback: playback_pipeline(settings, config.jitter())?,
            shared,
            peer,
            epoch: now,
            lead: config.output_lead(),
            jitter: config.jitter(),
            settings,
            gate: NoiseFloorGate::new(settings.frame_ms),
            frame: vec![0.0; settings.frame_samples()],
            senders: HashMap::new(),
            names: Vec::new(),
            volumes: HashMap::new(),
            due: None,
            next_stats: now + STATS_INTERVAL,
            previous: (0, 0),
        })
    }

    /// The link thread's loop, until it is told to stop or its channel closes.
    pub(crate) fn run(mut self, events: &Receiver<Event>) {
        while !self.shared.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut wake = self.next_stats;
            if let Some(due) = self.due {
                wake = wake.min(due);
            }
            let event = match events.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(event) => Some(event),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match event {
                Some(Event::Stop) => return,
                Some(Event::Input) => self.on_input(),
                Some(Event::Packet(packet, arrival)) => self.on_packet(&packet, arrival),
                Some(Event::Demand {
                    at,
                    remaining,
                    block,
                    late,
                }) => {
                    // The first callback that will find too little buffered is due then.
                    let callbacks = remaining / block.max(1) + 1;
                    let ahead = Duration::from_secs_f64(
                        (callbacks * block) as f64 / f64::from(SAMPLE_RATE),
                    );
                    self.due = Some((at + ahead).checked_sub(self.lead).unwrap_or(at));
                    if late {
                        // The callback ran dry: catch up now.
                        self.shared.underruns.fetch_add(1, Ordering::Relaxed);
                        self.produce();
                        self.due = None;
                    }
                }
                Some(Event::Configure(settings)) => self.configure(settings),
                Some(Event::Gain(user, gain)) => self.set_gain(user, gain),
                Some(Event::PeerStopped) => self.shared.call_ended.store(true, Ordering::Relaxed),
                None => {}
            }
            let now = Instant::now();
            if self.due.is_some_and(|due| now >= due) {
                self.due = None;
                self.produce();
            }
            if now >= self.next_stats {
                self.snapshot(now);
            }
        }
    }

    fn configure(&mut self, settings: CodecSettings) {
        let old = self.settings;
        if settings.frame_ms != old.frame_ms {
            match (
                capture_pipeline(settings),
                playback_pipeline(settings, self.jitter),
            ) {
                (Ok(capture), Ok(mut playback)) => {
                    for (user, &index) in &self.senders {
                        let gain = self.volumes.get(user).copied().unwrap_or(1.0);
                        let _ = playback.set_gain(index, gain);
                    }
                    self.capture = capture;
                    self.playback = playback;
                    self.gate = NoiseFloorGate::new(settings.frame_ms);
                    self.frame = vec![0.0; settings.frame_samples()];
                    self.shared
                        .frame_samples
                        .store(settings.frame_samples(), Ordering::Relaxed);
                    self.settings = settings;
                }
                _ => {
                    self.shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            return;
        }
        if settings.bitrate != old.bitrate
            && self
                .capture
                .encoder_mut()
                .set_bitrate(settings.bitrate)
                .is_err()
        {
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.capture.set_denoise(settings.denoise);
        self.settings = settings;
    }

    fn set_gain(&mut self, user: String, gain: f32) {
        if let Some(&index) = self.senders.get(&user) {
            let _ = self.playback.set_gain(index, gain);
        }
        self.volumes.insert(user, gain);
    }

    /// Encodes and sends every whole frame waiting in the input ring.
    fn on_input(&mut self) {
        let shared = Arc::clone(&self.shared);
        while shared.input.len() >= self.frame.len() {
            shared.input.pop_into(&mut self.frame);
            let packets = match self.capture.push(&self.frame) {
                Ok(packets) => packets,
                Err(_) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            for packet in packets {
                let speech = self.gate.update(packet.level, packet.voice);
                let gating = Gating {
                    push_to_talk: shared.push_to_talk.load(Ordering::Relaxed),
                    key_down: shared.key_down.load(Ordering::Relaxed),
                    muted: shared.muted.load(Ordering::Relaxed)
                        || shared.deafened.load(Ordering::Relaxed),
                };
                let sending = gating.sends(speech);
                shared
                    .input_level
                    .store(level_to_meter(packet.level).to_bits(), Ordering::Relaxed);
                shared.speaking.store(speech, Ordering::Relaxed);
                shared.sending.store(sending, Ordering::Relaxed);
                if shared.call_ended.load(Ordering::Relaxed) {
                    continue;
                }
                let result = if sending {
                    shared.frames_sent.fetch_add(1, Ordering::Relaxed);
                    self.peer.send(packet.payload, packet.level)
                } else {
                    // The TOC byte alone is a DTX frame: not sent, but the peer's RTP clock
                    // moves on, so the next talk spurt shows a timestamp gap, not a late packet.
                    let mut toc = packet.payload;
                    toc.truncate(1);
                    self.peer.send(toc, audio_dsp::SILENCE_DBOV)
                };
                if let Err(SfuError::Stopped) = result {
                    shared.call_ended.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    fn on_packet(&mut self, packet: &ReceivedPacket, arrival: Instant) {
        let index = match packet.participant.as_deref() {
            Some(user) => self.sender_index(user),
            None => {
                let user = format!("mid:{}", packet.mid);
                self.sender_index(&user)
            }
        };
        // A corrupt packet is dropped; the stream goes on.
        #[allow(clippy::cast_possible_truncation)]
        let _ = self.playback.push(
            index,
            packet.seq as u16,
            packet.timestamp,
            &packet.payload,
            arrival.saturating_duration_since(self.epoch),
        );
    }

    fn sender_index(&mut self, user: &str) -> u32 {
        if let Some(&index) = self.senders.get(user) {
            return index;
        }
        let index = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.senders.insert(user.to_owned(), index);
        self.names.push(user.to_owned());
        let gain = self.volumes.get(user).copied().unwrap_or(1.0);
        let _ = self.playback.set_gain(index, gain);
        index
    }

    /// Decodes and mixes the next output frame into the output ring.
    fn produce(&mut self) {
        let now = (Instant::now() + self.lead).saturating_duration_since(self.epoch);
        let frame = self.playback.pop(now);
        let output = &self.shared.output;
        let silent =
            self.shared.deafened.load(Ordering::Relaxed) || frame.iter().all(|&s| s == 0.0);
        if !output.is_empty() && silent {
            // A frame behind since an underrun, and silent: skip this one to catch up.
            return;
        }
        let written = if self.shared.deafened.load(Ordering::Relaxed) {
            output.push_silence(frame.len())
        } else {
            output.push(&frame)
        };
        if written < frame.len() {
            self.shared.output_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&mut self, now: Instant) {
        self.next_stats = now + STATS_INTERVAL;
        let (mut played, mut lost) = (0_u64, 0_u64);
        let (mut jitter, mut delay) = (Duration::ZERO, Duration::ZERO);
        for index in self.playback.senders() {
            if let Some(stats) = self.playback.stats(index) {
                played += stats.played;
                lost += stats.lost;
                jitter = jitter.max(stats.jitter);
                delay = delay.max(stats.target_delay);
            }
        }
        let window_played = played.saturating_sub(self.previous.0);
        let window_lost = lost.saturating_sub(self.previous.1);
        self.previous = (played, lost);
        let loss = if window_played + window_lost > 0 {
            window_lost as f64 / (window_played + window_lost) as f64
        } else {
            0.0
        };
        let remote_levels = self
            .playback
            .levels()
            .into_iter()
            .filter_map(|(index, level)| {
                let name = self.names.get(index as usize)?;
                Some((name.clone(), level))
            })
            .collect();
        *lock(&self.shared.snapshot) = Snapshot {
            loss,
            jitter,
            jitter_buffer_delay: delay,
            quality: quality(played, loss, delay),
            senders: self.senders.len(),
            remote_levels,
        };
    }
}

/// Hands the peer's packets to the link thread until told to stop or the peer is gone.
pub(crate) fn receive(peer: &Peer, shared: &Shared, events: &SyncSender<Event>) {
    while !shared.stop.load(Ordering::Relaxed) {
        match peer.recv(RECEIVE_POLL) {
            Ok(Some(packet)) => {
                if events.send(Event::Packet(packet, Instant::now())).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(_) => {
                let _ = events.send(Event::PeerStopped);
                return;
            }
        }
    }
}
