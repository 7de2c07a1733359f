//! SASL for the client connection (RFC 6120 §6): the mechanism and channel binding chosen from
//! what the server offers, the exchange, and failures that name their real reason.
//!
//! Channel binding (RFC 5802 §6): on TLS 1.3 the connection can be bound with `tls-exporter`
//! (RFC 9266), the binding type defined for it (`tls-unique` is not defined for TLS 1.3, RFC 9266
//! §3, and we do not implement it for TLS 1.2). A server may offer `-PLUS` mechanisms for a type
//! we do not have: ejabberd 23.01 knows only `tls-unique`, offers SCRAM-SHA-1-PLUS on TLS 1.3
//! as well, and fails a `tls-exporter` login with "Invalid channel binding". So, as careful
//! clients do, a `-PLUS` mechanism is chosen only when the server lists `tls-exporter` among its
//! channel-binding types (XEP-0440); otherwise plain SCRAM over the verified TLS, with the GS2
//! flag RFC 5802 §6 asks for:
//! - `n` when the server offers `-PLUS` mechanisms (it supports some binding, just not one we
//!   can use: a `y` there would make it fail the login as a downgrade attack), and when we have
//!   no binding data for this connection;
//! - `y` when we could bind but the server offers no `-PLUS` mechanism at all (so that a server
//!   that does support binding detects a man in the middle who removed them).
//!
//! The server's final SCRAM message is verified (RFC 5802 §9: it proves the server knows the
//! account's keys), which tokio-xmpp's own `client_login` does not do.

use std::collections::BTreeSet;
use std::fmt;

use ::sasl::client::mechanisms::{Plain, Scram};
use ::sasl::client::Mechanism;
use ::sasl::common::scram::{Sha1, Sha256};
use ::sasl::common::ChannelBinding;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use futures::SinkExt;
use minidom::Element;
use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio_xmpp::xmlstream::XmlStream;

use super::{next_login_element, set_attr, XmppError};

/// The SASL namespace of RFC 6120 §6.4.
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// XEP-0440 (SASL Channel-Binding Type Capability) §2: the stream feature listing the server's
/// channel-binding types.
const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";
/// The channel-binding type for TLS 1.3 (RFC 9266 §2), as XEP-0440 and the GS2 header name it.
pub const TLS_EXPORTER: &str = "tls-exporter";

/// SCRAM with SHA-256 and channel binding (RFC 7677 §3).
const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";
/// SCRAM with SHA-1 and channel binding (RFC 5802 §4).
const SCRAM_SHA_1_PLUS: &str = "SCRAM-SHA-1-PLUS";
/// SCRAM with SHA-256 (RFC 7677 §3).
const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// SCRAM with SHA-1 (RFC 5802 §4).
const SCRAM_SHA_1: &str = "SCRAM-SHA-1";
/// PLAIN (RFC 4616): the password itself, only ever inside the connector's verified TLS.
const PLAIN: &str = "PLAIN";
/// The suffix of SCRAM mechanisms with channel binding (RFC 5802 §4).
const PLUS_SUFFIX: &str = "-PLUS";
/// The mechanisms with channel binding we implement, most preferred first.
const WITH_BINDING: [&str; 2] = [SCRAM_SHA_256_PLUS, SCRAM_SHA_1_PLUS];
/// The mechanisms without channel binding we implement, most preferred first.
const WITHOUT_BINDING: [&str; 3] = [SCRAM_SHA_256, SCRAM_SHA_1, PLAIN];
/// At most this many mechanisms and channel-binding types are read from the stream features.
const MAX_FEATURE_ITEMS: usize = 64;

/// The channel-binding part of the GS2 header that starts a SCRAM exchange (RFC 5802 §6, §7
/// `gs2-cbind-flag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gs2Binding {
    /// `p=tls-exporter`: bound to this TLS 1.3 connection (RFC 9266), with a `-PLUS` mechanism.
    TlsExporter,
    /// `n`: no channel binding from us, because we have no binding data for this connection or
    /// the server supports only types we do not.
    NotUsed,
    /// `y`: we could bind, but the server offers no `-PLUS` mechanism.
    ServerLacksIt,
}

impl Gs2Binding {
    /// The flag as it appears in the GS2 header: `p=tls-exporter`, `n` or `y`.
    pub fn gs2_flag(self) -> &'static str {
        match self {
            Gs2Binding::TlsExporter => "p=tls-exporter",
            Gs2Binding::NotUsed => "n",
            Gs2Binding::ServerLacksIt => "y",
        }
    }
}

/// The SASL mechanism a login uses, with its channel binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslChoice {
    /// The mechanism name (RFC 4422 §3.1), e.g. `SCRAM-SHA-1`.
    pub mechanism: &'static str,
    /// The GS2 channel-binding flag of a SCRAM mechanism; `None` for PLAIN, which has none.
    pub binding: Option<Gs2Binding>,
}

impl fmt::Display for SaslChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.binding {
            Some(b) => write!(
                f,
                "{} (channel binding flag {})",
                self.mechanism,
                b.gs2_flag()
            ),
            None => f.write_str(self.mechanism),
        }
    }
}

