//! `voicechat._native.sfu.VoiceLink`: the client's whole per-frame audio path, native.
//!
//! Threads (both native, neither ever takes the GIL):
//!
//! - the link thread owns the capture and playback pipelines: it encodes the microphone's
//!   frames from the input ring and sends them through the client `Peer` (gated by mute,
//!   deafen, push-to-talk or voice activity over the noise floor), pushes received packets
//!   into the per-sender jitter buffers, and decodes and mixes the next output frame into the
//!   output ring just in time, `output_lead` before the output callback would run dry;
//! - the receive thread waits for the peer's packets and hands them to the link thread with
//!   their arrival time.
//!
//! The sound card callbacks (Python, sounddevice) call `write_input` / `read_output`, which copy
//! between the callback's buffer and a lock-free ring without allocating and, when a frame is
//! due, wake the link thread through a bounded channel (`try_send`: never blocks).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use audio_dsp::jitter::JitterConfig;
use audio_dsp::link::{level_to_meter, quality, Gating, NoiseFloorGate, SampleRing};
use audio_dsp::mixer::check_gain;
use audio_dsp::opus::{EncoderConfig, SAMPLE_RATE};
use audio_dsp::pipeline::{CaptureConfig, CapturePipeline, PlaybackConfig, PlaybackPipeline};
use audio_dsp::DspError;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use sfu_core::{Peer, ReceivedPacket, SfuError};

use crate::errors::dsp_error;
use crate::sfu::PyPeer;

/// How often the link thread refreshes the stats snapshot (the window of loss figures).
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How long the receive thread waits for a packet before it looks at the stop flag.
const RECEIVE_POLL: Duration = Duration::from_millis(100);
/// Wake-ups and packets queued for the link thread.
const EVENT_QUEUE: usize = 512;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the link thread is woken for.
enum Event {
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
    Configure(Settings),
    /// A user's playback volume.
    Gain(String, f32),
    /// The peer is gone (the call ended under the link).
    PeerStopped,
    /// Stop the thread.
    Stop,
}

/// Codec settings that need the link thread to apply them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Settings {
    frame_ms: u32,
    bitrate: u32,
    denoise: bool,
}

impl Settings {
    fn frame_samples(self) -> usize {
        (SAMPLE_RATE * self.frame_ms / 1_000) as usize
    }

    fn encoder(self) -> Result<EncoderConfig, DspError> {
        EncoderConfig::builder()
            .bitrate(self.bitrate)
            .frame_ms(self.frame_ms)
            .fec(true)
            // The gating is ours: unsent frames still advance the peer's RTP clock.
            .dtx(false)
            .build()
    }
}

/// The stats the link thread publishes once per `STATS_INTERVAL`.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    loss: f64,
    jitter: f64,
    jitter_buffer_delay: f64,
    quality: &'static str,
    senders: usize,
    remote_levels: Vec<(String, u8)>,
}

/// State shared by the Python object, the callbacks and the link thread.
struct Shared {
    input: SampleRing,
    output: SampleRing,
    /// Samples per frame (the input callback wakes the link thread once one is in).
    frame_samples: AtomicUsize,
    muted: AtomicBool,
    deafened: AtomicBool,
    key_down: AtomicBool,
    push_to_talk: AtomicBool,
    input_level: AtomicU32,
    speaking: AtomicBool,
    sending: AtomicBool,
    underruns: AtomicU64,
    input_dropped: AtomicU64,
    output_dropped: AtomicU64,
    errors: AtomicU64,
    frames_sent: AtomicU64,
    call_ended: AtomicBool,
    stop: AtomicBool,
    snapshot: Mutex<Snapshot>,
}

