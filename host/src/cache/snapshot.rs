//! The cache on disk: one file holding the entries and the index, replaced atomically (written
//! to a temporary file, flushed, renamed), so a crash mid-write leaves the previous snapshot.
//!
//! Layout: the magic line, the entries' JSON length (u64, little-endian), the entries as JSON,
//! then the usearch index as it serialises itself.

use super::entries::Entry;
use std::path::Path;

const MAGIC: &[u8] = b"aigw-cache-snapshot v1\n";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read {0}")]
    Io(#[from] std::io::Error),
    #[error("not a cache snapshot (or one from another version)")]
    Format,
    #[error("the entries are unreadable: {0}")]
    Entries(#[from] serde_json::Error),
}

/// The snapshot file's bytes.
pub fn encode(entries: &[&Entry], index: &[u8]) -> Result<Vec<u8>, SnapshotError> {
    let json = serde_json::to_vec(entries)?;
    let mut bytes = Vec::with_capacity(MAGIC.len() + 8 + json.len() + index.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&u64::try_from(json.len()).unwrap_or(u64::MAX).to_le_bytes());
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(index);
    Ok(bytes)
}

pub fn write(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    crate::fsutil::write_atomically(path, bytes)?;
    Ok(())
}

/// A snapshot's entries and its serialised index.
pub type Snapshot = (Vec<Entry>, Vec<u8>);

/// The entries and the index bytes; `None` when there is no snapshot yet.
pub fn read(path: &Path) -> Result<Option<Snapshot>, SnapshotError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let rest = bytes.strip_prefix(MAGIC).ok_or(SnapshotError::Format)?;
    let (length, rest) = rest.split_first_chunk::<8>().ok_or(SnapshotError::Format)?;
    let length = usize::try_from(u64::from_le_bytes(*length)).map_err(|_| SnapshotError::Format)?;
    if rest.len() < length {
        return Err(SnapshotError::Format);
    }
    let (json, index) = rest.split_at(length);
    Ok(Some((serde_json::from_slice(json)?, index.to_vec())))
}
