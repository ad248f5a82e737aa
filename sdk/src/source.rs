//! The [`Source`] trait and the glue from the generated `source` world exports to it.

use serde::de::DeserializeOwned;

use crate::{
    ChangeReader, ChangeWriter, Info, ItemReader, ItemWriter, PluginError, Result, VerifyReport,
};

/// A plugin that captures a consistent copy of a system and puts it back.
///
/// Every call gets the options already parsed and validated; errors in them name the field.
pub trait Source {
    /// The options object from the config (`[source.options]`).
    type Options: DeserializeOwned;

    fn info() -> Info;

    /// Checks options beyond what parsing checks (paths absolute, values in range).
    fn validate(_options: &Self::Options) -> Result<()> {
        Ok(())
    }

    /// Captures one consistent copy into `writer`.
    fn backup(options: &Self::Options, writer: &ItemWriter) -> Result<()>;

    /// Puts the copy back at `target`: a guest path granted read-write, or a URL.
    fn restore(options: &Self::Options, reader: &ItemReader, target: &str) -> Result<()>;

    /// Restores into `scratch` and checks the copy; never touches the live system.
    fn verify(options: &Self::Options, reader: &ItemReader, scratch: &str) -> Result<VerifyReport>;

    /// Continuous capture (optional): follows the system until `changes.wait()` says
    /// stop, going on from `changes.resume_point()` when it can, otherwise writing a
    /// snapshot into `items` between `changes.begin_snapshot()` and `begin_chain`, then
    /// appending what changed at each sync. The default says the source does not offer it.
    fn follow(
        _options: &Self::Options,
        _max_log: u64,
        _items: &ItemWriter,
        _changes: &ChangeWriter,
    ) -> Result<()> {
        Err(no_continuous_capture::<Self>())
    }

    /// Applies the segments `changes` hands out onto the snapshot restored at `target`,
    /// and checks the result (for sources that implement [`Source::follow`]).
    fn apply(_options: &Self::Options, _changes: &ChangeReader, _target: &str) -> Result<()> {
        Err(no_continuous_capture::<Self>())
    }
}

fn no_continuous_capture<T: Source + ?Sized>() -> PluginError {
    PluginError::permanent(format!(
        "the `{}` source does not offer continuous capture: back it up with `cairn backup`",
        T::info().name
    ))
}

/// Registers a [`Source`] implementation as the component's `source` export.
#[macro_export]
macro_rules! export_source {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __CairnSourceExport;

        impl $crate::__private::SourceGuest for __CairnSourceExport {
            fn info() -> $crate::bindings::cairn::plugin::types::PluginInfo {
                $crate::__private::source::info::<$plugin>()
            }
            fn validate(options: String) -> Result<(), $crate::PluginError> {
                $crate::__private::source::validate::<$plugin>(&options)
            }
            fn backup(
                options: String,
                writer: &$crate::ItemWriter,
            ) -> Result<(), $crate::PluginError> {
                $crate::__private::source::backup::<$plugin>(&options, writer)
            }
            fn restore(
                options: String,
                reader: &$crate::ItemReader,
                target: String,
            ) -> Result<(), $crate::PluginError> {
                $crate::__private::source::restore::<$plugin>(&options, reader, &target)
            }
            fn verify(
                options: String,
                reader: &$crate::ItemReader,
                scratch: String,
            ) -> Result<$crate::VerifyReport, $crate::PluginError> {
                $crate::__private::source::verify::<$plugin>(&options, reader, &scratch)
            }
        }

        impl $crate::__private::ChangeStreamGuest for __CairnSourceExport {
            fn follow(
                options: String,
                max_log: u64,
                items: &$crate::ItemWriter,
                changes: &$crate::ChangeWriter,
            ) -> Result<(), $crate::PluginError> {
                $crate::__private::source::follow::<$plugin>(&options, max_log, items, changes)
            }
            fn apply(
                options: String,
                changes: &$crate::ChangeReader,
                target: String,
            ) -> Result<(), $crate::PluginError> {
                $crate::__private::source::apply::<$plugin>(&options, changes, &target)
            }
        }

        $crate::bindings::__export_source_world!(__CairnSourceExport);
    };
}

#[doc(hidden)]
pub mod adapter {
    use super::*;
    use crate::bindings::cairn::plugin::types::{PluginInfo, PluginKind};
    use crate::options;

    fn parsed<T: Source>(options: &str) -> Result<T::Options> {
        let parsed = options::parse::<T::Options>(options)?;
        T::validate(&parsed)?;
        Ok(parsed)
    }

    pub fn info<T: Source>() -> PluginInfo {
        T::info().into_wit(PluginKind::Source)
    }

    pub fn validate<T: Source>(options: &str) -> Result<()> {
        parsed::<T>(options).map(drop)
    }

    pub fn backup<T: Source>(options: &str, writer: &ItemWriter) -> Result<()> {
        T::backup(&parsed::<T>(options)?, writer)
    }

    pub fn restore<T: Source>(options: &str, reader: &ItemReader, target: &str) -> Result<()> {
        T::restore(&parsed::<T>(options)?, reader, target)
    }

    pub fn verify<T: Source>(
        options: &str,
        reader: &ItemReader,
        scratch: &str,
    ) -> Result<VerifyReport> {
        T::verify(&parsed::<T>(options)?, reader, scratch)
    }

    pub fn follow<T: Source>(
        options: &str,
        max_log: u64,
        items: &ItemWriter,
        changes: &ChangeWriter,
    ) -> Result<()> {
        T::follow(&parsed::<T>(options)?, max_log, items, changes)
    }

    pub fn apply<T: Source>(options: &str, changes: &ChangeReader, target: &str) -> Result<()> {
        T::apply(&parsed::<T>(options)?, changes, target)
    }
}
