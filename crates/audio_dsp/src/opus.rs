//! Opus encoding and decoding with the reference libopus.
//!
//! libopus 1.6 is compiled from the source vendored in the `opusic-sys` crate (cmake) and
//! linked statically, so no system libopus is needed at build or run time.
//!
//! Audio is 48 kHz, mono or stereo (interleaved), as 16-bit PCM or as float in `[-1, 1]`.
//! An encoder takes exactly one frame of 10, 20, 40 or 60 ms per call; a decoder takes one
//! packet per call and also conceals a lost frame (PLC) or rebuilds it from the in-band FEC
//! carried by the packet that follows it.
//!
//! This is the only module of the crate with `unsafe` code: the calls into libopus. Each
//! state pointer is owned by exactly one `OwnedState`, checked non-null at creation and freed
//! once in `Drop`; every buffer handed to libopus is a live slice whose length is passed with
//! it.
#![allow(unsafe_code)]

use std::ffi::{c_int, CStr};
use std::fmt;
use std::ptr::NonNull;

use opusic_sys as ffi;

use crate::{DspError, Result};

/// The only sample rate of the codec as used here (Opus' native rate).
pub const SAMPLE_RATE: u32 = 48_000;

/// Largest packet an encoder produces: RFC 6716 §3.2.1 bounds one frame at 1275 bytes, and a
/// 60 ms packet holds at most three 20 ms frames.
pub const MAX_PACKET_BYTES: usize = 4_000;

/// Most samples per channel one packet decodes to: 120 ms at 48 kHz (RFC 6716 §3.2.5).
pub const MAX_FRAME_SAMPLES: usize = 5_760;

/// Frame durations the encoder accepts, in milliseconds.
pub const FRAME_DURATIONS_MS: [u32; 4] = [10, 20, 40, 60];

/// Accepted encoder bitrates, in bits per second.
pub const BITRATE_RANGE: std::ops::RangeInclusive<u32> = 24_000..=96_000;

/// The text of a libopus error code.
fn opus_message(code: c_int) -> String {
    // SAFETY: opus_strerror returns a pointer to a static NUL-terminated string for any code.
    let text = unsafe { CStr::from_ptr(ffi::opus_strerror(code)) };
    text.to_string_lossy().into_owned()
}

/// A request constant of the bindings, as the `c_int` libopus takes.
const fn request(value: c_int) -> c_int {
    value
}

fn check_channels(channels: u8) -> Result<c_int> {
    match channels {
        1 | 2 => Ok(c_int::from(channels)),
        _ => Err(DspError::InvalidArgument {
            name: "channels",
            reason: format!("{channels} is not 1 (mono) or 2 (stereo)"),
        }),
    }
}

/// The number of samples per channel in one frame of `frame_ms` milliseconds at 48 kHz.
#[must_use]
pub const fn samples_per_frame(frame_ms: u32) -> usize {
    (SAMPLE_RATE / 1_000 * frame_ms) as usize
}

/// Settings of an [`Encoder`]; build with [`EncoderConfig::builder`].
///
/// Defaults: mono, 64 kbit/s, 20 ms frames, complexity 10, in-band FEC on, DTX off, expected
/// loss 0 %. The application mode is VoIP (speech-tuned, FEC-capable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderConfig {
    channels: u8,
    bitrate: u32,
    frame_ms: u32,
    complexity: u8,
    fec: bool,
    dtx: bool,
    expected_loss_percent: u8,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            channels: 1,
            bitrate: 64_000,
            frame_ms: 20,
            complexity: 10,
            fec: true,
            dtx: false,
            expected_loss_percent: 0,
        }
    }
}

impl EncoderConfig {
    /// A builder starting from the defaults.
    #[must_use]
    pub fn builder() -> EncoderConfigBuilder {
        EncoderConfigBuilder(Self::default())
    }

    /// Channels, 1 or 2.
    #[must_use]
    pub fn channels(&self) -> u8 {
        self.channels
    }

    /// Target bitrate in bits per second.
    #[must_use]
    pub fn bitrate(&self) -> u32 {
        self.bitrate
    }

    /// Frame duration in milliseconds.
    #[must_use]
    pub fn frame_ms(&self) -> u32 {
        self.frame_ms
    }

    /// Samples per channel in one frame.
    #[must_use]
    pub fn frame_samples(&self) -> usize {
        samples_per_frame(self.frame_ms)
    }

