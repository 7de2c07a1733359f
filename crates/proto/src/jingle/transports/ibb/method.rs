//! In-Band Bytestreams (XEP-0261) as a [`TransportMethod`] of the session machine.

use minidom::Element;

use super::{IbbTransport, NS_JINGLE_IBB};
use crate::jingle::element::{JingleError, Transport};
use crate::jingle::transports::ice_udp::TransportLimits;
use crate::jingle::transports::TransportMethod;

/// The XEP-0261 Jingle IBB transport method: bytes through the XMPP server, no ICE, so the
/// fallback when ICE finds no path (XEP-0234 §2, XEP-0261 §2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IbbMethod;

impl TransportMethod for IbbMethod {
    /// [`NS_JINGLE_IBB`] (XEP-0261 §2).
    fn namespace(&self) -> &str {
        NS_JINGLE_IBB
    }

    /// Reads `sid` and `block-size` with [`IbbTransport::from_element`] (XEP-0261 §2).
    fn parse(&self, el: &Element, _limits: TransportLimits) -> Result<Transport, JingleError> {
        IbbTransport::from_element(el)
            .map(Transport::Ibb)
            .map_err(JingleError::Ibb)
    }

    /// No: the bytes go through the server (XEP-0047).
    fn carries_ice(&self) -> bool {
        false
    }
}
