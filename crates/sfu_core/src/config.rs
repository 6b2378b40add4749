//! Configuration of the media plane.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::{Result, SfuError};

/// Validated configuration of the SFU media plane.
///
/// Build one with [`SfuConfig::builder`] (or take [`SfuConfig::default`]). Every field has a
/// default, so a deployment only sets what differs:
///
/// | field                | default       | accepted                                         |
/// |----------------------|---------------|--------------------------------------------------|
/// | `bind_ip`            | `127.0.0.1`   | any unicast or unspecified address               |
/// | `media_port`         | `10000`       | any; `0` lets the OS pick a free port (tests)    |
/// | `public_ip`          | none          | unicast; required when `bind_ip` is unspecified  |
/// | `worker_threads`     | `1`           | `1..=64`; `media_port + worker_threads - 1` fits |
/// | `max_users_per_room` | `50`          | `1..=100`                                        |
/// | `ice_timeout`        | 30 s          | 1 s to 300 s                                     |
///
/// All peers of one media thread are multiplexed on one UDP port: thread `i` of the
/// `worker_threads` listens on `media_port + i` (so one thread uses `media_port` alone), and
/// each room lives on one thread. `public_ip` is the address put in
/// ICE candidates (`VOICECHAT_PUBLIC_IP`); without it the SFU advertises `bind_ip`. A
/// participant whose ICE consent has not been refreshed for `ice_timeout` is dropped (RFC 7675
/// uses 30 s). Consent is a STUN check the SFU answered or an authenticated RTP packet; keep
/// `ice_timeout` well above the clients' check interval (browsers about 5 s, the native peer
/// at most 3 s when idle) or silent participants are dropped.
///
/// ```
/// use std::time::Duration;
/// use sfu_core::SfuConfig;
///
/// let config = SfuConfig::builder()
///     .media_port(10_050)
///     .max_users_per_room(100)
///     .build()?;
/// assert_eq!(config.media_port(), 10_050);
/// assert_eq!(config.ice_timeout(), Duration::from_secs(30));
/// # Ok::<(), sfu_core::SfuError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SfuConfig {
    bind_ip: IpAddr,
    media_port: u16,
    public_ip: Option<IpAddr>,
    worker_threads: usize,
    max_users_per_room: usize,
    ice_timeout: Duration,
}

impl SfuConfig {
    /// Default `bind_ip`: loopback only, so a fresh install exposes nothing.
    pub const DEFAULT_BIND_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    /// Default `media_port` (`VOICECHAT_MEDIA_PORT`).
    pub const DEFAULT_MEDIA_PORT: u16 = 10_000;
    /// Default `worker_threads`: one I/O thread carries a small community's voice.
    pub const DEFAULT_WORKER_THREADS: usize = 1;
    /// Default `max_users_per_room`.
    pub const DEFAULT_MAX_USERS_PER_ROOM: usize = 50;
    /// Default `ice_timeout` (the consent-freshness timeout of RFC 7675).
    pub const DEFAULT_ICE_TIMEOUT: Duration = Duration::from_secs(30);

    /// Accepted `worker_threads`.
    pub const WORKER_THREADS_RANGE: RangeInclusive<usize> = 1..=64;
    /// Accepted `max_users_per_room`; the spec supports rooms of up to 100 participants.
    pub const MAX_USERS_PER_ROOM_RANGE: RangeInclusive<usize> = 1..=100;
    /// Accepted `ice_timeout`.
    pub const ICE_TIMEOUT_RANGE: RangeInclusive<Duration> =
        Duration::from_secs(1)..=Duration::from_secs(300);

    /// Starts a builder holding the defaults listed on [`SfuConfig`].
    pub fn builder() -> SfuConfigBuilder {
        SfuConfigBuilder {
            config: Self::default(),
        }
    }

    /// A builder holding this configuration, to derive a changed copy.
    pub fn to_builder(&self) -> SfuConfigBuilder {
        SfuConfigBuilder {
            config: self.clone(),
        }
    }

    /// Address the media socket binds to.
    #[must_use]
    pub fn bind_ip(&self) -> IpAddr {
        self.bind_ip
    }

    /// UDP port every peer's media is multiplexed on; `0` means the OS picks one.
    #[must_use]
    pub fn media_port(&self) -> u16 {
        self.media_port
    }

    /// Address explicitly configured for ICE candidates, if any.
    #[must_use]
    pub fn public_ip(&self) -> Option<IpAddr> {
        self.public_ip
    }

