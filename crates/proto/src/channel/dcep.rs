//! The Data Channel Establishment Protocol (RFC 8832) and the payload protocol identifiers of
//! WebRTC data channels (RFC 8831 §8).
//!
//! A peer opens a channel by sending `DATA_CHANNEL_OPEN` on a fresh SCTP stream; the other
//! peer answers `DATA_CHANNEL_ACK` on the same stream. Both messages travel with PPID 50.

/// SCTP payload protocol identifier of DCEP messages (RFC 8832 §8.1).
pub const PPID_DCEP: u32 = 50;
/// PPID of a non-empty UTF-8 message (RFC 8831 §8).
pub const PPID_STRING: u32 = 51;
/// PPID of a non-empty binary message (RFC 8831 §8).
pub const PPID_BINARY: u32 = 53;
/// PPID of an empty UTF-8 message, sent as one zero byte (RFC 8831 §6.6).
pub const PPID_STRING_EMPTY: u32 = 56;
/// PPID of an empty binary message, sent as one zero byte (RFC 8831 §6.6).
pub const PPID_BINARY_EMPTY: u32 = 57;

/// Message type of `DATA_CHANNEL_OPEN` (RFC 8832 §8.2.1).
const MSG_OPEN: u8 = 0x03;
/// Message type of `DATA_CHANNEL_ACK` (RFC 8832 §8.2.1).
const MSG_ACK: u8 = 0x02;
/// Fixed part of `DATA_CHANNEL_OPEN` before label and protocol (RFC 8832 §5.1).
const OPEN_HEADER_LEN: usize = 12;

/// Channel types of `DATA_CHANNEL_OPEN` (RFC 8832 §5.1, §8.2.2).
const CHANNEL_RELIABLE: u8 = 0x00;
const CHANNEL_PARTIAL_RELIABLE_REXMIT: u8 = 0x01;
const CHANNEL_PARTIAL_RELIABLE_TIMED: u8 = 0x02;
/// The high bit of the channel type marks unordered delivery (RFC 8832 §5.1).
const CHANNEL_UNORDERED_BIT: u8 = 0x80;

/// How much a channel retransmits (RFC 8831 §6.1, RFC 3758 partial reliability).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reliability {
    /// Every message is delivered (retransmitted until acknowledged).
    #[default]
    Reliable,
    /// A message is retransmitted at most this many times, then abandoned.
    MaxRetransmits(u32),
    /// A message is abandoned once it is older than this many milliseconds.
    MaxLifetimeMs(u32),
}

/// The options of a data channel carried in `DATA_CHANNEL_OPEN` (RFC 8832 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOptions {
    /// The channel's name (free text, may be empty).
    pub label: String,
    /// The sub-protocol name (RFC 8831 §6.5, may be empty).
    pub protocol: String,
    /// In-order delivery (false: messages may be delivered out of order).
    pub ordered: bool,
    /// Retransmission policy.
    pub reliability: Reliability,
    /// Priority (RFC 8832 §5.1; 256 is "normal" in the WebRTC priority mapping).
    pub priority: u16,
}

impl ChannelOptions {
    /// A reliable, ordered channel: what files and tubes use.
    pub fn reliable(label: impl Into<String>, protocol: impl Into<String>) -> Self {
        ChannelOptions {
            label: label.into(),
            protocol: protocol.into(),
            ordered: true,
            reliability: Reliability::Reliable,
            priority: 256,
        }
    }

    /// The same options with unordered delivery.
    pub fn unordered(mut self) -> Self {
        self.ordered = false;
        self
    }

    /// The same options with a retransmission policy.
    pub fn with_reliability(mut self, reliability: Reliability) -> Self {
        self.reliability = reliability;
        self
    }
}

/// A DCEP message (RFC 8832 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DcepMessage {
    /// `DATA_CHANNEL_OPEN` (RFC 8832 §5.1).
    Open(ChannelOptions),
    /// `DATA_CHANNEL_ACK` (RFC 8832 §5.2).
    Ack,
}

/// Why a DCEP message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcepError {
    /// The message is empty or shorter than its fixed header.
    #[error("DCEP message truncated")]
    Truncated,
    /// Label and protocol lengths do not add up to the message length.
    #[error("DCEP label/protocol lengths do not match the message length")]
    BadLength,
    /// The message type is neither OPEN nor ACK.
    #[error("unknown DCEP message type {0:#04x}")]
    UnknownType(u8),
    /// The channel type is not one of RFC 8832 §8.2.2.
    #[error("unknown DCEP channel type {0:#04x}")]
    UnknownChannelType(u8),
    /// Label or protocol is not UTF-8 (RFC 8832 §5.1).
    #[error("DCEP label or protocol is not UTF-8")]
    NotUtf8,
    /// Label or protocol is longer than 65535 bytes.
    #[error("DCEP label or protocol too long")]
    TooLong,
}

impl DcepMessage {
    /// Reads a message received with PPID 50.
    pub fn decode(data: &[u8]) -> Result<Self, DcepError> {
        let (&kind, _) = data.split_first().ok_or(DcepError::Truncated)?;
        match kind {
            MSG_ACK => Ok(DcepMessage::Ack),
            MSG_OPEN => decode_open(data).map(DcepMessage::Open),
            other => Err(DcepError::UnknownType(other)),
        }
    }

