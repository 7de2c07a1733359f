//! XEP-0234 Jingle File Transfer elements (`urn:xmpp:jingle:apps:file-transfer:5`) with the
//! XEP-0300 hashes they carry (`urn:xmpp:hashes:2`), read from and written to minidom
//! elements. Sans-IO: no file system, no session state.
//!
//! - [`FileDescription`]: the `<description/>` of a Jingle content (XEP-0234 §5), one
//!   [`File`]: name, size, media type, date, description, hashes, range.
//! - [`Hash`](struct@Hash), [`HashAlgo`], [`HashUsed`]: XEP-0300 §3 `<hash/>` (base64 value) and
//!   `<hash-used/>` (an algorithm announced before its value is known).
//! - [`Range`]: XEP-0234 §5 and §6.4 `<range offset length/>` for resumed and partial
//!   transfers; every offset is a `u64`, so files beyond 4 GiB work.
//! - [`Checksum`] and [`Received`]: the XEP-0234 §8 `session-info` payloads, read together
//!   with [`FileInfo`].
//!
//! Reading is strict about syntax (a size that is not a `u64`, bad base64 for a known
//! algorithm, a hash of the wrong length) and bounded (names, descriptions, hash counts), and
//! lenient where real clients differ from the XEP: Conversations writes `<mediaType>` instead
//! of `<media-type>` and leaves `creator` off `<checksum/>` and `<received/>` (see
//! `xep/0234.md`). Hashes of algorithms we do not know are kept as [`HashAlgo::Other`], never
//! an error. The file name is kept as sent: it must be sanitised before it touches a file
//! system (XEP-0234 §12).

use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use base64::Engine as _;
use minidom::Element;

use crate::jingle::element::{Creator, CONTENT_NAME_MAX_LEN};
use crate::xmpp::stanza::{set_attr, LimitExceeded, StanzaLimits};

/// Namespace of Jingle File Transfer, version 5 (XEP-0234 §5, §14.1).
pub const NS_FILE_TRANSFER: &str = "urn:xmpp:jingle:apps:file-transfer:5";
/// Namespace of XEP-0300 hashes, version 2 (base64 values; XEP-0300 §3, §11.1).
pub const NS_HASHES: &str = "urn:xmpp:hashes:2";

/// Longest `<name/>` we keep, in bytes (XEP-0234 sets no bound; file systems allow 255 bytes
/// per component, this leaves room for names that sanitising will shorten).
pub const NAME_MAX_LEN: usize = 4096;
/// Longest `<desc/>` we keep, in bytes (XEP-0234 sets no bound).
pub const DESC_MAX_LEN: usize = 4096;
/// Longest `<media-type/>` we keep, in bytes (RFC 6838 §4.2: type and subtype names are at most
/// 127 characters each).
pub const MEDIA_TYPE_MAX_LEN: usize = 255;
/// Longest `<date/>` we accept, in bytes (an XEP-0082 DateTime with a long fraction).
pub const DATE_MAX_LEN: usize = 64;
/// Longest `algo` attribute we accept, in bytes (IANA hash function textual names are short).
pub const ALGO_MAX_LEN: usize = 64;
/// Most `<hash/>` and `<hash-used/>` elements we read in one `<file/>`, and separately in one
/// `<range/>` (XEP-0300 §3 allows one per algorithm).
pub const MAX_HASHES: usize = 16;
/// Largest hash value we accept, in bytes (twice the largest digest XEP-0300 names, 64 bytes).
pub const HASH_VALUE_MAX_LEN: usize = 128;

/// Element and attribute names of XEP-0234 §5, §8 and XEP-0300 §3.
mod names {
    pub const DESCRIPTION: &str = "description";
    pub const FILE: &str = "file";
    pub const NAME: &str = "name";
    pub const SIZE: &str = "size";
    pub const MEDIA_TYPE: &str = "media-type";
    /// Conversations' spelling of `media-type` (`FileTransferDescription.of`).
    pub const MEDIA_TYPE_CAMEL: &str = "mediaType";
    pub const DATE: &str = "date";
    pub const DESC: &str = "desc";
    pub const RANGE: &str = "range";
    pub const OFFSET: &str = "offset";
    pub const LENGTH: &str = "length";
    pub const HASH: &str = "hash";
    pub const HASH_USED: &str = "hash-used";
    pub const ALGO: &str = "algo";
    pub const CHECKSUM: &str = "checksum";
    pub const RECEIVED: &str = "received";
    pub const CREATOR: &str = "creator";
}

/// What is wrong with a file-transfer or hash element. Values that came from the peer are cut
/// to a short prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileDescriptionError {
    /// The element is not the one expected (name or namespace).
    #[error("expected <{expected} xmlns='{expected_ns}'/>, found <{name} xmlns='{ns}'/>")]
    WrongElement {
        /// The expected element name.
        expected: &'static str,
        /// The expected namespace.
        expected_ns: &'static str,
        /// The name found.
        name: String,
        /// The namespace found.
        ns: String,
    },
    /// A `<description/>` or `<checksum/>` without its `<file/>` (XEP-0234 §5, §8.2).
    #[error("no <file/> child")]
    NoFile,
    /// A child that may appear once appears twice.
    #[error("<{0}/> appears more than once")]
    Duplicate(&'static str),
    /// `<size/>` is not a decimal `u64`.
    #[error("<size/> is not a u64: {0:?}")]
    InvalidSize(String),
    /// `<date/>` is not an XEP-0082 Date or DateTime.
    #[error("<date/> is not an XEP-0082 date or date-time: {0:?}")]
    InvalidDate(String),
    /// A text is longer than we keep.
    #[error("<{element}/> is {len} bytes, more than {max}")]
    TooLong {
        /// The element.
        element: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// More hash elements than [`MAX_HASHES`].
    #[error("more than {0} hash elements")]
    TooManyHashes(usize),
    /// Two `<hash/>` elements with the same algorithm (XEP-0300 §3 wants one per algorithm).
    #[error("two <hash/> elements for {0}")]
    DuplicateHash(String),
    /// A required attribute is missing.
    #[error("<{element}/> has no '{attr}' attribute")]
    MissingAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attr: &'static str,
    },
    /// An `algo` attribute that is empty or too long.
    #[error("invalid hash algo {0:?}")]
    InvalidAlgo(String),
    /// A `<hash/>` of an algorithm we know whose text is not base64 (XEP-0300 §3).
    #[error("<hash algo='{algo}'/> is not base64: {value:?}")]
    BadBase64 {
        /// The algorithm.
        algo: String,
        /// The text (cut).
        value: String,
    },
    /// A `<hash/>` without a value read on its own with [`Hash::from_element`].
    #[error("<hash algo='{0}'/> has no value")]
    EmptyHash(String),
    /// A hash value whose length does not fit its algorithm (or is beyond
    /// [`HASH_VALUE_MAX_LEN`]).
    #[error("{algo} hash is {len} bytes, expected {expected}")]
    HashLength {
        /// The algorithm.
        algo: String,
        /// The decoded length.
        len: usize,
        /// The digest length of the algorithm (or the bound, for unknown ones).
        expected: usize,
    },
    /// A `<range/>` attribute that is not a decimal `u64`.
    #[error("<range {attr}=''/> is not a u64: {value:?}")]
    InvalidRange {
        /// `offset` or `length`.
        attr: &'static str,
        /// The value (cut).
        value: String,
    },
    /// A `<range/>` whose end (`offset + length`) is beyond `u64::MAX`.
    #[error("<range offset='{offset}' length='{length}'/> ends beyond u64::MAX")]
    RangeOverflow {
        /// The offset.
        offset: u64,
        /// The length.
        length: u64,
    },
    /// A `creator` that is neither `initiator` nor `responder` (XEP-0166 §7.3).
    #[error("invalid creator {0:?}")]
    InvalidCreator(String),
    /// A content `name` that is empty or longer than the Jingle layer accepts.
    #[error("invalid content name {0:?}")]
    InvalidContentName(String),
    /// A `<checksum/>` whose `<file/>` has no hash value (XEP-0234 §8.2: at least one).
    #[error("<checksum/> carries no hash")]
    NoHash,
    /// The element breaks [`StanzaLimits::DEFAULT`] and was not read.
    #[error("{0}")]
    Limits(LimitExceeded),
}

