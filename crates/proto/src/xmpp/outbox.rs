//! The outgoing side of an XMPP client that hosts Jingle sessions, sans-IO: no socket, no
//! clock, no task. The caller says what it sent ([`Outbox::sent`]), what it received
//! ([`Outbox::answer`]), when its stream was lost ([`Outbox::lost`]) and when a new one is up
//! ([`Outbox::reannounce`]); the outbox says what to send next ([`Outbox::pop`]) and when it
//! wants to be asked again ([`Outbox::next_retry`], then [`Outbox::due`]).
//!
//! - Our iq requests to full JIDs are remembered until answered, for at most the peer wait:
//!   after a loss, the unanswered ones go out again first, in their order.
//! - A Jingle request (other than `session-initiate`) that the server bounces because the peer
//!   is offline for a moment (`<service-unavailable/>` or `<recipient-unavailable/>`, RFC 6121
//!   §8.5.3.2.1) is swallowed and sent again after [`BOUNCE_RETRY`], until the peer answers or
//!   the peer wait is over.
//! - Directed presences (RFC 6121 §4.6) are remembered and sent again on a new stream, each
//!   followed by a disco#info probe (XEP-0030) that tells the sessions the peer is back.
//! - Stanzas queued while offline are bounded; past the capacity the oldest are dropped.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use jid::{BareJid, FullJid, Jid};
use minidom::Element;

use super::disco;
use crate::jingle::NS_JINGLE;
use crate::xmpp::stanza::{iq_type, Condition, IqType, StanzaError, NS_CLIENT};

/// How soon a Jingle request bounced by the server (peer offline) is sent again.
pub const BOUNCE_RETRY: Duration = Duration::from_secs(1);
/// Most unanswered requests (and directed presences) remembered.
pub const MAX_TRACKED: usize = 256;
/// Prefix of the ids of our disco#info probes to session peers on a new stream.
pub const PROBE_ID_PREFIX: &str = "jingle-ice-probe-";
/// The Jingle action whose bounce is final: the peer has no session to come back to.
const ACTION_SESSION_INITIATE: &str = "session-initiate";
/// What happened to a tracked request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    /// Sent; no answer yet.
    Waiting,
    /// Bounced (peer offline): send again at this time.
    RetryAt(Instant),
    /// Back in the queue (after a loss or a bounce), not sent since.
    Queued,
}

/// An iq request of ours to a full JID, remembered until answered.
#[derive(Debug)]
struct Tracked {
    stanza: Element,
    /// Order of first sending.
    seq: u64,
    first_sent: Instant,
    /// A Jingle request other than `session-initiate`: a bounce is retried.
    retry_bounce: bool,
    state: Track,
}

/// The stanzas waiting for a connection, and the requests sent but not answered: what the
/// pump sends after a reconnect, and what it sends again when the server bounces a Jingle
/// request because the peer is offline. No I/O and no clock inside.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Element>,
    capacity: usize,
    dropped: u64,
    tracked: HashMap<String, Tracked>,
    /// Directed presences we sent (RFC 6121 §4.6), by addressee, oldest first: a server keeps
    /// them per session only, so a new session must send them again.
    directed: Vec<(String, Element)>,
    next_seq: u64,
    peer_wait: Duration,
}

impl Outbox {
    /// An empty outbox keeping at most `capacity` stanzas while offline, and remembering
    /// requests for `peer_wait` after they were first sent (how long a peer briefly offline is
    /// waited for).
    pub fn new(capacity: usize, peer_wait: Duration) -> Self {
        Outbox {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
            tracked: HashMap::new(),
            directed: Vec::new(),
            next_seq: 0,
            peer_wait,
        }
    }

    /// Queues a stanza to send; past the capacity the oldest queued one is dropped (returns
    /// false then).
    pub fn push(&mut self, stanza: Element) -> bool {
        let mut kept_all = true;
        while self.queue.len() >= self.capacity {
            self.queue.pop_front();
            self.dropped += 1;
            kept_all = false;
        }
        self.queue.push_back(stanza);
        kept_all
    }

    /// The next stanza to send.
    pub fn pop(&mut self) -> Option<Element> {
        self.queue.pop_front()
    }

    /// Puts back a stanza whose sending failed, first in line.
    pub fn unpop(&mut self, stanza: Element) {
        self.queue.push_front(stanza);
    }

    /// How many stanzas wait to be sent.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Stanzas dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How long a request is remembered after it was first sent (see [`Outbox::new`]).
    pub fn peer_wait(&self) -> Duration {
        self.peer_wait
    }

