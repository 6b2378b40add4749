//! The UDP socket of one media thread, read and written in batches.
//!
//! One wake-up should drain whatever queued up while the thread was busy, and the copies of one
//! incoming packet for its `n - 1` receivers should reach the kernel in one call. On Linux that
//! is `recvmmsg` (after `ppoll` waits for the first datagram) and `sendmmsg`; elsewhere one
//! `recv_from` per wake-up and one `send_to` per datagram. The socket asks for large kernel
//! buffers ([`SOCKET_BUFFER`]) so a thread that is descheduled for a while (a busy shared
//! machine) finds its datagrams waiting instead of dropped.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer asked of the kernel, in bytes. Linux grants at most
/// `net.core.rmem_max` / `net.core.wmem_max` (and reports twice that, its bookkeeping share);
/// [`MediaSocket::buffer_sizes`] tells what was granted. A 200-byte voice datagram takes about
/// 1 KiB of buffer, so 4 MiB holds about 4,000 of them: over half a second of a busy thread.
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;
/// Largest datagram read (longer ones are truncated, and then fail authentication).
const MAX_DATAGRAM: usize = 2048;
/// Most datagrams one wake-up reads.
#[cfg(target_os = "linux")]
const RECV_BATCH: usize = 64;
/// Most datagrams one `sendmmsg` takes (the kernel's limit is `UIO_MAXIOV`, 1024).
const SEND_BATCH: usize = 256;

/// A bound media socket with its kernel buffers sized; move it to its thread, then read and
/// write it through a [`BatchIo`] made there.
#[derive(Debug)]
pub(crate) struct MediaSocket {
    socket: UdpSocket,
    buffer_sizes: (usize, usize),
}

