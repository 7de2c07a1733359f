//! The elements of In-Band Bytestreams (XEP-0047 §2: `<open/>`, `<data/>`, `<close/>`) and the
//! Jingle IBB `<transport/>` (XEP-0261 §2).

use base64::Engine;
use minidom::Element;

use super::{MAX_SID_LEN, NS_IBB, NS_JINGLE_IBB};
use crate::xmpp::stanza::{set_attr, LimitExceeded, StanzaLimits};

/// Why an IBB element could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IbbElementError {
    /// A required attribute is missing.
    #[error("missing attribute {0}")]
    Missing(&'static str),
    /// An attribute has a value out of its range.
    #[error("invalid {0}: {1:?}")]
    Invalid(&'static str, String),
    /// The data is not base64.
    #[error("the data is not base64")]
    Base64,
    /// The data decodes to more bytes than the negotiated block size.
    #[error("a block of {len} bytes is larger than the block size {block_size}")]
    TooLarge {
        /// Decoded length.
        len: usize,
        /// The negotiated block size.
        block_size: u16,
    },
    /// The element breaks [`StanzaLimits::DEFAULT`].
    #[error("{0}")]
    Limits(LimitExceeded),
}

/// The Jingle IBB transport (XEP-0261 §2): the IBB session id and the block size the party
/// proposes (the responder may lower it in its answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IbbTransport {
    /// The IBB session id the `<open/>` and data will carry.
    pub sid: String,
    /// Most bytes per block before base64.
    pub block_size: u16,
}

impl IbbTransport {
    /// Renders `<transport xmlns='urn:xmpp:jingle:transports:ibb:1' block-size sid/>`.
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare("transport", NS_JINGLE_IBB);
        set_attr(&mut el, "block-size", self.block_size.to_string());
        set_attr(&mut el, "sid", self.sid.as_str());
        el
    }

    /// Reads the transport element.
    pub fn from_element(el: &Element) -> Result<Self, IbbElementError> {
        StanzaLimits::DEFAULT
            .check(el)
            .map_err(IbbElementError::Limits)?;
        Ok(IbbTransport {
            sid: read_sid(el)?,
            block_size: read_block_size(el)?,
        })
    }
}

/// An IBB request (XEP-0047 §2) as received in an `<iq type='set'/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IbbPacket {
    /// `<open/>`: the stream starts with this block size (§2.1).
    Open {
        /// Stream id.
        sid: String,
        /// Most bytes per block.
        block_size: u16,
    },
    /// `<data/>`: one block, numbered (§2.2).
    Data {
        /// Stream id.
        sid: String,
        /// Sequence number, 0 for the first block. XEP-0047 §2.2 wraps it to 0 after 65535
        /// (we send it so); Conversations counts on past 65535, so any 32-bit value is read
        /// here and the stream checks it ([`super::stream`]).
        seq: u32,
        /// The block, base64 decoded.
        bytes: Vec<u8>,
    },
    /// `<close/>`: the stream ends (§2.3).
    Close {
        /// Stream id.
        sid: String,
    },
}

impl IbbPacket {
    /// The stream id the packet names.
    pub fn sid(&self) -> &str {
        match self {
            IbbPacket::Open { sid, .. }
            | IbbPacket::Data { sid, .. }
            | IbbPacket::Close { sid } => sid,
        }
    }

    /// Reads the IBB child of an iq, if it has one (`Ok(None)` when it has none). A data block
    /// larger than `max_block` is refused (§2.2: the recipient is not obliged to take it).
    pub fn from_iq(iq: &Element, max_block: u16) -> Result<Option<Self>, IbbElementError> {
        StanzaLimits::DEFAULT
            .check(iq)
            .map_err(IbbElementError::Limits)?;
        let Some(el) = iq.children().find(|c| c.ns() == NS_IBB) else {
            return Ok(None);
        };
        let packet = match el.name() {
            "open" => {
                if let Some(kind) = el.attr("stanza") {
                    if kind != "iq" {
                        // Message-carried IBB (§3) is not offered by us and not accepted.
                        return Err(IbbElementError::Invalid("stanza", kind.to_owned()));
                    }
                }
                IbbPacket::Open {
                    sid: read_sid(el)?,
                    block_size: read_block_size(el)?,
                }
            }
            "data" => {
                let seq = el.attr("seq").ok_or(IbbElementError::Missing("seq"))?;
                let seq = seq
                    .parse::<u32>()
                    .map_err(|_| IbbElementError::Invalid("seq", truncate(seq)))?;
                IbbPacket::Data {
                    sid: read_sid(el)?,
                    seq,
                    bytes: decode_block(&el.text(), max_block)?,
                }
            }
            "close" => IbbPacket::Close { sid: read_sid(el)? },
            other => return Err(IbbElementError::Invalid("element", truncate(other))),
        };
        Ok(Some(packet))
    }

