//! Protocol constants of STUN (RFC 8489), its ICE usage (RFC 8445) and TURN (RFC 8656), each
//! written once with the section that defines it, and the header-level types built on them.

/// The fixed value of the magic cookie field in every RFC 5389/8489 message (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Length of the STUN message header in bytes (RFC 8489 §5).
pub const HEADER_LEN: usize = 20;

/// Length of an attribute's type-length header in bytes (RFC 8489 §14).
pub const ATTRIBUTE_HEADER_LEN: usize = 4;

/// Value XORed into the CRC-32 of a message to form FINGERPRINT: the ASCII string "STUN"
/// (RFC 8489 §14.7).
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Size of a MESSAGE-INTEGRITY value: a full HMAC-SHA1 (RFC 8489 §14.5).
pub const MESSAGE_INTEGRITY_LEN: usize = 20;

/// Largest MESSAGE-INTEGRITY-SHA256 value: a full HMAC-SHA256 (RFC 8489 §14.6).
pub const MESSAGE_INTEGRITY_SHA256_MAX_LEN: usize = 32;

/// Smallest MESSAGE-INTEGRITY-SHA256 value a receiver accepts (RFC 8489 §14.6: at least 16
/// bytes, a multiple of 4).
pub const MESSAGE_INTEGRITY_SHA256_MIN_LEN: usize = 16;

/// Size of a FINGERPRINT value (RFC 8489 §14.7).
pub const FINGERPRINT_LEN: usize = 4;

/// Longest USERNAME accepted when decoding: "less than 513 bytes" in RFC 5389 §15.3 (RFC 8489
/// §14.3 asks senders for fewer than 509; the older, wider limit is kept for compatibility).
pub const MAX_USERNAME_LEN: usize = 512;

/// Longest REALM, NONCE, SOFTWARE or ERROR-CODE reason phrase accepted when decoding: fewer
/// than 128 characters, "as long as 763 bytes when decoding them" (RFC 8489 §14.8, §14.9,
/// §14.10, §14.14).
pub const MAX_TEXT_LEN: usize = 763;

/// Size of a USERHASH value: a SHA-256 digest (RFC 8489 §14.4).
pub const USERHASH_LEN: usize = 32;

/// How many unknown comprehension-required attribute types a decoded message keeps for the
/// 420 answer (RFC 8489 §6.3.1.1); any further ones are not listed.
pub const MAX_UNKNOWN_ATTRIBUTES: usize = 16;

/// Address family value of IPv4 in the address attributes (RFC 8489 §14.1).
pub const FAMILY_IPV4: u8 = 0x01;

/// Address family value of IPv6 in the address attributes (RFC 8489 §14.1).
pub const FAMILY_IPV6: u8 = 0x02;

/// A 96-bit STUN transaction identifier (RFC 8489 §5, §6: chosen uniformly at random by the
/// client for each new transaction).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TransactionId(pub [u8; 12]);

impl TransactionId {
    /// Draws a fresh identifier from `rng`, which should be a CSPRNG (RFC 8489 §6: "uniformly
    /// and randomly chosen from the interval 0 .. 2**96-1, and MUST be cryptographically random").
    pub fn random<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 12];
        rng.fill_bytes(&mut bytes);
        TransactionId(bytes)
    }
}

/// The class of a STUN message, carried in two bits of the message type (RFC 8489 §5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Class {
    /// A request (class bits 0b00).
    Request,
    /// An indication (class bits 0b01).
    Indication,
    /// A success response (class bits 0b10).
    SuccessResponse,
    /// An error response (class bits 0b11).
    ErrorResponse,
}

impl Class {
    /// The two class bits C1 C0 as a number 0..=3 (RFC 8489 §5).
    pub fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::SuccessResponse => 0b10,
            Class::ErrorResponse => 0b11,
        }
    }

    /// The class for two class bits C1 C0 (only the low two bits of `bits` are used).
    pub fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }
}

/// A 12-bit STUN method number (RFC 8489 §5, §18.2; TURN methods from RFC 8656 §17).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Method(pub u16);