    /// Encoder complexity, 0 (cheapest) to 10 (best).
    #[must_use]
    pub fn complexity(&self) -> u8 {
        self.complexity
    }

    /// Whether in-band forward error correction is on.
    #[must_use]
    pub fn fec(&self) -> bool {
        self.fec
    }

    /// Whether discontinuous transmission is on.
    #[must_use]
    pub fn dtx(&self) -> bool {
        self.dtx
    }

    /// The packet loss the encoder expects, in percent.
    #[must_use]
    pub fn expected_loss_percent(&self) -> u8 {
        self.expected_loss_percent
    }
}

/// Builder of [`EncoderConfig`]; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct EncoderConfigBuilder(EncoderConfig);

impl EncoderConfigBuilder {
    /// Channels: 1 (mono, default) or 2 (stereo, interleaved).
    #[must_use]
    pub fn channels(mut self, channels: u8) -> Self {
        self.0.channels = channels;
        self
    }

    /// Target bitrate, 24 000 to 96 000 bit/s (default 64 000).
    #[must_use]
    pub fn bitrate(mut self, bitrate: u32) -> Self {
        self.0.bitrate = bitrate;
        self
    }

    /// Frame duration: 10, 20 (default), 40 or 60 ms.
    #[must_use]
    pub fn frame_ms(mut self, frame_ms: u32) -> Self {
        self.0.frame_ms = frame_ms;
        self
    }

    /// Complexity 0 to 10 (default 10).
    #[must_use]
    pub fn complexity(mut self, complexity: u8) -> Self {
        self.0.complexity = complexity;
        self
    }

    /// In-band FEC (default on): each packet also carries a coarse copy of the previous frame.
    #[must_use]
    pub fn fec(mut self, fec: bool) -> Self {
        self.0.fec = fec;
        self
    }

    /// Discontinuous transmission (default off): silent frames shrink to 1–2 byte packets,
    /// which a sender need not transmit.
    #[must_use]
    pub fn dtx(mut self, dtx: bool) -> Self {
        self.0.dtx = dtx;
        self
    }

    /// Expected packet loss, 0 to 100 % (default 0); with FEC on, more loss makes the encoder
    /// spend more bits on redundancy.
    #[must_use]
    pub fn expected_loss_percent(mut self, percent: u8) -> Self {
        self.0.expected_loss_percent = percent;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] naming the first value outside its range.
    pub fn build(self) -> Result<EncoderConfig> {
        let config = self.0;
        check_channels(config.channels)?;
        let invalid = |name, reason| Err(DspError::InvalidArgument { name, reason });
        if !BITRATE_RANGE.contains(&config.bitrate) {
            return invalid(
                "bitrate",
                format!("{} bit/s is outside 24000..=96000", config.bitrate),
            );
        }
        if !FRAME_DURATIONS_MS.contains(&config.frame_ms) {
            return invalid(
                "frame_ms",
                format!("{} ms is not one of 10, 20, 40, 60", config.frame_ms),
            );
        }
        if config.complexity > 10 {
            return invalid(
                "complexity",
                format!("{} is outside 0..=10", config.complexity),
            );
        }
        if config.expected_loss_percent > 100 {
            return invalid(
                "expected_loss_percent",
                format!("{} is outside 0..=100", config.expected_loss_percent),
            );
        }
        Ok(config)
    }
}

/// A libopus state object (`OpusEncoder`, `OpusDecoder`) and the function that frees it.
trait LibopusState {
    /// `opus_encoder_destroy` or `opus_decoder_destroy`.
    const DESTROY: unsafe extern "C" fn(*mut Self);
}

impl LibopusState for ffi::OpusEncoder {
    const DESTROY: unsafe extern "C" fn(*mut Self) = ffi::opus_encoder_destroy;
}

impl LibopusState for ffi::OpusDecoder {
    const DESTROY: unsafe extern "C" fn(*mut Self) = ffi::opus_decoder_destroy;
}

/// The one owner of a libopus state: non-null from creation, freed exactly once on drop.
struct OwnedState<T: LibopusState>(NonNull<T>);

impl<T: LibopusState> OwnedState<T> {
    /// Takes what an `opus_*_create` call returned, with its error out-parameter.
    fn from_create(raw: *mut T, error: c_int) -> Result<Self> {
        match NonNull::new(raw) {
            Some(state) if error == 0 => Ok(Self(state)),
            _ => Err(DspError::Codec(opus_message(error))),
        }
    }