type Result<T> = std::result::Result<T, FileDescriptionError>;

/// A hash function named by its IANA textual name (XEP-0300 §3 `algo`). The ones listed are
/// those XEP-0300 discusses; any other name is kept as [`HashAlgo::Other`] so that a caller can
/// ignore it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashAlgo {
    /// `sha-1` (what Conversations sends next to SHA-256; XEP-0300 §4.5).
    Sha1,
    /// `sha-256` (XEP-0300 §4.6; the one we write and verify).
    Sha256,
    /// `sha-512` (XEP-0300 §4.6).
    Sha512,
    /// `sha3-256` (XEP-0300 §3, FIPS 202).
    Sha3_256,
    /// `sha3-512` (XEP-0300 §3, FIPS 202).
    Sha3_512,
    /// `blake2b-256` (XEP-0300 §3, RFC 7693).
    Blake2b256,
    /// `blake2b-512` (XEP-0300 §3, RFC 7693).
    Blake2b512,
    /// Any other name, as received.
    Other(String),
}

impl HashAlgo {
    /// The `algo` attribute value.
    pub fn as_str(&self) -> &str {
        match self {
            HashAlgo::Sha1 => "sha-1",
            HashAlgo::Sha256 => "sha-256",
            HashAlgo::Sha512 => "sha-512",
            HashAlgo::Sha3_256 => "sha3-256",
            HashAlgo::Sha3_512 => "sha3-512",
            HashAlgo::Blake2b256 => "blake2b-256",
            HashAlgo::Blake2b512 => "blake2b-512",
            HashAlgo::Other(s) => s,
        }
    }

    /// Reads an `algo` value; names are matched exactly (IANA names are lower case), anything
    /// else becomes [`HashAlgo::Other`].
    pub fn parse(s: &str) -> HashAlgo {
        match s {
            "sha-1" => HashAlgo::Sha1,
            "sha-256" => HashAlgo::Sha256,
            "sha-512" => HashAlgo::Sha512,
            "sha3-256" => HashAlgo::Sha3_256,
            "sha3-512" => HashAlgo::Sha3_512,
            "blake2b-256" => HashAlgo::Blake2b256,
            "blake2b-512" => HashAlgo::Blake2b512,
            other => HashAlgo::Other(other.to_owned()),
        }
    }

    /// The digest length in bytes, for the algorithms we know.
    pub fn digest_len(&self) -> Option<usize> {
        match self {
            HashAlgo::Sha1 => Some(20),
            HashAlgo::Sha256 | HashAlgo::Sha3_256 | HashAlgo::Blake2b256 => Some(32),
            HashAlgo::Sha512 | HashAlgo::Sha3_512 | HashAlgo::Blake2b512 => Some(64),
            HashAlgo::Other(_) => None,
        }
    }

    /// Whether this is [`HashAlgo::Other`].
    pub fn is_other(&self) -> bool {
        matches!(self, HashAlgo::Other(_))
    }

    fn from_attr(el: &Element, element: &'static str) -> Result<HashAlgo> {
        let algo = el
            .attr(names::ALGO)
            .ok_or(FileDescriptionError::MissingAttribute {
                element,
                attr: names::ALGO,
            })?;
        if algo.is_empty() || algo.len() > ALGO_MAX_LEN {
            return Err(FileDescriptionError::InvalidAlgo(cut(algo)));
        }
        Ok(HashAlgo::parse(algo))
    }
}

/// An XEP-0300 §3 `<hash xmlns='urn:xmpp:hashes:2' algo='…'>base64</hash>`: a digest of the
/// file (or of a range of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hash {
    /// The hash function.
    pub algo: HashAlgo,
    /// The digest.
    pub value: Vec<u8>,
}

impl Hash {
    /// A hash with its algorithm and digest.
    pub fn new(algo: HashAlgo, value: impl Into<Vec<u8>>) -> Self {
        Hash {
            algo,
            value: value.into(),
        }
    }

    /// A SHA-256 hash.
    pub fn sha256(digest: [u8; 32]) -> Self {
        Hash::new(HashAlgo::Sha256, digest)
    }

    /// Renders the element; the value is standard base64 with padding and no line breaks.
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare(names::HASH, NS_HASHES);
        set_attr(&mut el, names::ALGO, self.algo.as_str());
        el.append_text_node(STANDARD.encode(&self.value));
        el
    }

    /// Reads a `<hash/>` that must carry a value; an empty one is
    /// [`FileDescriptionError::EmptyHash`].
    pub fn from_element(el: &Element) -> Result<Hash> {
        check_element(el, names::HASH, NS_HASHES)?;
        let algo = HashAlgo::from_attr(el, names::HASH)?;
        decode_hash_value(el, algo.clone())?
            .ok_or(FileDescriptionError::EmptyHash(cut(algo.as_str())))
    }
}

/// Reads the text of a `<hash/>`: `None` when empty; whitespace is ignored (XEP-0300 §3); a
/// known algorithm's digest must have its length.
fn decode_hash_value(el: &Element, algo: HashAlgo) -> Result<Option<Hash>> {
    let text: String = el
        .text()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if text.is_empty() {
        return Ok(None);
    }
    // Bound the text before decoding: base64 of HASH_VALUE_MAX_LEN bytes, padded.
    let max_text = HASH_VALUE_MAX_LEN.div_ceil(3) * 4;
    if text.len() > max_text {
        return Err(FileDescriptionError::HashLength {
            algo: cut(algo.as_str()),
            len: text.len() / 4 * 3,
            expected: algo.digest_len().unwrap_or(HASH_VALUE_MAX_LEN),
        });
    }
    let value = STANDARD_PAD_INDIFFERENT
        .decode(text.as_bytes())
        .map_err(|_| FileDescriptionError::BadBase64 {
            algo: cut(algo.as_str()),
            value: cut(&text),
        })?;
    let bad_len = match algo.digest_len() {
        Some(n) => (value.len() != n).then_some(n),
        None => (value.len() > HASH_VALUE_MAX_LEN).then_some(HASH_VALUE_MAX_LEN),
    };
    if let Some(expected) = bad_len {
        return Err(FileDescriptionError::HashLength {
            algo: cut(algo.as_str()),
            len: value.len(),
            expected,
        });
    }
    Ok(Some(Hash { algo, value }))
}

/// An XEP-0300 `<hash-used xmlns='urn:xmpp:hashes:2' algo='…'/>`: the algorithm the sender will
/// hash the file with, its value following later (XEP-0234 §8.2 `<checksum/>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashUsed {
    /// The hash function.
    pub algo: HashAlgo,
}