impl Method {
    /// Binding (RFC 8489 §18.2).
    pub const BINDING: Method = Method(0x001);
    /// Allocate, request/response only (RFC 8656 §17).
    pub const ALLOCATE: Method = Method(0x003);
    /// Refresh, request/response only (RFC 8656 §17).
    pub const REFRESH: Method = Method(0x004);
    /// Send, indication only (RFC 8656 §17).
    pub const SEND: Method = Method(0x006);
    /// Data, indication only (RFC 8656 §17).
    pub const DATA: Method = Method(0x007);
    /// CreatePermission, request/response only (RFC 8656 §17).
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// ChannelBind, request/response only (RFC 8656 §17).
    pub const CHANNEL_BIND: Method = Method(0x009);
}

/// Encodes a method and a class into the 14 meaningful bits of the message type field:
/// M11..M7 C1 M6..M4 C0 M3..M0 (RFC 8489 §5, figure 3). Method bits above 12 are dropped.
pub fn message_type(class: Class, method: Method) -> u16 {
    let m = method.0 & 0x0FFF;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
}

/// Splits a message type field into class and method (RFC 8489 §5); the top two bits are
/// ignored here (the decoder rejects them separately).
pub fn split_message_type(ty: u16) -> (Class, Method) {
    let class = Class::from_bits(((ty >> 4) & 0b01) | ((ty >> 7) & 0b10));
    let method = (ty & 0x000F) | ((ty >> 1) & 0x0070) | ((ty >> 2) & 0x0F80);
    (class, Method(method))
}

/// STUN attribute types (RFC 8489 §18.3, ICE attributes from RFC 8445 §16.1, TURN attributes
/// from RFC 8656 §18). Types 0x0000-0x7FFF are comprehension-required, 0x8000-0xFFFF
/// comprehension-optional (RFC 8489 §14).
pub mod attr {
    /// MAPPED-ADDRESS (RFC 8489 §14.1).
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME (RFC 8489 §14.3).
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY, HMAC-SHA1 (RFC 8489 §14.5).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE (RFC 8489 §14.8).
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// CHANNEL-NUMBER (RFC 8656 §18.1).
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME, in seconds (RFC 8656 §18.2).
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS (RFC 8656 §18.3).
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA (RFC 8656 §18.4).
    pub const DATA: u16 = 0x0013;
    /// REALM (RFC 8489 §14.9).
    pub const REALM: u16 = 0x0014;
    /// NONCE (RFC 8489 §14.10).
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS (RFC 8656 §18.5).
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6).
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    /// EVEN-PORT (RFC 8656 §18.7).
    pub const EVEN_PORT: u16 = 0x0018;
    /// REQUESTED-TRANSPORT (RFC 8656 §18.8).
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// DONT-FRAGMENT (RFC 8656 §18.9).
    pub const DONT_FRAGMENT: u16 = 0x001A;
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// PASSWORD-ALGORITHM (RFC 8489 §14.12).
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    /// USERHASH (RFC 8489 §14.4).
    pub const USERHASH: u16 = 0x001E;
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RESERVATION-TOKEN (RFC 8656 §18.10).
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    /// PRIORITY (RFC 8445 §16.1).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (RFC 8445 §16.1).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// PASSWORD-ALGORITHMS (RFC 8489 §14.11).
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    /// ALTERNATE-DOMAIN (RFC 8489 §14.16).
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;
    /// SOFTWARE (RFC 8489 §14.14).
    pub const SOFTWARE: u16 = 0x8022;
    /// ALTERNATE-SERVER (RFC 8489 §14.15).
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    /// FINGERPRINT (RFC 8489 §14.7).
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (RFC 8445 §16.1).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (RFC 8445 §16.1).
    pub const ICE_CONTROLLING: u16 = 0x802A;

    /// Whether an attribute type is comprehension-required (0x0000-0x7FFF, RFC 8489 §14).
    pub fn is_comprehension_required(kind: u16) -> bool {
        kind < 0x8000
    }

    /// Whether this codec knows (and checks the format of) an attribute type.
    pub fn is_known(kind: u16) -> bool {
        matches!(
            kind,
            MAPPED_ADDRESS
                | USERNAME
                | MESSAGE_INTEGRITY
                | ERROR_CODE
                | UNKNOWN_ATTRIBUTES
                | CHANNEL_NUMBER
                | LIFETIME
                | XOR_PEER_ADDRESS
                | DATA
                | REALM
                | NONCE
                | XOR_RELAYED_ADDRESS
                | REQUESTED_ADDRESS_FAMILY
                | EVEN_PORT
                | REQUESTED_TRANSPORT
                | DONT_FRAGMENT
                | MESSAGE_INTEGRITY_SHA256
                | PASSWORD_ALGORITHM
                | USERHASH
                | XOR_MAPPED_ADDRESS
                | RESERVATION_TOKEN
                | PRIORITY
                | USE_CANDIDATE
                | PASSWORD_ALGORITHMS
                | ALTERNATE_DOMAIN
                | SOFTWARE
                | ALTERNATE_SERVER
                | FINGERPRINT
                | ICE_CONTROLLED
                | ICE_CONTROLLING
        )
    }
}

