//! Applications over the peer-to-peer channel: XEP-0234 file transfer and its pieces.
//!
//! [`file_transfer`] sends and receives a file over a Jingle session. Its pieces:
//! [`file_description`] holds the XEP-0234 elements (the `<description/>` of an offered or
//! requested file, its XEP-0300 hashes, the `<range/>` of a resumed transfer, the `<checksum/>`
//! and `<received/>` session-info payloads; sans-IO), [`file_name`] makes a peer's file name
//! safe, [`file_sink`] stores a received file (temporary file, size and SHA-256 checks, then the
//! final name), [`transfer`] moves the bytes with progress.

pub mod file_sink;
pub mod file_transfer;
pub mod transfer;
pub mod tube;

pub use file_description::{
    Checksum, File, FileDescription, FileDescriptionError, FileInfo, Hash, HashAlgo, HashUsed,
    Range, Received, NS_FILE_TRANSFER, NS_HASHES,
};
pub use jingle_ice_proto::apps::{file_description, file_name};