    /// The pointer to hand to libopus. Every libopus call may write the state, so this takes
    /// `&mut self`: a shared reference can never reach it.
    fn as_ptr(&mut self) -> *mut T {
        self.0.as_ptr()
    }
}

impl<T: LibopusState> Drop for OwnedState<T> {
    fn drop(&mut self) {
        // SAFETY: `from_create` took the pointer from the matching create function; it is
        // freed exactly once, here.
        unsafe { (T::DESTROY)(self.0.as_ptr()) }
    }
}

// SAFETY: the state is plain heap memory owned by this value; libopus keeps no thread-local or
// global state for it, so it may move between threads.
unsafe impl<T: LibopusState> Send for OwnedState<T> {}
// SAFETY: the pointer is only reachable through `&mut self` (`as_ptr`), so shared references
// never touch the state.
unsafe impl<T: LibopusState> Sync for OwnedState<T> {}

impl<T: LibopusState> fmt::Debug for OwnedState<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The signature shared by `opus_encode` and `opus_encode_float`.
type EncodeFn<S> = unsafe extern "C" fn(
    *mut ffi::OpusEncoder,
    *const S,
    c_int,
    *mut u8,
    ffi::opus_int32,
) -> ffi::opus_int32;

/// A sample type libopus encodes: 16-bit PCM (`opus_encode`) or float in `[-1, 1]`
/// (`opus_encode_float`).
trait EncoderSample: Sized {
    /// The libopus encode function for this sample type.
    const ENCODE: EncodeFn<Self>;
}

impl EncoderSample for i16 {
    const ENCODE: EncodeFn<Self> = ffi::opus_encode;
}

impl EncoderSample for f32 {
    const ENCODE: EncodeFn<Self> = ffi::opus_encode_float;
}

/// An Opus encoder (libopus `OpusEncoder`, VoIP application).
#[derive(Debug)]
pub struct Encoder {
    state: OwnedState<ffi::OpusEncoder>,
    config: EncoderConfig,
    lookahead: usize,
}

impl Encoder {
    /// Creates an encoder with the given settings.
    ///
    /// # Errors
    ///
    /// [`DspError::Codec`] if libopus refuses a setting (it should not: the config is
    /// validated).
    pub fn new(config: EncoderConfig) -> Result<Self> {
        let channels = check_channels(config.channels)?;
        let mut error: c_int = 0;
        // SAFETY: valid rate/channels/application; `error` is a live out-parameter.
        let raw = unsafe {
            ffi::opus_encoder_create(
                48_000,
                channels,
                request(ffi::OPUS_APPLICATION_VOIP),
                &mut error,
            )
        };
        let mut encoder = Self {
            state: OwnedState::from_create(raw, error)?,
            config,
            lookahead: 0,
        };
        encoder.apply_config()?;
        let mut lookahead: ffi::opus_int32 = 0;
        // SAFETY: GET_LOOKAHEAD writes one opus_int32 through the pointer.
        let code = unsafe {
            ffi::opus_encoder_ctl(
                encoder.state.as_ptr(),
                request(ffi::OPUS_GET_LOOKAHEAD_REQUEST),
                &mut lookahead as *mut ffi::opus_int32,
            )
        };
        encoder.check(code)?;
        encoder.lookahead = usize::try_from(lookahead).unwrap_or(0);
        Ok(encoder)
    }

    fn check(&self, code: c_int) -> Result<()> {
        if code < 0 {
            Err(DspError::Codec(opus_message(code)))
        } else {
            Ok(())
        }
    }

    fn set(&mut self, req: c_int, value: c_int) -> Result<()> {
        // SAFETY: every SET request used here takes one opus_int32 (= c_int) argument.
        let code = unsafe { ffi::opus_encoder_ctl(self.state.as_ptr(), request(req), value) };
        self.check(code)
    }

    fn apply_config(&mut self) -> Result<()> {
        let c = self.config.clone();
        let bitrate = c_int::try_from(c.bitrate).unwrap_or(c_int::MAX);
        self.set(ffi::OPUS_SET_BITRATE_REQUEST, bitrate)?;
        self.set(ffi::OPUS_SET_COMPLEXITY_REQUEST, c_int::from(c.complexity))?;
        self.set(ffi::OPUS_SET_INBAND_FEC_REQUEST, c_int::from(c.fec))?;
        self.set(ffi::OPUS_SET_DTX_REQUEST, c_int::from(c.dtx))?;
        self.set(
            ffi::OPUS_SET_PACKET_LOSS_PERC_REQUEST,
            c_int::from(c.expected_loss_percent),
        )?;
        // Voice signal hint: SILK/hybrid modes, which is where in-band FEC lives.
        self.set(ffi::OPUS_SET_SIGNAL_REQUEST, ffi::OPUS_SIGNAL_VOICE)
    }