    /// A stanza returned by [`pop`](Self::pop) could not be sent after all (the stream broke
    /// while sending it, after [`sent`](Self::sent) was called): it goes back first in line,
    /// and a tracked request is marked as queued so that [`lost`](Self::lost) does not queue it
    /// twice.
    pub fn unsent(&mut self, stanza: Element) {
        if let Some(t) = stanza.attr("id").and_then(|id| self.tracked.get_mut(id)) {
            t.state = Track::Queued;
        }
        self.queue.push_front(stanza);
    }

    /// Jingle requests that have not reached their peer yet: waiting to be sent again after a
    /// bounce, back in the queue, or sent and not answered. A log-off waits for them (bounded),
    /// or the peer, briefly offline, would never get our last `session-terminate`.
    pub fn undelivered_jingle(&self) -> usize {
        self.tracked
            .values()
            .filter(|t| t.retry_bounce && t.stanza.has_child("jingle", NS_JINGLE))
            .count()
    }

    /// Records a sent stanza: an iq request to a full JID is remembered until answered (or
    /// the peer wait after it was first sent).
    pub fn sent(&mut self, stanza: &Element, now: Instant) {
        self.prune(now);
        if stanza.is("presence", NS_CLIENT) {
            self.directed_presence(stanza);
            return;
        }
        if !stanza.is("iq", NS_CLIENT)
            || !matches!(iq_type(stanza), Some(IqType::Get | IqType::Set))
        {
            return;
        }
        let Some(id) = stanza.attr("id").filter(|id| !id.is_empty()) else {
            return;
        };
        if stanza
            .attr("to")
            .and_then(|to| FullJid::new(to).ok())
            .is_none()
        {
            return;
        }
        if let Some(t) = self.tracked.get_mut(id) {
            // Sent again (after a bounce or a loss): the wait still counts from the first time.
            t.state = Track::Waiting;
            return;
        }
        if self.tracked.len() >= MAX_TRACKED {
            if let Some(oldest) = self
                .tracked
                .iter()
                .min_by_key(|(_, t)| t.seq)
                .map(|(id, _)| id.clone())
            {
                self.tracked.remove(&oldest);
            }
        }
        let retry_bounce = id.starts_with(PROBE_ID_PREFIX)
            || stanza
                .get_child("jingle", NS_JINGLE)
                .is_some_and(|j| j.attr("action") != Some(ACTION_SESSION_INITIATE));
        self.tracked.insert(
            id.to_owned(),
            Tracked {
                stanza: stanza.clone(),
                seq: self.next_seq,
                first_sent: now,
                retry_bounce,
                state: Track::Waiting,
            },
        );
        self.next_seq += 1;
    }

    /// Looks at a received stanza: an answer to a tracked request ends its tracking, except a
    /// bounce of a Jingle request while the peer may still come back, which is swallowed (the
    /// request goes out again after [`BOUNCE_RETRY`]). Returns whether it was swallowed.
    pub fn answer(&mut self, stanza: &Element, now: Instant) -> bool {
        if !stanza.is("iq", NS_CLIENT)
            || !matches!(iq_type(stanza), Some(IqType::Result | IqType::Error))
        {
            return false;
        }
        let Some(id) = stanza.attr("id") else {
            return false;
        };
        let Some(t) = self.tracked.get_mut(id) else {
            return false;
        };
        let to = t.stanza.attr("to").and_then(|to| FullJid::new(to).ok());
        let from_addressee = match (stanza.attr("from").filter(|f| !f.is_empty()), &to) {
            (None, _) => true,
            (Some(from), Some(to)) => Jid::new(from).is_ok_and(|f| {
                f == *to || f == to.to_bare() || f == BareJid::from_parts(None, to.domain())
            }),
            (Some(_), None) => false,
        };
        if !from_addressee {
            return false;
        }
        if t.retry_bounce && now < t.first_sent + self.peer_wait && is_bounce(stanza) {
            tracing::debug!(
                id,
                "a Jingle request bounced (peer offline): sending it again soon"
            );
            t.state = Track::RetryAt(now + BOUNCE_RETRY);
            return true;
        }
        self.tracked.remove(id);
        false
    }

    /// Remembers an available directed presence, forgets one made unavailable.
    fn directed_presence(&mut self, stanza: &Element) {
        let Some(to) = stanza.attr("to").filter(|t| !t.is_empty()) else {
            return;
        };
        self.directed.retain(|(t, _)| t != to);
        // Only an available presence (no type) is remembered.
        if stanza.attr("type").is_none() {
            if self.directed.len() >= MAX_TRACKED {
                self.directed.remove(0);
            }
            self.directed.push((to.to_owned(), stanza.clone()));
        }
    }

