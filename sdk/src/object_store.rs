//! S3-compatible object storage, run natively by the host: [`connect`] to a bucket with an
//! [`S3Config`], then put (optionally create-only), get, get-range, list and delete objects
//! as [`Blob`](crate::Blob)s. The host signs requests, retries transient failures with
//! backoff, and uploads large objects in parallel parts; `plugins/sink-s3` is a complete
//! example.

pub use crate::bindings::cairn::plugin::object_store::{Bucket, ObjectEntry, S3Config, connect};