    /// The settings this encoder runs with.
    #[must_use]
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// The encoder's algorithmic delay (lookahead), in samples per channel at 48 kHz.
    #[must_use]
    pub fn lookahead(&self) -> usize {
        self.lookahead
    }

    /// Changes the expected packet loss (0–100 %), e.g. from receiver reports.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] above 100.
    pub fn set_expected_loss_percent(&mut self, percent: u8) -> Result<()> {
        if percent > 100 {
            return Err(DspError::InvalidArgument {
                name: "expected_loss_percent",
                reason: format!("{percent} is outside 0..=100"),
            });
        }
        self.set(ffi::OPUS_SET_PACKET_LOSS_PERC_REQUEST, c_int::from(percent))?;
        self.config.expected_loss_percent = percent;
        Ok(())
    }

    /// Changes the target bitrate (24 000–96 000 bit/s).
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] outside the range.
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<()> {
        let config = EncoderConfigBuilder(self.config.clone())
            .bitrate(bitrate)
            .build()?;
        self.set(
            ffi::OPUS_SET_BITRATE_REQUEST,
            c_int::try_from(bitrate).unwrap_or(c_int::MAX),
        )?;
        self.config = config;
        Ok(())
    }

    fn check_frame(&self, len: usize) -> Result<c_int> {
        let expected = self.config.frame_samples() * usize::from(self.config.channels);
        if len != expected {
            return Err(DspError::InvalidFrameSize {
                len,
                expected: "exactly one frame: frame_ms × 48 samples × channels",
            });
        }
        Ok(c_int::try_from(self.config.frame_samples()).unwrap_or(0))
    }

    /// Encodes one frame of 16-bit PCM (interleaved if stereo) into a packet.
    ///
    /// With DTX on, a silent frame may come out as a packet of 1–2 bytes that need not be sent.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidFrameSize`] unless `pcm` holds exactly one frame;
    /// [`DspError::Codec`] if libopus fails.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>> {
        self.encode_frame(pcm)
    }

    /// Encodes one frame of float PCM in `[-1, 1]` (interleaved if stereo) into a packet.
    ///
    /// # Errors
    ///
    /// As [`encode`](Self::encode).
    pub fn encode_float(&mut self, pcm: &[f32]) -> Result<Vec<u8>> {
        self.encode_frame(pcm)
    }

    fn encode_frame<S: EncoderSample>(&mut self, pcm: &[S]) -> Result<Vec<u8>> {
        let frame = self.check_frame(pcm.len())?;
        let mut packet = vec![0_u8; MAX_PACKET_BYTES];
        // SAFETY: `pcm` holds frame × channels samples (checked); `packet` has the length
        // passed as its capacity.
        let written = unsafe {
            (S::ENCODE)(
                self.state.as_ptr(),
                pcm.as_ptr(),
                frame,
                packet.as_mut_ptr(),
                MAX_PACKET_BYTES as ffi::opus_int32,
            )
        };
        let len = usize::try_from(written).map_err(|_| DspError::Codec(opus_message(written)))?;
        packet.truncate(len);
        Ok(packet)
    }
}