    /// Address put in ICE candidates: `public_ip` if set, else `bind_ip`.
    #[must_use]
    pub fn advertised_ip(&self) -> IpAddr {
        self.public_ip.unwrap_or(self.bind_ip)
    }

    /// Number of media I/O threads; thread `i` listens on `media_port + i`.
    #[must_use]
    pub fn worker_threads(&self) -> usize {
        self.worker_threads
    }

    /// Most participants one room holds; the next join fails with [`SfuError::RoomFull`].
    #[must_use]
    pub fn max_users_per_room(&self) -> usize {
        self.max_users_per_room
    }

    /// How long a participant may go without ICE consent before it is dropped.
    #[must_use]
    pub fn ice_timeout(&self) -> Duration {
        self.ice_timeout
    }

    fn validate(&self) -> Result<()> {
        if self.bind_ip.is_multicast() {
            return Err(invalid(
                "bind_ip",
                format!("{} is a multicast address", self.bind_ip),
            ));
        }
        if let Some(public_ip) = self.public_ip {
            if public_ip.is_unspecified() || public_ip.is_multicast() {
                return Err(invalid(
                    "public_ip",
                    format!("{public_ip} cannot be put in an ICE candidate"),
                ));
            }
        } else if self.bind_ip.is_unspecified() {
            return Err(invalid(
                "public_ip",
                format!(
                    "required when bind_ip is {}: peers need an address to reach",
                    self.bind_ip
                ),
            ));
        }
        check_range(
            "worker_threads",
            self.worker_threads,
            &Self::WORKER_THREADS_RANGE,
        )?;
        check_range(
            "max_users_per_room",
            self.max_users_per_room,
            &Self::MAX_USERS_PER_ROOM_RANGE,
        )?;
        if self.media_port != 0
            && usize::from(self.media_port) + self.worker_threads - 1 > usize::from(u16::MAX)
        {
            return Err(invalid(
                "worker_threads",
                format!(
                    "{} threads from media_port {} run past port 65535",
                    self.worker_threads, self.media_port
                ),
            ));
        }
        if !Self::ICE_TIMEOUT_RANGE.contains(&self.ice_timeout) {
            return Err(invalid(
                "ice_timeout",
                format!(
                    "{:?} is outside {:?}..={:?}",
                    self.ice_timeout,
                    Self::ICE_TIMEOUT_RANGE.start(),
                    Self::ICE_TIMEOUT_RANGE.end()
                ),
            ));
        }
        Ok(())
    }
}

impl Default for SfuConfig {
    /// The defaults listed on [`SfuConfig`].
    fn default() -> Self {
        Self {
            bind_ip: Self::DEFAULT_BIND_IP,
            media_port: Self::DEFAULT_MEDIA_PORT,
            public_ip: None,
            worker_threads: Self::DEFAULT_WORKER_THREADS,
            max_users_per_room: Self::DEFAULT_MAX_USERS_PER_ROOM,
            ice_timeout: Self::DEFAULT_ICE_TIMEOUT,
        }
    }
}

/// Builder for [`SfuConfig`]; setters take any value and [`build`](Self::build) validates.
#[derive(Debug, Clone)]
#[must_use]
pub struct SfuConfigBuilder {
    config: SfuConfig,
}

impl SfuConfigBuilder {
    /// Sets the address the media socket binds to (default `127.0.0.1`).
    pub fn bind_ip(mut self, ip: IpAddr) -> Self {
        self.config.bind_ip = ip;
        self
    }

    /// Sets the UDP media port (default `10000`; `0` lets the OS pick).
    pub fn media_port(mut self, port: u16) -> Self {
        self.config.media_port = port;
        self
    }

    /// Sets or clears the address advertised in ICE candidates (default none: `bind_ip`).
    pub fn public_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.config.public_ip = ip;
        self
    }

    /// Sets the number of media I/O threads (default `1`, accepted `1..=64`).
    pub fn worker_threads(mut self, threads: usize) -> Self {
        self.config.worker_threads = threads;
        self
    }

    /// Sets the most participants one room holds (default `50`, accepted `1..=100`).
    pub fn max_users_per_room(mut self, users: usize) -> Self {
        self.config.max_users_per_room = users;
        self
    }

    /// Sets the ICE consent timeout (default 30 s, accepted 1 s to 300 s).
    pub fn ice_timeout(mut self, timeout: Duration) -> Self {
        self.config.ice_timeout = timeout;
        self
    }

    /// Checks every field and returns the configuration.
    ///
    /// # Errors
    ///
    /// [`SfuError::InvalidConfig`] naming the first field outside its accepted range (see the
    /// table on [`SfuConfig`]).
    pub fn build(self) -> Result<SfuConfig> {
        self.config.validate()?;
        Ok(self.config)
    }
}

