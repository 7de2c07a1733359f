//! XEP-0320 (Use of DTLS-SRTP in Jingle Sessions): the `<fingerprint/>` element that carries
//! the hash of a party's DTLS certificate and its `setup` role inside a Jingle transport, and
//! the RFC 4145 / RFC 8842 rules that turn the offer's and the answer's `setup` into DTLS roles.
//!
//! The element (XEP-0320 §3):
//! `<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>AB:CD:…</fingerprint>`,
//! the text being the digest as hex pairs separated by `:` (RFC 8122 §5 `fingerprint`).
//! Only the element lives here; computing the digest of a certificate is the channel's job.
//!
//! Reading choices: the hash name is compared and stored in ASCII lowercase (RFC 8122 §5 names
//! are case-insensitive tokens); hex digits are accepted in either case and written in upper
//! case, as Conversations (libwebrtc) writes them; for a hash function RFC 8122 §5 names, the
//! digest must have that function's length, for any other one it must be 1 to
//! [`FINGERPRINT_MAX_LEN`] bytes; a missing or unknown `setup` is an error (XEP-0320 §3 makes
//! it required, and guessing a DTLS role is how two clients end up both waiting).

use std::fmt;

use minidom::Element;

use crate::channel::{Fingerprint, FingerprintError};
use crate::xmpp::stanza::set_attr;

/// Namespace of the DTLS fingerprint element (XEP-0320 §3, §7).
pub const NS_DTLS: &str = "urn:xmpp:jingle:apps:dtls:0";

/// Name of the element (XEP-0320 §3).
const FINGERPRINT: &str = "fingerprint";
/// Attribute naming the hash function (XEP-0320 §3, values of RFC 8122 §5).
const HASH: &str = "hash";
/// Attribute carrying the connection role (XEP-0320 §3, values of RFC 4145 §4).
const SETUP: &str = "setup";

use crate::channel::HASH_NAME_MAX_LEN;
pub use crate::channel::{digest_len, FINGERPRINT_MAX_LEN};
/// The hash function Conversations (libwebrtc) and we use (RFC 8122 §5 `sha-256`).
pub const SHA_256: &str = crate::channel::FINGERPRINT_HASH;

/// The `setup` attribute: which side opens the DTLS connection (RFC 4145 §4, as RFC 8842 §5
/// applies it to DTLS; XEP-0320 §3 carries it on `<fingerprint/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// Either role; only an offer may say this (RFC 8842 §5.2).
    Actpass,
    /// This party initiates: it is the DTLS client.
    Active,
    /// This party waits: it is the DTLS server.
    Passive,
    /// No connection for now (RFC 4145 §4); never usable for a data channel.
    Holdconn,
}

impl Setup {
    /// The attribute value (RFC 4145 §4).
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Actpass => "actpass",
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::Holdconn => "holdconn",
        }
    }

    /// Reads the attribute value, ignoring ASCII case; `None` for a value RFC 4145 §4 does not
    /// define.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Setup::Actpass,
            Setup::Active,
            Setup::Passive,
            Setup::Holdconn,
        ]
        .into_iter()
        .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    /// The `setup` an answerer uses for this offered value (RFC 8842 §5.3, RFC 4145 §4.1):
    /// `active` to `actpass` (the answerer is the DTLS client, which saves the offerer a round
    /// trip, and is what libwebrtc and so Conversations answer), the opposite role to `active`
    /// or `passive`; `holdconn` offers no connection and is an error.
    pub fn answer(self) -> Result<Setup, DtlsError> {
        match self {
            Setup::Actpass | Setup::Passive => Ok(Setup::Active),
            Setup::Active => Ok(Setup::Passive),
            Setup::Holdconn => Err(DtlsError::SetupMismatch {
                offer: self,
                answer: None,
            }),
        }
    }
}