    /// A new stream is up: our directed presences go out again first (so that the peers hear
    /// from us at once, and their servers tell them when we go), each followed by a disco#info
    /// probe (XEP-0030) sent until the peer answers or the peer wait is over
    /// (a bounce means it is not back yet): its answer tells the Jingle sessions that the peer
    /// is there (XEP-0166 §6.7), whichever of us came back first. Then the rest of the queue.
    pub fn reannounce(&mut self) {
        let mut first = Vec::with_capacity(self.directed.len() * 2);
        for (to, p) in &self.directed {
            first.push(p.clone());
            if let Ok(to) = Jid::new(to) {
                let id = format!("{PROBE_ID_PREFIX}{}", self.next_seq);
                self.next_seq += 1;
                first.push(disco::info_query(&id, &to, None));
            }
        }
        for stanza in first.into_iter().rev() {
            self.queue.push_front(stanza);
        }
    }

    /// The stream died: unanswered requests (they may never have left) go back to the head of
    /// the queue, in the order they were first sent, before what was already queued.
    pub fn lost(&mut self, now: Instant) {
        self.prune(now);
        let mut again: Vec<&mut Tracked> = self
            .tracked
            .values_mut()
            .filter(|t| t.state != Track::Queued)
            .collect();
        again.sort_by_key(|t| std::cmp::Reverse(t.seq));
        for t in again {
            t.state = Track::Queued;
            self.queue.push_front(t.stanza.clone());
        }
        while self.queue.len() > self.capacity {
            self.queue.pop_back();
            self.dropped += 1;
        }
    }

    /// Queues the bounced requests whose retry time has come (in their first-sent order).
    pub fn due(&mut self, now: Instant) {
        self.prune(now);
        let mut ready: Vec<&mut Tracked> = self
            .tracked
            .values_mut()
            .filter(|t| matches!(t.state, Track::RetryAt(at) if at <= now))
            .collect();
        ready.sort_by_key(|t| t.seq);
        let stanzas: Vec<Element> = ready
            .into_iter()
            .map(|t| {
                t.state = Track::Queued;
                t.stanza.clone()
            })
            .collect();
        for s in stanzas {
            self.push(s);
        }
    }

