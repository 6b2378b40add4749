//! The Python exception hierarchy and the mapping from crate errors to it.
//!
//! ```text
//! NativeError(Exception)
//! ├── DspError
//! │   ├── DspInputError(DspError, ValueError)      InvalidFrameSize, InvalidSampleRate,
//! │   │                                            InvalidSampleFormat, InvalidArgument
//! │   ├── CodecError(DspError)                     Codec
//! │   └── CorruptPacketError(DspError, ValueError) CorruptPacket
//! └── SfuError
//!     ├── SfuConfigError(SfuError, ValueError)     InvalidConfig
//!     ├── InvalidSdpError(SfuError, ValueError)    InvalidSdp
//!     ├── RoomFullError(SfuError)                  RoomFull
//!     ├── UnknownRoomError(SfuError, LookupError)  UnknownRoom
//!     ├── UnknownParticipantError(SfuError, LookupError)  UnknownParticipant
//!     ├── SfuIoError(SfuError, OSError)            Io
//!     ├── ParticipantExistsError(SfuError)         ParticipantExists
//!     ├── InvalidIdError(SfuError, ValueError)     InvalidId
//!     └── SfuStoppedError(SfuError)                Stopped
//! ```
//!
//! The builtin second bases let Python callers catch these the idiomatic way (`except
//! ValueError`). `create_exception!` takes a single base, so the classes are made with
//! `type(name, bases, namespace)` on first use and cached for the interpreter's lifetime.

use audio_dsp::DspError;
use pyo3::exceptions::{PyException, PyLookupError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use sfu_core::SfuError;

/// One class of the hierarchy in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NativeException {
    Native,
    Dsp,
    DspInput,
    Codec,
    CorruptPacket,
    Sfu,
    SfuConfig,
    InvalidSdp,
    RoomFull,
    UnknownRoom,
    UnknownParticipant,
    SfuIo,
    ParticipantExists,
    InvalidId,
    SfuStopped,
}

/// The builtin exception a class also derives from, besides its native parent.
#[derive(Clone, Copy)]
enum Builtin {
    Value,
    Lookup,
    Os,
}

const COUNT: usize = NativeException::ALL.len();

/// Type objects, indexed by `NativeException as usize`; filled once, read by every error path.
static TYPES: [PyOnceLock<Py<PyType>>; COUNT] = [const { PyOnceLock::new() }; COUNT];

