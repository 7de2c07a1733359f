//! Applications over the peer-to-peer channel: file transfer (XEP-0234) and its pieces.
//!
//! [`file_name`] makes a peer's file name safe, [`file_sink`] stores a received file (temporary
//! file, size and SHA-256 checks, then the final name), [`transfer`] moves the bytes with progress.

pub mod file_name;
pub mod file_sink;
pub mod transfer;