/// What the stream features before authentication say about SASL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SaslFeatures {
    /// The offered mechanisms (RFC 6120 §6.4.1).
    pub mechanisms: BTreeSet<String>,
    /// The channel-binding types of XEP-0440, `None` when the server does not announce them.
    pub channel_bindings: Option<Vec<String>>,
}

impl SaslFeatures {
    /// Reads `<stream:features/>`; unknown children and types are ignored or kept as text,
    /// never an error.
    pub fn read(features: &Element) -> SaslFeatures {
        let mechanisms = features
            .get_child("mechanisms", NS_SASL)
            .map(|m| {
                m.children()
                    .filter(|c| c.is("mechanism", NS_SASL))
                    .map(|c| c.text().trim().to_owned())
                    .filter(|name| !name.is_empty())
                    .take(MAX_FEATURE_ITEMS)
                    .collect()
            })
            .unwrap_or_default();
        let channel_bindings = features
            .get_child("sasl-channel-binding", NS_SASL_CB)
            .map(|cb| {
                cb.children()
                    .filter(|c| c.is("channel-binding", NS_SASL_CB))
                    .filter_map(|c| c.attr("type"))
                    .map(|t| t.trim().to_owned())
                    .take(MAX_FEATURE_ITEMS)
                    .collect()
            });
        SaslFeatures {
            mechanisms,
            channel_bindings,
        }
    }
}

/// Why a SASL login failed (RFC 6120 §6.4.5, §6.5), with the server's own words when it gave
/// any. The message names the real reason: wrong credentials, a refused channel binding, no
/// mechanism in common, ...
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// `<not-authorized/>` (RFC 6120 §6.5.10) with no word about channel binding: the user
    /// name or the password is wrong.
    #[error(
        "wrong user name or password: the server answered <not-authorized/> to {mechanism}{}{}",
        said(text),
        binding_note(*binding)
    )]
    WrongCredentials {
        /// The mechanism used.
        mechanism: &'static str,
        /// The channel binding used.
        binding: Option<Gs2Binding>,
        /// The server's `<text/>`.
        text: Option<String>,
    },
    /// The server refused the channel binding (its failure text says so; ejabberd 23.01:
    /// `<not-authorized/>` "Invalid channel binding" to `tls-exporter`): not a password
    /// problem.
    #[error(
        "the server rejected the channel binding ({}) of {mechanism} with <{condition}/>{}; \
         this is not a password problem",
        binding.map_or("none", Gs2Binding::gs2_flag),
        said(text)
    )]
    ChannelBindingRejected {
        /// The mechanism used.
        mechanism: &'static str,
        /// The channel binding used.
        binding: Option<Gs2Binding>,
        /// The SASL failure condition (RFC 6120 §6.5).
        condition: String,
        /// The server's `<text/>`.
        text: Option<String>,
    },
    /// Any other failure condition (RFC 6120 §6.5): the account is disabled, the password
    /// expired, a temporary failure, a mechanism too weak, ...
    #[error(
        "the server refused the login with <{condition}/> ({}) to {mechanism}{}",
        condition_meaning(condition),
        said(text)
    )]
    Refused {
        /// The mechanism used.
        mechanism: &'static str,
        /// The SASL failure condition (RFC 6120 §6.5).
        condition: String,
        /// The server's `<text/>`.
        text: Option<String>,
    },
    /// None of the offered mechanisms is one we implement and may use here.
    #[error(
        "no SASL mechanism in common: the server offers [{}]; we use {}, SCRAM-SHA-256, \
         SCRAM-SHA-1 or PLAIN{}",
        offered.join(", "),
        WITH_BINDING.join(", "),
        plus_note(*tls_exporter)
    )]
    NoCommonMechanism {
        /// What the server offered.
        offered: Vec<String>,
        /// Whether both sides could have bound with `tls-exporter` (XEP-0440).
        tls_exporter: bool,
    },
    /// The server's final SCRAM message does not prove it knows the account's keys
    /// (RFC 5802 §9): not the account's server, or a broken one.
    #[error("the server's SCRAM signature does not verify (RFC 5802 §9): {0}")]
    ServerSignature(String),
    /// The exchange broke (an undecodable challenge, an unexpected element).
    #[error("the SASL exchange with {mechanism} failed: {reason}")]
    Exchange {
        /// The mechanism used.
        mechanism: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// `: "TEXT"` for a server text, else nothing.
fn said(text: &Option<String>) -> String {
    text.as_deref()
        .map(|t| format!(": {t:?}"))
        .unwrap_or_default()
}

fn binding_note(binding: Option<Gs2Binding>) -> &'static str {
    match binding {
        Some(Gs2Binding::TlsExporter) => {
            " (with channel binding tls-exporter, and the server gave no reason: a server that \
             mishandles the binding may answer the same way)"
        }
        _ => "",
    }
}

fn plus_note(tls_exporter: bool) -> &'static str {
    if tls_exporter {
        ""
    } else {
        " (the -PLUS mechanisms only when the server lists tls-exporter among its channel-binding \
         types, XEP-0440)"
    }
}

