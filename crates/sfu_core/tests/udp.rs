//! The SFU and two native peers over real UDP sockets on loopback, with their threads.
// Helpers outside #[test] functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sfu_core::{Peer, PeerConfig, Sfu, SfuConfig, SfuEvent};

/// Answers the SFU's renegotiation offers until `done` holds or `timeout` passes.
fn signal(sfu: &Sfu, peers: &HashMap<&str, &Peer>, timeout: Duration, done: impl Fn() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end && !done() {
        for event in sfu.poll_events(Duration::from_millis(20)).unwrap() {
            if let SfuEvent::Offer {
                participant, sdp, ..
            } = event
            {
                let answer = peers[participant.as_str()].accept_offer(&sdp).unwrap();
                sfu.accept_answer(&participant, &answer).unwrap();
            }
        }
    }
}

#[test]
fn two_native_peers_talk_through_the_sfu() {
    let config = SfuConfig::builder().media_port(0).build().unwrap();
    let sfu = Sfu::start(config).unwrap();
    sfu.create_room("room", None).unwrap();
    let alice = Peer::start(&PeerConfig::default()).unwrap();
    let bob = Peer::start(&PeerConfig::default()).unwrap();
    for (id, peer) in [("alice", &alice), ("bob", &bob)] {
        let answer = sfu.join("room", id, &peer.offer().unwrap()).unwrap();
        peer.accept_answer(&answer).unwrap();
    }
    let peers = HashMap::from([("alice", &alice), ("bob", &bob)]);
    signal(&sfu, &peers, Duration::from_secs(10), || {
        alice.is_connected().unwrap()
            && bob.is_connected().unwrap()
            && sfu.pending_offer("alice").unwrap().is_none()
            && sfu.pending_offer("bob").unwrap().is_none()
    });
    signal(&sfu, &peers, Duration::from_millis(300), || false);
    for n in 0..50_u8 {
        alice.send(vec![31 << 3, 1, n], 20).unwrap();
        bob.send(vec![31 << 3, 2, n], 20).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut heard = HashMap::new();
    for (name, peer) in [("alice", &alice), ("bob", &bob)] {
        while let Some(packet) = peer.recv(Duration::from_millis(500)).unwrap() {
            *heard
                .entry((name, packet.participant.clone().unwrap_or_default()))
                .or_insert(0) += 1;
        }
    }
    assert_eq!(
        heard.get(&("bob", "alice".to_owned())),
        Some(&50),
        "{heard:?}"
    );
    assert_eq!(
        heard.get(&("alice", "bob".to_owned())),
        Some(&50),
        "{heard:?}"
    );
    assert_eq!(heard.len(), 2, "{heard:?}");
    let stats = sfu.stats("alice").unwrap();
    assert_eq!((stats.packets_in, stats.packets_out), (50, 50));
}

#[test]
fn rooms_spread_over_worker_threads_each_on_its_own_port() {
    let config = SfuConfig::builder()
        .media_port(0)
        .worker_threads(3)
        .build()
        .unwrap();
    let sfu = Sfu::start(config).unwrap();
    let addrs = sfu.local_addrs();
    assert_eq!(addrs.len(), 3);
    let ports: std::collections::HashSet<_> = addrs.iter().map(|a| a.port()).collect();
    assert_eq!(ports.len(), 3);
    // Six rooms over three threads, placed by a hash of their ids.
    let rooms: Vec<String> = (0..6).map(|i| format!("room-{i}")).collect();
    let mut peers = Vec::new();
    for room in &rooms {
        sfu.create_room(room, None).unwrap();
        for who in ["a", "b"] {
            let peer = Peer::start(&PeerConfig::default()).unwrap();
            let id = format!("{room}-{who}");
            let answer = sfu.join(room, &id, &peer.offer().unwrap()).unwrap();
            peer.accept_answer(&answer).unwrap();
            peers.push((id, peer));
        }
    }
    let used: std::collections::HashSet<_> = peers
        .iter()
        .map(|(id, _)| sfu.stats(id).map(|_| ()).is_ok())
        .collect();
    assert_eq!(used, std::collections::HashSet::from([true]));
    let by_id: HashMap<&str, &Peer> = peers.iter().map(|(id, p)| (id.as_str(), p)).collect();
    signal(&sfu, &by_id, Duration::from_secs(15), || {
        peers
            .iter()
            .all(|(id, p)| p.is_connected().unwrap() && sfu.pending_offer(id).unwrap().is_none())
    });
    signal(&sfu, &by_id, Duration::from_millis(300), || false);
    for (_, peer) in &peers {
        for n in 0..10_u8 {
            peer.send(vec![31 << 3, n, n], 20).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    for pair in peers.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        for (listener, speaker) in [(a, b), (b, a)] {
            let mut from = HashMap::new();
            while let Some(packet) = listener.1.recv(Duration::from_millis(200)).unwrap() {
                *from
                    .entry(packet.participant.unwrap_or_default())
                    .or_insert(0) += 1;
            }
            assert_eq!(
                from,
                HashMap::from([(speaker.0.clone(), 10)]),
                "{}",
                listener.0
            );
        }
    }
    // Ids are unique across threads.
    let extra = Peer::start(&PeerConfig::default()).unwrap();
    let offer = extra.offer().unwrap();
    let other_room = rooms
        .iter()
        .find(|r| !peers[0].0.starts_with(r.as_str()))
        .unwrap();
    assert!(matches!(
        sfu.join(other_room, &peers[0].0, &offer),
        Err(sfu_core::SfuError::ParticipantExists(_))
    ));
}

/// The SFU asks for 4 MiB socket buffers; Linux grants up to `net.core.rmem_max` /
/// `wmem_max` and reports twice what it granted.
#[cfg(target_os = "linux")]
#[test]
fn media_sockets_get_the_buffers_the_kernel_allows() {
    let sysctl = |name: &str| -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let asked = 4 << 20;
    let expected = (
        2 * sysctl("rmem_max").min(asked),
        2 * sysctl("wmem_max").min(asked),
    );
    let config = SfuConfig::builder()
        .media_port(0)
        .worker_threads(2)
        .build()
        .unwrap();
    let sfu = Sfu::start(config).unwrap();
    assert_eq!(sfu.socket_buffer_sizes(), vec![expected, expected]);
}
