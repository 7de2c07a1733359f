//! The one hex codec of the project: plain lowercase hex (digests in logs and reports) and the
//! colon-separated pairs of RFC 8122 §5 (certificate fingerprints in XEP-0320 and SDP).

const LOWER: &[u8; 16] = b"0123456789abcdef";
const UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// `bytes` as lowercase hex without separators (`"0a1b"`).
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(LOWER[usize::from(b >> 4)]));
        out.push(char::from(LOWER[usize::from(b & 0x0f)]));
    }
    out
}

/// `bytes` as uppercase hex pairs separated by `:` (`"0A:1B"`), as RFC 8122 §5 writes a
/// fingerprint and as Conversations and browsers send it.
pub fn encode_pairs(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(UPPER[usize::from(b >> 4)]));
        out.push(char::from(UPPER[usize::from(b & 0x0f)]));
    }
    out
}

/// The value of one hex digit, either case.
pub fn digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Plain hex (either case, even length, no separators) to bytes; `None` for anything else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// A group of [`decode_pairs`]' input that is not two hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPair {
    /// Its position, counting groups from 0.
    pub index: usize,
    /// Its first characters.
    pub group: String,
}

/// Colon-separated hex pairs (either case, RFC 8122 §5) to bytes.
pub fn decode_pairs(text: &str) -> Result<Vec<u8>, BadPair> {
    let mut out = Vec::with_capacity(text.len().div_ceil(3));
    for (index, group) in text.split(':').enumerate() {
        match group.as_bytes() {
            &[hi, lo] => match digit(hi).zip(digit(lo)) {
                Some((h, l)) => out.push(h << 4 | l),
                None => return Err(bad(index, group)),
            },
            _ => return Err(bad(index, group)),
        }
    }
    Ok(out)
}

fn bad(index: usize, group: &str) -> BadPair {
    BadPair {
        index,
        group: group.chars().take(8).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_round_trip() {
        let bytes = [0x00, 0x0a, 0xff, 0x7b];
        assert_eq!(encode(&bytes), "000aff7b");
        assert_eq!(decode("000AfF7b"), Some(bytes.to_vec()));
        assert_eq!(encode_pairs(&bytes), "00:0A:FF:7B");
        assert_eq!(decode_pairs("00:0a:FF:7b"), Ok(bytes.to_vec()));
        assert_eq!(encode_pairs(&[]), "");
    }

    #[test]
    fn malformed_input_is_refused_with_where() {
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(
            decode_pairs("00:0g:11"),
            Err(BadPair {
                index: 1,
                group: "0g".into()
            })
        );
        assert_eq!(decode_pairs("000").unwrap_err().index, 0);
        assert_eq!(decode_pairs("00::11").unwrap_err().index, 1);
        assert_eq!(decode_pairs("").unwrap_err().index, 0);
    }
}