    /// Writes the message.
    pub fn encode(&self) -> Result<Vec<u8>, DcepError> {
        match self {
            DcepMessage::Ack => Ok(vec![MSG_ACK]),
            DcepMessage::Open(o) => {
                let label_len = u16::try_from(o.label.len()).map_err(|_| DcepError::TooLong)?;
                let proto_len = u16::try_from(o.protocol.len()).map_err(|_| DcepError::TooLong)?;
                let (base, param) = match o.reliability {
                    Reliability::Reliable => (CHANNEL_RELIABLE, 0),
                    Reliability::MaxRetransmits(n) => (CHANNEL_PARTIAL_RELIABLE_REXMIT, n),
                    Reliability::MaxLifetimeMs(ms) => (CHANNEL_PARTIAL_RELIABLE_TIMED, ms),
                };
                let kind = if o.ordered {
                    base
                } else {
                    base | CHANNEL_UNORDERED_BIT
                };
                let mut out =
                    Vec::with_capacity(OPEN_HEADER_LEN + o.label.len() + o.protocol.len());
                out.push(MSG_OPEN);
                out.push(kind);
                out.extend_from_slice(&o.priority.to_be_bytes());
                out.extend_from_slice(&param.to_be_bytes());
                out.extend_from_slice(&label_len.to_be_bytes());
                out.extend_from_slice(&proto_len.to_be_bytes());
                out.extend_from_slice(o.label.as_bytes());
                out.extend_from_slice(o.protocol.as_bytes());
                Ok(out)
            }
        }
    }
}

fn decode_open(data: &[u8]) -> Result<ChannelOptions, DcepError> {
    let header = data.get(..OPEN_HEADER_LEN).ok_or(DcepError::Truncated)?;
    let be16 = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let kind = header[1];
    let priority = be16(2);
    let param = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let label_len = usize::from(be16(8));
    let proto_len = usize::from(be16(10));
    if data.len() != OPEN_HEADER_LEN + label_len + proto_len {
        return Err(DcepError::BadLength);
    }
    let label = &data[OPEN_HEADER_LEN..OPEN_HEADER_LEN + label_len];
    let protocol = &data[OPEN_HEADER_LEN + label_len..];
    let reliability = match kind & !CHANNEL_UNORDERED_BIT {
        CHANNEL_RELIABLE => Reliability::Reliable,
        CHANNEL_PARTIAL_RELIABLE_REXMIT => Reliability::MaxRetransmits(param),
        CHANNEL_PARTIAL_RELIABLE_TIMED => Reliability::MaxLifetimeMs(param),
        _ => return Err(DcepError::UnknownChannelType(kind)),
    };
    Ok(ChannelOptions {
        label: String::from_utf8(label.to_vec()).map_err(|_| DcepError::NotUtf8)?,
        protocol: String::from_utf8(protocol.to_vec()).map_err(|_| DcepError::NotUtf8)?,
        ordered: kind & CHANNEL_UNORDERED_BIT == 0,
        reliability,
        priority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_round_trips_for_every_channel_type() {
        for reliability in [
            Reliability::Reliable,
            Reliability::MaxRetransmits(3),
            Reliability::MaxLifetimeMs(1500),
        ] {
            for ordered in [true, false] {
                let mut o =
                    ChannelOptions::reliable("test", "xmpp-jingle").with_reliability(reliability);
                o.ordered = ordered;
                let bytes = DcepMessage::Open(o.clone()).encode().unwrap();
                assert_eq!(DcepMessage::decode(&bytes).unwrap(), DcepMessage::Open(o));
            }
        }
    }

    #[test]
    fn open_wire_format_matches_rfc8832() {
        let o = ChannelOptions::reliable("ab", "c")
            .with_reliability(Reliability::MaxRetransmits(7))
            .unordered();
        let bytes = DcepMessage::Open(o).encode().unwrap();
        assert_eq!(
            bytes,
            [0x03, 0x81, 0x01, 0x00, 0, 0, 0, 7, 0, 2, 0, 1, b'a', b'b', b'c']
        );
        assert_eq!(DcepMessage::Ack.encode().unwrap(), [0x02]);
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(DcepMessage::decode(&[]), Err(DcepError::Truncated));
        assert_eq!(
            DcepMessage::decode(&[0x03, 0, 0]),
            Err(DcepError::Truncated)
        );
        assert_eq!(DcepMessage::decode(&[0x09]), Err(DcepError::UnknownType(9)));
        let mut bytes = DcepMessage::Open(ChannelOptions::reliable("abc", ""))
            .encode()
            .unwrap();
        bytes.pop();
        assert_eq!(DcepMessage::decode(&bytes), Err(DcepError::BadLength));
        let mut bytes = DcepMessage::Open(ChannelOptions::reliable("a", ""))
            .encode()
            .unwrap();
        bytes[1] = 0x05;
        assert_eq!(
            DcepMessage::decode(&bytes),
            Err(DcepError::UnknownChannelType(5))
        );
        let mut bytes = DcepMessage::Open(ChannelOptions::reliable("a", ""))
            .encode()
            .unwrap();
        bytes[12] = 0xff;
        assert_eq!(DcepMessage::decode(&bytes), Err(DcepError::NotUtf8));
    }
}
