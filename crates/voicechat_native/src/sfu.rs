//! `voicechat._native.sfu`: the SFU media plane from the `sfu_core` crate.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use sfu_core::{SfuConfig, SfuError};

use crate::errors::sfu_error;

/// The submodule's docstring.
pub(crate) const DOC: &str = "The SFU media plane (the Rust sfu_core crate).\n\n\
    Errors derive from voicechat._native.SfuError.";

/// Validated configuration of the SFU media plane (immutable).
///
/// Every argument is keyword-only and optional; the defaults are the ones of the Rust
/// `sfu_core::SfuConfig`.
///
/// Args:
///     bind_ip: Address the UDP media socket binds to.
///     media_port: UDP port all peers are multiplexed on; 0 lets the OS pick one.
///     public_ip: Address put in ICE candidates (VOICECHAT_PUBLIC_IP); None advertises
///         bind_ip. Required when bind_ip is unspecified (0.0.0.0 or ::).
///     worker_threads: Media I/O threads, 1 to 64.
///     max_users_per_room: Most participants one room holds, 1 to 100.
///     ice_timeout: Seconds a participant may go without ICE consent before it is dropped,
///         1 to 300.
///
/// Raises:
///     SfuConfigError: A value outside its accepted range, or an address that does not parse.
///     TypeError: A value of the wrong type (e.g. a str for media_port).
#[pyclass(module = "voicechat._native.sfu", name = "SfuConfig", frozen, eq, hash)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PySfuConfig {
    inner: SfuConfig,
}

/// `SfuError::InvalidConfig` for `field`.
fn invalid(py: Python<'_>, field: &'static str, reason: String) -> PyErr {
    sfu_error(py, SfuError::InvalidConfig { field, reason })
}

fn parse_ip(py: Python<'_>, field: &'static str, text: &str) -> PyResult<IpAddr> {
    text.parse()
        .map_err(|_| invalid(py, field, format!("{text:?} is not an IP address")))
}

/// Extracts an unsigned integer field. A Python int that does not fit `T` is an
/// `SfuConfigError` naming the field and its accepted range, not a bare OverflowError.
fn config_uint<T: TryFrom<u64>>(
    value: &Bound<'_, PyAny>,
    field: &'static str,
    accepted: &str,
) -> PyResult<T> {
    let py = value.py();
    let out_of_range = || match value.repr() {
        Ok(repr) => invalid(py, field, format!("{repr} is outside {accepted}")),
        Err(err) => err,
    };
    match value.extract::<u64>() {
        Ok(wide) => T::try_from(wide).map_err(|_| out_of_range()),
        Err(err) if err.is_instance_of::<PyOverflowError>(py) => Err(out_of_range()),
        Err(err) => Err(err),
    }
}

fn describe(range: &RangeInclusive<usize>) -> String {
    format!("{}..={}", range.start(), range.end())
}

#[pymethods]
impl PySfuConfig {
    #[new]
    #[pyo3(
        signature = (
            *,
            bind_ip = None,
            media_port = None,
            public_ip = None,
            worker_threads = None,
            max_users_per_room = None,
            ice_timeout = None,
        ),
        text_signature = "(*, bind_ip='127.0.0.1', media_port=10000, public_ip=None, \
                          worker_threads=1, max_users_per_room=50, ice_timeout=30.0)"
    )]
    fn new(
        py: Python<'_>,
        bind_ip: Option<&str>,
        media_port: Option<&Bound<'_, PyAny>>,
        public_ip: Option<&str>,
        worker_threads: Option<&Bound<'_, PyAny>>,
        max_users_per_room: Option<&Bound<'_, PyAny>>,
        ice_timeout: Option<f64>,
    ) -> PyResult<Self> {
        // Unset arguments keep the Rust defaults, which text_signature and the stub repeat
        // (tests/test_native.py checks that they agree).
        let mut builder = SfuConfig::builder();
        if let Some(ip) = bind_ip {
            builder = builder.bind_ip(parse_ip(py, "bind_ip", ip)?);
        }
        if let Some(port) = media_port {
            builder = builder.media_port(config_uint(port, "media_port", "0..=65535")?);
        }
        if let Some(ip) = public_ip {
            builder = builder.public_ip(Some(parse_ip(py, "public_ip", ip)?));
        }
        if let Some(threads) = worker_threads {
            builder = builder.worker_threads(config_uint(
                threads,
                "worker_threads",
                &describe(&SfuConfig::WORKER_THREADS_RANGE),
            )?);
        }
        if let Some(users) = max_users_per_room {
            builder = builder.max_users_per_room(config_uint(
                users,
                "max_users_per_room",
                &describe(&SfuConfig::MAX_USERS_PER_ROOM_RANGE),
            )?);
        }
        if let Some(seconds) = ice_timeout {
            let timeout = Duration::try_from_secs_f64(seconds)
                .map_err(|_| invalid(py, "ice_timeout", format!("{seconds} is not a duration")))?;
            builder = builder.ice_timeout(timeout);
        }
        let inner = builder.build().map_err(|err| sfu_error(py, err))?;
        Ok(Self { inner })
    }

    /// Address the UDP media socket binds to.
    #[getter]
    fn bind_ip(&self) -> String {
        self.inner.bind_ip().to_string()
    }

    /// UDP port all peers are multiplexed on; 0 means the OS picks one.
    #[getter]
    fn media_port(&self) -> u16 {
        self.inner.media_port()
    }

    /// Address configured for ICE candidates, or None to advertise bind_ip.
    #[getter]
    fn public_ip(&self) -> Option<String> {
        self.inner.public_ip().map(|ip| ip.to_string())
    }

    /// Address put in ICE candidates: public_ip if set, else bind_ip.
    #[getter]
    fn advertised_ip(&self) -> String {
        self.inner.advertised_ip().to_string()
    }

    /// Number of media I/O threads.
    #[getter]
    fn worker_threads(&self) -> usize {
        self.inner.worker_threads()
    }

    /// Most participants one room holds.
    #[getter]
    fn max_users_per_room(&self) -> usize {
        self.inner.max_users_per_room()
    }

    /// Seconds a participant may go without ICE consent before it is dropped.
    #[getter]
    fn ice_timeout(&self) -> f64 {
        self.inner.ice_timeout().as_secs_f64()
    }

    fn __repr__(&self) -> String {
        let public_ip = match self.inner.public_ip() {
            Some(ip) => format!("'{ip}'"),
            None => "None".to_owned(),
        };
        format!(
            "SfuConfig(bind_ip='{}', media_port={}, public_ip={}, worker_threads={}, \
             max_users_per_room={}, ice_timeout={:?})",
            self.inner.bind_ip(),
            self.inner.media_port(),
            public_ip,
            self.inner.worker_threads(),
            self.inner.max_users_per_room(),
            self.inner.ice_timeout().as_secs_f64(),
        )
    }
}

/// Fills the `sfu` submodule.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PySfuConfig>()?;
    Ok(())
}