/// A few words on a SASL failure condition (RFC 6120 §6.5).
fn condition_meaning(condition: &str) -> &'static str {
    match condition {
        "aborted" => "the exchange was aborted",
        "account-disabled" => "the account is disabled",
        "credentials-expired" => "the password has expired",
        "encryption-required" => "the mechanism needs an encrypted stream",
        "incorrect-encoding" => "the server could not decode our data",
        "invalid-authzid" => "the authorization identity is refused",
        "invalid-mechanism" => "the server does not support the mechanism",
        "malformed-request" => "the server could not read our request",
        "mechanism-too-weak" => "the mechanism is too weak for this account",
        "not-authorized" => "not authorized",
        "temporary-auth-failure" => "a temporary failure on the server: try again later",
        _ => "a condition RFC 6120 does not define",
    }
}

/// Whether a server's failure text is about channel binding (ejabberd: "Invalid channel
/// binding"; Prosody: "Invalid channel binding value.", "Proposed channel binding type isn't
/// supported.").
fn about_channel_binding(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("channel binding") || t.contains("channel-binding") || t.contains("cbind")
}

fn offers(offered: &BTreeSet<String>, mechanism: &str) -> bool {
    offered.iter().any(|m| m.eq_ignore_ascii_case(mechanism))
}

/// Chooses the mechanism and channel binding for a login (see the module documentation):
/// `offered` are the server's mechanisms, `channel_bindings` its XEP-0440 types (`None` when it
/// announces none), `tls_exporter` whether we have `tls-exporter` data for this connection.
pub fn choose_mechanism(
    offered: &BTreeSet<String>,
    channel_bindings: Option<&[String]>,
    tls_exporter: bool,
) -> Result<SaslChoice, AuthFailure> {
    let server_exporter =
        channel_bindings.is_some_and(|types| types.iter().any(|t| t == TLS_EXPORTER));
    if tls_exporter && server_exporter {
        if let Some(mechanism) = WITH_BINDING.into_iter().find(|m| offers(offered, m)) {
            return Ok(SaslChoice {
                mechanism,
                binding: Some(Gs2Binding::TlsExporter),
            });
        }
    }
    let server_binds = offered
        .iter()
        .any(|m| m.len() > PLUS_SUFFIX.len() && m.to_ascii_uppercase().ends_with(PLUS_SUFFIX));
    let flag = if tls_exporter && !server_binds {
        Gs2Binding::ServerLacksIt
    } else {
        Gs2Binding::NotUsed
    };
    match WITHOUT_BINDING.into_iter().find(|m| offers(offered, m)) {
        Some(PLAIN) => Ok(SaslChoice {
            mechanism: PLAIN,
            binding: None,
        }),
        Some(mechanism) => Ok(SaslChoice {
            mechanism,
            binding: Some(flag),
        }),
        None => Err(AuthFailure::NoCommonMechanism {
            offered: offered.iter().cloned().collect(),
            tls_exporter: tls_exporter && server_exporter,
        }),
    }
}

/// The failure a `<failure/>` (RFC 6120 §6.4.5) means for a login with `choice`.
pub(super) fn failure_reason(choice: &SaslChoice, failure: &Element) -> AuthFailure {
    let condition = failure
        .children()
        .find(|c| c.ns() == NS_SASL && c.name() != "text")
        .map(|c| c.name().to_owned())
        // RFC 6120 §6.5: a failure without a known condition is to be treated as
        // <not-authorized/>... but without one we cannot be sure, so say what came.
        .unwrap_or_else(|| "undefined-condition".to_owned());
    let text = failure
        .get_child("text", NS_SASL)
        .map(|t| t.text().trim().to_owned())
        .filter(|t| !t.is_empty());
    if text.as_deref().is_some_and(about_channel_binding) {
        AuthFailure::ChannelBindingRejected {
            mechanism: choice.mechanism,
            binding: choice.binding,
            condition,
            text,
        }
    } else if condition == "not-authorized" {
        AuthFailure::WrongCredentials {
            mechanism: choice.mechanism,
            binding: choice.binding,
            text,
        }
    } else {
        AuthFailure::Refused {
            mechanism: choice.mechanism,
            condition,
            text,
        }
    }
}

/// The client side of `choice`, for `username` and `password`; `exporter` is the
/// `tls-exporter` data (needed for [`Gs2Binding::TlsExporter`]).
pub(super) fn mechanism(
    choice: &SaslChoice,
    username: &str,
    password: &str,
    exporter: Option<Vec<u8>>,
) -> Result<Box<dyn Mechanism + Send>, AuthFailure> {
    let broken = |reason: &str| AuthFailure::Exchange {
        mechanism: choice.mechanism,
        reason: reason.to_owned(),
    };
    let binding = match choice.binding {
        Some(Gs2Binding::TlsExporter) => ChannelBinding::TlsExporter(
            exporter.ok_or_else(|| broken("no tls-exporter data for a -PLUS mechanism"))?,
        ),
        Some(Gs2Binding::ServerLacksIt) => ChannelBinding::Unsupported,
        Some(Gs2Binding::NotUsed) | None => ChannelBinding::None,
    };
    let nonce = |_| broken("cannot generate a client nonce");
    let built: Box<dyn Mechanism + Send> = match choice.mechanism {
        SCRAM_SHA_256 | SCRAM_SHA_256_PLUS => {
            Box::new(Scram::<Sha256>::new(username, password, binding).map_err(nonce)?)
        }
        SCRAM_SHA_1 | SCRAM_SHA_1_PLUS => {
            Box::new(Scram::<Sha1>::new(username, password, binding).map_err(nonce)?)
        }
        PLAIN => Box::new(Plain::new(username, password)),
        _ => return Err(broken("not a mechanism we implement")),
    };
    // The sasl crate derives the name (with or without -PLUS) from the binding it was given.
    if built.name() != choice.mechanism {
        return Err(broken(&format!(
            "the mechanism object calls itself {}",
            built.name()
        )));
    }
    Ok(built)
}