/// The link thread's state: both pipelines and everything per sender.
struct Engine {
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    epoch: Instant,
    lead: Duration,
    jitter: JitterConfig,
    settings: Settings,
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

fn capture_pipeline(settings: Settings) -> Result<CapturePipeline, DspError> {
    CapturePipeline::new(CaptureConfig {
        encoder: settings.encoder()?,
        denoise: settings.denoise,
        ..CaptureConfig::default()
    })
}

fn playback_pipeline(
    settings: Settings,
    jitter: JitterConfig,
) -> Result<PlaybackPipeline, DspError> {
    PlaybackPipeline::new(PlaybackConfig {
        jitter,
        frame_ms: settings.frame_ms,
        output_rate: SAMPLE_RATE,
    })
}

impl Engine {
    fn run(mut self, events: &Receiver<Event>) {
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

    fn configure(&mut self, settings: Settings) {
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
            jitter: jitter.as_secs_f64(),
            jitter_buffer_delay: delay.as_secs_f64(),
            quality: quality(played, loss, delay),
            senders: self.senders.len(),
            remote_levels,
        };
    }
}

/// Hands the peer's packets to the link thread until told to stop or the peer is gone.
fn receive(peer: &Peer, shared: &Shared, events: &SyncSender<Event>) {
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

/// A Python buffer held for the duration of a copy: C-contiguous float32 samples.
///
/// Taken with `PyObject_GetBuffer` into a stack `Py_buffer` (pyo3's `PyBuffer` boxes it), so
/// a callback's copy allocates nothing.
struct Samples {
    view: ffi::Py_buffer,
}

impl Samples {
    /// Borrows `object`'s buffer (writable if asked); it must be float32 ("f") or raw bytes
    /// ("B", taken as native float32, as sounddevice's raw streams hand over).
    fn get(object: &Bound<'_, PyAny>, writable: bool) -> PyResult<Self> {
        let flags = ffi::PyBUF_FORMAT | if writable { ffi::PyBUF_WRITABLE } else { 0 };
        // SAFETY: `view` is a plain C struct that PyObject_GetBuffer fills; we hold the GIL.
        let mut view: ffi::Py_buffer = unsafe { std::mem::zeroed() };
        // SAFETY: `object` is a live object and we hold the GIL.
        if unsafe { ffi::PyObject_GetBuffer(object.as_ptr(), &raw mut view, flags) } != 0 {
            return Err(PyErr::fetch(object.py()));
        }
        let samples = Self { view };
        // SAFETY: a non-null format is a NUL-terminated string owned by the exporter.
        let format = if samples.view.format.is_null() {
            b"B".as_slice()
        } else {
            unsafe { std::ffi::CStr::from_ptr(samples.view.format) }.to_bytes()
        };
        let float = matches!(format, b"f" | b"<f" | b"=f" | b"@f");
        let bytes = matches!(format, b"B" | b"b" | b"c");
        if !(float || bytes) || samples.view.len % 4 != 0 {
            return Err(PyValueError::new_err(
                "samples must be a C-contiguous float32 array (or raw float32 bytes)",
            ));
        }
        Ok(samples)
    }

    fn len(&self) -> usize {
        usize::try_from(self.view.len).unwrap_or(0) / 4
    }

    fn as_slice(&self) -> &[f32] {
        if self.len() == 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: the exporter guarantees `len` contiguous bytes at `buf` while the view is
        // held (without PyBUF_STRIDES it refuses non-contiguous data), float32 is what the
        // caller promised, and an exporter's memory is aligned for its item type (numpy,
        // cffi). We hold the GIL, so no Python code changes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.view.buf.cast::<f32>(), self.len()) }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        if self.len() == 0 || self.view.buf.is_null() {
            return &mut [];
        }
        // SAFETY: as `as_slice`, and the view was taken with PyBUF_WRITABLE.
        unsafe { std::slice::from_raw_parts_mut(self.view.buf.cast::<f32>(), self.len()) }
    }
}

impl Drop for Samples {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer, and the GIL is held
        // wherever a `Samples` lives (it never leaves the method that made it).
        unsafe { ffi::PyBuffer_Release(&raw mut self.view) };
    }
}

/// What a [`Link`] starts with.
#[derive(Debug, Clone, Copy)]
struct LinkOptions {
    settings: Settings,
    push_to_talk: bool,
    jitter: JitterConfig,
    lead: Duration,
    buffer: Duration,
}

/// Why a [`Link`] did not start.
enum StartError {
    Dsp(DspError),
    Spawn(std::io::Error),
}

