//! A bare UDP relay, the floor of the voice SFU load benchmark (`benches/load`, issue 6).
//!
//! No ICE, no DTLS, no SRTP, no RTP parsing: a datagram from a room member goes, bytes untouched,
//! to every other member of its room. Datagrams are read in batches with `recvmmsg` and written
//! with `sendmmsg`, so the figure is close to what the kernel's UDP path costs per packet.
//!
//! Control datagrams (from any address): `JOIN <room>` makes the sender a member of `<room>`;
//! `STATS` is answered with `forwarded <n>`, the datagrams handed to the kernel so far.
//!
//! Usage: `udp_relay [ADDR]` (default `127.0.0.1:0`, IPv4 only); prints `listening <addr>`.

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams read per `recvmmsg`.
const BATCH: usize = 64;
/// Largest datagram relayed; longer ones are truncated by the kernel (voice packets are ~200 B).
const DATAGRAM: usize = 1500;
/// Messages per `sendmmsg` (the kernel caps it at `UIO_MAXIOV`, 1024).
const SEND_BATCH: usize = 1024;

/// Room membership: who hears whom.
#[derive(Default)]
struct Rooms {
    room_of: HashMap<SocketAddrV4, usize>,
    members: Vec<Vec<SocketAddrV4>>,
    by_name: HashMap<Vec<u8>, usize>,
}

impl Rooms {
    fn join(&mut self, room: &[u8], member: SocketAddrV4) {
        if self.room_of.contains_key(&member) {
            return;
        }
        let index = *self.by_name.entry(room.to_vec()).or_insert_with(|| {
            self.members.push(Vec::new());
            self.members.len() - 1
        });
        self.room_of.insert(member, index);
        if let Some(members) = self.members.get_mut(index) {
            members.push(member);
        }
    }

    /// The members a datagram from `sender` goes to (none if it is in no room).
    fn receivers(&self, sender: SocketAddrV4) -> impl Iterator<Item = SocketAddrV4> + '_ {
        self.room_of
            .get(&sender)
            .and_then(|&room| self.members.get(room))
            .into_iter()
            .flatten()
            .copied()
            .filter(move |&member| member != sender)
    }
}

fn to_sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn from_sockaddr(addr: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    )
}

fn zeroed_sockaddr() -> libc::sockaddr_in {
    to_sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
}

