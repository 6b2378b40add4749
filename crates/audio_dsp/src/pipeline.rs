//! The two composed audio paths of a voice client.
//!
//! - [`CapturePipeline`]: microphone blocks of any size (at the device's rate) → resample to
//!   48 kHz → denoise → RFC 6464 level and speaking decision → Opus encode → packets carrying
//!   sequence number, timestamp, level and voice flag, ready for RTP.
//! - [`PlaybackPipeline`]: packets per sender → one jitter buffer and decoder each → loss
//!   concealment or FEC → mix with per-sender gain → fixed-size output frames.
//!
//! Both are sans-IO and single-threaded: the caller's audio thread owns them and passes time in.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::denoise::Denoiser;
use crate::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, PushOutcome, RtpPacket};
use crate::mixer::{self, check_gain};
use crate::opus::{self, Decoder, Encoder, EncoderConfig};
use crate::resample::Resampler;
use crate::vad::{VadConfig, VoiceActivityDetector};
use crate::{audio_level_dbov, DspError, Result};

/// One encoded frame, ready to go into an RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    /// RTP sequence number; consecutive over sent packets.
    pub seq: u16,
    /// RTP timestamp (48 kHz) of the frame's first sample; advances over unsent frames too.
    pub timestamp: u32,
    /// RTP marker bit: the first packet of a talk spurt (after silence that was not sent).
    pub marker: bool,
    /// The Opus packet.
    pub payload: Vec<u8>,
    /// RFC 6464 level of the (denoised) frame, 0–127 -dBov.
    pub level: u8,
    /// RFC 6464 voice activity flag: the speaking decision, with hangover.
    pub voice: bool,
}

/// Settings of a [`CapturePipeline`].
///
/// Defaults: the [`EncoderConfig`] and [`VadConfig`] defaults, denoising on, input at
/// 48 kHz, first sequence number and timestamp 0 (callers should pick random ones, RFC 3550).
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureConfig {
    /// The encoder; must be mono.
    pub encoder: EncoderConfig,
    /// Speaking detection.
    pub vad: VadConfig,
    /// Whether noise suppression runs (it can be toggled later).
    pub denoise: bool,
    /// The microphone's sample rate; anything but 48 000 is resampled.
    pub input_rate: u32,
    /// First RTP sequence number.
    pub initial_seq: u16,
    /// First RTP timestamp.
    pub initial_timestamp: u32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            encoder: EncoderConfig::default(),
            vad: VadConfig::default(),
            denoise: true,
            input_rate: opus::SAMPLE_RATE,
            initial_seq: 0,
            initial_timestamp: 0,
        }
    }
}

/// Counters of a [`CapturePipeline`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames encoded.
    pub frames: u64,
    /// Packets produced for sending.
    pub packets: u64,
    /// Frames not sent because of DTX (silence).
    pub dtx_frames: u64,
}

/// Microphone to packets, for one mono stream. See the [module docs](self).
#[derive(Debug)]
pub struct CapturePipeline {
    resampler: Option<Resampler>,
    denoiser: Denoiser,
    vad: VoiceActivityDetector,
    encoder: Encoder,
    pending: Vec<f32>,
    seq: u16,
    timestamp: u32,
    sent_last: bool,
    stats: CaptureStats,
}

impl CapturePipeline {
    /// A pipeline with the given settings.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] for a stereo encoder; [`DspError::InvalidSampleRate`]
    /// for an input rate the resampler does not take; [`DspError::Codec`] from libopus.
    pub fn new(config: CaptureConfig) -> Result<Self> {
        if config.encoder.channels() != 1 {
            return Err(DspError::InvalidArgument {
                name: "channels",
                reason: "the capture pipeline is mono".into(),
            });
        }
        let resampler = if config.input_rate == opus::SAMPLE_RATE {
            None
        } else {
            Some(Resampler::new(config.input_rate, opus::SAMPLE_RATE, 1)?)
        };
        let mut denoiser = Denoiser::new();
        denoiser.set_bypass(!config.denoise);
        Ok(Self {
            resampler,
            denoiser,
            vad: VoiceActivityDetector::new(config.vad),
            encoder: Encoder::new(config.encoder)?,
            pending: Vec::new(),
            seq: config.initial_seq,
            timestamp: config.initial_timestamp,
            sent_last: false,
            stats: CaptureStats::default(),
        })
    }

    /// Switches noise suppression on or off.
    pub fn set_denoise(&mut self, on: bool) {
        self.denoiser.set_bypass(!on);
    }

    /// Whether noise suppression runs.
    #[must_use]
    pub fn denoise(&self) -> bool {
        !self.denoiser.bypass()
    }

