//! The [`Source`] trait and the glue from the generated `source` world exports to it.

use serde::de::DeserializeOwned;

use crate::{Info, ItemReader, ItemWriter, Result, VerifyReport};

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
}