impl fmt::Display for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Our side of the DTLS handshake (the channel layer's type), decided by the two `setup` values.
pub use crate::channel::DtlsRole;

/// Our DTLS role from the offer's and the answer's `setup` (RFC 8842 §5.2–§5.3, RFC 4145
/// §4.1): valid pairs are `actpass`/`active`, `actpass`/`passive`, `active`/`passive` and
/// `passive`/`active`; the side whose value is `active` is the client. `local_offered` says
/// whether we sent the offer (`session-initiate`) or the answer (`session-accept`).
pub fn dtls_role(offer: Setup, answer: Setup, local_offered: bool) -> Result<DtlsRole, DtlsError> {
    let answerer_is_client = match (offer, answer) {
        (Setup::Actpass | Setup::Passive, Setup::Active) => true,
        (Setup::Actpass | Setup::Active, Setup::Passive) => false,
        _ => {
            return Err(DtlsError::SetupMismatch {
                offer,
                answer: Some(answer),
            })
        }
    };
    Ok(if answerer_is_client != local_offered {
        DtlsRole::Client
    } else {
        DtlsRole::Server
    })
}

/// Why a `<fingerprint/>` cannot be read, or two `setup` values do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    /// The element is not `<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0'/>`.
    #[error("expected a DTLS fingerprint, got <{name}/> in namespace {ns:?}")]
    NotFingerprint {
        /// Name of the element received.
        name: String,
        /// Namespace of the element received.
        ns: String,
    },
    /// The `hash` attribute is absent.
    #[error("fingerprint has no hash attribute")]
    MissingHash,
    /// The `setup` attribute is absent.
    #[error("fingerprint has no setup attribute")]
    MissingSetup,
    /// The `setup` attribute is not one of RFC 4145 §4's values.
    #[error("fingerprint setup {0:?} is not actpass, active, passive or holdconn")]
    UnknownSetup(String),
    /// The hash name or the digest is not a fingerprint (RFC 8122 §5).
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    /// The offer's and the answer's `setup` do not give one client and one server.
    #[error("setup {offer} in the offer cannot be answered with {answer:?}")]
    SetupMismatch {
        /// The offer's value.
        offer: Setup,
        /// The answer's value, `None` when no answer can fit.
        answer: Option<Setup>,
    },
}

/// A DTLS certificate fingerprint with its connection role: the XEP-0320 §3 element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DtlsFingerprint {
    /// Which side opens the DTLS connection.
    pub setup: Setup,
    /// The hash function and the digest of the certificate.
    pub fingerprint: Fingerprint,
}

impl DtlsFingerprint {
    /// `fingerprint` with the role `setup`.
    pub fn new(setup: Setup, fingerprint: Fingerprint) -> Self {
        DtlsFingerprint { setup, fingerprint }
    }

    /// The hash function name, ASCII lowercase.
    pub fn hash(&self) -> &str {
        self.fingerprint.hash()
    }

    /// The digest.
    pub fn value(&self) -> &[u8] {
        self.fingerprint.as_bytes()
    }

    /// The digest as RFC 8122 §5 writes it: uppercase hex pairs separated by `:`.
    pub fn hex(&self) -> String {
        self.fingerprint.hex()
    }

    /// Reads a `<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0'/>` (XEP-0320 §3) with the
    /// checks described in the module documentation.
    pub fn from_element(el: &Element) -> Result<Self, DtlsError> {
        if !el.is(FINGERPRINT, NS_DTLS) {
            return Err(DtlsError::NotFingerprint {
                name: el.name().to_owned(),
                ns: el.ns(),
            });
        }
        let hash = el.attr(HASH).ok_or(DtlsError::MissingHash)?;
        let setup_text = el.attr(SETUP).ok_or(DtlsError::MissingSetup)?;
        let setup = Setup::parse(setup_text).ok_or_else(|| {
            DtlsError::UnknownSetup(setup_text.chars().take(HASH_NAME_MAX_LEN).collect())
        })?;
        let fingerprint = Fingerprint::parse(hash, &el.text())?;
        Ok(DtlsFingerprint { setup, fingerprint })
    }

    /// Renders the element of XEP-0320 §3, the digest in uppercase hex as Conversations writes
    /// it.
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare(FINGERPRINT, NS_DTLS);
        set_attr(&mut el, HASH, self.hash());
        set_attr(&mut el, SETUP, self.setup.as_str());
        el.append_text_node(self.hex());
        el
    }
}

