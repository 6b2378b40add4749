//! The I/O loops: one thread per [`Sfu`] or [`Peer`], owning its UDP socket and its sans-IO
//! state machine. The controller (Python) talks to the thread through channels only.
//!
//! Threads: the media thread owns the socket, the [`SfuCore`]/[`PeerSession`] and the event
//! sender; controller threads own the [`Sfu`]/[`Peer`] handle (command sender, event
//! receiver). Controller calls are closures run on the media thread between datagrams, their
//! result sent back on a one-shot channel. A controller call wakes the thread by sending a
//! one-byte datagram from a private socket, whose address the loop recognises and skips.
//!
//! An [`Sfu`] runs [`SfuConfig::worker_threads`] media threads, each with its own
//! [`SfuCore`] and its own socket: thread `i` listens on `media_port + i` (all on OS-chosen
//! ports when `media_port` is 0). A room lives on one thread, chosen by a hash of its id, so
//! forwarding never crosses threads and each thread's demultiplexing stays one hash lookup.
//!
//! Each wake-up of a media thread reads every queued datagram (up to a batch), feeds them all
//! to the state machine, and only then takes its output and writes it in one batch (see
//! [`crate::media_socket`]): the copies of a packet for a whole room leave in one system call,
//! and the SFU drives each receiver once per batch rather than once per packet.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::core::SfuCore;
use crate::event::{ParticipantStats, SfuEvent};
use crate::media_socket::{BatchIo, MediaSocket, SOCKET_BUFFER};
use crate::peer::{PeerSession, PeerStats, ReceivedPacket};
use crate::{Result, SfuConfig, SfuError};

/// Longest the loop sleeps without a timer (so a stopped controller is noticed).
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Events buffered for the controller before new ones are dropped (and counted).
const EVENT_QUEUE: usize = 65_536;
/// Received packets buffered per peer before new ones are dropped.
const RECEIVE_QUEUE: usize = 4_096;

/// A state machine the I/O loop can drive.
trait Endpoint: Send + 'static {
    fn handle_datagram(&mut self, now: Instant, source: SocketAddr, contents: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;
    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)>;
}

impl Endpoint for SfuCore {
    fn handle_datagram(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        SfuCore::handle_datagram(self, now, source, contents);
    }
    fn handle_timeout(&mut self, now: Instant) {
        SfuCore::handle_timeout(self, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        SfuCore::poll_timeout(self)
    }
    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        SfuCore::poll_transmit(self)
    }
}

impl Endpoint for PeerSession {
    fn handle_datagram(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        PeerSession::handle_datagram(self, now, source, contents);
    }
    fn handle_timeout(&mut self, now: Instant) {
        PeerSession::handle_timeout(self, now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        PeerSession::poll_timeout(self)
    }
    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        PeerSession::poll_transmit(self)
    }
}

type Job<E> = Box<dyn FnOnce(&mut E, Instant) + Send>;

enum Command<E> {
    Run(Job<E>),
    Stop,
}

/// The controller's side of one media thread.
struct Handle<E> {
    commands: Mutex<Sender<Command<E>>>,
    waker: UdpSocket,
    local: SocketAddr,
    /// Receive and send buffer sizes the kernel granted the media socket.
    buffer_sizes: (usize, usize),
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Locks `mutex`, ignoring poisoning: the data behind these locks (channel ends, a thread
/// handle) stays valid when a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<E: Endpoint> Handle<E> {
    /// Binds `bind` (asking the kernel for `buffer` bytes of socket buffers, if given) and
    /// starts the thread. `after` runs after every loop turn on the media thread (to move
    /// events out).
    fn start(
        name: &str,
        bind: SocketAddr,
        buffer: Option<usize>,
        make: impl FnOnce(SocketAddr) -> E,
        mut after: impl FnMut(&mut E) + Send + 'static,
    ) -> Result<Self> {
        let socket = MediaSocket::bind(bind, buffer)?;
        let local = socket.local_addr()?;
        let buffer_sizes = socket.buffer_sizes();
        if let Some(asked) = buffer {
            tracing::info!(
                "{name} on {local}: socket buffers {} B receive, {} B send (asked {asked} B)",
                buffer_sizes.0,
                buffer_sizes.1,
            );
        }
        let wake_target = SocketAddr::new(reachable(local.ip()), local.port());
        let waker = UdpSocket::bind(SocketAddr::new(wake_target.ip(), 0))?;
        waker.connect(wake_target)?;
        let waker_addr = waker.local_addr()?;
        let mut endpoint = make(local);
        let (commands, receiver) = mpsc::channel::<Command<E>>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut io = BatchIo::new(socket);
                run(&mut io, waker_addr, &mut endpoint, &receiver, &mut after);
            })?;
        Ok(Self {
            commands: Mutex::new(commands),
            waker,
            local,
            buffer_sizes,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs `job` on the media thread and waits for its result.
    fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut E, Instant) -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, result) = mpsc::sync_channel(1);
        let job: Job<E> = Box::new(move |endpoint, now| {
            let _ = reply.send(job(endpoint, now));
        });
        self.post(job)?;
        result.recv().map_err(|_| SfuError::Stopped)
    }

    /// Queues `job` without waiting for it.
    fn post(&self, job: Job<E>) -> Result<()> {
        lock(&self.commands)
            .send(Command::Run(job))
            .map_err(|_| SfuError::Stopped)?;
        let _ = self.waker.send(&[0]);
        Ok(())
    }
}