impl HashUsed {
    /// Renders the element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare(names::HASH_USED, NS_HASHES);
        set_attr(&mut el, names::ALGO, self.algo.as_str());
        el
    }

    /// Reads a `<hash-used/>` element.
    pub fn from_element(el: &Element) -> Result<HashUsed> {
        check_element(el, names::HASH_USED, NS_HASHES)?;
        Ok(HashUsed {
            algo: HashAlgo::from_attr(el, names::HASH_USED)?,
        })
    }
}

/// The hash children of a `<file/>` or `<range/>`.
#[derive(Default)]
struct HashList {
    hashes: Vec<Hash>,
    used: Vec<HashAlgo>,
    seen: usize,
}

impl HashList {
    /// Takes a child if it is a `<hash/>` or `<hash-used/>`; `Ok(false)` if it is neither.
    /// An empty `<hash/>` counts as `<hash-used/>` (XEP-0234 §5 and §8.2 offer the empty form).
    /// A hash of an unknown algorithm that does not decode is dropped, never an error.
    fn take(&mut self, child: &Element) -> Result<bool> {
        let is_hash = child.is(names::HASH, NS_HASHES);
        let is_used = child.is(names::HASH_USED, NS_HASHES);
        if !is_hash && !is_used {
            return Ok(false);
        }
        self.seen += 1;
        if self.seen > MAX_HASHES {
            return Err(FileDescriptionError::TooManyHashes(MAX_HASHES));
        }
        let element = if is_hash {
            names::HASH
        } else {
            names::HASH_USED
        };
        let algo = HashAlgo::from_attr(child, element)?;
        let hash = if is_hash {
            match decode_hash_value(child, algo.clone()) {
                Ok(h) => h,
                Err(_) if algo.is_other() => return Ok(true),
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        match hash {
            Some(h) => {
                if self.hashes.iter().any(|x| x.algo == h.algo) {
                    return Err(FileDescriptionError::DuplicateHash(cut(h.algo.as_str())));
                }
                self.hashes.push(h);
            }
            None => {
                if !self.used.contains(&algo) {
                    self.used.push(algo);
                }
            }
        }
        Ok(true)
    }
}

/// The XEP-0234 §5 `<range offset length/>` child of a `<file/>`: in an offer or answer, that
/// ranged transfers are supported; in a request or a restarted offer (§6.4), which bytes to
/// send; in a `<checksum/>` (§8.2), which bytes its hashes cover.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Range {
    /// First byte to transfer, zero-based (default 0).
    pub offset: u64,
    /// How many bytes; `None` means up to the end of the file.
    pub length: Option<u64>,
    /// Hashes of the bytes of this range (in a `<checksum/>`).
    pub hashes: Vec<Hash>,
}

impl Range {
    /// A range from `offset` to the end of the file.
    pub fn from_offset(offset: u64) -> Self {
        Range {
            offset,
            ..Range::default()
        }
    }

    /// One past the last byte, when the length is given.
    pub fn end(&self) -> Option<u64> {
        self.length.and_then(|l| self.offset.checked_add(l))
    }

    /// Renders the element: `offset` only when it is not 0, `length` when given, so a default
    /// range is the bare `<range/>` that announces support.
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare(names::RANGE, NS_FILE_TRANSFER);
        if self.offset != 0 {
            set_attr(&mut el, names::OFFSET, self.offset.to_string());
        }
        if let Some(l) = self.length {
            set_attr(&mut el, names::LENGTH, l.to_string());
        }
        for h in &self.hashes {
            el.append_child(h.to_element());
        }
        el
    }

    /// Reads a `<range/>`; `offset` and `length` must be decimal `u64`s whose sum fits a
    /// `u64`; hashes without a value in it are ignored.
    pub fn from_element(el: &Element) -> Result<Range> {
        check_element(el, names::RANGE, NS_FILE_TRANSFER)?;
        let read = |attr: &'static str| -> Result<Option<u64>> {
            el.attr(attr)
                .map(|v| {
                    parse_u64(v).ok_or(FileDescriptionError::InvalidRange {
                        attr,
                        value: cut(v),
                    })
                })
                .transpose()
        };
        let offset = read(names::OFFSET)?.unwrap_or(0);
        let length = read(names::LENGTH)?;
        if let Some(length) = length {
            if offset.checked_add(length).is_none() {
                return Err(FileDescriptionError::RangeOverflow { offset, length });
            }
        }
        let mut list = HashList::default();
        for child in el.children() {
            list.take(child)?;
        }
        Ok(Range {
            offset,
            length,
            hashes: list.hashes,
        })
    }
}

/// The XEP-0234 §5 `<file/>` element: what is known about the file offered, requested or
/// checksummed. Every field is optional on the wire; an offer should carry name, size and a
/// hash (or a [`HashUsed`] with the value following in a [`Checksum`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct File {
    /// `<name/>`, as sent: sanitise before use as a path (XEP-0234 §12).
    pub name: Option<String>,
    /// `<size/>` in bytes.
    pub size: Option<u64>,
    /// `<media-type/>` (read from Conversations' `<mediaType/>` too; XEP-0234 §5 says absent
    /// means `application/octet-stream`).
    pub media_type: Option<String>,
    /// `<date/>`: last modification, an XEP-0082 DateTime (or Date) kept as text.
    pub date: Option<String>,
    /// `<desc/>`: a human-readable description (the first one when several languages are
    /// sent).
    pub desc: Option<String>,
    /// `<hash/>` elements with values, at most one per algorithm.
    pub hashes: Vec<Hash>,
    /// Algorithms announced without a value: `<hash-used/>`, or an empty `<hash/>`.
    pub hashes_used: Vec<HashAlgo>,
    /// `<range/>`, when present.
    pub range: Option<Range>,
}

impl File {
    /// The hash of the given algorithm, if carried.
    pub fn hash(&self, algo: &HashAlgo) -> Option<&Hash> {
        self.hashes.iter().find(|h| &h.algo == algo)
    }

    /// The SHA-256 digest of the whole file, if carried (its length is checked on reading).
    pub fn sha256(&self) -> Option<[u8; 32]> {
        self.hash(&HashAlgo::Sha256)
            .and_then(|h| <[u8; 32]>::try_from(h.value.as_slice()).ok())
    }