    /// When [`due`](Self::due) has something to do next.
    pub fn next_retry(&self) -> Option<Instant> {
        self.tracked
            .values()
            .filter_map(|t| match t.state {
                Track::RetryAt(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Forgets requests first sent more than `peer_wait` ago: their answer, if any, goes to
    /// the extension as is, and they are not sent again.
    fn prune(&mut self, now: Instant) {
        let wait = self.peer_wait;
        self.tracked
            .retain(|_, t| now.saturating_duration_since(t.first_sent) < wait);
    }
}

/// Whether an iq error says the addressee is not online: `<service-unavailable/>` (what a
/// server answers for an iq to an unavailable full JID, RFC 6121 §8.5.3.2.1) or
/// `<recipient-unavailable/>`, without a Jingle condition (which only the peer itself adds).
fn is_bounce(stanza: &Element) -> bool {
    StanzaError::from_stanza(stanza).is_some_and(|e| {
        e.jingle.is_none()
            && matches!(
                e.condition,
                Condition::ServiceUnavailable | Condition::RecipientUnavailable
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "bob@example.test/phone";

    fn jingle_iq(id: &str, action: &str) -> Element {
        format!(
            "<iq xmlns='jabber:client' type='set' id='{id}' to='{PEER}'>\
             <jingle xmlns='urn:xmpp:jingle:1' action='{action}' sid='s1'/></iq>"
        )
        .parse()
        .unwrap()
    }

    fn bounce(id: &str, from: &str) -> Element {
        format!(
            "<iq xmlns='jabber:client' type='error' id='{id}' from='{from}'>\
             <error type='cancel'><service-unavailable \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        .parse()
        .unwrap()
    }

    fn result(id: &str) -> Element {
        format!("<iq xmlns='jabber:client' type='result' id='{id}' from='{PEER}'/>")
            .parse()
            .unwrap()
    }

    fn ids(outbox: &mut Outbox) -> Vec<String> {
        std::iter::from_fn(|| outbox.pop())
            .map(|s| s.attr("id").unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn a_bounced_terminate_holds_the_log_off_until_it_is_answered() {
        // The peer is offline when our last session-terminate goes out: the log-off must wait
        // for it to be sent again and answered (bounded by the flush timeout), or the peer
        // never learns that the transfer ended.
        let t0 = Instant::now();
        let mut o = Outbox::new(16, Duration::from_secs(30));
        o.sent(&jingle_iq("end", "session-terminate"), t0);
        assert_eq!(o.undelivered_jingle(), 1, "sent, not answered");
        assert!(
            o.answer(&bounce("end", PEER), t0),
            "the bounce is swallowed"
        );
        assert_eq!(o.undelivered_jingle(), 1, "waiting to be sent again");
        o.due(t0 + BOUNCE_RETRY);
        assert_eq!(ids(&mut o), ["end"]);
        o.sent(&jingle_iq("end", "session-terminate"), t0 + BOUNCE_RETRY);
        assert_eq!(o.undelivered_jingle(), 1);
        assert!(!o.answer(&result("end"), t0 + BOUNCE_RETRY));
        assert_eq!(o.undelivered_jingle(), 0, "delivered");
        // A disco probe is not a Jingle request: nothing waits for it.
        let probe = disco::info_query(
            &format!("{PROBE_ID_PREFIX}1"),
            &Jid::new(PEER).unwrap(),
            None,
        );
        o.sent(&probe, t0);
        assert_eq!(o.undelivered_jingle(), 0);
    }

    #[test]
    fn the_offline_queue_is_bounded_and_keeps_the_newest_in_order() {
        let mut o = Outbox::new(3, Duration::from_secs(30));
        for i in 0..3 {
            assert!(o.push(jingle_iq(&format!("q{i}"), "session-info")));
        }
        assert!(!o.push(jingle_iq("q3", "session-info")));
        assert_eq!(o.dropped, 1);
        assert_eq!(ids(&mut o), ["q1", "q2", "q3"]);
    }

    #[test]
    fn unanswered_requests_go_out_again_first_after_a_loss() {
        let t0 = Instant::now();
        let mut o = Outbox::new(16, Duration::from_secs(30));
        for id in ["a", "b", "c"] {
            o.sent(&jingle_iq(id, "session-info"), t0);
        }
        // b was answered; d was emitted while the stream was dying and never sent.
        assert!(!o.answer(&result("b"), t0));
        o.push(jingle_iq("d", "session-terminate"));
        o.lost(t0 + Duration::from_secs(1));
        assert_eq!(ids(&mut o), ["a", "c", "d"]);
        // A second loss before they were sent again does not duplicate them.
        o.push(jingle_iq("e", "session-info"));
        o.lost(t0 + Duration::from_secs(2));
        assert_eq!(ids(&mut o), ["e"]);
    }

    #[test]
    fn requests_older_than_the_peer_wait_are_not_resent() {
        let t0 = Instant::now();
        let mut o = Outbox::new(16, Duration::from_secs(30));
        o.sent(&jingle_iq("old", "session-info"), t0);
        o.sent(
            &jingle_iq("new", "session-info"),
            t0 + Duration::from_secs(20),
        );
        o.lost(t0 + Duration::from_secs(31));
        assert_eq!(ids(&mut o), ["new"]);
    }

    #[test]
    fn a_bounced_jingle_request_is_retried_until_the_peer_answers() {
        let t0 = Instant::now();
        let mut o = Outbox::new(16, Duration::from_secs(30));
        let req = jingle_iq("r1", "session-info");
        o.sent(&req, t0);
        // Prosody answers for an offline resource from the addressed full JID.
        assert!(o.answer(&bounce("r1", PEER), t0));
        assert_eq!(o.next_retry(), Some(t0 + BOUNCE_RETRY));
        o.due(t0);
        assert_eq!(o.queued(), 0, "not before its time");
        o.due(t0 + BOUNCE_RETRY);
        assert_eq!(o.pop(), Some(req.clone()));
        o.sent(&req, t0 + BOUNCE_RETRY);
        // A bounce from the bare JID or the domain counts too.
        assert!(o.answer(&bounce("r1", "bob@example.test"), t0 + BOUNCE_RETRY));
        o.due(t0 + BOUNCE_RETRY * 2);
        let again = o.pop().unwrap();
        o.sent(&again, t0 + BOUNCE_RETRY * 2);
        // The peer is back: its answer goes to the extension and the tracking ends.
        assert!(!o.answer(&result("r1"), t0 + BOUNCE_RETRY * 3));
        assert!(o.tracked.is_empty());
        assert_eq!(o.next_retry(), None);
    }

    #[test]
    fn bounces_reach_the_extension_after_the_peer_wait() {
        let t0 = Instant::now();
        let mut o = Outbox::new(16, Duration::from_secs(5));
        o.sent(&jingle_iq("r1", "transport-info"), t0);
        assert!(!o.answer(&bounce("r1", PEER), t0 + Duration::from_secs(6)));
    }

    #[test]
    fn other_answers_are_never_swallowed() {
        let t0 = Instant::now();
        let mut o = Outbox::new(16, Duration::from_secs(30));
        // A session-initiate to an offline peer fails at once: it has no session to resume.
        o.sent(&jingle_iq("init", "session-initiate"), t0);
        assert!(!o.answer(&bounce("init", PEER), t0));
        // An error with a Jingle condition comes from the peer itself.
        o.sent(&jingle_iq("j", "session-info"), t0);
        let unknown: Element = format!(
            "<iq xmlns='jabber:client' type='error' id='j' from='{PEER}'><error type='cancel'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <unknown-session xmlns='urn:xmpp:jingle:errors:1'/></error></iq>"
        )
        .parse()
        .unwrap();
        assert!(!o.answer(&unknown, t0));
        // A bounce claimed by a third party is not ours to act on.
        o.sent(&jingle_iq("k", "session-info"), t0);
        assert!(!o.answer(&bounce("k", "mallory@example.test/x"), t0));
        assert!(o.tracked.contains_key("k"));
        // Requests that are not Jingle are tracked for resending but not retried on a bounce.
        let ping: Element = format!(
            "<iq xmlns='jabber:client' type='get' id='p' to='{PEER}'>\
             <ping xmlns='urn:xmpp:ping'/></iq>"
        )
        .parse()
        .unwrap();
        o.sent(&ping, t0);
        assert!(!o.answer(&bounce("p", PEER), t0));
        // Requests to our server (no full JID) are not tracked at all.
        let disco: Element = "<iq xmlns='jabber:client' type='get' id='s' to='example.test'/>"
            .parse()
            .unwrap();
        o.sent(&disco, t0);
        assert!(!o.tracked.contains_key("s"));
    }

    #[test]
    fn directed_presences_are_sent_again_first_on_a_new_stream() {
        let t0 = Instant::now();
        let mut o = Outbox::new(16, Duration::from_secs(30));
        let to = |jid: &str, kind: Option<&str>| -> Element {
            let kind = kind.map(|k| format!(" type='{k}'")).unwrap_or_default();
            format!("<presence xmlns='jabber:client' to='{jid}'{kind}/>")
                .parse()
                .unwrap()
        };
        o.sent(&to(PEER, None), t0);
        o.sent(&to("carol@example.test/x", None), t0);
        o.sent(&to("carol@example.test/x", Some("unavailable")), t0);
        // A broadcast presence is not directed.
        o.sent(&"<presence xmlns='jabber:client'/>".parse().unwrap(), t0);
        o.sent(&jingle_iq("r1", "session-info"), t0);
        o.push(jingle_iq("q1", "session-terminate"));
        o.lost(t0);
        o.reannounce();
        let first = o.pop().unwrap();
        assert!(first.is("presence", NS_CLIENT));
        assert_eq!(first.attr("to"), Some(PEER));
        let probe = o.pop().unwrap();
        assert_eq!(probe.attr("to"), Some(PEER));
        assert_eq!(probe.attr("type"), Some("get"));
        let probe_id = probe.attr("id").unwrap().to_owned();
        assert!(probe_id.starts_with(PROBE_ID_PREFIX));
        assert_eq!(ids(&mut o), ["r1", "q1"]);
        // The probe is sent until the peer answers: a bounce is retried...
        o.sent(&probe, t0);
        assert!(o.answer(&bounce(&probe_id, PEER), t0));
        o.due(t0 + BOUNCE_RETRY);
        assert_eq!(o.pop(), Some(probe.clone()));
        o.sent(&probe, t0 + BOUNCE_RETRY);
        // ...and the peer's answer goes on to the extension.
        assert!(!o.answer(&result(&probe_id), t0 + BOUNCE_RETRY));
    }

    #[test]
    fn tracking_is_bounded() {
        let t0 = Instant::now();
        let mut o = Outbox::new(16, Duration::from_secs(30));
        for i in 0..MAX_TRACKED + 10 {
            o.sent(&jingle_iq(&format!("r{i}"), "session-info"), t0);
        }
        assert_eq!(o.tracked.len(), MAX_TRACKED);
        assert!(!o.tracked.contains_key("r0"));
        assert!(o.tracked.contains_key(&format!("r{}", MAX_TRACKED + 9)));
    }
}