impl<E> Handle<E> {
    /// Stops the thread and waits for it; idempotent.
    fn stop(&self) {
        let _ = lock(&self.commands).send(Command::Stop);
        let _ = self.waker.send(&[0]);
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl<E> Drop for Handle<E> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An address the waker can send to for a socket bound to `ip`.
fn reachable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// The media thread's loop.
fn run<E: Endpoint>(
    io: &mut BatchIo,
    waker: SocketAddr,
    endpoint: &mut E,
    commands: &Receiver<Command<E>>,
    after: &mut impl FnMut(&mut E),
) {
    let mut outgoing = Vec::new();
    loop {
        loop {
            match commands.try_recv() {
                Ok(Command::Run(job)) => job(endpoint, Instant::now()),
                Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
                    flush(io, endpoint, &mut outgoing);
                    return;
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        // A command may have left work due at once (str0m sends a written packet on its next
        // timeout): do it now rather than after the wait.
        handle_due(endpoint);
        flush(io, endpoint, &mut outgoing);
        after(endpoint);

        let now = Instant::now();
        let sleep = endpoint
            .poll_timeout()
            .map_or(MAX_SLEEP, |at| at.saturating_duration_since(now))
            .clamp(Duration::from_micros(500), MAX_SLEEP);
        // A failed read (the socket is not going away while this thread owns it) counts as
        // nothing read; the timers below still run.
        let _ = io.recv(sleep, |source, contents| {
            if source != waker {
                endpoint.handle_datagram(Instant::now(), source, contents);
            }
        });
        handle_due(endpoint);
        flush(io, endpoint, &mut outgoing);
        after(endpoint);
    }
}

fn handle_due<E: Endpoint>(endpoint: &mut E) {
    let now = Instant::now();
    if endpoint.poll_timeout().is_some_and(|at| at <= now) {
        endpoint.handle_timeout(now);
    }
}

/// Sends everything the endpoint has to send, in one batch.
fn flush<E: Endpoint>(
    io: &mut BatchIo,
    endpoint: &mut E,
    outgoing: &mut Vec<(SocketAddr, Vec<u8>)>,
) {
    while let Some(datagram) = endpoint.poll_transmit() {
        outgoing.push(datagram);
    }
    io.send(outgoing);
}

/// The SFU media plane running on its media threads: the controller's handle.
///
/// Every method is a call into the media thread that owns the room or participant; none
/// touches media state directly. Events of every thread queue up in one channel (at most
/// 65,536, then new ones are dropped and counted) until [`Sfu::poll_events`] takes them.
pub struct Sfu {
    shards: Vec<Handle<SfuCore>>,
    events: Mutex<Receiver<SfuEvent>>,
    dropped_events: Arc<AtomicU64>,
    /// Which shard each joined participant lives on (controller side only).
    homes: Mutex<HashMap<String, usize>>,
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu")
            .field("local_addrs", &self.local_addrs())
            .finish()
    }
}

/// FNV-1a: a hash that is the same in every process and release, so a room's thread (and
/// port) does not depend on a random seed.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Sfu {
    /// Binds `config.bind_ip()` on `media_port + i` for each of the `worker_threads` media
    /// threads and starts them.
    ///
    /// # Errors
    ///
    /// [`SfuError::Io`] when a port cannot be bound.
    pub fn start(config: SfuConfig) -> Result<Self> {
        let (events_tx, events) = mpsc::sync_channel(EVENT_QUEUE);
        let dropped_events = Arc::new(AtomicU64::new(0));
        let mut shards = Vec::with_capacity(config.worker_threads());
        for i in 0..config.worker_threads() {
            let port = match config.media_port() {
                0 => 0,
                base => {
                    u16::try_from(usize::from(base) + i).map_err(|_| SfuError::InvalidConfig {
                        field: "worker_threads",
                        reason: "media_port + worker_threads exceeds 65535".into(),
                    })?
                }
            };
            let bind = SocketAddr::new(config.bind_ip(), port);
            let shard_config = config.clone();
            let events_tx = events_tx.clone();
            let dropped = Arc::clone(&dropped_events);
            shards.push(Handle::start(
                &format!("voicechat-sfu-{i}"),
                bind,
                Some(SOCKET_BUFFER),
                |local| SfuCore::new(shard_config, local.port()),
                move |core: &mut SfuCore| drain_events(core, &events_tx, &dropped),
            )?);
        }
        Ok(Self {
            shards,
            events: Mutex::new(events),
            dropped_events,
            homes: Mutex::new(HashMap::new()),
        })
    }

    /// The first media thread's socket address (with the OS-chosen port when `media_port`
    /// was 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs()[0]
    }

    /// Every media thread's socket address, thread 0 first.
    #[must_use]
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shards.iter().map(|shard| shard.local).collect()
    }