    /// Renders the element (`<media-type/>` spelled as XEP-0234 §5 does; `<hash-used/>` for
    /// the announced algorithms).
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare(names::FILE, NS_FILE_TRANSFER);
        let mut text_child = |name: &str, text: &str| {
            let mut c = Element::bare(name, NS_FILE_TRANSFER);
            c.append_text_node(text);
            el.append_child(c);
        };
        if let Some(v) = &self.name {
            text_child(names::NAME, v);
        }
        if let Some(v) = self.size {
            text_child(names::SIZE, &v.to_string());
        }
        if let Some(v) = &self.media_type {
            text_child(names::MEDIA_TYPE, v);
            // Conversations reads only its own spelling (xep/0234.md); both are written so
            // that it shows the type too (ours is read first when both arrive).
            text_child(names::MEDIA_TYPE_CAMEL, v);
        }
        if let Some(v) = &self.date {
            text_child(names::DATE, v);
        }
        if let Some(v) = &self.desc {
            text_child(names::DESC, v);
        }
        if let Some(r) = &self.range {
            el.append_child(r.to_element());
        }
        for h in &self.hashes {
            el.append_child(h.to_element());
        }
        for algo in &self.hashes_used {
            el.append_child(HashUsed { algo: algo.clone() }.to_element());
        }
        el
    }

    /// Reads a `<file/>` element. Children in other namespaces (thumbnails, …) are ignored.
    pub fn from_element(el: &Element) -> Result<File> {
        check_element(el, names::FILE, NS_FILE_TRANSFER)?;
        let mut file = File::default();
        let mut camel_media_type = None;
        let mut hashes = HashList::default();
        for child in el.children() {
            if hashes.take(child)? {
                continue;
            }
            if child.ns() != NS_FILE_TRANSFER {
                continue;
            }
            match child.name() {
                names::NAME => {
                    let v = bounded_text(child, names::NAME, NAME_MAX_LEN)?;
                    set_once(&mut file.name, v, names::NAME)?;
                }
                names::SIZE => {
                    let text = child.text();
                    let v = parse_u64(&text)
                        .ok_or_else(|| FileDescriptionError::InvalidSize(cut(&text)))?;
                    set_once(&mut file.size, v, names::SIZE)?;
                }
                names::MEDIA_TYPE => {
                    let v = bounded_text(child, names::MEDIA_TYPE, MEDIA_TYPE_MAX_LEN)?;
                    set_once(&mut file.media_type, v, names::MEDIA_TYPE)?;
                }
                names::MEDIA_TYPE_CAMEL => {
                    let v = bounded_text(child, names::MEDIA_TYPE_CAMEL, MEDIA_TYPE_MAX_LEN)?;
                    set_once(&mut camel_media_type, v, names::MEDIA_TYPE_CAMEL)?;
                }
                names::DATE => {
                    let text = child.text();
                    let v = text.trim();
                    if v.len() > DATE_MAX_LEN || !is_xep0082_date_or_datetime(v) {
                        return Err(FileDescriptionError::InvalidDate(cut(v)));
                    }
                    set_once(&mut file.date, v.to_owned(), names::DATE)?;
                }
                names::DESC => {
                    let v = bounded_text(child, names::DESC, DESC_MAX_LEN)?;
                    if file.desc.is_none() {
                        file.desc = Some(v);
                    }
                }
                names::RANGE => {
                    let v = Range::from_element(child)?;
                    set_once(&mut file.range, v, names::RANGE)?;
                }
                _ => {}
            }
        }
        if file.media_type.is_none() {
            file.media_type = camel_media_type;
        }
        file.hashes = hashes.hashes;
        file.hashes_used = hashes.used;
        Ok(file)
    }
}

/// The XEP-0234 §5 application description of a content:
/// `<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file>…</file></description>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileDescription {
    /// The one file it describes.
    pub file: File,
}

impl FileDescription {
    /// A description of `file`.
    pub fn new(file: File) -> Self {
        FileDescription { file }
    }

    /// Renders the element, for [`crate::jingle::Content::description`].
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare(names::DESCRIPTION, NS_FILE_TRANSFER);
        el.append_child(self.file.to_element());
        el
    }

    /// Reads a `<description/>`: it must be in the file-transfer namespace and hold exactly one
    /// `<file/>`.
    pub fn from_element(el: &Element) -> Result<FileDescription> {
        check_element(el, names::DESCRIPTION, NS_FILE_TRANSFER)?;
        let file = single_file(el)?;
        Ok(FileDescription { file })
    }
}

/// The XEP-0234 §8.2 `session-info` payload `<checksum creator name><file><hash/>…</file>
/// </checksum>`: the hashes of the file of content `name`, sent by the file sender once known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// Creator of the content it is about (absent on the wire means the initiator:
    /// Conversations leaves it off).
    pub creator: Creator,
    /// Name of the content it is about.
    pub name: String,
    /// The `<file/>`, with at least one hash (of the file or of its `<range/>`).
    pub file: File,
}

impl Checksum {
    /// A checksum of the whole file for content `name` created by `creator`.
    pub fn new(creator: Creator, name: impl Into<String>, hashes: Vec<Hash>) -> Self {
        Checksum {
            creator,
            name: name.into(),
            file: File {
                hashes,
                ..File::default()
            },
        }
    }

    /// Renders the element (with `creator`, which the schema requires).
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare(names::CHECKSUM, NS_FILE_TRANSFER);
        set_attr(&mut el, names::CREATOR, creator_str(self.creator));
        set_attr(&mut el, names::NAME, self.name.as_str());
        el.append_child(self.file.to_element());
        el
    }

    /// Reads a `<checksum/>`; it needs a `name`, a `<file/>` and at least one hash value.
    pub fn from_element(el: &Element) -> Result<Checksum> {
        check_element(el, names::CHECKSUM, NS_FILE_TRANSFER)?;
        let (creator, name) = creator_and_name(el, names::CHECKSUM)?;
        let file = single_file(el)?;
        let range_hashes = file.range.as_ref().is_some_and(|r| !r.hashes.is_empty());
        if file.hashes.is_empty() && !range_hashes {
            return Err(FileDescriptionError::NoHash);
        }
        Ok(Checksum {
            creator,
            name,
            file,
        })
    }
}

/// The XEP-0234 §8.1 `session-info` payload `<received creator name/>`: the file of content
/// `name` arrived complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Creator of the content (absent on the wire means the initiator: Conversations leaves it
    /// off).
    pub creator: Creator,
    /// Name of the content.
    pub name: String,
}

impl Received {
    /// A receipt for content `name` created by `creator`.
    pub fn new(creator: Creator, name: impl Into<String>) -> Self {
        Received {
            creator,
            name: name.into(),
        }
    }

    /// Renders the element (with `creator`, which the schema requires).
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare(names::RECEIVED, NS_FILE_TRANSFER);
        set_attr(&mut el, names::CREATOR, creator_str(self.creator));
        set_attr(&mut el, names::NAME, self.name.as_str());
        el
    }

    /// Reads a `<received/>`; it needs a `name`.
    pub fn from_element(el: &Element) -> Result<Received> {
        check_element(el, names::RECEIVED, NS_FILE_TRANSFER)?;
        let (creator, name) = creator_and_name(el, names::RECEIVED)?;
        Ok(Received { creator, name })
    }
}

/// A file-transfer `session-info` payload (XEP-0234 §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileInfo {
    /// `<checksum/>` (§8.2), boxed: it carries a whole [`File`].
    Checksum(Box<Checksum>),
    /// `<received/>` (§8.1).
    Received(Received),
}

impl FileInfo {
    /// Reads one child of a `session-info` `<jingle/>`: `Ok(None)` when it is not a
    /// file-transfer payload (another namespace, or another element of this one).
    pub fn from_element(el: &Element) -> Result<Option<FileInfo>> {
        if el.is(names::CHECKSUM, NS_FILE_TRANSFER) {
            Checksum::from_element(el).map(|c| Some(FileInfo::Checksum(Box::new(c))))
        } else if el.is(names::RECEIVED, NS_FILE_TRANSFER) {
            Received::from_element(el).map(|r| Some(FileInfo::Received(r)))
        } else {
            Ok(None)
        }
    }

    /// Renders the element.
    pub fn to_element(&self) -> Element {
        match self {
            FileInfo::Checksum(c) => c.to_element(),
            FileInfo::Received(r) => r.to_element(),
        }
    }

    /// The content name it is about.
    pub fn content_name(&self) -> &str {
        match self {
            FileInfo::Checksum(c) => &c.name,
            FileInfo::Received(r) => &r.name,
        }
    }
}

fn creator_str(c: Creator) -> &'static str {
    match c {
        Creator::Initiator => "initiator",
        Creator::Responder => "responder",
    }
}