fn invalid(field: &'static str, reason: String) -> SfuError {
    SfuError::InvalidConfig { field, reason }
}

fn check_range(field: &'static str, value: usize, range: &RangeInclusive<usize>) -> Result<()> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value} is outside {}..={}", range.start(), range.end()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn invalid_field(result: Result<SfuConfig>) -> &'static str {
        match result {
            Err(SfuError::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = SfuConfig::builder().build().unwrap();
        assert_eq!(config, SfuConfig::default());
        assert_eq!(config.bind_ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.media_port(), 10_000);
        assert_eq!(config.public_ip(), None);
        assert_eq!(config.advertised_ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.worker_threads(), 1);
        assert_eq!(config.max_users_per_room(), 50);
        assert_eq!(config.ice_timeout(), Duration::from_secs(30));
    }

    #[test]
    fn setters_are_kept() {
        let public = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        let config = SfuConfig::builder()
            .bind_ip(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
            .public_ip(Some(public))
            .media_port(0)
            .worker_threads(64)
            .max_users_per_room(100)
            .ice_timeout(Duration::from_millis(1_500))
            .build()
            .unwrap();
        assert_eq!(config.advertised_ip(), public);
        assert_eq!(config.media_port(), 0);
        assert_eq!(config.worker_threads(), 64);
        assert_eq!(config.max_users_per_room(), 100);
        assert_eq!(config.ice_timeout(), Duration::from_millis(1_500));
        let changed = config.to_builder().max_users_per_room(2).build().unwrap();
        assert_eq!(changed.max_users_per_room(), 2);
        assert_eq!(changed.advertised_ip(), public);
    }

    #[test]
    fn out_of_range_counts_are_refused() {
        assert_eq!(
            invalid_field(SfuConfig::builder().worker_threads(0).build()),
            "worker_threads"
        );
        assert_eq!(
            invalid_field(SfuConfig::builder().worker_threads(65).build()),
            "worker_threads"
        );
        assert_eq!(
            invalid_field(SfuConfig::builder().max_users_per_room(0).build()),
            "max_users_per_room"
        );
        assert_eq!(
            invalid_field(SfuConfig::builder().max_users_per_room(101).build()),
            "max_users_per_room"
        );
    }

    #[test]
    fn worker_ports_must_fit() {
        let ok = SfuConfig::builder()
            .media_port(65_535)
            .worker_threads(1)
            .build();
        assert!(ok.is_ok());
        assert_eq!(
            invalid_field(
                SfuConfig::builder()
                    .media_port(65_500)
                    .worker_threads(40)
                    .build()
            ),
            "worker_threads"
        );
        assert!(SfuConfig::builder()
            .media_port(0)
            .worker_threads(64)
            .build()
            .is_ok());
    }

    #[test]
    fn ice_timeout_bounds_are_inclusive() {
        for ok in [Duration::from_secs(1), Duration::from_secs(300)] {
            assert!(
                SfuConfig::builder().ice_timeout(ok).build().is_ok(),
                "{ok:?}"
            );
        }
        for bad in [
            Duration::ZERO,
            Duration::from_millis(999),
            Duration::from_secs(301),
        ] {
            assert_eq!(
                invalid_field(SfuConfig::builder().ice_timeout(bad).build()),
                "ice_timeout"
            );
        }
    }

    #[test]
    fn candidates_need_a_reachable_address() {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            invalid_field(SfuConfig::builder().bind_ip(any).build()),
            "public_ip"
        );
        assert_eq!(
            invalid_field(SfuConfig::builder().public_ip(Some(any)).build()),
            "public_ip"
        );
        let multicast = IpAddr::V4(Ipv4Addr::new(239, 1, 2, 3));
        assert_eq!(
            invalid_field(SfuConfig::builder().bind_ip(multicast).build()),
            "bind_ip"
        );
    }

    #[test]
    fn error_message_names_field_and_range() {
        let err = SfuConfig::builder()
            .max_users_per_room(500)
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid SFU config max_users_per_room: 500 is outside 1..=100"
        );
    }
}