    /// The encoder (to change bitrate or expected loss on the fly).
    pub fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// The encoder's settings.
    #[must_use]
    pub fn encoder_config(&self) -> &EncoderConfig {
        self.encoder.config()
    }

    /// The current speaking decision.
    #[must_use]
    pub fn speaking(&self) -> bool {
        self.vad.speaking()
    }

    /// The speaking detection's settings.
    #[must_use]
    pub fn vad_config(&self) -> &VadConfig {
        self.vad.config()
    }

    /// The microphone's sample rate (anything but 48 000 is resampled).
    #[must_use]
    pub fn input_rate(&self) -> u32 {
        self.resampler
            .as_ref()
            .map_or(opus::SAMPLE_RATE, Resampler::rate_in)
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> CaptureStats {
        self.stats
    }

    /// Takes a block of mono float samples in `[-1, 1]` at the input rate, of any length;
    /// returns the packets of every frame completed by it (often none or one).
    ///
    /// # Errors
    ///
    /// [`DspError::Codec`] if libopus fails.
    pub fn push(&mut self, block: &[f32]) -> Result<Vec<CapturedPacket>> {
        match self.resampler.as_mut() {
            Some(resampler) => {
                let converted = resampler.process(block)?;
                self.pending.extend_from_slice(&converted);
            }
            None => self.pending.extend_from_slice(block),
        }
        let frame = self.encoder.config().frame_samples();
        let duration = Duration::from_millis(u64::from(self.encoder.config().frame_ms()));
        let dtx = self.encoder.config().dtx();
        let mut packets = Vec::new();
        let mut start = 0;
        while self.pending.len() - start >= frame {
            let (clean, probability) = self.denoiser.process(&self.pending[start..start + frame]);
            start += frame;
            let pcm = mixer::to_i16(&clean);
            let level = audio_level_dbov(&pcm);
            let probability = (!self.denoiser.bypass()).then_some(probability);
            let verdict = self.vad.judge(level, duration, probability);
            let payload = self.encoder.encode(&pcm)?;
            self.stats.frames += 1;
            let timestamp = self.timestamp;
            self.timestamp = self.timestamp.wrapping_add(frame as u32);
            // DTX: Opus marks silence with 1–2 byte packets; with DTX on we also stop sending
            // once the speaking decision (with its hangover) ends, as other voice chats do.
            if dtx && (payload.len() <= 2 || !verdict.speaking) {
                self.stats.dtx_frames += 1;
                self.sent_last = false;
                continue;
            }
            packets.push(CapturedPacket {
                seq: self.seq,
                timestamp,
                marker: !self.sent_last,
                payload,
                level,
                voice: verdict.speaking,
            });
            self.sent_last = true;
            self.seq = self.seq.wrapping_add(1);
            self.stats.packets += 1;
        }
        self.pending.drain(..start);
        Ok(packets)
    }
}

/// Settings of a [`PlaybackPipeline`].
///
/// Defaults: the [`JitterConfig`] defaults, 20 ms output frames, output at 48 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaybackConfig {
    /// Jitter buffer settings, one buffer per sender.
    pub jitter: JitterConfig,
    /// Duration of each output frame: 10, 20, 40 or 60 ms.
    pub frame_ms: u32,
    /// The sound card's sample rate; anything but 48 000 is resampled.
    pub output_rate: u32,
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        Self {
            jitter: JitterConfig::default(),
            frame_ms: 20,
            output_rate: opus::SAMPLE_RATE,
        }
    }
}

#[derive(Debug)]
struct Stream {
    jitter: JitterBuffer,
    decoder: Decoder,
    decoded: VecDeque<f32>,
    gain: f32,
    /// RFC 6464 level of the last frame this sender contributed.
    level: u8,
}

/// Packets from many senders to one mixed mono output. See the [module docs](self).
#[derive(Debug)]
pub struct PlaybackPipeline {
    config: PlaybackConfig,
    streams: BTreeMap<u32, Stream>,
    /// Gains set before a sender's first packet.
    gains: BTreeMap<u32, f32>,
    resampler: Option<Resampler>,
    resampled: VecDeque<f32>,
}

impl PlaybackPipeline {
    /// A pipeline with no senders yet.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] for a frame duration other than 10, 20, 40 or 60 ms;
    /// [`DspError::InvalidSampleRate`] for an output rate the resampler does not take.
    pub fn new(config: PlaybackConfig) -> Result<Self> {
        if !opus::FRAME_DURATIONS_MS.contains(&config.frame_ms) {
            return Err(DspError::InvalidArgument {
                name: "frame_ms",
                reason: format!("{} ms is not one of 10, 20, 40, 60", config.frame_ms),
            });
        }
        let resampler = if config.output_rate == opus::SAMPLE_RATE {
            None
        } else {
            Some(Resampler::new(opus::SAMPLE_RATE, config.output_rate, 1)?)
        };
        Ok(Self {
            config,
            streams: BTreeMap::new(),
            gains: BTreeMap::new(),
            resampler,
            resampled: VecDeque::new(),
        })
    }