/// Checks that `packet` is a well-formed Opus packet and returns its duration in samples per
/// channel at 48 kHz.
///
/// # Errors
///
/// [`DspError::CorruptPacket`] for an empty packet, an invalid table-of-contents or frame
/// layout, or more than 120 ms of audio.
pub fn packet_samples(packet: &[u8]) -> Result<usize> {
    if packet.is_empty() {
        return Err(DspError::CorruptPacket("empty packet".into()));
    }
    let len = ffi::opus_int32::try_from(packet.len())
        .map_err(|_| DspError::CorruptPacket(format!("{} bytes is too long", packet.len())))?;
    let mut toc: u8 = 0;
    let mut frames: [*const u8; 48] = [std::ptr::null(); 48];
    let mut sizes: [ffi::opus_int16; 48] = [0; 48];
    let mut offset: c_int = 0;
    // SAFETY: `packet` is live for `len` bytes; the out-arrays have the 48 entries libopus
    // writes at most.
    let count = unsafe {
        ffi::opus_packet_parse(
            packet.as_ptr(),
            len,
            &mut toc,
            frames.as_mut_ptr(),
            sizes.as_mut_ptr(),
            &mut offset,
        )
    };
    if count < 0 {
        return Err(DspError::CorruptPacket(opus_message(count)));
    }
    // SAFETY: as above; this only reads the TOC and frame-count bytes.
    let samples = unsafe { ffi::opus_packet_get_nb_samples(packet.as_ptr(), len, 48_000) };
    match usize::try_from(samples) {
        Ok(n) if n > 0 && n <= MAX_FRAME_SAMPLES => Ok(n),
        _ => Err(DspError::CorruptPacket(if samples < 0 {
            opus_message(samples)
        } else {
            format!("{samples} samples per channel is not a valid packet duration")
        })),
    }
}

/// An Opus decoder (libopus `OpusDecoder`) at 48 kHz.
#[derive(Debug)]
pub struct Decoder {
    state: OwnedState<ffi::OpusDecoder>,
    channels: u8,
    /// Duration of the last decoded packet, the default length of a concealed frame.
    last_samples: usize,
}

