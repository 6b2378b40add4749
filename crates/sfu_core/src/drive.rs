//! Driving one str0m `Rtc` with a panic fence around it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use str0m::net::{Protocol, Receive};
use str0m::{Event, Input, Output, Rtc};

/// A datagram to send: destination and bytes.
pub(crate) type Datagram = (SocketAddr, Vec<u8>);

/// What one drive produced besides datagrams.
#[derive(Debug, Default)]
pub(crate) struct Driven {
    /// str0m events, in order.
    pub(crate) events: Vec<Event>,
    /// When the `Rtc` wants its next timeout.
    pub(crate) next_timeout: Option<Instant>,
    /// Whether str0m took the fed datagram without error (false for other feeds).
    pub(crate) accepted: bool,
}

/// Why a drive failed: the `Rtc` must be discarded.
#[derive(Debug)]
pub(crate) struct Fatal(pub(crate) String);

/// What to feed before polling.
pub(crate) enum Feed<'a> {
    /// Nothing: only collect outputs (after an API call such as `write_rtp`).
    Nothing,
    /// Time passed.
    Timeout(Instant),
    /// A datagram arrived from `source` at our `destination`.
    Datagram {
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &'a [u8],
    },
}

/// Feeds `feed` to `rtc` and polls it until it wants a timeout, appending datagrams to
/// `transmits`.
///
/// Input str0m rejects (garbage, a replayed or foreign packet) is ignored: one bad datagram
/// must not end a call. A failing `poll_output`, or a panic anywhere inside str0m, is
/// [`Fatal`]: the caller drops this `Rtc` (str0m has no shared state, so dropping it after a
/// caught panic is safe) and nothing else.
///
/// Returns `Ok(None)` for input that is not even a datagram str0m recognises.
pub(crate) fn drive(
    rtc: &mut Rtc,
    feed: Feed<'_>,
    transmits: &mut VecDeque<Datagram>,
) -> Result<Option<Driven>, Fatal> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut accepted = false;
        match feed {
            Feed::Nothing => {}
            Feed::Timeout(now) => {
                if let Err(err) = rtc.handle_input(Input::Timeout(now)) {
                    return Err(Fatal(format!("timeout: {err}")));
                }
            }
            Feed::Datagram {
                now,
                source,
                destination,
                contents,
            } => {
                let Ok(receive) = Receive::new(Protocol::Udp, source, destination, contents) else {
                    return Ok(None);
                };
                let input = Input::Receive(now, receive);
                if !rtc.accepts(&input) {
                    return Ok(None);
                }
                // A rejected datagram is dropped, the session continues.
                accepted = rtc.handle_input(input).is_ok();
            }
        }
        let mut driven = Driven {
            accepted,
            ..Driven::default()
        };
        loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    driven.next_timeout = Some(at);
                    return Ok(Some(driven));
                }
                Ok(Output::Transmit(t)) => transmits.push_back((t.destination, t.contents.into())),
                Ok(Output::Event(event)) => driven.events.push(event),
                Err(err) => return Err(Fatal(format!("{err}"))),
            }
        }
    }));
    match result {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(Fatal(format!("panic in WebRTC stack: {message}")))
        }
    }
}

/// Runs `f` on `rtc` behind the same panic fence (for SDP calls).
pub(crate) fn fenced<T>(f: impl FnOnce() -> T) -> Result<T, Fatal> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| Fatal("panic in WebRTC stack".to_owned()))
}
