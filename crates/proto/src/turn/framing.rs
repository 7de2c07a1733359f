//! ChannelData messages (RFC 8656 §12.4) and the framing of STUN and ChannelData messages on a
//! stream transport (RFC 8656 §12.5, RFC 8489 §6.2.2), which the STUN codec does not cover.

use crate::stun::{HEADER_LEN, MAGIC_COOKIE};

/// Lowest channel number a client may bind (RFC 8656 §12: 0x4000 through 0x4FFF).
pub const CHANNEL_MIN: u16 = 0x4000;

/// Highest channel number a client may bind (RFC 8656 §12).
pub const CHANNEL_MAX: u16 = 0x4FFF;

/// Length of the ChannelData header: channel number and length, two bytes each (RFC 8656
/// §12.4).
pub const CHANNEL_DATA_HEADER_LEN: usize = 4;

/// Largest frame a stream can carry: a STUN header plus the largest length field that is a
/// multiple of 4 (RFC 8489 §5). A ChannelData frame (4 + 65535 + 1 padding bytes) is smaller.
pub const MAX_STREAM_FRAME_LEN: usize = HEADER_LEN + 0xFFFC;

/// Whether a channel number may be bound by a client (RFC 8656 §12).
pub fn is_valid_channel(channel: u16) -> bool {
    (CHANNEL_MIN..=CHANNEL_MAX).contains(&channel)
}

/// Why bytes are not a ChannelData message or a well-framed stream (RFC 8656 §12.4, §12.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the 4-byte ChannelData header.
    #[error("{0} bytes is shorter than the ChannelData header")]
    TooShort(usize),
    /// The ChannelData length field says more bytes than the datagram holds.
    #[error("ChannelData says {declared} bytes but {available} follow the header")]
    LengthMismatch {
        /// The length field.
        declared: usize,
        /// The bytes after the header.
        available: usize,
    },
    /// The first two bits are neither 0b00 (STUN) nor 0b01 (ChannelData): the stream is not
    /// TURN framing (RFC 8656 §12.5, RFC 7983).
    #[error("byte {0:#04x} starts neither a STUN nor a ChannelData message")]
    Garbage(u8),
    /// A STUN frame on the stream has a length that is not a multiple of 4 or a wrong magic
    /// cookie (RFC 8489 §5).
    #[error("a STUN frame on the stream has a bad header")]
    BadStunHeader,
    /// A frame is longer than the configured bound.
    #[error("a {len}-byte frame is longer than the {max} bytes allowed")]
    Oversized {
        /// The frame length its header announces.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("the stream ended {0} bytes into an incomplete frame")]
    Truncated(usize),
    /// The data does not fit the 16-bit length field of a ChannelData message.
    #[error("{0} bytes do not fit in one ChannelData message")]
    DataTooLong(usize),
}

/// A decoded ChannelData message that borrows its bytes (RFC 8656 §12.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel number (the first two bits are 0b01; 0x5000-0x7FFF are reserved).
    pub channel: u16,
    /// The application data, without padding.
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Decodes a ChannelData message from a datagram or a stream frame. Bytes after the data
    /// (padding, RFC 8656 §12.5) are ignored; fewer bytes than the length field says are an
    /// error.
    pub fn decode(buf: &'a [u8]) -> Result<ChannelData<'a>, FrameError> {
        let (Some(&[c0, c1, l0, l1]), Some(rest)) = (
            buf.first_chunk::<CHANNEL_DATA_HEADER_LEN>(),
            buf.get(CHANNEL_DATA_HEADER_LEN..),
        ) else {
            return Err(FrameError::TooShort(buf.len()));
        };
        let channel = u16::from_be_bytes([c0, c1]);
        let declared = usize::from(u16::from_be_bytes([l0, l1]));
        if channel & 0xC000 != 0x4000 {
            return Err(FrameError::Garbage(c0));
        }
        let data = rest.get(..declared).ok_or(FrameError::LengthMismatch {
            declared,
            available: rest.len(),
        })?;
        Ok(ChannelData { channel, data })
    }
}

/// Writes a ChannelData message into `out` (cleared first): header, data and, when `pad` is
/// set (stream transports, RFC 8656 §12.5), zero padding to a multiple of 4 bytes.
pub fn encode_channel_data(
    channel: u16,
    data: &[u8],
    pad: bool,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let len = u16::try_from(data.len()).map_err(|_| FrameError::DataTooLong(data.len()))?;
    out.clear();
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    if pad {
        out.resize(padded(out.len()), 0);
    }
    Ok(())
}