/// `<name xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>base64</name>`, with `=` for empty data
/// where RFC 6120 §6.4.2 asks for it (the initial response of `<auth/>`).
fn sasl_element(name: &str, data: &[u8], empty_as_equals: bool) -> Element {
    let text = if data.is_empty() && empty_as_equals {
        "=".to_owned()
    } else {
        BASE64.encode(data)
    };
    Element::builder(name, NS_SASL).append(text).build()
}

/// The data of a `<challenge/>` or `<success/>` (RFC 6120 §6.4.3, §6.4.6): base64, where
/// empty and `=` both mean none.
fn sasl_data(el: &Element) -> Result<Vec<u8>, String> {
    let text: String = el.text().chars().filter(|c| !c.is_whitespace()).collect();
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    BASE64
        .decode(text.as_bytes())
        .map_err(|e| format!("<{}/> is not base64: {e}", el.name()))
}

/// The client side of one SASL exchange (RFC 6120 §6.4.2-§6.4.6), sans-IO: [`start`] gives
/// the `<auth/>` to send, [`handle`] takes each element the server answers with and says what
/// to send next or that authentication succeeded.
///
/// [`start`]: SaslExchange::start
/// [`handle`]: SaslExchange::handle
pub(super) struct SaslExchange {
    choice: SaslChoice,
    mechanism: Box<dyn Mechanism + Send>,
    challenges: u32,
    verified: bool,
}

/// What to do after an element from the server.
#[derive(Debug)]
pub(super) enum SaslStep {
    /// Send this `<response/>` and wait for the next element.
    Send(Element),
    /// Authenticated (and, for SCRAM, the server proved it knows the account's keys): restart
    /// the stream (RFC 6120 §6.4.6).
    Done,
}

impl SaslExchange {
    /// Builds the mechanism of `choice` and the `<auth/>` that opens the exchange.
    pub fn start(
        choice: SaslChoice,
        username: &str,
        password: &str,
        exporter: Option<Vec<u8>>,
    ) -> Result<(SaslExchange, Element), AuthFailure> {
        let mut mechanism = mechanism(&choice, username, password, exporter)?;
        let mut auth = sasl_element("auth", &mechanism.initial(), true);
        set_attr(&mut auth, "mechanism", choice.mechanism);
        let exchange = SaslExchange {
            choice,
            mechanism,
            challenges: 0,
            verified: false,
        };
        Ok((exchange, auth))
    }

    fn broken(&self, reason: String) -> AuthFailure {
        AuthFailure::Exchange {
            mechanism: self.choice.mechanism,
            reason,
        }
    }

    /// Checks the server's final SCRAM message (RFC 5802 §9): the server signature.
    fn verify(&mut self, data: &[u8]) -> Result<(), AuthFailure> {
        self.mechanism
            .success(data)
            .map_err(|e| AuthFailure::ServerSignature(e.to_string()))?;
        self.verified = true;
        Ok(())
    }

    /// One element from the server in the SASL namespace (stream errors are the caller's).
    pub fn handle(&mut self, el: &Element) -> Result<SaslStep, AuthFailure> {
        if el.ns() != NS_SASL {
            return Err(self.broken(format!("unexpected <{}/> during SASL", el.name())));
        }
        let scram = self.choice.binding.is_some();
        match el.name() {
            "challenge" => {
                self.challenges += 1;
                let data = sasl_data(el).map_err(|e| self.broken(e))?;
                // SCRAM has one challenge; a second one carries the server's final message,
                // from servers that send it there instead of in <success/> (RFC 6120 §6.4.6
                // allows both): verify it and answer with an empty response.
                let reply = if scram && self.challenges >= 2 {
                    if self.verified {
                        return Err(self.broken("a challenge after the final message".into()));
                    }
                    self.verify(&data)?;
                    Vec::new()
                } else {
                    self.mechanism
                        .response(&data)
                        .map_err(|e| self.broken(format!("answering the challenge: {e}")))?
                };
                Ok(SaslStep::Send(sasl_element("response", &reply, false)))
            }
            "success" => {
                if !self.verified {
                    let data = sasl_data(el).map_err(|e| self.broken(e))?;
                    if scram && self.challenges == 0 {
                        return Err(self.broken("<success/> before any challenge".into()));
                    }
                    self.verify(&data)?;
                }
                Ok(SaslStep::Done)
            }
            "failure" => Err(failure_reason(&self.choice, el)),
            other => Err(self.broken(format!("unexpected <{other}/> during SASL"))),
        }
    }
}

