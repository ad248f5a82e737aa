//! The crate cairn plugin authors depend on.
//!
//! A plugin is a WASM component implementing one world of the `cairn:plugin` WIT package:
//! a [`Source`] captures and restores a system, a [`Sink`] stores immutable objects. This
//! crate hides wit-bindgen: implement a trait, register it with [`export_source!`] or
//! [`export_sink!`], and build with `cargo build --target wasm32-wasip2 --release`.
//!
//! Enable exactly one of the features `source` or `sink`. With the `testing` feature (on a
//! native target) [`testing`] runs a built plugin in the real cairn runtime.

extern crate self as cairn_sdk;

#[cfg(all(feature = "source", feature = "sink"))]
compile_error!(
    "enable only one of the features `source` and `sink`: a component implements one world"
);

#[cfg(any(feature = "source", feature = "sink"))]
pub mod bindings;
#[cfg(feature = "source")]
mod checks;
#[cfg(any(feature = "source", feature = "sink"))]
mod error;
#[cfg(any(feature = "source", feature = "sink"))]
pub mod host;
#[cfg(any(feature = "source", feature = "sink"))]
mod info;
#[cfg(feature = "sink")]
pub mod object_store;
pub mod options;
#[cfg(feature = "source")]
pub mod postgres;
#[cfg(feature = "sink")]
mod sink;
#[cfg(feature = "source")]
mod source;
#[cfg(feature = "source")]
pub mod sqlite;

#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;

/// The version of the `cairn:plugin` WIT package this SDK builds against.
pub const WIT_VERSION: &str = "0.1.1";

#[cfg(any(feature = "source", feature = "sink"))]
pub use bindings::cairn::plugin::bulk::Blob;
#[cfg(any(feature = "source", feature = "sink"))]
pub use bindings::cairn::plugin::files;
#[cfg(any(feature = "source", feature = "sink"))]
pub use bindings::cairn::plugin::types::{
    Annotation, CheckResult, Chunking, ConfigError, ItemKind, ItemMeta, LogLevel, PluginError,
    RestoreTarget, VerifyReport,
};
#[cfg(any(feature = "source", feature = "sink"))]
pub use error::Result;
#[cfg(any(feature = "source", feature = "sink"))]
pub use info::Info;

#[cfg(feature = "source")]
pub use bindings::cairn::plugin::backup_io::{BlobItem, ItemStream, ItemWriter, StoreAhead};
#[cfg(feature = "source")]
pub use bindings::cairn::plugin::change_io::{ChangeReader, ChangeWriter, FollowStep};
#[cfg(feature = "source")]
pub use bindings::cairn::plugin::restore_io::{ItemReader, RestoreFlags};
#[cfg(feature = "source")]
pub use source::Source;

#[cfg(feature = "sink")]
pub use bindings::exports::cairn::plugin::sink::ObjectInfo;
#[cfg(feature = "sink")]
pub use sink::{Sink, Store};

/// What the export macros expand to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(any(feature = "source", feature = "sink"))]
    pub use wit_bindgen;

    #[cfg(feature = "source")]
    pub use crate::bindings::exports::cairn::plugin::change_stream::Guest as ChangeStreamGuest;
    #[cfg(feature = "source")]
    pub use crate::bindings::exports::cairn::plugin::source::Guest as SourceGuest;
    #[cfg(feature = "source")]
    pub use crate::source::adapter as source;

    #[cfg(feature = "sink")]
    pub use crate::bindings::exports::cairn::plugin::sink::{
        Guest as SinkGuest, GuestStore, Store as StoreHandle,
    };
    #[cfg(feature = "sink")]
    pub use crate::sink::adapter as sink;
}