    /// Renders the element (the child of an iq set).
    pub fn to_element(&self) -> Element {
        match self {
            IbbPacket::Open { sid, block_size } => {
                let mut el = Element::bare("open", NS_IBB);
                set_attr(&mut el, "block-size", block_size.to_string());
                set_attr(&mut el, "sid", sid.as_str());
                set_attr(&mut el, "stanza", "iq");
                el
            }
            IbbPacket::Data { sid, seq, bytes } => {
                let mut el = Element::bare("data", NS_IBB);
                set_attr(&mut el, "seq", seq.to_string());
                set_attr(&mut el, "sid", sid.as_str());
                el.append_text_node(base64::engine::general_purpose::STANDARD.encode(bytes));
                el
            }
            IbbPacket::Close { sid } => {
                let mut el = Element::bare("close", NS_IBB);
                set_attr(&mut el, "sid", sid.as_str());
                el
            }
        }
    }
}

/// Decodes the base64 of a `<data/>` block of at most `max_block` bytes, refusing an oversized
/// one before decoding it. Whitespace in the base64 is allowed; most senders put none, so the
/// text is first decoded as it is, and stripped of whitespace only if that fails.
fn decode_block(text: &str, max_block: u16) -> Result<Vec<u8>, IbbElementError> {
    let max = usize::from(max_block);
    // Base64 is 4/3 of the bytes (the last quad may carry 1 or 2).
    let fits = |chars: usize| chars / 4 * 3 <= max + 2;
    let engine = &base64::engine::general_purpose::STANDARD;
    let as_is = fits(text.len())
        .then(|| engine.decode(text.as_bytes()).ok())
        .flatten();
    let bytes = match as_is {
        Some(bytes) => bytes,
        None => {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            if !fits(compact.len()) {
                return Err(IbbElementError::TooLarge {
                    len: compact.len() / 4 * 3,
                    block_size: max_block,
                });
            }
            engine
                .decode(compact.as_bytes())
                .map_err(|_| IbbElementError::Base64)?
        }
    };
    if bytes.len() > max {
        return Err(IbbElementError::TooLarge {
            len: bytes.len(),
            block_size: max_block,
        });
    }
    Ok(bytes)
}

fn read_sid(el: &Element) -> Result<String, IbbElementError> {
    let sid = el.attr("sid").ok_or(IbbElementError::Missing("sid"))?;
    if sid.is_empty() || sid.len() > MAX_SID_LEN || sid.chars().any(char::is_control) {
        return Err(IbbElementError::Invalid("sid", truncate(sid)));
    }
    Ok(sid.to_owned())
}