/// One complete message taken from a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The bytes of one STUN message (not yet decoded).
    Stun(&'a [u8]),
    /// A ChannelData message.
    ChannelData(ChannelData<'a>),
}

/// Splits a byte stream from a TURN server (TCP, or TLS once unwrapped) into STUN and
/// ChannelData messages (RFC 8656 §12.5: ChannelData padded to 4 bytes on streams; RFC 8489
/// §6.2.2: STUN messages framed by their length field).
///
/// It buffers at most one incomplete frame, itself at most `max_frame_len` bytes. After an
/// error the stream cannot be resynchronised: every later call returns the same error.
#[derive(Debug, Clone)]
pub struct StreamFramer {
    buf: Vec<u8>,
    max_frame_len: usize,
    error: Option<FrameError>,
}

impl StreamFramer {
    /// A framer that refuses frames longer than `max_frame_len` bytes (at most
    /// [`MAX_STREAM_FRAME_LEN`] is useful; at least a STUN header is always allowed).
    pub fn new(max_frame_len: usize) -> Self {
        StreamFramer {
            buf: Vec::new(),
            max_frame_len: max_frame_len.max(HEADER_LEN),
            error: None,
        }
    }

    /// Bytes of an incomplete frame held back for the next call.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The error that stopped the stream, if any.
    pub fn error(&self) -> Option<&FrameError> {
        self.error.as_ref()
    }

    /// Feeds stream bytes; `on_frame` sees every complete frame in order. On garbage or an
    /// oversized frame, returns the error (frames before it were delivered).
    pub fn push<F: FnMut(Frame<'_>)>(
        &mut self,
        mut input: &[u8],
        mut on_frame: F,
    ) -> Result<(), FrameError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let result = self.push_inner(&mut input, &mut on_frame);
        if let Err(error) = &result {
            self.error = Some(error.clone());
            self.buf.clear();
        }
        result
    }

    /// Says the stream has ended: an error if it stopped inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated(self.buf.len()))
        }
    }

    fn push_inner<F: FnMut(Frame<'_>)>(
        &mut self,
        input: &mut &[u8],
        on_frame: &mut F,
    ) -> Result<(), FrameError> {
        loop {
            if !self.buf.is_empty() {
                // Complete the frame started by an earlier call.
                self.fill(input, CHANNEL_DATA_HEADER_LEN);
                let Some(total) = frame_len(&self.buf, self.max_frame_len)? else {
                    return Ok(());
                };
                self.fill(input, total);
                frame_len(&self.buf, self.max_frame_len)?;
                if self.buf.len() < total {
                    return Ok(());
                }
                on_frame(frame(&self.buf)?);
                self.buf.clear();
                continue;
            }
            if input.is_empty() {
                return Ok(());
            }
            match frame_len(input, self.max_frame_len)? {
                Some(total) if total <= input.len() => {
                    let (head, rest) = input.split_at(total);
                    on_frame(frame(head)?);
                    *input = rest;
                }
                _ => {
                    self.buf.extend_from_slice(input);
                    *input = &[];
                    return Ok(());
                }
            }
        }
    }

    /// Moves bytes from `input` into the buffer until it holds `target` bytes.
    fn fill(&mut self, input: &mut &[u8], target: usize) {
        let want = target.saturating_sub(self.buf.len()).min(input.len());
        let (head, rest) = input.split_at(want);
        self.buf.extend_from_slice(head);
        *input = rest;
    }
}

/// The total length of the frame that `prefix` starts, once its header is there (`None`
/// before that); checks the first bits, the STUN length and magic cookie, and the bound.
fn frame_len(prefix: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(&first) = prefix.first() else {
        return Ok(None);
    };
    if first & 0xC0 == 0x80 || first & 0xC0 == 0xC0 {
        return Err(FrameError::Garbage(first));
    }
    let Some(&[_, _, l0, l1]) = prefix.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    let total = if first & 0xC0 == 0 {
        if len % 4 != 0 {
            return Err(FrameError::BadStunHeader);
        }
        if let Some(&[_, _, _, _, k0, k1, k2, k3]) = prefix.first_chunk::<8>() {
            if u32::from_be_bytes([k0, k1, k2, k3]) != MAGIC_COOKIE {
                return Err(FrameError::BadStunHeader);
            }
        }
        HEADER_LEN + len
    } else {
        // 0x5000-0x7FFF are reserved (RFC 8656 §12): on a stream they mean lost framing.
        if first > (CHANNEL_MAX >> 8) as u8 {
            return Err(FrameError::Garbage(first));
        }
        padded(CHANNEL_DATA_HEADER_LEN + len)
    };
    if total > max {
        return Err(FrameError::Oversized { len: total, max });
    }
    Ok(Some(total))
}