impl Decoder {
    /// Creates a decoder for 1 or 2 output channels.
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidArgument`] for another channel count; [`DspError::Codec`] if
    /// libopus fails.
    pub fn new(channels: u8) -> Result<Self> {
        let count = check_channels(channels)?;
        let mut error: c_int = 0;
        // SAFETY: valid rate and channels; `error` is a live out-parameter.
        let raw = unsafe { ffi::opus_decoder_create(48_000, count, &mut error) };
        Ok(Self {
            state: OwnedState::from_create(raw, error)?,
            channels,
            last_samples: samples_per_frame(20),
        })
    }

    /// Output channels.
    #[must_use]
    pub fn channels(&self) -> u8 {
        self.channels
    }

    /// Duration (samples per channel) of the last packet decoded or concealed.
    #[must_use]
    pub fn last_frame_samples(&self) -> usize {
        self.last_samples
    }

    fn run(&mut self, packet: Option<&[u8]>, samples: usize, fec: bool) -> Result<Vec<i16>> {
        let channels = usize::from(self.channels);
        let mut pcm = vec![0_i16; samples * channels];
        let frame = c_int::try_from(samples).unwrap_or(0);
        let (data, len) = match packet {
            Some(bytes) => (
                bytes.as_ptr(),
                ffi::opus_int32::try_from(bytes.len()).unwrap_or(0),
            ),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: `data` is null (concealment) or a live slice of `len` bytes; `pcm` holds
        // `frame` × channels samples, the size passed.
        let decoded = unsafe {
            ffi::opus_decode(
                self.state.as_ptr(),
                data,
                len,
                pcm.as_mut_ptr(),
                frame,
                c_int::from(fec),
            )
        };
        let n = usize::try_from(decoded).map_err(|_| match packet {
            Some(_) => DspError::CorruptPacket(opus_message(decoded)),
            None => DspError::Codec(opus_message(decoded)),
        })?;
        pcm.truncate(n * channels);
        self.last_samples = n;
        Ok(pcm)
    }

    /// Decodes one packet into 16-bit PCM (interleaved if stereo).
    ///
    /// # Errors
    ///
    /// [`DspError::CorruptPacket`] for an empty or malformed packet; the decoder state is
    /// unchanged and the stream can go on.
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<i16>> {
        let samples = packet_samples(packet)?;
        self.run(Some(packet), samples, false)
    }

    /// Conceals one lost frame of `samples` samples per channel (packet loss concealment).
    ///
    /// # Errors
    ///
    /// [`DspError::InvalidFrameSize`] unless `samples` is a whole number of 2.5 ms (120
    /// samples) up to 120 ms.
    pub fn conceal(&mut self, samples: usize) -> Result<Vec<i16>> {
        check_conceal(samples)?;
        self.run(None, samples, false)
    }

    /// Rebuilds a lost frame of `samples` samples per channel from the in-band FEC data in
    /// `next_packet`, the packet that followed it. If that packet carries no FEC, libopus
    /// conceals instead. Decode `next_packet` itself normally afterwards.
    ///
    /// # Errors
    ///
    /// As [`decode`](Self::decode) and [`conceal`](Self::conceal).
    pub fn decode_fec(&mut self, next_packet: &[u8], samples: usize) -> Result<Vec<i16>> {
        packet_samples(next_packet)?;
        check_conceal(samples)?;
        self.run(Some(next_packet), samples, true)
    }
}

/// Whether `next_packet` carries in-band FEC (LBRR) data for the frame before it.
#[must_use]
pub fn packet_has_fec(next_packet: &[u8]) -> bool {
    let Ok(len) = ffi::opus_int32::try_from(next_packet.len()) else {
        return false;
    };
    if len == 0 {
        return false;
    }
    // SAFETY: `next_packet` is live for `len` bytes.
    unsafe { ffi::opus_packet_has_lbrr(next_packet.as_ptr(), len) == 1 }
}

fn check_conceal(samples: usize) -> Result<()> {
    if samples == 0 || samples % 120 != 0 || samples > MAX_FRAME_SAMPLES {
        return Err(DspError::InvalidFrameSize {
            len: samples,
            expected: "a multiple of 120 samples (2.5 ms) up to 5760 (120 ms)",
        });
    }
    Ok(())
}

/// The version string of the linked libopus, e.g. `"libopus 1.5.2"`.
#[must_use]
pub fn libopus_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    let text = unsafe { CStr::from_ptr(ffi::opus_get_version_string()) };
    text.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frame: usize, offset: usize) -> Vec<i16> {
        (0..frame)
            .map(|i| {
                let t = (offset + i) as f64 / 48_000.0;
                (8_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn links_the_vendored_libopus() {
        assert!(
            libopus_version().starts_with("libopus 1.6"),
            "{}",
            libopus_version()
        );
    }

    #[test]
    fn round_trip_keeps_frame_length() {
        for frame_ms in FRAME_DURATIONS_MS {
            let config = EncoderConfig::builder().frame_ms(frame_ms).build().unwrap();
            let mut encoder = Encoder::new(config).unwrap();
            let mut decoder = Decoder::new(1).unwrap();
            let n = samples_per_frame(frame_ms);
            let packet = encoder.encode(&tone(n, 0)).unwrap();
            assert_eq!(packet_samples(&packet).unwrap(), n);
            assert_eq!(decoder.decode(&packet).unwrap().len(), n);
            assert_eq!(decoder.conceal(n).unwrap().len(), n);
        }
    }

    #[test]
    fn fec_rebuilds_a_lost_frame() {
        let config = EncoderConfig::builder()
            .expected_loss_percent(20)
            .bitrate(32_000)
            .build()
            .unwrap();
        let mut encoder = Encoder::new(config).unwrap();
        let packets: Vec<Vec<u8>> = (0..10)
            .map(|k| encoder.encode(&tone(960, k * 960)).unwrap())
            .collect();
        assert!(packets[5..].iter().any(|p| packet_has_fec(p)));
        let mut decoder = Decoder::new(1).unwrap();
        for p in &packets[..5] {
            decoder.decode(p).unwrap();
        }
        let rebuilt = decoder.decode_fec(&packets[6], 960).unwrap();
        assert_eq!(rebuilt.len(), 960);
        assert!(rebuilt.iter().any(|&s| s != 0));
    }

    #[test]
    fn refuses_bad_input() {
        assert!(EncoderConfig::builder().bitrate(8_000).build().is_err());
        assert!(EncoderConfig::builder().frame_ms(15).build().is_err());
        assert!(EncoderConfig::builder().channels(3).build().is_err());
        let mut encoder = Encoder::new(EncoderConfig::default()).unwrap();
        assert!(matches!(
            encoder.encode(&[0; 100]),
            Err(DspError::InvalidFrameSize { len: 100, .. })
        ));
        let mut decoder = Decoder::new(1).unwrap();
        assert!(matches!(
            decoder.decode(&[]),
            Err(DspError::CorruptPacket(_))
        ));
        // TOC code 3 with a frame count of 0 is invalid.
        assert!(matches!(
            decoder.decode(&[0x03, 0x00]),
            Err(DspError::CorruptPacket(_))
        ));
        assert!(decoder.conceal(100).is_err());
    }

    #[test]
    fn random_bytes_never_crash_the_decoder() {
        let mut decoder = Decoder::new(2).unwrap();
        let mut x: u32 = 12_345;
        for len in 1..300 {
            let packet: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = decoder.decode(&packet);
        }
    }
}