impl MediaSocket {
    /// Binds `addr`, with receive and send buffers of `buffer` bytes where the kernel allows
    /// (its defaults for `None`).
    pub(crate) fn bind(addr: SocketAddr, buffer: Option<usize>) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if let Some(size) = buffer {
            // Refused sizes are not fatal: the kernel's defaults still work, only less
            // forgivingly; buffer_sizes() says what we got.
            let _ = socket.set_recv_buffer_size(size);
            let _ = socket.set_send_buffer_size(size);
        }
        socket.bind(&addr.into())?;
        let buffer_sizes = (socket.recv_buffer_size()?, socket.send_buffer_size()?);
        Ok(Self {
            socket: socket.into(),
            buffer_sizes,
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receive and send buffer sizes the kernel granted, as it reports them.
    pub(crate) fn buffer_sizes(&self) -> (usize, usize) {
        self.buffer_sizes
    }
}

/// Batched reads and writes of one [`MediaSocket`], owned by its media thread.
pub(crate) struct BatchIo {
    socket: UdpSocket,
    #[cfg(target_os = "linux")]
    batch: linux::Batch,
    #[cfg(not(target_os = "linux"))]
    buffer: Vec<u8>,
}

impl BatchIo {
    /// Takes the socket over (call on the thread that will use it).
    pub(crate) fn new(socket: MediaSocket) -> Self {
        Self {
            socket: socket.socket,
            #[cfg(target_os = "linux")]
            batch: linux::Batch::new(),
            #[cfg(not(target_os = "linux"))]
            buffer: vec![0; MAX_DATAGRAM],
        }
    }

    /// Waits up to `timeout` for a datagram, then hands every queued one (up to a batch) to
    /// `handle` as `(source, contents)`. Returns how many there were; 0 after a timeout.
    ///
    /// # Errors
    ///
    /// Socket errors other than timeouts, interruptions and ICMP errors of a vanished peer
    /// (`ECONNREFUSED`), which count as nothing received.
    pub(crate) fn recv(
        &mut self,
        timeout: Duration,
        mut handle: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            let received = self.batch.recv(&self.socket, timeout);
            let count = match received {
                Ok(count) => count,
                Err(err) if is_transient(err.kind()) => 0,
                Err(err) => return Err(err),
            };
            for (source, contents) in self.batch.received() {
                handle(source, contents);
            }
            Ok(count)
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.socket
                .set_read_timeout(Some(timeout.max(Duration::from_micros(1))))?;
            match self.socket.recv_from(&mut self.buffer) {
                Ok((len, source)) => {
                    handle(source, self.buffer.get(..len).unwrap_or_default());
                    Ok(1)
                }
                Err(err) if is_transient(err.kind()) => Ok(0),
                Err(err) => Err(err),
            }
        }
    }

    /// Sends `datagrams` in order and empties it. A datagram the kernel refuses (an
    /// unreachable destination) is dropped: it concerns one peer's path, the others carry on.
    pub(crate) fn send(&mut self, datagrams: &mut Vec<(SocketAddr, Vec<u8>)>) {
        self.send_in_chunks_of(datagrams, SEND_BATCH);
    }

    /// [`send`](Self::send) with at most `chunk` datagrams per system call.
    fn send_in_chunks_of(&mut self, datagrams: &mut Vec<(SocketAddr, Vec<u8>)>, chunk: usize) {
        #[cfg(target_os = "linux")]
        self.batch.send(&self.socket, datagrams, chunk);
        #[cfg(not(target_os = "linux"))]
        let _ = chunk;
        #[cfg(not(target_os = "linux"))]
        for (destination, datagram) in datagrams.iter() {
            let _ = self.socket.send_to(datagram, destination);
        }
        datagrams.clear();
    }
}

fn is_transient(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

/// `ppoll`, `recvmmsg` and `sendmmsg` through libc: the crate's only unsafe code.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux {
    use std::io;
    use std::mem::size_of;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use super::{MAX_DATAGRAM, RECV_BATCH, SEND_BATCH};

    /// Buffers and message headers reused by every call. The headers hold raw pointers into
    /// the buffers, filled in right before each call, so a `Batch` stays on its thread.
    pub(super) struct Batch {
        buffers: Box<[[u8; MAX_DATAGRAM]]>,
        sources: Box<[libc::sockaddr_storage]>,
        lengths: Vec<usize>,
        /// The last read filled the batch, so more is likely queued: read without waiting.
        full: bool,
        destinations: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
        iovecs: Vec<libc::iovec>,
        headers: Vec<libc::mmsghdr>,
    }

    fn zeroed_storage() -> libc::sockaddr_storage {
        // SAFETY: sockaddr_storage is a plain C struct; all-zero bytes are a valid value
        // (family AF_UNSPEC).
        unsafe { std::mem::zeroed() }
    }

    fn empty_header() -> libc::mmsghdr {
        // SAFETY: mmsghdr is a plain C struct; all-zero bytes are a valid value (null
        // pointers, zero lengths).
        unsafe { std::mem::zeroed() }
    }

    /// `addr` as a C socket address and its length.
    fn to_storage(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        let mut storage = zeroed_storage();
        let storage_ptr: *mut libc::sockaddr_storage = &mut storage;
        let len = match addr {
            SocketAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*v4.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for every sockaddr_*.
                unsafe { storage_ptr.cast::<libc::sockaddr_in>().write(sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo().to_be(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.ip().octets(),
                    },
                    sin6_scope_id: v6.scope_id(),
                };
                // SAFETY: as above.
                unsafe { storage_ptr.cast::<libc::sockaddr_in6>().write(sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        (storage, len as libc::socklen_t)
    }

    /// The address the kernel wrote into `storage`, if IPv4 or IPv6.
    fn from_storage(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
        let ptr: *const libc::sockaddr_storage = storage;
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the kernel wrote a sockaddr_in; storage is large
                // enough and aligned for it.
                let sin = unsafe { ptr.cast::<libc::sockaddr_in>().read() };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { ptr.cast::<libc::sockaddr_in6>().read() };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    u32::from_be(sin6.sin6_flowinfo),
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    impl Batch {
        pub(super) fn new() -> Self {
            Self {
                buffers: vec![[0; MAX_DATAGRAM]; RECV_BATCH].into_boxed_slice(),
                sources: vec![zeroed_storage(); RECV_BATCH].into_boxed_slice(),
                lengths: Vec::with_capacity(RECV_BATCH),
                full: false,
                destinations: Vec::with_capacity(SEND_BATCH),
                iovecs: Vec::with_capacity(RECV_BATCH.max(SEND_BATCH)),
                headers: Vec::with_capacity(RECV_BATCH.max(SEND_BATCH)),
            }
        }

        /// Waits up to `timeout` for the socket to be readable (unless the last read filled
        /// the batch), then reads what is queued, up to `RECV_BATCH` datagrams.
        pub(super) fn recv(&mut self, socket: &UdpSocket, timeout: Duration) -> io::Result<usize> {
            self.lengths.clear();
            let fd = socket.as_raw_fd();
            if !self.full {
                let mut pollfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                let timespec = libc::timespec {
                    tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
                    // Below 10^9, so it fits a c_long of any width.
                    tv_nsec: timeout.subsec_nanos() as libc::c_long,
                };
                // SAFETY: one valid pollfd, a valid timespec, no signal mask; all outlive the
                // call.
                let ready = unsafe { libc::ppoll(&mut pollfd, 1, &timespec, std::ptr::null()) };
                if ready < 0 {
                    return Err(io::Error::last_os_error());
                }
                if ready == 0 {
                    return Ok(0);
                }
            }
            self.iovecs.clear();
            self.iovecs
                .extend(self.buffers.iter_mut().map(|buffer| libc::iovec {
                    iov_base: buffer.as_mut_ptr().cast(),
                    iov_len: MAX_DATAGRAM,
                }));
            self.headers.clear();
            for (iovec, source) in self.iovecs.iter_mut().zip(self.sources.iter_mut()) {
                let mut header = empty_header();
                header.msg_hdr.msg_name = std::ptr::from_mut(source).cast();
                header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                header.msg_hdr.msg_iov = iovec;
                header.msg_hdr.msg_iovlen = 1;
                self.headers.push(header);
            }
            // SAFETY: every header points at a live iovec, buffer and sockaddr_storage of the
            // stated sizes, all owned by `self` and untouched until the call returns; the
            // kernel fills at most `headers.len()` entries.
            let received = unsafe {
                libc::recvmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
                    self.headers.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if received < 0 {
                self.full = false;
                return Err(io::Error::last_os_error());
            }
            let received = usize::try_from(received).unwrap_or(0);
            self.lengths.extend(
                self.headers
                    .iter()
                    .take(received)
                    .map(|h| (h.msg_len as usize).min(MAX_DATAGRAM)),
            );
            self.full = received == self.headers.len();
            Ok(received)
        }

        /// The datagrams of the last `recv`, as `(source, contents)`.
        pub(super) fn received(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
            self.lengths
                .iter()
                .zip(self.buffers.iter())
                .zip(self.sources.iter())
                .filter_map(|((&len, buffer), source)| {
                    Some((from_storage(source)?, buffer.get(..len)?))
                })
        }

        /// Sends every datagram with as few `sendmmsg` calls as the kernel allows.
        pub(super) fn send(
            &mut self,
            socket: &UdpSocket,
            datagrams: &[(SocketAddr, Vec<u8>)],
            chunk_size: usize,
        ) {
            let fd = socket.as_raw_fd();
            for chunk in datagrams.chunks(chunk_size.clamp(1, SEND_BATCH)) {
                self.destinations.clear();
                self.iovecs.clear();
                self.headers.clear();
                for (destination, datagram) in chunk {
                    self.destinations.push(to_storage(destination));
                    self.iovecs.push(libc::iovec {
                        // The kernel only reads through this pointer (sendmmsg).
                        iov_base: datagram.as_ptr().cast_mut().cast(),
                        iov_len: datagram.len(),
                    });
                }
                for (iovec, (destination, len)) in
                    self.iovecs.iter_mut().zip(self.destinations.iter_mut())
                {
                    let mut header = empty_header();
                    header.msg_hdr.msg_name = std::ptr::from_mut(destination).cast();
                    header.msg_hdr.msg_namelen = *len;
                    header.msg_hdr.msg_iov = iovec;
                    header.msg_hdr.msg_iovlen = 1;
                    self.headers.push(header);
                }
                let mut start = 0;
                while let Some(rest) = self.headers.get_mut(start..).filter(|r| !r.is_empty()) {
                    // SAFETY: every header points at a live iovec, datagram and sockaddr of the
                    // stated sizes (owned by `self` or borrowed from `datagrams` for this
                    // call); the kernel only reads them.
                    let sent = unsafe {
                        libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0)
                    };
                    match usize::try_from(sent) {
                        Ok(sent) if sent > 0 => start += sent,
                        // The first remaining datagram failed (e.g. EINVAL, ENETUNREACH):
                        // drop it, send the rest. An interrupted call is retried.
                        _ => {
                            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                                start += 1;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn roundtrip(ip: IpAddr) {
        let any = SocketAddr::new(ip, 0);
        let socket = MediaSocket::bind(any, Some(SOCKET_BUFFER)).unwrap();
        let (recv_buffer, send_buffer) = socket.buffer_sizes();
        assert!(recv_buffer > 0 && send_buffer > 0);
        let local = socket.local_addr().unwrap();
        let peer = UdpSocket::bind(any).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let mut io = BatchIo::new(socket);
        for n in 0..100_u8 {
            peer.send_to(&[n; 3], local).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < 100 {
            let count = io
                .recv(Duration::from_secs(2), |source, contents| {
                    assert_eq!(source, peer_addr);
                    got.push(contents.to_vec());
                })
                .unwrap();
            assert!(count > 0, "timed out after {}", got.len());
        }
        assert_eq!(got, (0..100_u8).map(|n| vec![n; 3]).collect::<Vec<_>>());
        // Nothing queued: a short timeout gives nothing.
        assert_eq!(io.recv(Duration::from_millis(10), |_, _| {}).unwrap(), 0);

        // More than one sendmmsg holds, fewer than the peer's default receive buffer holds.
        let mut out: Vec<_> = (0..120_u16)
            .map(|n| (peer_addr, n.to_be_bytes().to_vec()))
            .collect();
        io.send_in_chunks_of(&mut out, 50);
        assert!(out.is_empty());
        let mut buf = [0; 16];
        for n in 0..120_u16 {
            let (len, source) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(source, local);
            assert_eq!(&buf[..len], n.to_be_bytes());
        }
    }

    #[test]
    fn batches_arrive_whole_and_in_order_over_ipv4() {
        roundtrip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn batches_arrive_whole_and_in_order_over_ipv6() {
        roundtrip(IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn a_bad_destination_does_not_stop_the_others() {
        let socket = MediaSocket::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let local = socket.local_addr().unwrap();
        let mut io = BatchIo::new(socket);
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        // Port 0 is refused by the kernel (EINVAL); an IPv6 destination on an IPv4 socket too.
        let mut out = vec![
            (peer_addr, vec![1]),
            ("127.0.0.1:0".parse().unwrap(), vec![2]),
            ("[::1]:9".parse().unwrap(), vec![3]),
            (peer_addr, vec![4]),
        ];
        io.send(&mut out);
        let mut buf = [0; 4];
        for expected in [1, 4] {
            let (len, source) = peer.recv_from(&mut buf).unwrap();
            assert_eq!((source, &buf[..len]), (local, &[expected][..]));
        }
    }
}
