//! The one thing the SFU side needs to know about Opus: a packet's duration.

/// Samples per channel at 48 kHz of an Opus packet, from its TOC byte (RFC 6716 §3.1), or
/// `None` for an empty or malformed packet.
#[must_use]
pub fn packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame size in 48 kHz samples for each of the 32 configurations.
    let frame: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u32 = match toc & 0x3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let samples = frame * frames;
    // RFC 6716: a packet holds at most 120 ms.
    (frames > 0 && samples <= 5760).then_some(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        // config 1 (SILK NB 20 ms), code 0: one 20 ms frame.
        assert_eq!(packet_samples(&[1 << 3]), Some(960));
        // config 31 (CELT FB 20 ms), code 1: two frames.
        assert_eq!(packet_samples(&[(31 << 3) | 1]), Some(1920));
        // config 28 (CELT FB 2.5 ms), code 3 with 3 frames.
        assert_eq!(packet_samples(&[(28 << 3) | 3, 3]), Some(360));
        // config 3 (SILK NB 60 ms), code 3 with 3 frames = 180 ms: too long.
        assert_eq!(packet_samples(&[(3 << 3) | 3, 3]), None);
        assert_eq!(packet_samples(&[]), None);
        assert_eq!(packet_samples(&[(31 << 3) | 3]), None);
    }
}