fn creator_and_name(el: &Element, element: &'static str) -> Result<(Creator, String)> {
    let creator = match el.attr(names::CREATOR) {
        None | Some("initiator") => Creator::Initiator,
        Some("responder") => Creator::Responder,
        Some(other) => return Err(FileDescriptionError::InvalidCreator(cut(other))),
    };
    let name = el
        .attr(names::NAME)
        .ok_or(FileDescriptionError::MissingAttribute {
            element,
            attr: names::NAME,
        })?;
    if name.is_empty() || name.len() > CONTENT_NAME_MAX_LEN {
        return Err(FileDescriptionError::InvalidContentName(cut(name)));
    }
    Ok((creator, name.to_owned()))
}

/// The one `<file/>` child of a `<description/>` or `<checksum/>`.
fn single_file(el: &Element) -> Result<File> {
    let mut files = el
        .children()
        .filter(|c| c.is(names::FILE, NS_FILE_TRANSFER));
    let first = files.next().ok_or(FileDescriptionError::NoFile)?;
    if files.next().is_some() {
        return Err(FileDescriptionError::Duplicate(names::FILE));
    }
    File::from_element(first)
}

/// Checks that `el` is `<name xmlns=ns/>` within [`StanzaLimits::DEFAULT`]: the first step
/// of every reader here.
fn check_element(el: &Element, name: &'static str, ns: &'static str) -> Result<()> {
    if el.is(name, ns) {
        StanzaLimits::DEFAULT
            .check(el)
            .map_err(FileDescriptionError::Limits)
    } else {
        Err(FileDescriptionError::WrongElement {
            expected: name,
            expected_ns: ns,
            name: cut(el.name()),
            ns: cut(&el.ns()),
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, element: &'static str) -> Result<()> {
    if slot.is_some() {
        return Err(FileDescriptionError::Duplicate(element));
    }
    *slot = Some(value);
    Ok(())
}

fn bounded_text(el: &Element, element: &'static str, max: usize) -> Result<String> {
    let text = el.text();
    if text.len() > max {
        return Err(FileDescriptionError::TooLong {
            element,
            len: text.len(),
            max,
        });
    }
    Ok(text)
}

/// A decimal `u64`, surrounding XML whitespace allowed, digits only (no sign).
fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Loose XEP-0082 check: a Date `CCYY-MM-DD`, or a DateTime `CCYY-MM-DDThh:mm:ss[.sss]TZD`
/// with `TZD` = `Z` or `±hh:mm`; field ranges are checked, the calendar is not.
fn is_xep0082_date_or_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, len: usize, max: u32| -> bool {
        b.get(from..from + len).is_some_and(|d| {
            d.iter().all(u8::is_ascii_digit)
                && d.iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0')) <= max
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let nonzero = |from: usize, len: usize| {
        b.get(from..from + len)
            .is_some_and(|d| d.iter().any(|&c| c != b'0'))
    };
    let year = num(0, 4, 9999) && at(4, b'-');
    let month = num(5, 2, 12) && nonzero(5, 2) && at(7, b'-');
    let day = num(8, 2, 31) && nonzero(8, 2);
    if !(year && month && day) {
        return false;
    }
    if b.len() == 10 {
        return true;
    }
    let hour = at(10, b'T') && num(11, 2, 23) && at(13, b':');
    let minute = num(14, 2, 59) && at(16, b':');
    let second = num(17, 2, 60);
    if !(hour && minute && second) {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+') | Some(b'-') => {
            num(i + 1, 2, 23) && at(i + 3, b':') && num(i + 4, 2, 59) && i + 6 == b.len()
        }
        _ => false,
    }
}

/// A peer's value cut to a short prefix for an error message.
fn cut(s: &str) -> String {
    const MAX: usize = 64;
    let mut end = s.len().min(MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jingle::element::NS_JINGLE;
    use proptest::prelude::*;

    const OFFER: &str = include_str!("../../../../xep/fixtures/ft-offer.xml");
    const OFFER_CONVERSATIONS: &str =
        include_str!("../../../../xep/fixtures/ft-offer-conversations.xml");
    const CHECKSUM: &str = include_str!("../../../../xep/fixtures/ft-checksum.xml");
    const RECEIVED: &str = include_str!("../../../../xep/fixtures/ft-received.xml");
    const RANGE_REQUEST: &str = include_str!("../../../../xep/fixtures/ft-range-request.xml");

    fn b64(s: &str) -> Vec<u8> {
        STANDARD.decode(s).unwrap()
    }

    /// The `<jingle/>` child of a fixture `<iq/>`.
    fn jingle(iq: &str) -> Element {
        let iq: Element = iq.parse().unwrap();
        iq.get_child("jingle", NS_JINGLE).unwrap().clone()
    }

    /// The `<description/>` of the first content of a fixture `<iq/>`.
    fn description(iq: &str) -> Element {
        jingle(iq)
            .get_child("content", NS_JINGLE)
            .unwrap()
            .get_child(names::DESCRIPTION, NS_FILE_TRANSFER)
            .unwrap()
            .clone()
    }

    fn parse_file(children: &str) -> Result<File> {
        let xml = format!("<file xmlns='{NS_FILE_TRANSFER}'>{children}</file>");
        File::from_element(&xml.parse().unwrap())
    }

    /// Writes to text and reads it back, as a peer would.
    fn reparse(el: &Element) -> Element {
        let mut out = Vec::new();
        el.write_to(&mut out).unwrap();
        String::from_utf8(out).unwrap().parse().unwrap()
    }

    #[test]
    fn our_offer_fixture() {
        let d = FileDescription::from_element(&description(OFFER)).unwrap();
        let f = &d.file;
        assert_eq!(f.name.as_deref(), Some("holiday-2025.tar"));
        assert_eq!(f.size, Some(1_048_576));
        assert_eq!(f.media_type.as_deref(), Some("application/x-tar"));
        assert_eq!(f.date.as_deref(), Some("2025-11-30T18:04:12Z"));
        assert_eq!(
            f.desc.as_deref(),
            Some("Photos from the trip, uncompressed")
        );
        assert_eq!(
            f.sha256().unwrap().to_vec(),
            b64("MOFJVevxNSJm3C/4Bn5oEEYH51CrudOzZYK4r5Cfy1g=")
        );
        assert_eq!(f.hashes.len(), 1);
        assert!(f.hashes_used.is_empty());
        assert_eq!(f.range, Some(Range::default()));
        // What we write reads back the same.
        assert_eq!(
            FileDescription::from_element(&reparse(&d.to_element())).unwrap(),
            d
        );
    }

    #[test]
    fn conversations_offer_fixture() {
        let d = FileDescription::from_element(&description(OFFER_CONVERSATIONS)).unwrap();
        assert_eq!(d.file.name.as_deref(), Some("IMG_20240301_101500.jpg"));
        assert_eq!(d.file.size, Some(1_843_200));
        assert_eq!(d.file.media_type.as_deref(), Some("image/jpeg"));
        assert_eq!(d.file.date, None);
        assert!(d.file.hashes.is_empty());
        assert_eq!(d.file.sha256(), None);
        // We write the XEP's spelling and Conversations' one.
        let written = d.file.to_element();
        assert!(written.has_child(names::MEDIA_TYPE, NS_FILE_TRANSFER));
        assert!(written.has_child(names::MEDIA_TYPE_CAMEL, NS_FILE_TRANSFER));
    }

    #[test]
    fn checksum_fixture() {
        let j = jingle(CHECKSUM);
        let payload = j.children().next().unwrap();
        let Some(FileInfo::Checksum(c)) = FileInfo::from_element(payload).unwrap() else {
            panic!("not a checksum");
        };
        // Conversations leaves `creator` off.
        assert_eq!(c.creator, Creator::Initiator);
        assert_eq!(c.name, "0");
        assert_eq!(
            c.file.hash(&HashAlgo::Sha1).unwrap().value,
            b64("ufnqs06ezSdzpnMvkoEk+xMmuUk=")
        );
        assert_eq!(
            c.file.sha256().unwrap().to_vec(),
            b64("ne1C90UcfVKizrUre1gEozfodEBpy0QVQCOhXd/KKxM=")
        );
        let back = Checksum::from_element(&reparse(&c.to_element())).unwrap();
        assert_eq!(back, *c);
        assert_eq!(back.to_element().attr("creator"), Some("initiator"));
    }

    #[test]
    fn received_fixture() {
        let j = jingle(RECEIVED);
        let payload = j.children().next().unwrap();
        let info = FileInfo::from_element(payload).unwrap().unwrap();
        assert_eq!(
            info,
            FileInfo::Received(Received::new(Creator::Initiator, "0"))
        );
        assert_eq!(info.content_name(), "0");
        assert_eq!(
            FileInfo::from_element(&reparse(&info.to_element())).unwrap(),
            Some(info)
        );
        // Conversations' shape: no creator.
        let el: Element = format!("<received xmlns='{NS_FILE_TRANSFER}' name='0'/>")
            .parse()
            .unwrap();
        assert_eq!(
            Received::from_element(&el).unwrap(),
            Received::new(Creator::Initiator, "0")
        );
    }

    #[test]
    fn range_request_fixture_beyond_4_gib() {
        let j = jingle(RANGE_REQUEST);
        let content = j.get_child("content", NS_JINGLE).unwrap();
        assert_eq!(content.attr("senders"), Some("responder"));
        let d = FileDescription::from_element(&description(RANGE_REQUEST)).unwrap();
        let r = d.file.range.clone().unwrap();
        assert_eq!(r.offset, 5_000_000_000);
        assert_eq!(r.length, Some(3_589_934_592));
        assert_eq!(r.end(), Some(8_589_934_592));
        assert_eq!(d.file.size, Some(8_589_934_592));
        // SHA-256 of 8 GiB of zero bytes.
        assert_eq!(
            d.file.sha256().unwrap().to_vec(),
            b64("6/tO8ZrkEPGQMntevTEnESY7x1eZcOh9nB4thOBrPCU=")
        );
        assert_eq!(
            FileDescription::from_element(&reparse(&d.to_element())).unwrap(),
            d
        );
    }

    #[test]
    fn wrong_elements() {
        let el: Element = "<description xmlns='urn:xmpp:jingle:apps:rtp:1'/>"
            .parse()
            .unwrap();
        assert!(matches!(
            FileDescription::from_element(&el),
            Err(FileDescriptionError::WrongElement { .. })
        ));
        let el: Element = format!("<checksum xmlns='{NS_FILE_TRANSFER}'/>")
            .parse()
            .unwrap();
        assert!(matches!(
            FileDescription::from_element(&el),
            Err(FileDescriptionError::WrongElement { .. })
        ));
        let el: Element = format!("<description xmlns='{NS_FILE_TRANSFER}'/>")
            .parse()
            .unwrap();
        assert_eq!(
            FileDescription::from_element(&el),
            Err(FileDescriptionError::NoFile)
        );
        let el: Element =
            format!("<description xmlns='{NS_FILE_TRANSFER}'><file/><file/></description>")
                .parse()
                .unwrap();
        assert_eq!(
            FileDescription::from_element(&el),
            Err(FileDescriptionError::Duplicate("file"))
        );
        // Other session-info payloads are not ours.
        let el: Element = "<ringing xmlns='urn:xmpp:jingle:apps:rtp:info:1'/>"
            .parse()
            .unwrap();
        assert_eq!(FileInfo::from_element(&el), Ok(None));
    }

    #[test]
    fn size_must_be_a_u64() {
        assert_eq!(parse_file("<size> 42\n</size>").unwrap().size, Some(42));
        assert_eq!(
            parse_file("<size>18446744073709551615</size>")
                .unwrap()
                .size,
            Some(u64::MAX)
        );
        for bad in [
            "",
            "-1",
            "+5",
            "1e3",
            "0x10",
            "18446744073709551616",
            "12 34",
        ] {
            assert!(
                matches!(
                    parse_file(&format!("<size>{bad}</size>")),
                    Err(FileDescriptionError::InvalidSize(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_file("<size>1</size><size>2</size>"),
            Err(FileDescriptionError::Duplicate("size"))
        );
    }

    #[test]
    fn dates_are_checked_loosely() {
        for good in [
            "1969-07-21T02:56:15Z",
            "2015-07-26T21:46:00+01:00",
            "2015-07-26T21:46:00.123-05:30",
            "2015-07-26",
            " 2015-07-26T21:46:00Z\n",
        ] {
            let f = parse_file(&format!("<date>{good}</date>")).unwrap();
            assert_eq!(f.date.as_deref(), Some(good.trim()), "{good:?}");
        }
        for bad in [
            "",
            "yesterday",
            "2015-7-26",
            "2015-13-01",
            "2015-00-10",
            "2015-07-26T21:46:00",
            "2015-07-26T24:00:00Z",
            "2015-07-26T21:46:00.Z",
            "2015-07-26T21:46:00+0100",
            "2015-07-26T21:46:00Zjunk",
            "2015-07-26 21:46:00Z",
        ] {
            assert!(
                matches!(
                    parse_file(&format!("<date>{bad}</date>")),
                    Err(FileDescriptionError::InvalidDate(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn media_type_in_either_spelling() {
        let f = parse_file("<mediaType>image/png</mediaType>").unwrap();
        assert_eq!(f.media_type.as_deref(), Some("image/png"));
        let f = parse_file("<media-type>text/plain</media-type>").unwrap();
        assert_eq!(f.media_type.as_deref(), Some("text/plain"));
        // Both: the XEP's spelling wins.
        let f = parse_file("<mediaType>image/png</mediaType><media-type>text/plain</media-type>")
            .unwrap();
        assert_eq!(f.media_type.as_deref(), Some("text/plain"));
        let long = "a".repeat(MEDIA_TYPE_MAX_LEN + 1);
        assert!(matches!(
            parse_file(&format!("<mediaType>{long}</mediaType>")),
            Err(FileDescriptionError::TooLong { .. })
        ));
    }

    #[test]
    fn name_and_desc_are_bounded() {
        let ok = "n".repeat(NAME_MAX_LEN);
        assert_eq!(
            parse_file(&format!("<name>{ok}</name>")).unwrap().name,
            Some(ok)
        );
        let long = "n".repeat(NAME_MAX_LEN + 1);
        assert_eq!(
            parse_file(&format!("<name>{long}</name>")),
            Err(FileDescriptionError::TooLong {
                element: "name",
                len: NAME_MAX_LEN + 1,
                max: NAME_MAX_LEN
            })
        );
        let long = "d".repeat(DESC_MAX_LEN + 1);
        assert!(matches!(
            parse_file(&format!("<desc>{long}</desc>")),
            Err(FileDescriptionError::TooLong {
                element: "desc",
                ..
            })
        ));
        // Several languages: the first is kept.
        let f =
            parse_file("<desc xml:lang='en'>hello</desc><desc xml:lang='fr'>salut</desc>").unwrap();
        assert_eq!(f.desc.as_deref(), Some("hello"));
        // A hostile name is kept as sent (sanitising is the receiver's job), not rejected.
        let f = parse_file("<name>../../etc/passwd</name>").unwrap();
        assert_eq!(f.name.as_deref(), Some("../../etc/passwd"));
    }

    #[test]
    fn unknown_children_are_ignored() {
        let f = parse_file(
            "<thumbnail xmlns='urn:xmpp:thumbs:1' uri='cid:x' media-type='image/png'/>\
             <name>a</name><future-thing>x</future-thing><name xmlns='urn:example'>b</name>",
        )
        .unwrap();
        assert_eq!(f.name.as_deref(), Some("a"));
    }

    #[test]
    fn hashes() {
        let sha256 = format!("<hash xmlns='{NS_HASHES}' algo='sha-256'>MOFJVevxNSJm3C/4Bn5oEEYH51CrudOzZYK4r5Cfy1g=</hash>");
        // Whitespace inside the base64 is ignored (XEP-0300 §3).
        let f = parse_file(&format!(
            "<hash xmlns='{NS_HASHES}' algo='sha-256'>\n  MOFJVevxNSJm3C/4Bn5oEEYH\n  51CrudOzZYK4r5Cfy1g=\n</hash>"
        ))
        .unwrap();
        assert_eq!(
            f.sha256().unwrap().to_vec(),
            b64("MOFJVevxNSJm3C/4Bn5oEEYH51CrudOzZYK4r5Cfy1g=")
        );
        // Bad base64 for a known algorithm.
        assert!(matches!(
            parse_file(&format!(
                "<hash xmlns='{NS_HASHES}' algo='sha-256'>not*base64!</hash>"
            )),
            Err(FileDescriptionError::BadBase64 { .. })
        ));
        // Wrong length for the algorithm.
        assert_eq!(
            parse_file(&format!(
                "<hash xmlns='{NS_HASHES}' algo='sha-256'>ufnqs06ezSdzpnMvkoEk+xMmuUk=</hash>"
            )),
            Err(FileDescriptionError::HashLength {
                algo: "sha-256".into(),
                len: 20,
                expected: 32
            })
        );
        // Unknown algorithms are kept, or dropped when undecodable, never an error.
        let f = parse_file(&format!(
            "{sha256}<hash xmlns='{NS_HASHES}' algo='x-future'>AAEC</hash>\
             <hash xmlns='{NS_HASHES}' algo='x-weird'>%%%</hash>"
        ))
        .unwrap();
        assert_eq!(f.hashes.len(), 2);
        assert_eq!(
            f.hash(&HashAlgo::Other("x-future".into())).unwrap().value,
            vec![0, 1, 2]
        );
        // Empty hash and hash-used announce an algorithm.
        let f = parse_file(&format!(
            "<hash xmlns='{NS_HASHES}' algo='sha-1'/><hash-used xmlns='{NS_HASHES}' algo='sha-256'/>\
             <hash-used xmlns='{NS_HASHES}' algo='sha-256'/>"
        ))
        .unwrap();
        assert!(f.hashes.is_empty());
        assert_eq!(f.hashes_used, vec![HashAlgo::Sha1, HashAlgo::Sha256]);
        assert!(f.to_element().has_child(names::HASH_USED, NS_HASHES));
        // Missing or silly algo.
        assert!(matches!(
            parse_file(&format!("<hash xmlns='{NS_HASHES}'>AAEC</hash>")),
            Err(FileDescriptionError::MissingAttribute { attr: "algo", .. })
        ));
        assert!(matches!(
            parse_file(&format!("<hash xmlns='{NS_HASHES}' algo=''>AAEC</hash>")),
            Err(FileDescriptionError::InvalidAlgo(_))
        ));
        // One value per algorithm.
        assert_eq!(
            parse_file(&format!("{sha256}{sha256}")),
            Err(FileDescriptionError::DuplicateHash("sha-256".into()))
        );
        // At most MAX_HASHES elements.
        let many: String = (0..=MAX_HASHES)
            .map(|i| format!("<hash-used xmlns='{NS_HASHES}' algo='x-{i}'/>"))
            .collect();
        assert_eq!(
            parse_file(&many),
            Err(FileDescriptionError::TooManyHashes(MAX_HASHES))
        );
        // An unknown algorithm's value is bounded too.
        let huge = STANDARD.encode(vec![7u8; HASH_VALUE_MAX_LEN + 1]);
        let f = parse_file(&format!(
            "<hash xmlns='{NS_HASHES}' algo='x-big'>{huge}</hash>"
        ))
        .unwrap();
        assert!(f.hashes.is_empty());
        // A hash in the wrong namespace is not a hash.
        let f = parse_file("<hash algo='sha-256'>AAEC</hash>").unwrap();
        assert!(f.hashes.is_empty());
    }

    #[test]
    fn hash_elements_alone() {
        let h = Hash::sha256([9; 32]);
        assert_eq!(Hash::from_element(&reparse(&h.to_element())).unwrap(), h);
        let el: Element = format!("<hash xmlns='{NS_HASHES}' algo='sha-1'/>")
            .parse()
            .unwrap();
        assert_eq!(
            Hash::from_element(&el),
            Err(FileDescriptionError::EmptyHash("sha-1".into()))
        );
        let u = HashUsed {
            algo: HashAlgo::Sha512,
        };
        let el = reparse(&u.to_element());
        assert_eq!(el.attr("algo"), Some("sha-512"));
        assert_eq!(HashUsed::from_element(&el).unwrap(), u);
        for algo in [
            HashAlgo::Sha1,
            HashAlgo::Sha256,
            HashAlgo::Sha512,
            HashAlgo::Sha3_256,
            HashAlgo::Sha3_512,
            HashAlgo::Blake2b256,
            HashAlgo::Blake2b512,
        ] {
            assert_eq!(HashAlgo::parse(algo.as_str()), algo);
            assert!(algo.digest_len().is_some());
        }
        assert_eq!(
            HashAlgo::parse("SHA-256"),
            HashAlgo::Other("SHA-256".into())
        );
    }

    #[test]
    fn ranges() {
        let parse = |attrs: &str| {
            let xml = format!("<range xmlns='{NS_FILE_TRANSFER}' {attrs}/>");
            Range::from_element(&xml.parse().unwrap())
        };
        assert_eq!(parse("").unwrap(), Range::default());
        assert_eq!(
            parse("offset='18446744073709551615'").unwrap(),
            Range::from_offset(u64::MAX)
        );
        assert_eq!(
            parse("offset='5000000000' length='0'").unwrap().end(),
            Some(5_000_000_000)
        );
        assert!(matches!(
            parse("offset='-1'"),
            Err(FileDescriptionError::InvalidRange { attr: "offset", .. })
        ));
        assert!(matches!(
            parse("offset='18446744073709551616'"),
            Err(FileDescriptionError::InvalidRange { attr: "offset", .. })
        ));
        assert!(matches!(
            parse("length='ten'"),
            Err(FileDescriptionError::InvalidRange { attr: "length", .. })
        ));
        assert_eq!(
            parse("offset='18446744073709551615' length='1'"),
            Err(FileDescriptionError::RangeOverflow {
                offset: u64::MAX,
                length: 1
            })
        );
        // A hash without a value in a range is ignored.
        let xml = format!(
            "<range xmlns='{NS_FILE_TRANSFER}' offset='10'><hash xmlns='{NS_HASHES}' algo='sha-1'/></range>"
        );
        assert_eq!(
            Range::from_element(&xml.parse().unwrap()).unwrap(),
            Range::from_offset(10)
        );
        // A default range is written bare.
        let el = Range::default().to_element();
        assert_eq!((el.attr("offset"), el.attr("length")), (None, None));
        assert_eq!(
            parse_file("<range/><range/>"),
            Err(FileDescriptionError::Duplicate("range"))
        );
    }

    #[test]
    fn checksums_and_receipts() {
        let c = Checksum::new(
            Creator::Responder,
            "a-file-request",
            vec![Hash::sha256([1; 32]), Hash::new(HashAlgo::Sha1, [2; 20])],
        );
        assert_eq!(
            Checksum::from_element(&reparse(&c.to_element())).unwrap(),
            c
        );
        // A range checksum (XEP-0234 §8.2) carries its hashes in the range.
        let ranged = Checksum {
            creator: Creator::Initiator,
            name: "a-file-offer".into(),
            file: File {
                range: Some(Range {
                    offset: 2048,
                    length: Some(1024),
                    hashes: vec![Hash::new(HashAlgo::Sha1, [3; 20])],
                }),
                ..File::default()
            },
        };
        assert_eq!(
            Checksum::from_element(&reparse(&ranged.to_element())).unwrap(),
            ranged
        );
        let checksum = |attrs: &str, inner: &str| {
            let xml = format!("<checksum xmlns='{NS_FILE_TRANSFER}' {attrs}>{inner}</checksum>");
            Checksum::from_element(&xml.parse().unwrap())
        };
        assert_eq!(checksum("name='0'", ""), Err(FileDescriptionError::NoFile));
        assert_eq!(
            checksum("name='0'", "<file/>"),
            Err(FileDescriptionError::NoHash)
        );
        assert_eq!(
            checksum(
                "name='0'",
                &format!("<file><hash xmlns='{NS_HASHES}' algo='sha-256'/></file>")
            ),
            Err(FileDescriptionError::NoHash)
        );
        assert!(matches!(
            checksum("", "<file/>"),
            Err(FileDescriptionError::MissingAttribute { attr: "name", .. })
        ));
        assert!(matches!(
            checksum("name=''", "<file/>"),
            Err(FileDescriptionError::InvalidContentName(_))
        ));
        assert!(matches!(
            checksum("name='0' creator='both'", "<file/>"),
            Err(FileDescriptionError::InvalidCreator(_))
        ));
        let long = "x".repeat(CONTENT_NAME_MAX_LEN + 1);
        let el: Element = format!("<received xmlns='{NS_FILE_TRANSFER}' name='{long}'/>")
            .parse()
            .unwrap();
        assert!(matches!(
            Received::from_element(&el),
            Err(FileDescriptionError::InvalidContentName(_))
        ));
        let r = Received::new(Creator::Responder, "x");
        assert_eq!(
            Received::from_element(&reparse(&r.to_element())).unwrap(),
            r
        );
    }

    #[test]
    fn errors_cut_long_values() {
        let long = "é".repeat(1000);
        let Err(FileDescriptionError::InvalidSize(v)) = parse_file(&format!("<size>{long}</size>"))
        else {
            panic!("expected InvalidSize");
        };
        assert!(v.len() <= 64);
    }

    fn arb_algo() -> impl Strategy<Value = HashAlgo> {
        prop_oneof![
            Just(HashAlgo::Sha1),
            Just(HashAlgo::Sha256),
            Just(HashAlgo::Sha512),
            Just(HashAlgo::Sha3_256),
            Just(HashAlgo::Sha3_512),
            Just(HashAlgo::Blake2b256),
            Just(HashAlgo::Blake2b512),
            "x-[a-z0-9-]{1,20}".prop_map(HashAlgo::Other),
        ]
    }

    fn arb_hash() -> impl Strategy<Value = Hash> {
        arb_algo().prop_flat_map(|algo| {
            let len = algo.digest_len().map_or(1..=HASH_VALUE_MAX_LEN, |n| n..=n);
            proptest::collection::vec(any::<u8>(), len)
                .prop_map(move |v| Hash::new(algo.clone(), v))
        })
    }

    fn arb_hashes(max: usize) -> impl Strategy<Value = Vec<Hash>> {
        proptest::collection::vec(arb_hash(), 0..=max).prop_map(|mut v| {
            let mut seen = Vec::new();
            v.retain(|h| {
                let fresh = !seen.contains(&h.algo);
                seen.push(h.algo.clone());
                fresh
            });
            v
        })
    }

    fn arb_range() -> impl Strategy<Value = Range> {
        (any::<u64>(), any::<bool>(), any::<u64>(), arb_hashes(4)).prop_map(
            |(offset, has_len, l, hashes)| Range {
                offset,
                length: has_len.then(|| l % (u64::MAX - offset).saturating_add(1).max(1)),
                hashes,
            },
        )
    }

    fn arb_date() -> impl Strategy<Value = String> {
        (
            0u32..=9999,
            1u32..=12,
            1u32..=31,
            proptest::option::of((0u32..=23, 0u32..=59, 0u32..=60, any::<bool>(), 0u8..3)),
        )
            .prop_map(|(y, mo, d, time)| match time {
                None => format!("{y:04}-{mo:02}-{d:02}"),
                Some((h, mi, s, frac, tz)) => {
                    let frac = if frac { ".250" } else { "" };
                    let tz = ["Z", "+01:00", "-05:30"][usize::from(tz)];
                    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{tz}")
                }
            })
    }

    fn arb_file() -> impl Strategy<Value = File> {
        (
            proptest::option::of("\\PC{0,64}"),
            proptest::option::of(any::<u64>()),
            proptest::option::of("[a-z]{1,12}/[a-z0-9.+-]{1,20}"),
            proptest::option::of(arb_date()),
            proptest::option::of("\\PC{0,100}"),
            arb_hashes(8),
            proptest::collection::vec(arb_algo(), 0..4),
            proptest::option::of(arb_range()),
        )
            .prop_map(
                |(name, size, media_type, date, desc, hashes, mut used, range)| {
                    let mut seen = Vec::new();
                    used.retain(|a| {
                        let fresh = !seen.contains(a);
                        seen.push(a.clone());
                        fresh
                    });
                    File {
                        name,
                        size,
                        media_type,
                        date,
                        desc,
                        hashes,
                        hashes_used: used,
                        range,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn file_round_trips(file in arb_file()) {
            let d = FileDescription::new(file);
            let back = FileDescription::from_element(&reparse(&d.to_element()));
            prop_assert_eq!(back, Ok(d));
        }

        #[test]
        fn checksum_round_trips(hashes in arb_hashes(8), name in "[a-z0-9-]{1,32}", responder in any::<bool>()) {
            prop_assume!(!hashes.is_empty());
            let creator = if responder { Creator::Responder } else { Creator::Initiator };
            let c = Checksum::new(creator, name, hashes);
            prop_assert_eq!(Checksum::from_element(&reparse(&c.to_element())), Ok(c));
        }

        #[test]
        fn arbitrary_file_children_never_panic(
            children in proptest::collection::vec(
                ("(name|size|date|desc|media-type|mediaType|range|hash|hash-used)", "\\PC{0,40}", "[a-z0-9 -]{0,12}"),
                0..8,
            )
        ) {
            let mut file = Element::bare(names::FILE, NS_FILE_TRANSFER);
            for (name, text, algo) in children {
                let ns = if name.starts_with("hash") { NS_HASHES } else { NS_FILE_TRANSFER };
                let mut c = Element::bare(name, ns);
                set_attr(&mut c, names::ALGO, algo.as_str());
                set_attr(&mut c, names::OFFSET, algo.as_str());
                c.append_text_node(text);
                file.append_child(c);
            }
            let _ = File::from_element(&file);
        }
    }
}
