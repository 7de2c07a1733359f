//! The sans-IO parts of the applications carried over a Jingle session: the XEP-0234 file
//! description and its session-info payloads ([`file_description`]), safe names for files a
//! peer names ([`file_name`]), and the description of a tube ([`tube_description`]).

pub mod file_description;
pub mod file_name;
pub mod tube_description;

pub use file_description::{
    Checksum, File, FileDescription, FileDescriptionError, FileInfo, Hash, HashAlgo, HashUsed,
    Range, Received, NS_FILE_TRANSFER, NS_HASHES,
};
pub use tube_description::{TubeDescription, TubeDescriptionError, NS_TUBE};