impl NativeException {
    /// Every class, parents before children (the order they are added to the module).
    pub(crate) const ALL: [Self; 15] = [
        Self::Native,
        Self::Dsp,
        Self::DspInput,
        Self::Codec,
        Self::CorruptPacket,
        Self::Sfu,
        Self::SfuConfig,
        Self::InvalidSdp,
        Self::RoomFull,
        Self::UnknownRoom,
        Self::UnknownParticipant,
        Self::SfuIo,
        Self::ParticipantExists,
        Self::InvalidId,
        Self::SfuStopped,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Native => "NativeError",
            Self::Dsp => "DspError",
            Self::DspInput => "DspInputError",
            Self::Codec => "CodecError",
            Self::CorruptPacket => "CorruptPacketError",
            Self::Sfu => "SfuError",
            Self::SfuConfig => "SfuConfigError",
            Self::InvalidSdp => "InvalidSdpError",
            Self::RoomFull => "RoomFullError",
            Self::UnknownRoom => "UnknownRoomError",
            Self::UnknownParticipant => "UnknownParticipantError",
            Self::SfuIo => "SfuIoError",
            Self::ParticipantExists => "ParticipantExistsError",
            Self::InvalidId => "InvalidIdError",
            Self::SfuStopped => "SfuStoppedError",
        }
    }

    fn doc(self) -> &'static str {
        match self {
            Self::Native => "Base class of every error raised by voicechat._native.",
            Self::Dsp => "An audio processing error (the Rust audio_dsp crate).",
            Self::DspInput => {
                "Audio or a parameter the operation cannot accept: a byte buffer that is not a \
                 whole number of 16-bit samples, an unsupported sample format or rate, a value \
                 outside its range."
            }
            Self::Codec => "The Opus codec failed to encode or decode.",
            Self::CorruptPacket => "A received packet could not be parsed.",
            Self::Sfu => "An SFU media plane error (the Rust sfu_core crate).",
            Self::SfuConfig => "An SFU configuration value outside its accepted range.",
            Self::InvalidSdp => "An SDP offer or answer that could not be parsed or negotiated.",
            Self::RoomFull => "The room already holds its maximum number of participants.",
            Self::UnknownRoom => "No room with this id exists in the SFU.",
            Self::UnknownParticipant => "No participant with this id is in the room.",
            Self::SfuIo => {
                "A socket operation of the SFU failed; errno and strerror are set when the OS \
                 reported a code."
            }
            Self::ParticipantExists => "A participant with this id is already in a room.",
            Self::InvalidId => {
                "A room or participant id that is empty, longer than 64 characters, or has \
                 characters other than A-Z a-z 0-9 _ . -."
            }
            Self::SfuStopped => "The SFU or peer was closed; its media thread has stopped.",
        }
    }

    fn parent(self) -> Option<Self> {
        match self {
            Self::Native => None,
            Self::Dsp | Self::Sfu => Some(Self::Native),
            Self::DspInput | Self::Codec | Self::CorruptPacket => Some(Self::Dsp),
            Self::SfuConfig
            | Self::InvalidSdp
            | Self::RoomFull
            | Self::UnknownRoom
            | Self::UnknownParticipant
            | Self::SfuIo
            | Self::ParticipantExists
            | Self::InvalidId
            | Self::SfuStopped => Some(Self::Sfu),
        }
    }

    fn builtin(self) -> Option<Builtin> {
        match self {
            Self::DspInput
            | Self::CorruptPacket
            | Self::SfuConfig
            | Self::InvalidSdp
            | Self::InvalidId => Some(Builtin::Value),
            Self::UnknownRoom | Self::UnknownParticipant => Some(Builtin::Lookup),
            Self::SfuIo => Some(Builtin::Os),
            Self::Native
            | Self::Dsp
            | Self::Codec
            | Self::Sfu
            | Self::RoomFull
            | Self::ParticipantExists
            | Self::SfuStopped => None,
        }
    }

    /// The class object, created on first use.
    pub(crate) fn type_object(self, py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
        let ty = TYPES[self as usize].get_or_try_init(py, || self.create(py))?;
        Ok(ty.bind(py).clone())
    }

    fn create(self, py: Python<'_>) -> PyResult<Py<PyType>> {
        let mut bases = vec![match self.parent() {
            Some(parent) => parent.type_object(py)?,
            None => py.get_type::<PyException>(),
        }];
        bases.extend(self.builtin().map(|builtin| match builtin {
            Builtin::Value => py.get_type::<PyValueError>(),
            Builtin::Lookup => py.get_type::<PyLookupError>(),
            Builtin::Os => py.get_type::<PyOSError>(),
        }));
        let namespace = PyDict::new(py);
        namespace.set_item("__module__", crate::MODULE_NAME)?;
        namespace.set_item("__doc__", self.doc())?;
        let class =
            py.get_type::<PyType>()
                .call1((self.name(), PyTuple::new(py, bases)?, namespace))?;
        Ok(class.cast_into::<PyType>()?.unbind())
    }

    /// An exception of this class with `args` (a message, or `(errno, strerror)` for OSError).
    pub(crate) fn new_err<A>(self, py: Python<'_>, args: A) -> PyErr
    where
        A: pyo3::PyErrArguments + Send + Sync + 'static,
    {
        match self.type_object(py) {
            Ok(ty) => PyErr::from_type(ty, args),
            // Only reachable when the interpreter cannot create a class (out of memory); that
            // error is the more useful one to raise.
            Err(err) => err,
        }
    }
}

/// Adds every exception class to the top-level module.
pub(crate) fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    for exception in NativeException::ALL {
        module.add(exception.name(), exception.type_object(module.py())?)?;
    }
    Ok(())
}

/// The Python exception for an `audio_dsp` error.
pub(crate) fn dsp_error(py: Python<'_>, err: DspError) -> PyErr {
    let class = match &err {
        DspError::InvalidFrameSize { .. }
        | DspError::InvalidSampleRate(_)
        | DspError::InvalidSampleFormat(_)
        | DspError::InvalidArgument { .. } => NativeException::DspInput,
        DspError::Codec(_) => NativeException::Codec,
        DspError::CorruptPacket(_) => NativeException::CorruptPacket,
        // The enum is #[non_exhaustive]: a variant added later than this mapping still surfaces
        // as a DspError, and gets its own class when the binding learns of it.
        _ => NativeException::Dsp,
    };
    class.new_err(py, err.to_string())
}