/// STUN error codes (RFC 8489 §14.8, ICE's 487 from RFC 8445 §16.2, TURN's from RFC 8656 §19).
pub mod error_code {
    /// 300 Try Alternate (RFC 8489 §14.8).
    pub const TRY_ALTERNATE: u16 = 300;
    /// 400 Bad Request (RFC 8489 §14.8).
    pub const BAD_REQUEST: u16 = 400;
    /// 401 Unauthenticated (RFC 8489 §14.8).
    pub const UNAUTHORIZED: u16 = 401;
    /// 403 Forbidden (RFC 8656 §19).
    pub const FORBIDDEN: u16 = 403;
    /// 420 Unknown Attribute (RFC 8489 §14.8).
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    /// 437 Allocation Mismatch (RFC 8656 §19).
    pub const ALLOCATION_MISMATCH: u16 = 437;
    /// 438 Stale Nonce (RFC 8489 §14.8).
    pub const STALE_NONCE: u16 = 438;
    /// 441 Wrong Credentials (RFC 8656 §19).
    pub const WRONG_CREDENTIALS: u16 = 441;
    /// 442 Unsupported Transport Protocol (RFC 8656 §19).
    pub const UNSUPPORTED_TRANSPORT: u16 = 442;
    /// 486 Allocation Quota Reached (RFC 8656 §19).
    pub const ALLOCATION_QUOTA_REACHED: u16 = 486;
    /// 487 Role Conflict (RFC 8445 §16.2).
    pub const ROLE_CONFLICT: u16 = 487;
    /// 500 Server Error (RFC 8489 §14.8).
    pub const SERVER_ERROR: u16 = 500;
    /// 508 Insufficient Capacity (RFC 8656 §19).
    pub const INSUFFICIENT_CAPACITY: u16 = 508;

    /// The reason phrase RFC 8489 §14.8 (and RFC 8445/8656) suggest for a code, or "" when
    /// the code is not one of those listed here.
    pub fn default_reason(code: u16) -> &'static str {
        match code {
            TRY_ALTERNATE => "Try Alternate",
            BAD_REQUEST => "Bad Request",
            UNAUTHORIZED => "Unauthenticated",
            FORBIDDEN => "Forbidden",
            UNKNOWN_ATTRIBUTE => "Unknown Attribute",
            ALLOCATION_MISMATCH => "Allocation Mismatch",
            STALE_NONCE => "Stale Nonce",
            WRONG_CREDENTIALS => "Wrong Credentials",
            UNSUPPORTED_TRANSPORT => "Unsupported Transport Protocol",
            ALLOCATION_QUOTA_REACHED => "Allocation Quota Reached",
            ROLE_CONFLICT => "Role Conflict",
            SERVER_ERROR => "Server Error",
            INSUFFICIENT_CAPACITY => "Insufficient Capacity",
            _ => "",
        }
    }
}
