//! A deterministic simulated network in virtual time: hosts, NAT boxes (RFC 4787 behaviours),
//! links with delay and loss, and a STUN server.
