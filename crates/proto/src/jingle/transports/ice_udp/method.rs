//! ICE-UDP (XEP-0176) as a [`TransportMethod`] of the session machine.

use minidom::Element;

use super::{IceUdpTransport, TransportLimits, NS_ICE_UDP};
use crate::jingle::element::{JingleError, Transport};
use crate::jingle::transports::TransportMethod;

/// The XEP-0176 ICE-UDP transport method: the transport is the ICE-UDP element itself
/// (§5.3), and `transport-info` carries it as is (§5.5 trickle).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IceUdpMethod;

impl TransportMethod for IceUdpMethod {
    /// [`NS_ICE_UDP`] (XEP-0176 §12.1).
    fn namespace(&self) -> &str {
        NS_ICE_UDP
    }

    /// Reads the element with [`IceUdpTransport::from_element`] (XEP-0176 §5.3, §13 schema).
    fn parse(&self, el: &Element, limits: TransportLimits) -> Result<Transport, JingleError> {
        IceUdpTransport::from_element(el, limits)
            .map(Transport::IceUdp)
            .map_err(JingleError::Transport)
    }

    /// Yes: credentials and candidates are the transport (XEP-0176 §5.3).
    fn carries_ice(&self) -> bool {
        true
    }
}