fn empty_header() -> libc::mmsghdr {
    // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// Reads up to `BATCH` datagrams, blocking for the first; fills `lengths` and `sources` and
/// returns how many arrived.
fn recv_batch(
    fd: RawFd,
    buffers: &mut [[u8; DATAGRAM]],
    lengths: &mut [usize],
    sources: &mut [libc::sockaddr_in],
) -> std::io::Result<usize> {
    let mut iovecs: Vec<libc::iovec> = buffers
        .iter_mut()
        .map(|buffer| libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: DATAGRAM,
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .zip(sources.iter_mut())
        .map(|(iovec, source)| {
            let mut header = empty_header();
            header.msg_hdr.msg_name = std::ptr::from_mut(source).cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header
        })
        .collect();
    // SAFETY: every header points at a live iovec, buffer and sockaddr that outlive the call,
    // sized as declared; the kernel fills at most `headers.len()` entries.
    let received = unsafe {
        libc::recvmmsg(
            fd,
            headers.as_mut_ptr(),
            headers.len() as libc::c_uint,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    };
    if received < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let received = received as usize;
    for (length, header) in lengths.iter_mut().zip(&headers).take(received) {
        *length = header.msg_len as usize;
    }
    Ok(received)
}

/// One datagram to send: which received buffer, how long, where to.
struct Outgoing {
    buffer: usize,
    length: usize,
    to: libc::sockaddr_in,
}

/// Sends `outgoing` with as few `sendmmsg` calls as the kernel allows; returns how many the
/// kernel took. A datagram it refuses (a vanished receiver) is skipped, not retried.
fn send_batch(fd: RawFd, buffers: &mut [[u8; DATAGRAM]], outgoing: &mut [Outgoing]) -> u64 {
    let mut sent = 0;
    for chunk in outgoing.chunks_mut(SEND_BATCH) {
        let mut iovecs: Vec<libc::iovec> = chunk
            .iter()
            .map(|out| libc::iovec {
                iov_base: buffers
                    .get_mut(out.buffer)
                    .map_or(std::ptr::null_mut(), |b| b.as_mut_ptr().cast()),
                iov_len: out.length,
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .zip(chunk.iter_mut())
            .map(|(iovec, out)| {
                let mut header = empty_header();
                header.msg_hdr.msg_name = std::ptr::from_mut(&mut out.to).cast();
                header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                header.msg_hdr.msg_iov = iovec;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        let mut start = 0;
        while let Some(rest) = headers.get_mut(start..).filter(|rest| !rest.is_empty()) {
            // SAFETY: as in `recv_batch`: every header points at live memory of the stated size.
            let done =
                unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
            if done > 0 {
                sent += done as u64;
                start += done as usize;
            } else {
                start += 1;
            }
        }
    }
    sent
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let socket = UdpSocket::bind(&bind)?;
    let local = socket.local_addr()?;
    writeln!(std::io::stdout(), "listening {local}")?;
    std::io::stdout().flush()?;
    serve(&socket)?;
    Ok(())
}

/// Relays on `socket` until it fails.
fn serve(socket: &UdpSocket) -> std::io::Result<()> {
    let fd = socket.as_raw_fd();

    let mut rooms = Rooms::default();
    let mut forwarded: u64 = 0;
    let mut buffers = vec![[0u8; DATAGRAM]; BATCH];
    let mut lengths = [0usize; BATCH];
    let mut sources = [zeroed_sockaddr(); BATCH];
    let mut outgoing: Vec<Outgoing> = Vec::new();
    loop {
        let received = recv_batch(fd, &mut buffers, &mut lengths, &mut sources)?;
        outgoing.clear();
        for (index, (source, &length)) in sources.iter().zip(&lengths).take(received).enumerate() {
            let sender = from_sockaddr(source);
            let data = buffers
                .get(index)
                .and_then(|b| b.get(..length))
                .unwrap_or(&[]);
            if let Some(room) = data.strip_prefix(b"JOIN ") {
                rooms.join(room, sender);
            } else if data == b"STATS" {
                socket.send_to(
                    format!("forwarded {forwarded}").as_bytes(),
                    SocketAddr::V4(sender),
                )?;
            } else {
                outgoing.extend(rooms.receivers(sender).map(|to| Outgoing {
                    buffer: index,
                    length,
                    to: to_sockaddr(to),
                }));
            }
        }
        forwarded += send_batch(fd, &mut buffers, &mut outgoing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    #[test]
    fn a_datagram_goes_to_the_other_members_of_its_room_only() {
        let mut rooms = Rooms::default();
        rooms.join(b"a", addr(1));
        rooms.join(b"a", addr(2));
        rooms.join(b"a", addr(3));
        rooms.join(b"b", addr(4));
        rooms.join(b"b", addr(1)); // already in a room: ignored
        assert_eq!(
            rooms.receivers(addr(1)).collect::<Vec<_>>(),
            [addr(2), addr(3)]
        );
        assert_eq!(rooms.receivers(addr(4)).count(), 0);
        assert_eq!(rooms.receivers(addr(9)).count(), 0);
    }

    #[test]
    fn relays_between_real_sockets() -> std::io::Result<()> {
        let relay = UdpSocket::bind("127.0.0.1:0")?;
        let at = relay.local_addr()?;
        std::thread::spawn(move || serve(&relay));
        let clients = (0..3)
            .map(|_| {
                let client = UdpSocket::bind("127.0.0.1:0")?;
                client.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
                client.send_to(b"JOIN room", at)?;
                Ok(client)
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let [speaker, first, second] = clients.as_slice() else {
            return Err(std::io::Error::other("three clients"));
        };
        let mut buf = [0u8; 64];
        // A STATS round trip proves the JOINs (sent earlier on the same path) were handled.
        speaker.send_to(b"STATS", at)?;
        let len = speaker.recv(&mut buf)?;
        assert_eq!(buf.get(..len), Some(&b"forwarded 0"[..]));
        speaker.send_to(b"voice", at)?;
        for listener in [first, second] {
            let len = listener.recv(&mut buf)?;
            assert_eq!(buf.get(..len), Some(&b"voice"[..]));
        }
        speaker.send_to(b"STATS", at)?;
        let len = speaker.recv(&mut buf)?;
        assert_eq!(buf.get(..len), Some(&b"forwarded 2"[..]));
        Ok(())
    }

    #[test]
    fn socket_addresses_survive_the_c_round_trip() {
        let address = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 4321);
        assert_eq!(from_sockaddr(&to_sockaddr(address)), address);
    }
}