impl fmt::Display for DtlsFingerprint {
    /// The SDP form of RFC 8122 §5 (`sha-256 AB:CD:…`) followed by the role in parentheses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (setup {})", self.fingerprint, self.setup)
    }
}

impl TryFrom<&Element> for DtlsFingerprint {
    type Error = DtlsError;

    /// [`DtlsFingerprint::from_element`].
    fn try_from(el: &Element) -> Result<Self, Self::Error> {
        DtlsFingerprint::from_element(el)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX32: &str = "5E:2B:9A:11:00:FF:3C:7D:8E:41:6A:B2:C3:D4:E5:F6:07:18:29:3A:4B:5C:6D:7E:8F:90:A1:B2:C3:D4:E5:F6";

    fn el(hash: Option<&str>, setup: Option<&str>, text: &str) -> Element {
        let mut e = Element::bare(FINGERPRINT, NS_DTLS);
        if let Some(h) = hash {
            set_attr(&mut e, HASH, h);
        }
        if let Some(s) = setup {
            set_attr(&mut e, SETUP, s);
        }
        e.append_text_node(text);
        e
    }

    #[test]
    fn reads_and_writes_uppercase() {
        let fp = DtlsFingerprint::from_element(&el(
            Some("SHA-256"),
            Some("actpass"),
            &HEX32.to_lowercase(),
        ))
        .unwrap();
        assert_eq!(fp.hash(), "sha-256");
        assert_eq!(fp.setup, Setup::Actpass);
        assert_eq!(fp.value().len(), 32);
        assert_eq!(fp.value()[0], 0x5e);
        assert_eq!(fp.hex(), HEX32);
        let back = fp.to_element();
        assert_eq!(back.text(), HEX32);
        assert_eq!(back.attr("hash"), Some("sha-256"));
        assert_eq!(back.attr("setup"), Some("actpass"));
        assert_eq!(DtlsFingerprint::from_element(&back).unwrap(), fp);
        assert!(fp.to_string().starts_with("sha-256 5E:2B:"));
        assert!(fp.to_string().ends_with("(setup actpass)"));
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        let fp = DtlsFingerprint::from_element(&el(
            Some("sha-256"),
            Some("active"),
            &format!("\n  {HEX32}\n"),
        ))
        .unwrap();
        assert_eq!(fp.setup, Setup::Active);
    }

    #[test]
    fn bad_hex_is_reported_with_its_position() {
        let bad = HEX32.replacen("9A", "9G", 1);
        assert_eq!(
            DtlsFingerprint::from_element(&el(Some("sha-256"), Some("active"), &bad)),
            Err(DtlsError::Fingerprint(FingerprintError::BadHex {
                index: 2,
                group: "9G".into()
            }))
        );
        for text in [
            "5E2B",
            "5E::2B",
            "5E:2B:",
            "5E-2B",
            "5:E2",
            "+5:2B",
            "5E:2B:9A:11:00:FF:3C:7D:8E:41:6A:B2:C3:D4:E5:F6:07:18:29:3A:4B:5C:6D:7E:8F:90:A1:B2:C3:D4:E5:é",
        ] {
            let r = DtlsFingerprint::from_element(&el(Some("sha-256"), Some("active"), text));
            assert!(
                matches!(
                    r,
                    Err(DtlsError::Fingerprint(FingerprintError::BadHex { .. }))
                ),
                "{text:?} gave {r:?}"
            );
        }
    }

    #[test]
    fn wrong_length_for_the_hash_is_an_error() {
        let short = &HEX32[..HEX32.len() - 3];
        assert_eq!(
            DtlsFingerprint::from_element(&el(Some("sha-256"), Some("active"), short)),
            Err(DtlsError::Fingerprint(FingerprintError::WrongLength {
                hash: "sha-256".into(),
                expected: 32,
                got: 31
            }))
        );
        // 32 bytes are right for sha-256, wrong for sha-1.
        assert!(matches!(
            DtlsFingerprint::from_element(&el(Some("sha-1"), Some("active"), HEX32)),
            Err(DtlsError::Fingerprint(FingerprintError::WrongLength {
                expected: 20,
                ..
            }))
        ));
        // An unknown hash takes any length up to the bound.
        let fp = DtlsFingerprint::from_element(&el(Some("x-new-hash"), Some("active"), "01:02"))
            .unwrap();
        assert_eq!(fp.value(), &[1, 2]);
        let long = vec!["AB"; FINGERPRINT_MAX_LEN + 1].join(":");
        assert!(matches!(
            DtlsFingerprint::from_element(&el(Some("x-new-hash"), Some("active"), &long)),
            Err(DtlsError::Fingerprint(FingerprintError::TooLong(_)))
        ));
        assert_eq!(
            DtlsFingerprint::from_element(&el(Some("sha-256"), Some("active"), "  ")),
            Err(DtlsError::Fingerprint(FingerprintError::Empty))
        );
    }

    #[test]
    fn attributes_are_checked() {
        assert_eq!(
            DtlsFingerprint::from_element(&el(None, Some("active"), HEX32)),
            Err(DtlsError::MissingHash)
        );
        assert!(matches!(
            DtlsFingerprint::from_element(&el(Some("sha 256"), Some("active"), HEX32)),
            Err(DtlsError::Fingerprint(FingerprintError::InvalidHash(_)))
        ));
        assert_eq!(
            DtlsFingerprint::from_element(&el(Some("sha-256"), None, HEX32)),
            Err(DtlsError::MissingSetup)
        );
        assert_eq!(
            DtlsFingerprint::from_element(&el(Some("sha-256"), Some("server"), HEX32)),
            Err(DtlsError::UnknownSetup("server".into()))
        );
        let other = Element::bare(FINGERPRINT, "urn:example:other");
        assert!(matches!(
            DtlsFingerprint::from_element(&other),
            Err(DtlsError::NotFingerprint { .. })
        ));
    }

    #[test]
    fn setup_values_and_answers() {
        for s in ["actpass", "active", "passive", "holdconn"] {
            assert_eq!(Setup::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(Setup::parse("ACTPASS"), Some(Setup::Actpass));
        assert_eq!(Setup::parse("both"), None);
        assert_eq!(Setup::Actpass.answer(), Ok(Setup::Active));
        assert_eq!(Setup::Active.answer(), Ok(Setup::Passive));
        assert_eq!(Setup::Passive.answer(), Ok(Setup::Active));
        assert!(Setup::Holdconn.answer().is_err());
    }

    #[test]
    fn roles_from_offer_and_answer() {
        use DtlsRole::*;
        // Conversations' case: it offers actpass, the answerer takes active and is the client.
        assert_eq!(dtls_role(Setup::Actpass, Setup::Active, false), Ok(Client));
        assert_eq!(dtls_role(Setup::Actpass, Setup::Active, true), Ok(Server));
        assert_eq!(dtls_role(Setup::Actpass, Setup::Passive, true), Ok(Client));
        assert_eq!(dtls_role(Setup::Active, Setup::Passive, true), Ok(Client));
        assert_eq!(dtls_role(Setup::Passive, Setup::Active, true), Ok(Server));
        for (o, a) in [
            (Setup::Actpass, Setup::Actpass),
            (Setup::Active, Setup::Active),
            (Setup::Passive, Setup::Passive),
            (Setup::Holdconn, Setup::Active),
            (Setup::Actpass, Setup::Holdconn),
        ] {
            assert!(dtls_role(o, a, true).is_err(), "{o} / {a}");
        }
    }

    #[test]
    fn matching_a_certificate() {
        let cert = crate::channel::Certificate::generate().unwrap();
        let fp = DtlsFingerprint::new(Setup::Active, cert.fingerprint());
        assert!(fp.fingerprint.matches_der(cert.der()));
        let other = crate::channel::Certificate::generate().unwrap();
        assert!(!fp.fingerprint.matches_der(other.der()));
        let back = DtlsFingerprint::from_element(&fp.to_element()).unwrap();
        assert_eq!(back, fp);
    }
}