/// The link without Python: its threads, and what the callbacks and the controls call.
struct Link {
    shared: Arc<Shared>,
    events: SyncSender<Event>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Link {
    /// Builds both pipelines and starts the link and receive threads over `peer`.
    fn start(peer: &Arc<Peer>, options: LinkOptions) -> Result<Self, StartError> {
        let settings = options.settings;
        let capture = capture_pipeline(settings).map_err(StartError::Dsp)?;
        let playback = playback_pipeline(settings, options.jitter).map_err(StartError::Dsp)?;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ring = ((options.buffer.as_secs_f64() * f64::from(SAMPLE_RATE)) as usize)
            .max(4 * settings.frame_samples());
        let shared = Arc::new(Shared {
            input: SampleRing::new(ring),
            output: SampleRing::new(ring),
            frame_samples: AtomicUsize::new(settings.frame_samples()),
            muted: AtomicBool::new(false),
            deafened: AtomicBool::new(false),
            key_down: AtomicBool::new(false),
            push_to_talk: AtomicBool::new(options.push_to_talk),
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
        });
        let now = Instant::now();
        let engine = Engine {
            shared: Arc::clone(&shared),
            peer: Arc::clone(peer),
            epoch: now,
            lead: options.lead,
            jitter: options.jitter,
            settings,
            capture,
            playback,
            gate: NoiseFloorGate::new(settings.frame_ms),
            frame: vec![0.0; settings.frame_samples()],
            senders: HashMap::new(),
            names: Vec::new(),
            volumes: HashMap::new(),
            due: None,
            next_stats: now + STATS_INTERVAL,
            previous: (0, 0),
        };
        let (events, inbox) = mpsc::sync_channel(EVENT_QUEUE);
        let link = std::thread::Builder::new()
            .name("voice-link".into())
            .spawn(move || engine.run(&inbox))
            .map_err(StartError::Spawn)?;
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
                return Err(StartError::Spawn(err));
            }
        };
        Ok(Self {
            shared,
            events,
            threads: Mutex::new(vec![link, receiver]),
        })
    }

    fn post(&self, event: Event) {
        // Only fails once the link thread is gone (closed): then nothing needs the event.
        let _ = self.events.send(event);
    }

    /// Queues microphone samples; wakes the link thread once a frame is in.
    fn write_input(&self, data: &[f32]) {
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
    /// how many were real.
    fn read_output(&self, buffer: &mut [f32]) -> usize {
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

    fn configure(&self, settings: Settings) -> Result<(), DspError> {
        settings.encoder()?;
        self.post(Event::Configure(settings));
        Ok(())
    }

    fn set_gain(&self, user: &str, gain: f32) -> Result<(), DspError> {
        let gain = check_gain(gain)?;
        self.post(Event::Gain(user.to_owned(), gain));
        Ok(())
    }

    /// Stops and joins both threads. Idempotent.
    fn close(&self) {
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
}

impl Drop for Link {
    fn drop(&mut self) {
        // Not joined: dropping may happen anywhere; the threads end by themselves.
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.events.try_send(Event::Stop);
    }
}

/// The client's native voice engine over a client `Peer`: microphone samples in, speaker
/// samples out; see the module docs (docs/audio.md, "Client engine").
///
/// Args:
///     peer: The call's native peer; the link sends through it and reads every packet it
///         receives (so nothing else may call its `recv`).
///     frame_ms: Opus frame, 10, 20, 40 or 60 ms.
///     bitrate: Opus bitrate, bit/s.
///     denoise: RNNoise on the microphone.
///     push_to_talk: Send while the key is down (`key_down`), else on voice activity.
///     min_delay, max_delay: Jitter buffer bounds, seconds.
///     output_lead: How long before the output would run dry a frame is decoded and mixed.
///     buffer: Seconds of samples each ring holds.
///
/// Raises:
///     DspInputError: A setting out of range.
///     OSError: The threads cannot be started.
#[pyclass(module = "voicechat._native.sfu", name = "VoiceLink", frozen)]
pub(crate) struct PyVoiceLink {
    link: Link,
    shared: Arc<Shared>,
}

#[pymethods]
impl PyVoiceLink {
    #[new]
    #[pyo3(signature = (
        peer, *, frame_ms = 20, bitrate = 64_000, denoise = true, push_to_talk = false,
        min_delay = 0.02, max_delay = 0.2, output_lead = 0.006, buffer = 1.0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        peer: PyRef<'_, PyPeer>,
        frame_ms: u32,
        bitrate: u32,
        denoise: bool,
        push_to_talk: bool,
        min_delay: f64,
        max_delay: f64,
        output_lead: f64,
        buffer: f64,
    ) -> PyResult<Self> {
        let seconds = |name: &'static str, value: f64| {
            Duration::try_from_secs_f64(value).map_err(|_| {
                dsp_error(
                    py,
                    DspError::InvalidArgument {
                        name,
                        reason: format!("{value} is not a duration in seconds"),
                    },
                )
            })
        };
        let options = LinkOptions {
            settings: Settings {
                frame_ms,
                bitrate,
                denoise,
            },
            push_to_talk,
            jitter: JitterConfig::builder()
                .min_delay(seconds("min_delay", min_delay)?)
                .max_delay(seconds("max_delay", max_delay)?)
                .build()
                .map_err(|err| dsp_error(py, err))?,
            lead: seconds("output_lead", output_lead)?,
            buffer: seconds("buffer", buffer)?,
        };
        let peer = peer.shared();
        match py.detach(|| Link::start(&peer, options)) {
            Ok(link) => Ok(Self {
                shared: Arc::clone(&link.shared),
                link,
            }),
            Err(StartError::Dsp(err)) => Err(dsp_error(py, err)),
            Err(StartError::Spawn(err)) => Err(PyOSError::new_err(format!(
                "cannot start the voice link: {err}"
            ))),
        }
    }

    /// Queue microphone samples (mono 48 kHz float32: a contiguous array, or the raw buffer of
    /// a sounddevice raw stream); what does not fit in the ring is dropped and counted.
    fn write_input(&self, samples: &Bound<'_, PyAny>) -> PyResult<()> {
        let samples = Samples::get(samples, false)?;
        self.link.write_input(samples.as_slice());
        Ok(())
    }

    /// Fill `out` (writable mono float32) with the next speaker samples, silence where none
    /// are ready; returns how many samples were real (the rest is an underrun).
    fn read_output(&self, out: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut samples = Samples::get(out, true)?;
        Ok(self.link.read_output(samples.as_mut_slice()))
    }

    /// Stop sending (the session also tells the server).
    #[getter]
    fn get_muted(&self) -> bool {
        self.shared.muted.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    /// Play silence and send nothing.
    #[getter]
    fn get_deafened(&self) -> bool {
        self.shared.deafened.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_deafened(&self, deafened: bool) {
        self.shared.deafened.store(deafened, Ordering::Relaxed);
    }

    /// Push-to-talk mode (else voice activity).
    #[getter]
    fn get_push_to_talk(&self) -> bool {
        self.shared.push_to_talk.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_push_to_talk(&self, on: bool) {
        self.shared.push_to_talk.store(on, Ordering::Relaxed);
    }

    /// The push-to-talk key is down.
    #[getter]
    fn get_key_down(&self) -> bool {
        self.shared.key_down.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_key_down(&self, down: bool) {
        self.shared.key_down.store(down, Ordering::Relaxed);
    }

    /// Change the codec settings live (a new frame duration rebuilds both pipelines).
    #[pyo3(signature = (*, frame_ms, bitrate, denoise))]
    fn configure(
        &self,
        py: Python<'_>,
        frame_ms: u32,
        bitrate: u32,
        denoise: bool,
    ) -> PyResult<()> {
        let settings = Settings {
            frame_ms,
            bitrate,
            denoise,
        };
        py.detach(|| self.link.configure(settings))
            .map_err(|err| dsp_error(py, err))
    }

    /// Set how loud `user_id` plays: a linear gain, 0 (silent) to 4.
    fn set_gain(&self, py: Python<'_>, user_id: &str, gain: f32) -> PyResult<()> {
        py.detach(|| self.link.set_gain(user_id, gain))
            .map_err(|err| dsp_error(py, err))
    }

    /// Samples per frame at the current settings.
    #[getter]
    fn frame_samples(&self) -> usize {
        self.shared.frame_samples.load(Ordering::Relaxed)
    }

    /// Microphone level of the last frame for a meter, 0 (-60 dBov or less) to 1.
    #[getter]
    fn input_level(&self) -> f32 {
        f32::from_bits(self.shared.input_level.load(Ordering::Relaxed))
    }

    /// Whether the last frame was speech (voice activity over the noise floor).
    #[getter]
    fn speaking(&self) -> bool {
        self.shared.speaking.load(Ordering::Relaxed)
    }

    /// Whether the last frame was sent as speaking.
    #[getter]
    fn sending(&self) -> bool {
        self.shared.sending.load(Ordering::Relaxed)
    }

    /// Whether the peer was found closed (nothing is sent any more).
    #[getter]
    fn call_ended(&self) -> bool {
        self.shared.call_ended.load(Ordering::Relaxed)
    }

    /// RFC 6464 level (0 loud .. 127 silent) of each sender's last played frame, refreshed
    /// every second.
    fn remote_levels(&self) -> HashMap<String, u8> {
        lock(&self.shared.snapshot)
            .remote_levels
            .iter()
            .cloned()
            .collect()
    }

    /// The last second's figures: loss, jitter, jitter_buffer_delay, quality, senders, and
    /// the counters underruns, input_dropped, output_dropped, frames_sent, errors.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let snapshot = lock(&self.shared.snapshot).clone();
        let shared = &self.shared;
        let dict = PyDict::new(py);
        dict.set_item("loss", snapshot.loss)?;
        dict.set_item("jitter", snapshot.jitter)?;
        dict.set_item("jitter_buffer_delay", snapshot.jitter_buffer_delay)?;
        dict.set_item("quality", snapshot.quality)?;
        dict.set_item("senders", snapshot.senders)?;
        for (name, counter) in [
            ("underruns", &shared.underruns),
            ("input_dropped", &shared.input_dropped),
            ("output_dropped", &shared.output_dropped),
            ("frames_sent", &shared.frames_sent),
            ("errors", &shared.errors),
        ] {
            dict.set_item(name, counter.load(Ordering::Relaxed))?;
        }
        Ok(dict)
    }

    /// Stop both threads (the peer stays open). Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.link.close());
    }
}

/// Adds `VoiceLink` to the `sfu` submodule.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PyVoiceLink>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu_core::PeerConfig;

    fn options(push_to_talk: bool) -> LinkOptions {
        LinkOptions {
            settings: Settings {
                frame_ms: 20,
                bitrate: 64_000,
                denoise: false,
            },
            push_to_talk,
            jitter: JitterConfig::default(),
            lead: Duration::from_millis(6),
            buffer: Duration::from_secs(1),
        }
    }

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

    fn start(push_to_talk: bool) -> (Arc<Peer>, Link) {
        let peer = Peer::start(&PeerConfig::default()).map(Arc::new);
        let Ok(peer) = peer else {
            unreachable!("a loopback socket binds")
        };
        let Ok(link) = Link::start(&peer, options(push_to_talk)) else {
            unreachable!("the default settings are valid")
        };
        (peer, link)
    }

    #[test]
    fn speech_is_encoded_metered_and_gated() {
        let (peer, link) = start(false);
        let shared = Arc::clone(&link.shared);
        // 10 ms blocks, as a sound card hands them over.
        for block in tone(24_000).chunks(480) {
            link.write_input(block);
        }
        assert!(eventually(
            || shared.frames_sent.load(Ordering::Relaxed) >= 20
        ));
        assert!(shared.sending.load(Ordering::Relaxed));
        assert!(f32::from_bits(shared.input_level.load(Ordering::Relaxed)) > 0.5);
        // Muted: still metered, no longer sent.
        shared.muted.store(true, Ordering::Relaxed);
        let sent = shared.frames_sent.load(Ordering::Relaxed);
        link.write_input(&tone(9_600));
        assert!(eventually(|| shared.input.len() < 960));
        assert!(eventually(|| !shared.sending.load(Ordering::Relaxed)));
        assert!(shared.frames_sent.load(Ordering::Relaxed) <= sent + 1);
        link.close();
        link.close();
        peer.close();
    }

    #[test]
    fn push_to_talk_sends_only_while_the_key_is_down() {
        let (peer, link) = start(true);
        let shared = Arc::clone(&link.shared);
        link.write_input(&tone(9_600));
        assert!(eventually(|| shared.input.len() < 960));
        assert_eq!(shared.frames_sent.load(Ordering::Relaxed), 0);
        shared.key_down.store(true, Ordering::Relaxed);
        link.write_input(&tone(9_600));
        assert!(eventually(
            || shared.frames_sent.load(Ordering::Relaxed) >= 9
        ));
        link.close();
        peer.close();
    }

    #[test]
    fn nothing_received_plays_silence_and_counts_the_underrun() {
        let (peer, link) = start(false);
        let mut out = [1.0_f32; 480];
        assert_eq!(link.read_output(&mut out), 0);
        assert!(out.iter().all(|&s| s == 0.0));
        assert!(eventually(
            || link.shared.underruns.load(Ordering::Relaxed) >= 1
        ));
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
        let bad = Settings {
            frame_ms: 25,
            bitrate: 64_000,
            denoise: true,
        };
        assert!(link.configure(bad).is_err());
        assert!(link.set_gain("alice", 9.0).is_err());
        assert!(link.set_gain("alice", 0.5).is_ok());
        peer.close();
        link.write_input(&tone(4_800));
        assert!(eventually(|| link
            .shared
            .call_ended
            .load(Ordering::Relaxed)));
        link.close();
    }
}