/// Classifies one complete frame.
fn frame(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    match bytes.first() {
        Some(first) if first & 0xC0 == 0 => Ok(Frame::Stun(bytes)),
        _ => ChannelData::decode(bytes).map(Frame::ChannelData),
    }
}

/// Rounds up to a multiple of 4 (RFC 8656 §12.5).
fn padded(len: usize) -> usize {
    len.saturating_add(3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(framer: &mut StreamFramer, input: &[u8]) -> (Vec<Vec<u8>>, Result<(), FrameError>) {
        let mut frames = Vec::new();
        let result = framer.push(input, |f| match f {
            Frame::Stun(b) => frames.push(b.to_vec()),
            Frame::ChannelData(cd) => {
                let mut v = cd.channel.to_be_bytes().to_vec();
                v.extend_from_slice(cd.data);
                frames.push(v)
            }
        });
        (frames, result)
    }

    #[test]
    fn channel_data_round_trip_with_and_without_padding() {
        let mut out = Vec::new();
        encode_channel_data(0x4001, b"hello", false, &mut out).unwrap();
        assert_eq!(out, [0x40, 0x01, 0, 5, b'h', b'e', b'l', b'l', b'o']);
        encode_channel_data(0x4001, b"hello", true, &mut out).unwrap();
        assert_eq!(out.len(), 12);
        let cd = ChannelData::decode(&out).unwrap();
        assert_eq!((cd.channel, cd.data), (0x4001, &b"hello"[..]));
        assert_eq!(
            ChannelData::decode(&[0x40, 0x01, 0, 9, 1]),
            Err(FrameError::LengthMismatch {
                declared: 9,
                available: 1
            })
        );
        assert_eq!(ChannelData::decode(&[0x40]), Err(FrameError::TooShort(1)));
        assert_eq!(
            ChannelData::decode(&[0x80, 0, 0, 0]),
            Err(FrameError::Garbage(0x80))
        );
        let big = vec![0u8; 70_000];
        assert_eq!(
            encode_channel_data(0x4000, &big, true, &mut out),
            Err(FrameError::DataTooLong(70_000))
        );
    }

    #[test]
    fn stream_split_at_every_boundary() {
        let mut stream = Vec::new();
        let mut cd = Vec::new();
        encode_channel_data(0x4002, b"abc", true, &mut cd).unwrap();
        stream.extend_from_slice(&cd);
        // A minimal STUN message: Binding request with no attributes.
        let stun = [
            0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        stream.extend_from_slice(&stun);
        encode_channel_data(0x4003, b"", true, &mut cd).unwrap();
        stream.extend_from_slice(&cd);
        for a in 0..=stream.len() {
            for b in a..=stream.len() {
                let mut framer = StreamFramer::new(MAX_STREAM_FRAME_LEN);
                let mut all = Vec::new();
                for part in [&stream[..a], &stream[a..b], &stream[b..]] {
                    let (frames, result) = collect(&mut framer, part);
                    result.unwrap();
                    all.extend(frames);
                }
                assert_eq!(all.len(), 3, "split at {a},{b}");
                assert_eq!(all[1], stun);
                assert_eq!(framer.buffered(), 0);
                assert_eq!(framer.finish(), Ok(()));
            }
        }
    }

    #[test]
    fn garbage_oversized_and_truncated_are_errors() {
        let mut framer = StreamFramer::new(MAX_STREAM_FRAME_LEN);
        assert_eq!(
            collect(&mut framer, &[0xFF, 0, 0, 0]).1,
            Err(FrameError::Garbage(0xFF))
        );
        // The error sticks.
        assert!(collect(&mut framer, &[0x40, 0, 0, 0]).1.is_err());

        let mut framer = StreamFramer::new(64);
        assert_eq!(
            collect(&mut framer, &[0x40, 0, 0, 200]).1,
            Err(FrameError::Oversized { len: 204, max: 64 })
        );

        let mut framer = StreamFramer::new(MAX_STREAM_FRAME_LEN);
        assert_eq!(collect(&mut framer, &[0, 1, 0, 0, 0xde, 0xad]).1, Ok(()));
        assert_eq!(
            collect(&mut framer, &[0xbe, 0xef]).1,
            Err(FrameError::BadStunHeader)
        );

        let mut framer = StreamFramer::new(MAX_STREAM_FRAME_LEN);
        assert_eq!(collect(&mut framer, &[0x40, 0, 0, 8, 1, 2]).1, Ok(()));
        assert_eq!(framer.finish(), Err(FrameError::Truncated(6)));
    }
}