    /// The receive and send buffer sizes, in bytes, that the kernel granted each media
    /// thread's socket (thread 0 first), as it reports them. The SFU asks for 4 MiB each;
    /// Linux caps that at `net.core.rmem_max` / `wmem_max` and reports twice the value.
    #[must_use]
    pub fn socket_buffer_sizes(&self) -> Vec<(usize, usize)> {
        self.shards.iter().map(|shard| shard.buffer_sizes).collect()
    }

    fn room_shard(&self, room: &str) -> &Handle<SfuCore> {
        let index = stable_hash(room) % self.shards.len() as u64;
        &self.shards[usize::try_from(index).unwrap_or(0)]
    }

    fn participant_shard(&self, participant: &str) -> Result<&Handle<SfuCore>> {
        lock(&self.homes)
            .get(participant)
            .and_then(|&i| self.shards.get(i))
            .ok_or_else(|| SfuError::UnknownParticipant(participant.to_owned()))
    }

    /// See [`SfuCore::create_room`].
    ///
    /// # Errors
    ///
    /// As [`SfuCore::create_room`], or [`SfuError::Stopped`].
    pub fn create_room(&self, room: &str, user_limit: Option<usize>) -> Result<()> {
        let room = room.to_owned();
        self.room_shard(&room)
            .call(move |core, _| core.create_room(&room, user_limit))?
    }

    /// See [`SfuCore::close_room`].
    ///
    /// # Errors
    ///
    /// As [`SfuCore::close_room`], or [`SfuError::Stopped`].
    pub fn close_room(&self, room: &str) -> Result<()> {
        let room = room.to_owned();
        self.room_shard(&room)
            .call(move |core, now| core.close_room(now, &room))?
    }

    /// See [`SfuCore::join`]; the participant joins the media thread of its room.
    ///
    /// # Errors
    ///
    /// As [`SfuCore::join`] (a participant id still present on any thread is
    /// [`SfuError::ParticipantExists`]), or [`SfuError::Stopped`].
    pub fn join(&self, room: &str, participant: &str, offer: &str) -> Result<String> {
        let index = usize::try_from(stable_hash(room) % self.shards.len() as u64).unwrap_or(0);
        let previous = lock(&self.homes).get(participant).copied();
        if let Some(other) = previous.filter(|&i| i != index) {
            let id = participant.to_owned();
            let present = self.shards[other].call(move |core, _| core.stats(&id).is_ok())?;
            if present {
                return Err(SfuError::ParticipantExists(participant.to_owned()));
            }
        }
        let (room, id, offer) = (room.to_owned(), participant.to_owned(), offer.to_owned());
        let answer =
            self.shards[index].call(move |core, now| core.join(now, &room, &id, &offer))??;
        lock(&self.homes).insert(participant.to_owned(), index);
        Ok(answer)
    }

    /// See [`SfuCore::accept_answer`].
    ///
    /// # Errors
    ///
    /// As [`SfuCore::accept_answer`], or [`SfuError::Stopped`].
    pub fn accept_answer(&self, participant: &str, answer: &str) -> Result<()> {
        let (participant, answer) = (participant.to_owned(), answer.to_owned());
        self.participant_shard(&participant)?
            .call(move |core, now| core.accept_answer(now, &participant, &answer))?
    }

