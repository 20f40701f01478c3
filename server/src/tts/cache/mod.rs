//! The shared audio cache: content-addressed, indexed in Postgres (so every
//! instance shares it), stored in chunks as audio streams in, bounded in
//! size with least-recently-used eviction. Finished entries may move to an
//! S3 bucket (`bucket`, `moving`), Postgres keeping the index. Small hot entries are also kept
//! in a bounded in-process map so a cache hit rarely needs the database;
//! large ones are streamed from Postgres a few chunks at a time, so a
//! request holds a bounded amount of memory however long the audio.

mod bucket;
mod memory;
mod moving;
mod store;

use bytes::Bytes;

pub use bucket::{Bucket, BucketError};
pub use memory::Memory;
pub use moving::*;
pub use store::*;

/// A complete cached audio file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub content_type: String,
    pub data: Bytes,
    pub duration_ms: Option<i64>,
    /// Hash of `data`; `None` for entries stored before hashing.
    pub etag: Option<String>,
}

/// Entries larger than this are streamed from Postgres, never held whole.
pub const MEMORY_ENTRY_MAX: usize = 1024 * 1024;

/// A complete entry too large to hold in memory: what is known without
/// reading its bytes.
#[derive(Debug, Clone)]
pub struct Stored {
    pub content_type: String,
    pub size: u64,
    pub duration_ms: Option<i64>,
    pub etag: Option<String>,
}

/// What the cache holds for a key.
pub enum Found {
    Whole(Entry),
    Large(Stored),
    /// In the audio bucket, as `object`.
    Bucket {
        stored: Stored,
        object: String,
    },
}

/// A short content hash for ETags.
pub fn etag_of(hash: &[u8]) -> String {
    hex::encode(&hash[..16])
}