fn read_block_size(el: &Element) -> Result<u16, IbbElementError> {
    let v = el
        .attr("block-size")
        .ok_or(IbbElementError::Missing("block-size"))?;
    match v.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(IbbElementError::Invalid("block-size", truncate(v))),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq_with(child: Element) -> Element {
        let mut iq = Element::bare("iq", crate::xmpp::stanza::NS_CLIENT);
        iq.append_child(child);
        iq
    }

    #[test]
    fn packets_round_trip() {
        for p in [
            IbbPacket::Open {
                sid: "s1".into(),
                block_size: 4096,
            },
            IbbPacket::Data {
                sid: "s1".into(),
                seq: 65535,
                bytes: (0..=255).collect(),
            },
            IbbPacket::Data {
                sid: "s1".into(),
                seq: 65536,
                bytes: vec![1],
            },
            IbbPacket::Close { sid: "s1".into() },
        ] {
            let back = IbbPacket::from_iq(&iq_with(p.to_element()), 4096).unwrap();
            assert_eq!(back, Some(p));
        }
    }

    #[test]
    fn xep_0047_example_data_is_read() {
        let xml = "<iq xmlns='jabber:client' type='set' id='kr91n475'>\
            <data xmlns='http://jabber.org/protocol/ibb' seq='0' sid='i781hf64'>\
            qANQR1DBwU4DX7jmYZnncmUQB/9KuKBddzQH+tZ1ZywKK0yHKnq57kWq+RFtQdCJ\n\
            WpdWpR0uQsuJe7+vh3NWn59/gTc5MDlX8dS9p0ovStmNcyLhxVgmqS8ZKhsblVeu\
            </data></iq>";
        let iq: Element = xml.parse().unwrap();
        let Some(IbbPacket::Data { sid, seq, bytes }) = IbbPacket::from_iq(&iq, 4096).unwrap()
        else {
            panic!("not data");
        };
        assert_eq!((sid.as_str(), seq, bytes.len()), ("i781hf64", 0, 96));
    }

    #[test]
    fn bad_packets_are_refused_with_the_reason() {
        let cases = [
            ("<open xmlns='http://jabber.org/protocol/ibb' sid='a'/>", "block-size"),
            ("<open xmlns='http://jabber.org/protocol/ibb' sid='a' block-size='0'/>", "block-size"),
            ("<open xmlns='http://jabber.org/protocol/ibb' sid='a' block-size='70000'/>", "block-size"),
            ("<open xmlns='http://jabber.org/protocol/ibb' sid='a' block-size='10' stanza='message'/>", "stanza"),
            ("<data xmlns='http://jabber.org/protocol/ibb' sid='a'>AAAA</data>", "seq"),
            ("<data xmlns='http://jabber.org/protocol/ibb' sid='a' seq='4294967296'>AAAA</data>", "seq"),
            ("<data xmlns='http://jabber.org/protocol/ibb' sid='a' seq='-1'>AAAA</data>", "seq"),
            ("<data xmlns='http://jabber.org/protocol/ibb' sid='a' seq='x'>AAAA</data>", "seq"),
            ("<data xmlns='http://jabber.org/protocol/ibb' sid='a' seq='1'>!!!!</data>", "base64"),
            ("<data xmlns='http://jabber.org/protocol/ibb' sid='a' seq='1'>AAAAAAAAAAAA</data>", "larger"),
            ("<close xmlns='http://jabber.org/protocol/ibb'/>", "sid"),
        ];
        for (xml, what) in cases {
            let el: Element = xml.parse().unwrap();
            let err = IbbPacket::from_iq(&iq_with(el), 8).unwrap_err();
            assert!(err.to_string().contains(what), "{xml}: {err}");
        }
    }

    /// Conversations numbers its blocks on past 65535 without wrapping (its `BlockSender`
    /// takes `seq` from an `AtomicInteger`): such a block must be read, not refused with
    /// `<bad-request/>` (the stream decides whether the number is the one due).
    #[test]
    fn a_seq_past_65535_is_read() {
        for seq in ["65536", "131073", "4294967295"] {
            let xml = format!(
                "<data xmlns='http://jabber.org/protocol/ibb' sid='a' seq='{seq}'>AAAA</data>"
            );
            let el: Element = xml.parse().unwrap();
            let packet = IbbPacket::from_iq(&iq_with(el), 8).unwrap();
            assert!(
                matches!(packet, Some(IbbPacket::Data { seq: n, .. }) if n.to_string() == seq),
                "{seq}: {packet:?}"
            );
        }
    }

    #[test]
    fn fixtures_past_65535_are_read() {
        let all: Element = include_str!("../../../../../../xep/fixtures/ibb-data-past-65535.xml")
            .parse()
            .unwrap();
        let seqs: Vec<(String, u32, Vec<u8>)> = all
            .children()
            .map(|iq| match IbbPacket::from_iq(iq, 8192) {
                Ok(Some(IbbPacket::Data { sid, seq, bytes })) => (sid, seq, bytes),
                other => panic!("{other:?}"),
            })
            .map(|(sid, seq, bytes)| (sid[..8].to_owned(), seq, bytes))
            .collect();
        let (hello, world) = (b"hello".to_vec(), b"world".to_vec());
        assert_eq!(
            seqs,
            vec![
                ("3f1c7a52".into(), 65535, hello.clone()),
                ("3f1c7a52".into(), 65536, world.clone()),
                ("8e0b2d4f".into(), 65535, hello),
                ("8e0b2d4f".into(), 0, world),
            ]
        );
    }

    #[test]
    fn whitespace_in_the_base64_is_allowed_and_not_counted() {
        // 8 bytes (the block size here) as base64 broken over lines, more whitespace than data.
        let spaced = "\n  AAEC\n  AwQF\n  Bgc=\n  \t\r\n                ";
        let xml =
            format!("<data xmlns='http://jabber.org/protocol/ibb' sid='a' seq='0'>{spaced}</data>");
        let el: Element = xml.parse().unwrap();
        let packet = IbbPacket::from_iq(&iq_with(el), 8).unwrap();
        assert!(
            matches!(&packet, Some(IbbPacket::Data { bytes, .. }) if *bytes == [0, 1, 2, 3, 4, 5, 6, 7]),
            "{packet:?}"
        );
        // One byte more is refused, with or without whitespace.
        for text in ["AAECAwQFBgcI", "AAEC AwQF\nBgcI"] {
            let xml = format!(
                "<data xmlns='http://jabber.org/protocol/ibb' sid='a' seq='0'>{text}</data>"
            );
            let el: Element = xml.parse().unwrap();
            let err = IbbPacket::from_iq(&iq_with(el), 8).unwrap_err();
            assert!(
                matches!(err, IbbElementError::TooLarge { .. }),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn an_iq_without_ibb_is_not_ours() {
        let el = Element::bare("query", "jabber:iq:version");
        assert_eq!(IbbPacket::from_iq(&iq_with(el), 8).unwrap(), None);
    }

    #[test]
    fn transport_round_trips_and_checks() {
        let t = IbbTransport {
            sid: "ch3d9s71".into(),
            block_size: 8192,
        };
        assert_eq!(IbbTransport::from_element(&t.to_element()).unwrap(), t);
        let bad: Element =
            "<transport xmlns='urn:xmpp:jingle:transports:ibb:1' block-size='x' sid='a'/>"
                .parse()
                .unwrap();
        assert!(IbbTransport::from_element(&bad).is_err());
    }

    #[test]
    fn fixtures_read_as_conversations_and_we_send_them() {
        use crate::jingle::{Action, Jingle, Transport, TransportLimits};
        let sid = "c2f0a7e4-5b19-4d36-9e0b-2a7c1f3d8e55";
        for (xml, action, block_size) in [
            (
                include_str!("../../../../../../xep/fixtures/ibb-transport-replace.xml"),
                Action::TransportReplace,
                8192,
            ),
            (
                include_str!("../../../../../../xep/fixtures/ibb-transport-accept.xml"),
                Action::TransportAccept,
                4096,
            ),
        ] {
            let iq: Element = xml.parse().unwrap();
            let jingle = iq.get_child("jingle", crate::jingle::NS_JINGLE).unwrap();
            let j = Jingle::from_element(jingle, TransportLimits::default()).unwrap();
            assert_eq!(j.action, action);
            assert_eq!(j.contents[0].name, "0");
            assert_eq!(
                j.contents[0].transport,
                Some(Transport::Ibb(IbbTransport {
                    sid: sid.into(),
                    block_size
                }))
            );
        }
        let all: Element = include_str!("../../../../../../xep/fixtures/ibb-open-data-close.xml")
            .parse()
            .unwrap();
        let packets: Vec<IbbPacket> = all
            .children()
            .map(|iq| IbbPacket::from_iq(iq, 4096).unwrap().unwrap())
            .collect();
        assert_eq!(
            packets,
            vec![
                IbbPacket::Open {
                    sid: sid.into(),
                    block_size: 4096
                },
                IbbPacket::Data {
                    sid: sid.into(),
                    seq: 0,
                    bytes: b"hello through the server".to_vec()
                },
                IbbPacket::Close { sid: sid.into() },
            ]
        );
    }
}