    /// See [`SfuCore::pending_offer`].
    ///
    /// # Errors
    ///
    /// As [`SfuCore::pending_offer`], or [`SfuError::Stopped`].
    pub fn pending_offer(&self, participant: &str) -> Result<Option<String>> {
        let participant = participant.to_owned();
        self.participant_shard(&participant)?
            .call(move |core, _| core.pending_offer(&participant))?
    }

    /// See [`SfuCore::leave`].
    ///
    /// # Errors
    ///
    /// As [`SfuCore::leave`], or [`SfuError::Stopped`].
    pub fn leave(&self, participant: &str) -> Result<()> {
        let id = participant.to_owned();
        self.participant_shard(participant)?
            .call(move |core, now| core.leave(now, &id))??;
        lock(&self.homes).remove(participant);
        Ok(())
    }

    /// See [`SfuCore::set_muted`].
    ///
    /// # Errors
    ///
    /// As [`SfuCore::set_muted`], or [`SfuError::Stopped`].
    pub fn set_muted(&self, participant: &str, muted: bool) -> Result<()> {
        let participant = participant.to_owned();
        self.participant_shard(&participant)?
            .call(move |core, _| core.set_muted(&participant, muted))?
    }

    /// See [`SfuCore::stats`].
    ///
    /// # Errors
    ///
    /// As [`SfuCore::stats`], or [`SfuError::Stopped`].
    pub fn stats(&self, participant: &str) -> Result<ParticipantStats> {
        let participant = participant.to_owned();
        self.participant_shard(&participant)?
            .call(move |core, _| core.stats(&participant))?
    }

    /// See [`SfuCore::participants`].
    ///
    /// # Errors
    ///
    /// As [`SfuCore::participants`], or [`SfuError::Stopped`].
    pub fn participants(&self, room: &str) -> Result<Vec<String>> {
        let room = room.to_owned();
        self.room_shard(&room)
            .call(move |core, _| core.participants(&room))?
    }

    /// Datagrams that reached no participant (all threads), and events dropped because
    /// nobody polled.
    ///
    /// # Errors
    ///
    /// [`SfuError::Stopped`].
    pub fn dropped(&self) -> Result<(u64, u64)> {
        let mut datagrams = 0;
        for shard in &self.shards {
            datagrams += shard.call(|core, _| core.dropped_datagrams())?;
        }
        Ok((datagrams, self.dropped_events.load(Ordering::Relaxed)))
    }

    /// Waits up to `timeout` for the first event, then takes every queued event.
    ///
    /// # Errors
    ///
    /// [`SfuError::Stopped`] once the media threads are gone and the queue is empty.
    pub fn poll_events(&self, timeout: Duration) -> Result<Vec<SfuEvent>> {
        let taken = {
            let events = lock(&self.events);
            let first = match events.recv_timeout(timeout) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => return Ok(Vec::new()),
                Err(RecvTimeoutError::Disconnected) => return Err(SfuError::Stopped),
            };
            let mut taken = vec![first];
            taken.extend(events.try_iter());
            taken
        };
        for event in &taken {
            if let SfuEvent::Left { participant, .. } = event {
                self.forget_if_gone(participant);
            }
        }
        Ok(taken)
    }

    /// Drops a participant's home entry once its thread no longer knows it (it may have
    /// re-joined elsewhere since the event).
    fn forget_if_gone(&self, participant: &str) {
        let Ok(shard) = self.participant_shard(participant) else {
            return;
        };
        let id = participant.to_owned();
        if let Ok(false) = shard.call(move |core, _| core.stats(&id).is_ok()) {
            let mut homes = lock(&self.homes);
            // Unless a join raced us to another thread meanwhile.
            let index = self.shards.iter().position(|s| std::ptr::eq(s, shard));
            if homes.get(participant).copied() == index {
                homes.remove(participant);
            }
        }
    }

    /// Stops the media threads (participants are not told); later calls fail with
    /// [`SfuError::Stopped`]. Dropping the handle does the same.
    pub fn close(&self) {
        for shard in &self.shards {
            shard.stop();
        }
    }
}

