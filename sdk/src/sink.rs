//! The [`Sink`] and [`Store`] traits and the glue from the generated `sink` world to them.

use serde::de::DeserializeOwned;

use crate::{Blob, Info, ObjectInfo, Result};

/// A plugin that stores immutable objects somewhere.
pub trait Sink {
    /// The options object from the config (`[repository.options]`).
    type Options: DeserializeOwned;
    type Store: Store;

    fn info() -> Info;

    fn validate(_options: &Self::Options) -> Result<()> {
        Ok(())
    }

    /// Connects to the storage; called once per plugin instance.
    fn open(options: &Self::Options) -> Result<Self::Store>;
}

/// An open store. Names are `/`-separated keys such as `data/ab/abcdef…`.
pub trait Store: 'static {
    /// Writes an object, replacing any object of that name.
    fn put(&self, name: &str, contents: &Blob) -> Result<()>;
    /// Writes an object only if none of that name exists (`PluginError::AlreadyExists`).
    fn put_new(&self, name: &str, contents: &Blob) -> Result<()>;
    fn get(&self, name: &str) -> Result<Blob>;
    fn get_range(&self, name: &str, offset: u64, length: u64) -> Result<Blob>;
    /// Objects whose name starts with `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Deletes an object; a missing object is not an error.
    fn delete(&self, name: &str) -> Result<()>;
}

/// Registers a [`Sink`] implementation as the component's `sink` export.
#[macro_export]
macro_rules! export_sink {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __CairnSinkExport;

        #[doc(hidden)]
        pub struct __CairnStoreExport(<$plugin as $crate::Sink>::Store);

        impl $crate::__private::SinkGuest for __CairnSinkExport {
            type Store = __CairnStoreExport;

            fn info() -> $crate::bindings::cairn::plugin::types::PluginInfo {
                $crate::__private::sink::info::<$plugin>()
            }
            fn validate(options: String) -> Result<(), $crate::PluginError> {
                $crate::__private::sink::validate::<$plugin>(&options)
            }
            fn open(
                options: String,
            ) -> Result<$crate::__private::StoreHandle, $crate::PluginError> {
                let store = $crate::__private::sink::open::<$plugin>(&options)?;
                Ok($crate::__private::StoreHandle::new(__CairnStoreExport(
                    store,
                )))
            }
        }

        impl $crate::__private::GuestStore for __CairnStoreExport {
            fn put(
                &self,
                name: String,
                contents: &$crate::Blob,
            ) -> Result<(), $crate::PluginError> {
                $crate::Store::put(&self.0, &name, contents)
            }
            fn put_new(
                &self,
                name: String,
                contents: &$crate::Blob,
            ) -> Result<(), $crate::PluginError> {
                $crate::Store::put_new(&self.0, &name, contents)
            }
            fn get(&self, name: String) -> Result<$crate::Blob, $crate::PluginError> {
                $crate::Store::get(&self.0, &name)
            }
            fn get_range(
                &self,
                name: String,
                offset: u64,
                length: u64,
            ) -> Result<$crate::Blob, $crate::PluginError> {
                $crate::Store::get_range(&self.0, &name, offset, length)
            }
            fn list(&self, prefix: String) -> Result<Vec<$crate::ObjectInfo>, $crate::PluginError> {
                $crate::Store::list(&self.0, &prefix)
            }
            fn delete(&self, name: String) -> Result<(), $crate::PluginError> {
                $crate::Store::delete(&self.0, &name)
            }
        }

        $crate::bindings::__export_sink_world!(__CairnSinkExport);
    };
}

#[doc(hidden)]
pub mod adapter {
    use super::*;
    use crate::bindings::cairn::plugin::types::{PluginInfo, PluginKind};
    use crate::options;

    fn parsed<T: Sink>(options: &str) -> Result<T::Options> {
        let parsed = options::parse::<T::Options>(options)?;
        T::validate(&parsed)?;
        Ok(parsed)
    }

    pub fn info<T: Sink>() -> PluginInfo {
        T::info().into_wit(PluginKind::Sink)
    }

    pub fn validate<T: Sink>(options: &str) -> Result<()> {
        parsed::<T>(options).map(drop)
    }

    pub fn open<T: Sink>(options: &str) -> Result<T::Store> {
        T::open(&parsed::<T>(options)?)
    }
}
