//! The tube's application description (`xep/tube.md` §2): what a Jingle content offering a
//! stream tube carries, sans-IO.
//!
//! ```xml
//! <description xmlns='urn:jingle-ice:tube:0' type='stream' service='http'>
//!   <desc>Alice's web pages</desc>
//! </description>
//! ```

use minidom::Element;

use crate::xmpp::stanza::{set_attr, LimitExceeded, StanzaLimits};

/// Namespace of the tube description and of the data channels' sub-protocol (`xep/tube.md`
/// §1: our own, versioned; the Telepathy-era tubes used
/// `http://telepathy.freedesktop.org/xmpp/tubes`, a different protocol).
pub const NS_TUBE: &str = "urn:jingle-ice:tube:0";

/// The only tube type this version defines (`xep/tube.md` §2: a TCP byte stream per
/// connection; Telepathy also had D-Bus tubes, which we do not carry).
pub const TYPE_STREAM: &str = "stream";

/// Longest `service` accepted (`xep/tube.md` §2).
pub const SERVICE_MAX_LEN: usize = 255;
/// Longest `<desc/>` accepted (`xep/tube.md` §2).
pub const DESC_MAX_LEN: usize = 1024;

mod names {
    pub const DESCRIPTION: &str = "description";
    pub const TYPE: &str = "type";
    pub const SERVICE: &str = "service";
    pub const DESC: &str = "desc";
}

/// Why a description is not a tube we can take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TubeDescriptionError {
    /// Not `<description xmlns='urn:jingle-ice:tube:0'/>`.
    #[error("not a tube description ({0})")]
    NotATube(String),
    /// A `type` other than `stream`.
    #[error("unsupported tube type {0:?}")]
    UnsupportedType(String),
    /// `service` missing, empty, too long or with control characters.
    #[error("invalid service name")]
    InvalidService,
    /// `<desc/>` too long.
    #[error("description longer than {DESC_MAX_LEN} bytes")]
    DescTooLong,
    /// The element breaks [`StanzaLimits::DEFAULT`] and was not read.
    #[error("{0}")]
    Limits(LimitExceeded),
}

/// A stream tube offer (`xep/tube.md` §2): the service's name (a label for the user and for
/// dispatch, like Telepathy's service name, not an address) and an optional description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TubeDescription {
    /// The service's name, for example `http` (at most [`SERVICE_MAX_LEN`] bytes, no control
    /// characters).
    pub service: String,
    /// A human-readable description.
    pub desc: Option<String>,
}

impl TubeDescription {
    /// A stream tube offering `service`.
    pub fn new(service: impl Into<String>) -> Self {
        TubeDescription {
            service: service.into(),
            desc: None,
        }
    }

    /// Renders the element, for [`crate::jingle::Content::description`].
    pub fn to_element(&self) -> Element {
        let mut el = Element::bare(names::DESCRIPTION, NS_TUBE);
        set_attr(&mut el, names::TYPE, TYPE_STREAM);
        set_attr(&mut el, names::SERVICE, self.service.as_str());
        if let Some(d) = &self.desc {
            let mut c = Element::bare(names::DESC, NS_TUBE);
            c.append_text_node(d.as_str());
            el.append_child(c);
        }
        el
    }

    /// Reads a tube description. A missing `type` means `stream`; unknown children and
    /// attributes are ignored (`xep/tube.md` §2).
    pub fn from_element(el: &Element) -> Result<TubeDescription, TubeDescriptionError> {
        if el.name() != names::DESCRIPTION || el.ns() != NS_TUBE {
            return Err(TubeDescriptionError::NotATube(format!(
                "{{{}}}{}",
                el.ns(),
                el.name()
            )));
        }
        StanzaLimits::DEFAULT
            .check(el)
            .map_err(TubeDescriptionError::Limits)?;
        let kind = el.attr(names::TYPE).unwrap_or(TYPE_STREAM);
        if kind != TYPE_STREAM {
            return Err(TubeDescriptionError::UnsupportedType(
                kind.chars().take(32).collect(),
            ));
        }
        let service = el.attr(names::SERVICE).unwrap_or("");
        if !valid_service(service) {
            return Err(TubeDescriptionError::InvalidService);
        }
        let desc = match el.get_child(names::DESC, NS_TUBE) {
            Some(d) => {
                let text = d.text();
                if text.len() > DESC_MAX_LEN {
                    return Err(TubeDescriptionError::DescTooLong);
                }
                Some(text)
            }
            None => None,
        };
        Ok(TubeDescription {
            service: service.to_owned(),
            desc,
        })
    }
}

/// A service name is 1 to [`SERVICE_MAX_LEN`] bytes without control characters.
pub fn valid_service(s: &str) -> bool {
    !s.is_empty() && s.len() <= SERVICE_MAX_LEN && !s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut d = TubeDescription::new("http");
        d.desc = Some("pages & <stuff>".into());
        let el = d.to_element();
        assert_eq!(el.attr("type"), Some("stream"));
        assert_eq!(TubeDescription::from_element(&el).unwrap(), d);
    }

    #[test]
    fn parses_the_documented_example() {
        let el: Element = "<description xmlns='urn:jingle-ice:tube:0' type='stream' \
             service='http'><desc>Alice's web pages</desc><x xmlns='urn:other'/></description>"
            .parse()
            .unwrap();
        let d = TubeDescription::from_element(&el).unwrap();
        assert_eq!(d.service, "http");
        assert_eq!(d.desc.as_deref(), Some("Alice's web pages"));
    }

    #[test]
    fn refuses_what_is_not_a_stream_tube() {
        let other: Element = "<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'/>"
            .parse()
            .unwrap();
        assert!(matches!(
            TubeDescription::from_element(&other),
            Err(TubeDescriptionError::NotATube(_))
        ));
        let dbus: Element = "<description xmlns='urn:jingle-ice:tube:0' type='dbus' service='x'/>"
            .parse()
            .unwrap();
        assert!(matches!(
            TubeDescription::from_element(&dbus),
            Err(TubeDescriptionError::UnsupportedType(_))
        ));
        for bad in ["", "a\nb", &"s".repeat(SERVICE_MAX_LEN + 1)] {
            let mut el = TubeDescription::new("x").to_element();
            set_attr(&mut el, "service", bad);
            assert_eq!(
                TubeDescription::from_element(&el),
                Err(TubeDescriptionError::InvalidService)
            );
        }
        let mut long = TubeDescription::new("x");
        long.desc = Some("d".repeat(DESC_MAX_LEN + 1));
        assert_eq!(
            TubeDescription::from_element(&long.to_element()),
            Err(TubeDescriptionError::DescTooLong)
        );
    }
}