fn drain_events(core: &mut SfuCore, events: &SyncSender<SfuEvent>, dropped: &AtomicU64) {
    while let Some(event) = core.poll_event() {
        match events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Options of a [`Peer`].
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    /// Address the peer's socket binds to (port chosen by the OS); also its host candidate.
    pub bind_ip: IpAddr,
    /// Fraction (0..1) of outgoing SRTP/SRTCP datagrams dropped, to test loss.
    pub send_loss: f64,
    /// Seed of the loss pattern and the initial RTP sequence number and timestamp.
    pub seed: u64,
}

impl Default for PeerConfig {
    /// Loopback, no loss, seed 1.
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            send_loss: 0.0,
            seed: 1,
        }
    }
}

/// A native WebRTC client peer running on its own thread: the controller's handle.
pub struct Peer {
    handle: Handle<PeerSession>,
    received: Mutex<Receiver<ReceivedPacket>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("local_addr", &self.handle.local)
            .finish()
    }
}

impl Peer {
    /// Binds a socket on `config.bind_ip` and starts the peer's thread.
    ///
    /// # Errors
    ///
    /// [`SfuError::Io`] when the socket cannot be bound.
    pub fn start(config: &PeerConfig) -> Result<Self> {
        let (received_tx, received) = mpsc::sync_channel(RECEIVE_QUEUE);
        let (loss, seed) = (config.send_loss, config.seed);
        let handle = Handle::start(
            "voicechat-peer",
            SocketAddr::new(config.bind_ip, 0),
            // A client wants fresh audio: what it cannot read in time is better dropped by
            // the kernel than played late from a deep queue.
            None,
            move |local| PeerSession::new(Instant::now(), local, loss, seed),
            move |session: &mut PeerSession| {
                while let Some(packet) = session.poll_received() {
                    if let Err(TrySendError::Disconnected(_)) = received_tx.try_send(packet) {
                        return;
                    }
                }
            },
        )?;
        Ok(Self {
            handle,
            received: Mutex::new(received),
        })
    }

    /// The peer socket's address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local
    }

    /// See [`PeerSession::offer`].
    ///
    /// # Errors
    ///
    /// As [`PeerSession::offer`], or [`SfuError::Stopped`].
    pub fn offer(&self) -> Result<String> {
        self.handle.call(|s, now| s.offer(now))?
    }

    /// See [`PeerSession::accept_answer`].
    ///
    /// # Errors
    ///
    /// As [`PeerSession::accept_answer`], or [`SfuError::Stopped`].
    pub fn accept_answer(&self, sdp: &str) -> Result<()> {
        let sdp = sdp.to_owned();
        self.handle.call(move |s, now| s.accept_answer(now, &sdp))?
    }

    /// See [`PeerSession::accept_offer`].
    ///
    /// # Errors
    ///
    /// As [`PeerSession::accept_offer`], or [`SfuError::Stopped`].
    pub fn accept_offer(&self, sdp: &str) -> Result<String> {
        let sdp = sdp.to_owned();
        self.handle.call(move |s, now| s.accept_offer(now, &sdp))?
    }

    /// Sends one Opus packet; see [`PeerSession::send_audio`]. Does not wait for the media
    /// thread.
    ///
    /// # Errors
    ///
    /// [`SfuError::Stopped`].
    pub fn send(&self, payload: Vec<u8>, audio_level: u8) -> Result<()> {
        let job: Job<PeerSession> = Box::new(move |s, now| {
            s.send_audio(now, &payload, audio_level);
        });
        self.handle.post(job)
    }

    /// Waits up to `timeout` for a packet from another participant.
    ///
    /// # Errors
    ///
    /// [`SfuError::Stopped`] once the thread is gone and nothing is queued.
    pub fn recv(&self, timeout: Duration) -> Result<Option<ReceivedPacket>> {
        match lock(&self.received).recv_timeout(timeout) {
            Ok(packet) => Ok(Some(packet)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(SfuError::Stopped),
        }
    }

    /// Whether ICE and DTLS are up.
    ///
    /// # Errors
    ///
    /// [`SfuError::Stopped`].
    pub fn is_connected(&self) -> Result<bool> {
        self.handle.call(|s, _| s.is_connected())
    }

    /// The peer's counters.
    ///
    /// # Errors
    ///
    /// [`SfuError::Stopped`].
    pub fn stats(&self) -> Result<PeerStats> {
        self.handle.call(|s, _| s.stats())
    }

    /// Stops the peer's thread without a goodbye (as if the machine vanished).
    pub fn close(&self) {
        self.handle.stop();
    }
}