    /// The settings the pipeline was built with.
    #[must_use]
    pub fn config(&self) -> &PlaybackConfig {
        &self.config
    }

    /// Samples in each frame [`pop`](Self::pop) returns (at the output rate).
    #[must_use]
    pub fn frame_samples(&self) -> usize {
        (u64::from(self.config.output_rate) * u64::from(self.config.frame_ms) / 1_000) as usize
    }

    /// Adds a received packet from `sender` (e.g. its SSRC) that arrived at `arrival`.
    ///
    /// # Errors
    ///
    /// [`DspError::CorruptPacket`] for an empty or malformed Opus packet (it is dropped; the
    /// stream goes on).
    pub fn push(
        &mut self,
        sender: u32,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
        arrival: Duration,
    ) -> Result<PushOutcome> {
        let samples = opus::packet_samples(payload)?;
        let stream = match self.streams.entry(sender) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(Stream {
                jitter: JitterBuffer::new(self.config.jitter),
                decoder: Decoder::new(1)?,
                decoded: VecDeque::new(),
                gain: self.gains.get(&sender).copied().unwrap_or(1.0),
                level: crate::SILENCE_DBOV,
            }),
        };
        let packet = RtpPacket {
            seq,
            timestamp,
            duration: u32::try_from(samples).unwrap_or(0),
            payload: payload.to_vec(),
        };
        Ok(stream.jitter.push(packet, arrival))
    }

    /// Sets a sender's volume: a linear gain from 0 (muted) to 4 (+12 dB); 1 is unchanged.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] outside that range.
    pub fn set_gain(&mut self, sender: u32, gain: f32) -> Result<()> {
        let gain = check_gain(gain)?;
        self.gains.insert(sender, gain);
        if let Some(stream) = self.streams.get_mut(&sender) {
            stream.gain = gain;
        }
        Ok(())
    }

    /// Forgets a sender (it left the channel); returns whether it was known.
    pub fn remove(&mut self, sender: u32) -> bool {
        self.gains.remove(&sender);
        self.streams.remove(&sender).is_some()
    }

    /// Senders with a stream, in ascending order.
    #[must_use]
    pub fn senders(&self) -> Vec<u32> {
        self.streams.keys().copied().collect()
    }

    /// A sender's jitter buffer counters.
    #[must_use]
    pub fn stats(&self, sender: u32) -> Option<JitterStats> {
        self.streams.get(&sender).map(|s| s.jitter.stats())
    }

    /// The RFC 6464 level of the last frame each sender contributed (127 when silent), for
    /// speaking indicators.
    #[must_use]
    pub fn levels(&self) -> Vec<(u32, u8)> {
        self.streams.iter().map(|(&id, s)| (id, s.level)).collect()
    }

    /// The next output frame at `now`: every sender's audio decoded (or concealed), scaled by
    /// its gain, mixed and soft-limited. Senders with nothing to play contribute silence.
    pub fn pop(&mut self, now: Duration) -> Vec<f32> {
        let frame = opus::samples_per_frame(self.config.frame_ms);
        let mut contributions: Vec<(Vec<f32>, f32)> = Vec::with_capacity(self.streams.len());
        for stream in self.streams.values_mut() {
            while stream.decoded.len() < frame {
                let Some(playout) = stream.jitter.pop(now) else {
                    break;
                };
                let decoded = match playout {
                    Playout::Packet(packet) => stream.decoder.decode(&packet.payload),
                    Playout::Lost {
                        samples,
                        fec: Some(next),
                    } => stream.decoder.decode_fec(&next, samples as usize),
                    Playout::Lost { samples, fec: None } => {
                        stream.decoder.conceal(samples as usize)
                    }
                };
                // A packet that passed parsing but still fails to decode is concealed.
                let pcm = decoded
                    .or_else(|_| stream.decoder.conceal(stream.decoder.last_frame_samples()))
                    .unwrap_or_default();
                stream
                    .decoded
                    .extend(pcm.iter().map(|&s| f32::from(s) / 32_768.0));
            }
            let take = frame.min(stream.decoded.len());
            let mut samples: Vec<f32> = stream.decoded.drain(..take).collect();
            samples.resize(frame, 0.0);
            stream.level = audio_level_dbov(&mixer::to_i16(&samples));
            contributions.push((samples, stream.gain));
        }
        let refs: Vec<(&[f32], f32)> = contributions
            .iter()
            .map(|(s, g)| (s.as_slice(), *g))
            .collect();
        let mut mixed = vec![0.0; frame];
        // Gains were validated when set.
        let _ = mixer::mix_into(&mut mixed, &refs);
        match self.resampler.as_mut() {
            None => mixed,
            Some(resampler) => {
                let out = resampler.process(&mixed).unwrap_or_default();
                self.resampled.extend(out);
                let want = self.frame_samples();
                let take = want.min(self.resampled.len());
                let mut frame_out: Vec<f32> = self.resampled.drain(..take).collect();
                // Only before the resampler has produced its first chunk.
                frame_out.resize(want, 0.0);
                frame_out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(len: usize, offset: usize, freq: f32, peak: f32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let t = (offset + i) as f32 / 48_000.0;
                peak * (2.0 * std::f32::consts::PI * freq * t).sin()
            })
            .collect()
    }

    #[test]
    fn capture_to_playback_carries_the_tone() {
        let config = CaptureConfig {
            denoise: false,
            initial_seq: 65_530,
            ..CaptureConfig::default()
        };
        let mut capture = CapturePipeline::new(config).unwrap();
        let mut playback = PlaybackPipeline::new(PlaybackConfig::default()).unwrap();
        let mut packets = Vec::new();
        // Blocks of 441 samples: the pipeline regroups them into 20 ms frames.
        let input = tone(48_000, 0, 440.0, 0.3);
        for block in input.chunks(441) {
            packets.extend(capture.push(block).unwrap());
        }
        assert_eq!(packets.len(), 50);
        assert!(packets.iter().all(|p| p.voice && p.level < 20));
        assert!(packets[0].marker && !packets[1].marker);
        assert_eq!(packets[6].seq, 0);
        assert_eq!(packets[1].timestamp - packets[0].timestamp, 960);
        let mut out = Vec::new();
        for (k, packet) in packets.iter().enumerate() {
            let now = Duration::from_millis(20 * k as u64);
            playback
                .push(7, packet.seq, packet.timestamp, &packet.payload, now)
                .unwrap();
            out.extend(playback.pop(now + Duration::from_millis(5)));
        }
        let energy: f32 = out[24_000..].iter().map(|s| s * s).sum::<f32>() / 24_000.0;
        // A 0.3 sine has mean square 0.045.
        assert!((energy - 0.045).abs() < 0.01, "{energy}");
        assert_eq!(playback.stats(7).unwrap().lost, 0);
    }

    #[test]
    fn dtx_sends_nothing_in_silence() {
        let config = CaptureConfig {
            encoder: EncoderConfig::builder().dtx(true).build().unwrap(),
            ..CaptureConfig::default()
        };
        let mut capture = CapturePipeline::new(config).unwrap();
        let packets = capture.push(&vec![0.0; 48_000]).unwrap();
        assert!(packets.is_empty());
        assert_eq!(capture.stats().dtx_frames, 50);
    }

    #[test]
    fn playback_mixes_senders_with_their_gain_and_refuses_garbage() {
        let mut playback = PlaybackPipeline::new(PlaybackConfig::default()).unwrap();
        assert!(playback
            .push(1, 0, 0, &[], Duration::ZERO)
            .is_err_and(|e| matches!(e, DspError::CorruptPacket(_))));
        assert!(playback.set_gain(1, 9.0).is_err());
        playback.set_gain(2, 0.0).unwrap();
        let mut encoder = Encoder::new(EncoderConfig::default()).unwrap();
        for k in 0..20_u16 {
            let pcm = mixer::to_i16(&tone(960, usize::from(k) * 960, 300.0, 0.4));
            let packet = encoder.encode(&pcm).unwrap();
            let now = Duration::from_millis(20 * u64::from(k));
            for sender in [1, 2] {
                playback
                    .push(sender, k, u32::from(k) * 960, &packet, now)
                    .unwrap();
            }
            playback.pop(now);
        }
        let levels = playback.levels();
        assert_eq!(levels.len(), 2);
        let out = playback.pop(Duration::from_millis(400));
        assert_eq!(out.len(), 960);
        assert!(playback.remove(2) && !playback.remove(2));
        assert_eq!(playback.senders(), vec![1]);
    }

    #[test]
    fn playback_resamples_to_the_device_rate() {
        let config = PlaybackConfig {
            output_rate: 44_100,
            ..PlaybackConfig::default()
        };
        let mut playback = PlaybackPipeline::new(config).unwrap();
        assert_eq!(playback.pop(Duration::ZERO).len(), 882);
    }
}
