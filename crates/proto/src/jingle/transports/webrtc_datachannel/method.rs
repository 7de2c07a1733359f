//! Conversations' `webrtc-datachannel:1` transport as a [`TransportMethod`] of the session
//! machine: ICE-UDP (XEP-0176) wrapped with SCTP parameters (RFC 8841) and a DTLS
//! fingerprint (XEP-0320).

use minidom::Element;

use super::dtls::dtls_role;
use super::{DataChannelTransport, NS_WEBRTC_DATACHANNEL};
use crate::jingle::element::{JingleError, Transport};
use crate::jingle::transports::ice_udp::{IceUdpTransport, TransportLimits};
use crate::jingle::transports::TransportMethod;

/// The `webrtc-datachannel:1` transport method (see [`super`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataChannelMethod;

impl TransportMethod for DataChannelMethod {
    /// [`NS_WEBRTC_DATACHANNEL`].
    fn namespace(&self) -> &str {
        NS_WEBRTC_DATACHANNEL
    }

    /// Reads the element with [`DataChannelTransport::from_element`] (Conversations' shape:
    /// `sctp-port`, `max-message-size`, the inner XEP-0176 transport).
    fn parse(&self, el: &Element, limits: TransportLimits) -> Result<Transport, JingleError> {
        DataChannelTransport::from_element(el, limits)
            .map(Transport::DataChannel)
            .map_err(JingleError::DataChannel)
    }

    /// An offer carries a DTLS fingerprint and ICE credentials (XEP-0320 §3, XEP-0176 §5.3),
    /// and a `setup` an answer can be given for (RFC 8842 §5.2).
    fn check_offer(&self, offer: &Transport) -> Result<(), String> {
        let Transport::DataChannel(t) = offer else {
            return Ok(());
        };
        t.check_offer_or_answer().map_err(|e| e.to_string())?;
        if let Some(fp) = t.fingerprint() {
            fp.setup.answer().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The answer to a data-channel offer is a data channel too, with fingerprint and
    /// credentials, and a `setup` that fits ours (XEP-0320 §3, RFC 8842 §5.3).
    fn check_answer(&self, offered: &Transport, answer: Option<&Transport>) -> Result<(), String> {
        let Transport::DataChannel(ours) = offered else {
            return Ok(());
        };
        let Some(Transport::DataChannel(theirs)) = answer else {
            return Err(
                "a webrtc-datachannel offer must be answered with webrtc-datachannel".into(),
            );
        };
        theirs.check_offer_or_answer().map_err(|e| e.to_string())?;
        if let (Some(o), Some(a)) = (ours.fingerprint(), theirs.fingerprint()) {
            dtls_role(o.setup, a.setup, true).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Yes: the inner XEP-0176 transport.
    fn carries_ice(&self) -> bool {
        true
    }

    /// The SCTP attributes repeated around `ice`, without the fingerprint
    /// ([`DataChannelTransport::rewrap`], Conversations' `transport-info` shape).
    fn wrap_ice(&self, negotiated: &Transport, ice: IceUdpTransport) -> Transport {
        match negotiated {
            Transport::DataChannel(t) => Transport::DataChannel(t.rewrap(ice)),
            _ => Transport::IceUdp(ice),
        }
    }

    /// Yes: Conversations sends a BUNDLE group naming its data-channel content (XEP-0338,
    /// RFC 8843).
    fn bundles(&self) -> bool {
        true
    }
}
