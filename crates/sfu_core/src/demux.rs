//! Constant-time routing of incoming datagrams to participants.
//!
//! All participants share one UDP socket. A datagram from a known source address goes to the
//! participant that address belongs to (one hash lookup). A datagram from a new address can
//! only be a STUN binding request starting ICE for a participant: its USERNAME attribute is
//! `<our ufrag>:<their ufrag>` (RFC 8445 §7.2.2), and our ufrag, unique per participant, is the
//! second hash key. Everything else is dropped without touching any peer. The participant's
//! ICE agent still checks the request's MESSAGE-INTEGRITY; the address is only learnt here so
//! the following DTLS/SRTP datagrams find their way.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;

/// STUN magic cookie (RFC 5389 §6).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// STUN USERNAME attribute type.
const ATTR_USERNAME: u16 = 0x0006;
/// Length of the STUN header.
const STUN_HEADER: usize = 20;
/// Most source addresses a participant may be reached from (ICE may try several pairs).
pub const MAX_ADDRESSES_PER_PARTICIPANT: usize = 8;

/// The local ufrag a STUN message is addressed to, if `datagram` is a STUN message with a
/// well-formed USERNAME attribute.
#[must_use]
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    let header = datagram.get(..STUN_HEADER)?;
    // RFC 7983: STUN starts with 0..=3; the top two bits of a STUN type are zero.
    if header[0] > 3 || header[4..8] != MAGIC_COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut attributes = datagram.get(STUN_HEADER..STUN_HEADER.checked_add(length)?)?;
    while attributes.len() >= 4 {
        let kind = u16::from_be_bytes([attributes[0], attributes[1]]);
        let len = usize::from(u16::from_be_bytes([attributes[2], attributes[3]]));
        let value = attributes.get(4..4 + len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next().filter(|u| !u.is_empty());
        }
        let padded = (4 + len).checked_next_multiple_of(4)?;
        attributes = attributes.get(padded..)?;
    }
    None
}

/// Maps source addresses and local ufrags to participant keys.
#[derive(Debug)]
pub struct Demux<K> {
    by_addr: HashMap<SocketAddr, K>,
    by_ufrag: HashMap<String, K>,
    addrs_of: HashMap<K, Vec<SocketAddr>>,
}

impl<K> Default for Demux<K> {
    fn default() -> Self {
        Self {
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            addrs_of: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> Demux<K> {
    /// Registers a participant under its local ICE ufrag.
    pub fn insert(&mut self, key: K, local_ufrag: String) {
        self.by_ufrag.insert(local_ufrag, key);
        self.addrs_of.entry(key).or_default();
    }

    /// Forgets a participant, its ufrag and every address learnt for it.
    pub fn remove(&mut self, key: K, local_ufrag: &str) {
        if self.by_ufrag.get(local_ufrag) == Some(&key) {
            self.by_ufrag.remove(local_ufrag);
        }
        for addr in self.addrs_of.remove(&key).unwrap_or_default() {
            self.by_addr.remove(&addr);
        }
    }

    /// The participant a datagram from `source` belongs to, learning `source` when the
    /// datagram is a STUN request naming a participant's ufrag.
    pub fn route(&mut self, source: SocketAddr, datagram: &[u8]) -> Option<K> {
        if let Some(key) = self.by_addr.get(&source) {
            return Some(*key);
        }
        let key = *self.by_ufrag.get(stun_local_ufrag(datagram)?)?;
        let addrs = self.addrs_of.entry(key).or_default();
        if addrs.len() < MAX_ADDRESSES_PER_PARTICIPANT {
            addrs.push(source);
            self.by_addr.insert(source, key);
        }
        Some(key)
    }

    /// Number of participants registered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.addrs_of.len()
    }

    /// Whether no participant is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.addrs_of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute before USERNAME, to exercise the attribute walk.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&u16::try_from(username.len()).unwrap().to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn username_is_parsed() {
        assert_eq!(
            stun_local_ufrag(&binding_request("abcd:wxyz")),
            Some("abcd")
        );
        assert_eq!(stun_local_ufrag(&binding_request("abc")), Some("abc"));
        assert_eq!(stun_local_ufrag(&binding_request(":x")), None);
    }

    #[test]
    fn truncated_and_foreign_datagrams_are_not_stun() {
        let msg = binding_request("abcd:wxyz");
        for cut in 0..msg.len() {
            assert_eq!(stun_local_ufrag(&msg[..cut]), None, "cut at {cut}");
        }
        let mut rtp = msg.clone();
        rtp[0] = 0x80;
        assert_eq!(stun_local_ufrag(&rtp), None);
        let mut bad_len = msg;
        bad_len[5] ^= 0xff;
        assert_eq!(stun_local_ufrag(&bad_len), None);
    }

    #[test]
    fn routes_by_ufrag_then_by_address() {
        let mut demux = Demux::default();
        demux.insert(1_u32, "aaaa".into());
        demux.insert(2_u32, "bbbb".into());
        // Unknown address, not STUN: dropped.
        assert_eq!(demux.route(addr(1), &[0x80, 0, 0, 0]), None);
        // STUN for an unknown ufrag: dropped, address not learnt.
        assert_eq!(demux.route(addr(1), &binding_request("zzzz:q")), None);
        assert_eq!(demux.route(addr(1), &binding_request("bbbb:q")), Some(2));
        // Learnt: later SRTP from that address routes without STUN.
        assert_eq!(demux.route(addr(1), &[0x80, 0, 0, 0]), Some(2));
        assert_eq!(demux.route(addr(2), &binding_request("aaaa:q")), Some(1));
        demux.remove(2, "bbbb");
        assert_eq!(demux.route(addr(1), &[0x80, 0, 0, 0]), None);
        assert_eq!(demux.route(addr(2), &[0x80, 0, 0, 0]), Some(1));
        assert_eq!(demux.len(), 1);
    }

    #[test]
    fn addresses_per_participant_are_bounded() {
        let mut demux = Demux::default();
        demux.insert(1_u32, "aaaa".into());
        let request = binding_request("aaaa:q");
        for port in 0..100 {
            assert_eq!(demux.route(addr(port), &request), Some(1));
        }
        assert_eq!(demux.by_addr.len(), MAX_ADDRESSES_PER_PARTICIPANT);
    }
}