/// Runs the SASL exchange of `choice` on `stream`. On success the caller restarts the stream
/// (RFC 6120 §6.4.6).
pub(super) async fn exchange<Io>(
    stream: &mut XmlStream<Io, Element>,
    choice: SaslChoice,
    username: &str,
    password: &str,
    exporter: Option<Vec<u8>>,
) -> Result<(), XmppError>
where
    Io: AsyncBufRead + AsyncWrite + Unpin,
{
    let (mut sasl, auth) =
        SaslExchange::start(choice, username, password, exporter).map_err(XmppError::Auth)?;
    stream
        .send(&auth)
        .await
        .map_err(|e| XmppError::Disconnected(format!("sending <auth/>: {e}")))?;
    loop {
        let el = next_login_element(stream, "SASL").await?;
        match sasl.handle(&el).map_err(XmppError::Auth)? {
            SaslStep::Send(response) => stream
                .send(&response)
                .await
                .map_err(|e| XmppError::Disconnected(format!("sending <response/>: {e}")))?,
            SaslStep::Done => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn types(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn choice(mechanism: &'static str, binding: Option<Gs2Binding>) -> SaslChoice {
        SaslChoice { mechanism, binding }
    }

    /// ejabberd 23.01 on TLS 1.3: it offers SCRAM-SHA-1-PLUS but binds only tls-unique and
    /// announces no XEP-0440 types. Before the fix we picked SCRAM-SHA-1-PLUS with
    /// tls-exporter here, and ejabberd failed it with "Invalid channel binding".
    #[test]
    fn plus_offered_without_xep_0440_means_plain_scram_with_flag_n() {
        let ejabberd = set(&["PLAIN", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"]);
        assert_eq!(
            choose_mechanism(&ejabberd, None, true),
            Ok(choice(SCRAM_SHA_1, Some(Gs2Binding::NotUsed)))
        );
    }

    #[test]
    fn plus_offered_but_tls_exporter_not_among_the_types_means_flag_n() {
        let offered = set(&[
            "SCRAM-SHA-1",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-256-PLUS",
        ]);
        let cb = types(&["tls-unique", "tls-server-end-point"]);
        assert_eq!(
            choose_mechanism(&offered, Some(&cb), true),
            Ok(choice(SCRAM_SHA_256, Some(Gs2Binding::NotUsed)))
        );
    }

    #[test]
    fn tls_exporter_announced_picks_the_strongest_plus() {
        let offered = set(&[
            "SCRAM-SHA-1",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-256-PLUS",
            "PLAIN",
        ]);
        let cb = types(&["tls-server-end-point", "tls-exporter"]);
        assert_eq!(
            choose_mechanism(&offered, Some(&cb), true),
            Ok(choice(SCRAM_SHA_256_PLUS, Some(Gs2Binding::TlsExporter)))
        );
        let sha1_only = set(&["SCRAM-SHA-1", "SCRAM-SHA-1-PLUS"]);
        assert_eq!(
            choose_mechanism(&sha1_only, Some(&cb), true),
            Ok(choice(SCRAM_SHA_1_PLUS, Some(Gs2Binding::TlsExporter)))
        );
    }

    #[test]
    fn without_our_binding_data_plus_is_never_used_and_the_flag_is_n() {
        // TLS 1.2: no tls-exporter data (and we do not implement tls-unique).
        let offered = set(&["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]);
        let cb = types(&["tls-exporter"]);
        assert_eq!(
            choose_mechanism(&offered, Some(&cb), false),
            Ok(choice(SCRAM_SHA_256, Some(Gs2Binding::NotUsed)))
        );
        let no_plus = set(&["SCRAM-SHA-256"]);
        assert_eq!(
            choose_mechanism(&no_plus, None, false),
            Ok(choice(SCRAM_SHA_256, Some(Gs2Binding::NotUsed)))
        );
    }

    #[test]
    fn no_plus_offered_with_our_binding_data_means_flag_y() {
        // Prosody 0.12 on TLS 1.3 (tls-unique only, so it offers no -PLUS there).
        let prosody = set(&["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]);
        assert_eq!(
            choose_mechanism(&prosody, None, true),
            Ok(choice(SCRAM_SHA_256, Some(Gs2Binding::ServerLacksIt)))
        );
        // Types announced but no -PLUS mechanism: still "y" (the server offers no binding).
        let cb = types(&["tls-exporter"]);
        assert_eq!(
            choose_mechanism(&prosody, Some(&cb), true),
            Ok(choice(SCRAM_SHA_256, Some(Gs2Binding::ServerLacksIt)))
        );
    }

    #[test]
    fn a_plus_mechanism_we_do_not_implement_still_counts_as_binding_support() {
        // SCRAM-SHA-512-PLUS: the server binds, we cannot use it, so "n" and not "y".
        let offered = set(&["SCRAM-SHA-1", "SCRAM-SHA-512-PLUS"]);
        let cb = types(&["tls-exporter"]);
        assert_eq!(
            choose_mechanism(&offered, Some(&cb), true),
            Ok(choice(SCRAM_SHA_1, Some(Gs2Binding::NotUsed)))
        );
    }

    #[test]
    fn plain_only_when_no_scram_and_never_anonymous() {
        assert_eq!(
            choose_mechanism(&set(&["PLAIN", "ANONYMOUS"]), None, true),
            Ok(choice(PLAIN, None))
        );
        let e = choose_mechanism(&set(&["ANONYMOUS", "X-OAUTH2"]), None, true).unwrap_err();
        assert!(matches!(e, AuthFailure::NoCommonMechanism { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("no SASL mechanism in common"), "{msg}");
        assert!(msg.contains("ANONYMOUS, X-OAUTH2"), "{msg}");
    }

    #[test]
    fn only_plus_without_xep_0440_is_no_common_mechanism_and_says_why() {
        let e = choose_mechanism(&set(&["SCRAM-SHA-1-PLUS"]), None, true).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("SCRAM-SHA-1-PLUS"), "{msg}");
        assert!(msg.contains("XEP-0440"), "{msg}");
    }

    #[test]
    fn mechanism_names_compare_without_case() {
        assert_eq!(
            choose_mechanism(&set(&["scram-sha-1", "scram-sha-1-plus"]), None, true),
            Ok(choice(SCRAM_SHA_1, Some(Gs2Binding::NotUsed)))
        );
    }

    #[test]
    fn features_are_read_tolerantly() {
        let features: Element = "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
            <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
              <mechanism>PLAIN</mechanism><mechanism> SCRAM-SHA-1 </mechanism><mechanism/>\
            </mechanisms>\
            <sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>\
              <channel-binding type='tls-server-end-point'/><channel-binding type='x-new-kind'/>\
              <channel-binding type='tls-exporter'/><channel-binding/>\
            </sasl-channel-binding>\
            <sm xmlns='urn:xmpp:sm:3'/></stream:features>"
            .parse()
            .unwrap();
        let read = SaslFeatures::read(&features);
        assert_eq!(read.mechanisms, set(&["PLAIN", "SCRAM-SHA-1"]));
        assert_eq!(
            read.channel_bindings,
            Some(types(&[
                "tls-server-end-point",
                "x-new-kind",
                "tls-exporter"
            ]))
        );
        let bare: Element = "<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>"
            .parse()
            .unwrap();
        assert_eq!(SaslFeatures::read(&bare), SaslFeatures::default());
    }

    /// What the sasl crate sends for each choice: the mechanism name it reports and the GS2
    /// header at the start of its first message must be the ones we chose (RFC 5802 §7).
    #[test]
    fn the_sasl_crate_sends_the_chosen_name_and_gs2_flag() {
        for (chosen, header) in [
            (
                choice(SCRAM_SHA_256_PLUS, Some(Gs2Binding::TlsExporter)),
                "p=tls-exporter,,",
            ),
            (
                choice(SCRAM_SHA_1_PLUS, Some(Gs2Binding::TlsExporter)),
                "p=tls-exporter,,",
            ),
            (choice(SCRAM_SHA_256, Some(Gs2Binding::NotUsed)), "n,,"),
            (choice(SCRAM_SHA_1, Some(Gs2Binding::NotUsed)), "n,,"),
            (choice(SCRAM_SHA_1, Some(Gs2Binding::ServerLacksIt)), "y,,"),
            (
                choice(SCRAM_SHA_256, Some(Gs2Binding::ServerLacksIt)),
                "y,,",
            ),
        ] {
            let mut m = mechanism(&chosen, "alice", "pencil", Some(vec![7; 32])).unwrap();
            assert_eq!(m.name(), chosen.mechanism);
            let first = String::from_utf8(m.initial()).unwrap();
            assert!(
                first.starts_with(&format!("{header}n=alice,r=")),
                "{chosen}: {first}"
            );
            assert!(
                first.starts_with(chosen.binding.unwrap().gs2_flag()),
                "{chosen}: {first}"
            );
        }
        let mut plain = mechanism(&choice(PLAIN, None), "alice", "pencil", None).unwrap();
        assert_eq!(plain.name(), PLAIN);
        assert_eq!(plain.initial(), b"\0alice\0pencil");
        // A -PLUS choice without binding data cannot be built.
        assert!(mechanism(
            &choice(SCRAM_SHA_1_PLUS, Some(Gs2Binding::TlsExporter)),
            "alice",
            "pencil",
            None
        )
        .is_err());
    }

    /// The client-final message carries the GS2 header (and the binding data) in `c=`
    /// (RFC 5802 §7): base64("n,,") is "biws", base64("y,,") is "eSws".
    #[test]
    fn the_client_final_message_binds_what_the_header_said() {
        let server_first = b"r=nonce-from-client-and-server,s=QSXCR+Q6sek8bf92,i=4096";
        for (binding, c) in [
            (Gs2Binding::NotUsed, "c=biws,".to_owned()),
            (Gs2Binding::ServerLacksIt, "c=eSws,".to_owned()),
            (Gs2Binding::TlsExporter, {
                let mut cb = b"p=tls-exporter,,".to_vec();
                cb.extend([7u8; 32]);
                format!("c={},", BASE64.encode(cb))
            }),
        ] {
            let name = if binding == Gs2Binding::TlsExporter {
                SCRAM_SHA_1_PLUS
            } else {
                SCRAM_SHA_1
            };
            let mut m = mechanism(
                &choice(name, Some(binding)),
                "alice",
                "pencil",
                Some(vec![7; 32]),
            )
            .unwrap();
            let _ = m.initial();
            // The sasl crate checks nothing about the nonce here, so any server nonce works.
            let last = String::from_utf8(m.response(server_first).unwrap()).unwrap();
            assert!(last.starts_with(&c), "{binding:?}: {last}");
        }
    }

    fn failure(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn ejabberd_channel_binding_failure_is_named_as_such() {
        // What ejabberd 23.01 answers to SCRAM-SHA-1-PLUS with tls-exporter.
        let el = failure(
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>\
             <text xml:lang='en'>Invalid channel binding</text></failure>",
        );
        let chosen = choice(SCRAM_SHA_1_PLUS, Some(Gs2Binding::TlsExporter));
        let e = failure_reason(&chosen, &el);
        assert!(
            matches!(e, AuthFailure::ChannelBindingRejected { .. }),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("rejected the channel binding"), "{msg}");
        assert!(msg.contains("p=tls-exporter"), "{msg}");
        assert!(msg.contains("Invalid channel binding"), "{msg}");
        assert!(!msg.contains("wrong user name or password"), "{msg}");
        // Prosody says it with <malformed-request/>.
        let prosody = failure(
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><malformed-request/>\
             <text>Invalid channel binding value.</text></failure>",
        );
        assert!(matches!(
            failure_reason(&chosen, &prosody),
            AuthFailure::ChannelBindingRejected { .. }
        ));
    }

    #[test]
    fn not_authorized_is_wrong_credentials() {
        // ejabberd's answer to a wrong password.
        let el = failure(
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>\
             <text xml:lang='en'>Invalid username or password</text></failure>",
        );
        let e = failure_reason(&choice(SCRAM_SHA_1, Some(Gs2Binding::NotUsed)), &el);
        assert!(matches!(e, AuthFailure::WrongCredentials { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("wrong user name or password"), "{msg}");
        assert!(msg.contains("Invalid username or password"), "{msg}");
        assert!(!msg.contains("channel binding"), "{msg}");
        // Without a text, and with a binding in use, the message admits the doubt.
        let bare = failure(
            "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
        );
        let e = failure_reason(
            &choice(SCRAM_SHA_1_PLUS, Some(Gs2Binding::TlsExporter)),
            &bare,
        );
        assert!(matches!(e, AuthFailure::WrongCredentials { .. }), "{e:?}");
        assert!(e.to_string().contains("tls-exporter"), "{e}");
    }

    #[test]
    fn other_conditions_say_what_they_mean() {
        for (condition, words) in [
            ("account-disabled", "the account is disabled"),
            ("temporary-auth-failure", "try again later"),
            ("credentials-expired", "the password has expired"),
            ("mechanism-too-weak", "too weak"),
            ("x-unknown", "does not define"),
        ] {
            let el = failure(&format!(
                "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><{condition}/></failure>"
            ));
            let e = failure_reason(&choice(SCRAM_SHA_1, Some(Gs2Binding::NotUsed)), &el);
            let msg = e.to_string();
            assert!(matches!(e, AuthFailure::Refused { .. }), "{e:?}");
            assert!(msg.contains(&format!("<{condition}/>")), "{msg}");
            assert!(msg.contains(words), "{msg}");
        }
        let empty = failure("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        let e = failure_reason(&choice(PLAIN, None), &empty);
        assert!(e.to_string().contains("undefined-condition"), "{e}");
    }

    #[test]
    fn sasl_data_reads_base64_and_the_empty_forms() {
        let el = |t: &str| {
            Element::builder("success", NS_SASL)
                .append(t.to_owned())
                .build()
        };
        assert_eq!(sasl_data(&el("")).unwrap(), b"");
        assert_eq!(sasl_data(&el("=")).unwrap(), b"");
        assert_eq!(sasl_data(&el("dj1h\nYmM=")).unwrap(), b"v=abc");
        assert!(sasl_data(&el("not base64!")).is_err());
        assert_eq!(sasl_element("auth", b"", true).text(), "=");
        assert_eq!(sasl_element("response", b"", false).text(), "");
        assert_eq!(sasl_element("response", b"v=abc", false).text(), "dj1hYmM=");
    }

    // --- the exchange against a scripted SCRAM-SHA-1 server (RFC 5802 §3, §5) ---------------

    use ::sasl::common::scram::ScramProvider;
    use ::sasl::common::Password;

    /// A SCRAM-SHA-1 server for "alice"/"pencil" written from RFC 5802 §3, to drive the client
    /// exchange without a network.
    struct ScramServer {
        client_first_bare: String,
        server_first: String,
        salted: Vec<u8>,
    }

    const SALT: &[u8] = b"lab salt";
    const ITERATIONS: u32 = 4096;

    impl ScramServer {
        /// Reads the client's `<auth/>`; returns the server and the GS2 header it carried.
        fn new(auth: &Element) -> (ScramServer, String) {
            assert_eq!(auth.attr("mechanism"), Some(SCRAM_SHA_1));
            let first = String::from_utf8(sasl_data(auth).unwrap()).unwrap();
            let (gs2, bare) = match first.match_indices(',').nth(1) {
                Some((i, _)) => (first[..=i].to_owned(), first[i + 1..].to_owned()),
                None => panic!("no GS2 header in {first:?}"),
            };
            let nonce = bare.split(',').find_map(|a| a.strip_prefix("r=")).unwrap();
            let server_first = format!(
                "r={nonce}server-part,s={},i={ITERATIONS}",
                BASE64.encode(SALT)
            );
            let salted = Sha1::derive(&Password::Plain("pencil".into()), SALT, ITERATIONS).unwrap();
            let server = ScramServer {
                client_first_bare: bare,
                server_first,
                salted,
            };
            (server, gs2)
        }

        fn challenge(&self) -> Element {
            sasl_element("challenge", self.server_first.as_bytes(), false)
        }

        /// Checks the client's proof and returns the server-final data `v=...`.
        fn server_final(&self, response: &Element) -> String {
            let last = String::from_utf8(sasl_data(response).unwrap()).unwrap();
            let (without_proof, proof) = last.rsplit_once(",p=").unwrap();
            let auth_message = format!(
                "{},{},{without_proof}",
                self.client_first_bare, self.server_first
            );
            let client_key = Sha1::hmac(b"Client Key", &self.salted).unwrap();
            let stored_key = Sha1::hash(&client_key);
            let signature = Sha1::hmac(auth_message.as_bytes(), &stored_key).unwrap();
            let expected: Vec<u8> = client_key
                .iter()
                .zip(&signature)
                .map(|(k, s)| k ^ s)
                .collect();
            assert_eq!(BASE64.decode(proof).unwrap(), expected, "client proof");
            let server_key = Sha1::hmac(b"Server Key", &self.salted).unwrap();
            let server_signature = Sha1::hmac(auth_message.as_bytes(), &server_key).unwrap();
            format!("v={}", BASE64.encode(server_signature))
        }
    }

    fn sent(step: SaslStep) -> Element {
        match step {
            SaslStep::Send(el) => el,
            SaslStep::Done => panic!("the exchange ended early"),
        }
    }

    /// Runs the client against the scripted server up to the server-final data.
    fn scram_until_final(binding: Gs2Binding) -> (SaslExchange, ScramServer, String, String) {
        let chosen = choice(SCRAM_SHA_1, Some(binding));
        let (mut client, auth) = SaslExchange::start(chosen, "alice", "pencil", None).unwrap();
        assert_eq!(auth.name(), "auth");
        let (server, gs2) = ScramServer::new(&auth);
        let response = sent(client.handle(&server.challenge()).unwrap());
        assert_eq!(response.name(), "response");
        let v = server.server_final(&response);
        (client, server, gs2, v)
    }

    #[test]
    fn scram_exchange_succeeds_and_checks_the_server_signature() {
        let (mut client, _server, gs2, v) = scram_until_final(Gs2Binding::NotUsed);
        assert_eq!(gs2, "n,,");
        let success = sasl_element("success", v.as_bytes(), false);
        assert!(matches!(client.handle(&success), Ok(SaslStep::Done)));
    }

    #[test]
    fn a_wrong_server_signature_fails_the_login() {
        let (mut client, _server, gs2, _v) = scram_until_final(Gs2Binding::ServerLacksIt);
        assert_eq!(gs2, "y,,");
        let forged = sasl_element("success", b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=", false);
        let e = client.handle(&forged).unwrap_err();
        assert!(matches!(e, AuthFailure::ServerSignature(_)), "{e:?}");
        // A <success/> without the final message proves nothing either.
        let (mut client, ..) = scram_until_final(Gs2Binding::NotUsed);
        let e = client
            .handle(&sasl_element("success", b"", false))
            .unwrap_err();
        assert!(matches!(e, AuthFailure::ServerSignature(_)), "{e:?}");
    }

    #[test]
    fn the_final_message_may_come_as_a_second_challenge() {
        let (mut client, _server, _gs2, v) = scram_until_final(Gs2Binding::NotUsed);
        let empty = sent(
            client
                .handle(&sasl_element("challenge", v.as_bytes(), false))
                .unwrap(),
        );
        assert_eq!(empty.text(), "");
        assert!(matches!(
            client.handle(&sasl_element("success", b"", false)),
            Ok(SaslStep::Done)
        ));
    }

    #[test]
    fn failures_and_strays_end_the_exchange_with_their_reason() {
        let (mut client, ..) = scram_until_final(Gs2Binding::NotUsed);
        let e = client
            .handle(&failure(
                "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
            ))
            .unwrap_err();
        assert!(matches!(e, AuthFailure::WrongCredentials { .. }), "{e:?}");
        let (mut client, ..) = scram_until_final(Gs2Binding::NotUsed);
        let stray: Element = "<iq xmlns='jabber:client' type='get' id='x'/>"
            .parse()
            .unwrap();
        let e = client.handle(&stray).unwrap_err();
        assert!(matches!(e, AuthFailure::Exchange { .. }), "{e:?}");
        // A success with no challenge at all cannot carry SCRAM's proof.
        let (mut client, _) = SaslExchange::start(
            choice(SCRAM_SHA_1, Some(Gs2Binding::NotUsed)),
            "alice",
            "pencil",
            None,
        )
        .unwrap();
        let e = client
            .handle(&sasl_element("success", b"", false))
            .unwrap_err();
        assert!(matches!(e, AuthFailure::Exchange { .. }), "{e:?}");
    }

    #[test]
    fn plain_succeeds_without_data() {
        let (mut client, auth) =
            SaslExchange::start(choice(PLAIN, None), "alice", "pencil", None).unwrap();
        assert_eq!(auth.attr("mechanism"), Some(PLAIN));
        assert_eq!(sasl_data(&auth).unwrap(), b"\0alice\0pencil");
        assert!(matches!(
            client.handle(&sasl_element("success", b"", false)),
            Ok(SaslStep::Done)
        ));
    }
}
