//! Jingle applications: what a session carries. For now the XEP-0234 file-transfer elements
//! ([`file_description`]): the `<description/>` of an offered or requested file, its XEP-0300
//! hashes, the `<range/>` of a resumed transfer, and the `<checksum/>` and `<received/>`
//! session-info payloads. Sans-IO: elements in, values out, and back.

pub mod file_description;

pub use file_description::{
    Checksum, File, FileDescription, FileDescriptionError, FileInfo, Hash, HashAlgo, HashUsed,
    Range, Received, NS_FILE_TRANSFER, NS_HASHES,
};