/// The Python exception for an `sfu_core` error.
pub(crate) fn sfu_error(py: Python<'_>, err: SfuError) -> PyErr {
    let class = match &err {
        SfuError::InvalidConfig { .. } => NativeException::SfuConfig,
        SfuError::InvalidSdp(_) => NativeException::InvalidSdp,
        SfuError::RoomFull { .. } => NativeException::RoomFull,
        SfuError::UnknownRoom(_) => NativeException::UnknownRoom,
        SfuError::UnknownParticipant(_) => NativeException::UnknownParticipant,
        SfuError::ParticipantExists(_) => NativeException::ParticipantExists,
        SfuError::InvalidId { .. } => NativeException::InvalidId,
        SfuError::Stopped => NativeException::SfuStopped,
        SfuError::Io(io) => {
            // OSError(errno, strerror) fills in .errno and .strerror, as for the builtin errors.
            return match io.raw_os_error() {
                Some(errno) => NativeException::SfuIo.new_err(py, (errno, err.to_string())),
                None => NativeException::SfuIo.new_err(py, err.to_string()),
            };
        }
        // See dsp_error.
        _ => NativeException::Sfu,
    };
    class.new_err(py, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::exceptions::PyBaseException;

    /// Name of the class the error was mapped to, and whether it is also a `B`.
    fn class_of<B: pyo3::PyTypeInfo>(py: Python<'_>, err: &PyErr) -> (String, bool) {
        let name = err.get_type(py).name().unwrap().to_string();
        (name, err.is_instance_of::<B>(py))
    }

    #[test]
    fn every_dsp_variant_maps_to_its_class() {
        Python::initialize();
        Python::attach(|py| {
            let cases = [
                (
                    DspError::InvalidFrameSize {
                        len: 3,
                        expected: "even",
                    },
                    "DspInputError",
                    true,
                ),
                (DspError::InvalidSampleRate(44_100), "DspInputError", true),
                (
                    DspError::InvalidSampleFormat("f32".into()),
                    "DspInputError",
                    true,
                ),
                (
                    DspError::InvalidArgument {
                        name: "bitrate",
                        reason: "too high".into(),
                    },
                    "DspInputError",
                    true,
                ),
                (DspError::Codec("bad".into()), "CodecError", false),
                (
                    DspError::CorruptPacket("toc".into()),
                    "CorruptPacketError",
                    true,
                ),
            ];
            let base = NativeException::Dsp.type_object(py).unwrap();
            for (variant, class, is_value_error) in cases {
                let message = variant.to_string();
                let err = dsp_error(py, variant);
                assert_eq!(
                    class_of::<PyValueError>(py, &err),
                    (class.into(), is_value_error)
                );
                assert!(err.value(py).is_instance(&base).unwrap(), "{class}");
                assert_eq!(err.value(py).str().unwrap().to_string(), message);
            }
        });
    }

    #[test]
    fn every_sfu_variant_maps_to_its_class() {
        Python::initialize();
        Python::attach(|py| {
            let config = SfuError::InvalidConfig {
                field: "media_port",
                reason: "bad".into(),
            };
            let full = SfuError::RoomFull {
                room: "r".into(),
                limit: 2,
            };
            let value_errors = [
                (config, "SfuConfigError"),
                (SfuError::InvalidSdp("v=1".into()), "InvalidSdpError"),
                (
                    SfuError::InvalidId {
                        what: "room",
                        id: "a b".into(),
                    },
                    "InvalidIdError",
                ),
            ];
            for (variant, class) in value_errors {
                let err = sfu_error(py, variant);
                assert_eq!(class_of::<PyValueError>(py, &err), (class.into(), true));
            }
            let lookup_errors = [
                (SfuError::UnknownRoom("r".into()), "UnknownRoomError"),
                (
                    SfuError::UnknownParticipant("p".into()),
                    "UnknownParticipantError",
                ),
            ];
            for (variant, class) in lookup_errors {
                let err = sfu_error(py, variant);
                assert_eq!(class_of::<PyLookupError>(py, &err), (class.into(), true));
            }
            let err = sfu_error(py, full);
            assert_eq!(
                class_of::<PyValueError>(py, &err),
                ("RoomFullError".into(), false)
            );
            let base = NativeException::Sfu.type_object(py).unwrap();
            assert!(err.value(py).is_instance(&base).unwrap());
            for (variant, class) in [
                (
                    SfuError::ParticipantExists("p".into()),
                    "ParticipantExistsError",
                ),
                (SfuError::Stopped, "SfuStoppedError"),
            ] {
                let err = sfu_error(py, variant);
                assert_eq!(class_of::<PyValueError>(py, &err), (class.into(), false));
                assert!(err.value(py).is_instance(&base).unwrap());
            }
        });
    }

    #[test]
    fn io_errors_are_os_errors_with_errno() {
        Python::initialize();
        Python::attach(|py| {
            let err = sfu_error(py, std::io::Error::from_raw_os_error(98).into());
            assert_eq!(class_of::<PyOSError>(py, &err), ("SfuIoError".into(), true));
            let errno: i32 = err.value(py).getattr("errno").unwrap().extract().unwrap();
            assert_eq!(errno, 98);

            let custom = std::io::Error::other("no route");
            let err = sfu_error(py, custom.into());
            assert_eq!(class_of::<PyOSError>(py, &err), ("SfuIoError".into(), true));
            assert!(err.value(py).getattr("errno").unwrap().is_none());
        });
    }

    #[test]
    fn classes_are_created_once_under_one_base() {
        Python::initialize();
        Python::attach(|py| {
            let native = NativeException::Native.type_object(py).unwrap();
            for exception in NativeException::ALL {
                let ty = exception.type_object(py).unwrap();
                assert!(ty.is(exception.type_object(py).unwrap()), "cached");
                assert!(ty.is_subclass(&native).unwrap());
                assert!(ty.is_subclass_of::<PyBaseException>().unwrap());
                assert_eq!(ty.name().unwrap().to_string(), exception.name());
                let module: String = ty.getattr("__module__").unwrap().extract().unwrap();
                assert_eq!(module, "voicechat._native");
            }
        });
    }
}
