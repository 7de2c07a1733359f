//! One In-Band Bytestream, sans-IO (XEP-0047): bytes written become numbered `<data/>`
//! requests, at most [`IbbConfig::window`] of them unanswered at once; the peer's blocks are
//! checked (sender, stream id, sequence, size) and queued for the reader. Flow control: while
//! more than [`IbbConfig::receive_buffer`] bytes wait for the reader, the answers to the peer's
//! blocks are held back, so a sender that waits for its answers (as XEP-0047 §2.2 suggests and
//! every implementation does) stops; a sender that does not is cut off once it passes a bound.
//!
//! Sequence numbers: we number our blocks from 0 and wrap to 0 after 65535 (XEP-0047 §2.2;
//! Dino checks the peer's numbers modulo 65536). Past 65535 we take the peer's blocks in
//! either form, as the first block after 65535 shows it: wrapped to 0 as the XEP says (Dino),
//! or counting on with 65536, 65537, ... (Conversations); the stream then stays with that form.
//! Any other number is refused with `<unexpected-request/>` and ends the stream.
//!
//! The Jingle initiator sends `<open/>` once the transport is negotiated (XEP-0261 §2), the
//! responder answers it; then both may send. Like every core here it takes input and the time
//! and says what to send ([`IbbStream::poll_transmit`]) and when to wake
//! ([`IbbStream::poll_timeout`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use minidom::Element;

use super::element::IbbPacket;
use super::{NS_IBB, SEQ_MODULUS};
use crate::xmpp::stanza::{iq, iq_error, iq_result, iq_type, Condition, IqType, StanzaError};

/// Settings of an [`IbbStream`].
#[derive(Debug, Clone)]
pub struct IbbConfig {
    /// Most bytes per block we offer and accept (XEP-0047 §2.1 `block-size`).
    pub block_size: u16,
    /// Most `<data/>` requests awaiting an answer (Conversations keeps 3).
    pub window: usize,
    /// Bytes taken from the writer before [`IbbStream::write`] takes no more.
    pub send_buffer: usize,
    /// Bytes held for the reader before the answers to the peer's blocks are held back.
    pub receive_buffer: usize,
    /// Most answers held back; a peer that sends more without waiting is cut off.
    pub max_held_answers: usize,
    /// How long a request of ours may stay unanswered.
    pub request_timeout: Duration,
}

impl Default for IbbConfig {
    fn default() -> Self {
        IbbConfig {
            block_size: super::DEFAULT_BLOCK_SIZE,
            window: 8,
            send_buffer: 256 * 1024,
            receive_buffer: 256 * 1024,
            max_held_answers: 64,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a bytestream failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IbbError {
    /// The peer refused our `<open/>`.
    #[error("the peer refused to open the bytestream: {0}")]
    OpenRefused(String),
    /// The peer answered one of our blocks with an error.
    #[error("the peer refused a block: {0}")]
    Refused(String),
    /// A request of ours went unanswered.
    #[error("the peer did not answer within {0:?}")]
    Timeout(Duration),
    /// The peer broke the protocol (wrong sequence, oversized block, too many blocks unanswered).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The stream was closed (by the peer, or its session ended) before the operation.
    #[error("the bytestream is closed")]
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// We sent `<open/>` and wait for the answer.
    Opening,
    /// We wait for the peer's `<open/>`.
    AwaitingOpen,
    /// Data may flow.
    Open,
    /// Closed by either side, or failed.
    Done,
}

/// How the peer numbers its blocks past 65535 (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeqForm {
    /// Not known yet: below 65536 both forms give the same numbers.
    Undecided,
    /// Wrapped to 0 after 65535 (XEP-0047 §2.2; Dino).
    Wrapping,
    /// Counting on past 65535 (Conversations).
    Counting,
}

/// One In-Band Bytestream with one peer (see the module documentation).
pub struct IbbStream {
    peer: String,
    sid: String,
    block_size: u16,
    config: IbbConfig,
    phase: Phase,
    /// Bytes written and not yet sent.
    out: VecDeque<u8>,
    /// Number of our next block: a u16, so it wraps to 0 after 65535 (XEP-0047 §2.2).
    next_seq: u16,
    /// Our requests awaiting an answer: id → deadline. The `<open/>` and `<close/>` too.
    in_flight: HashMap<String, Instant>,
    open_id: Option<String>,
    close_wanted: bool,
    close_id: Option<String>,
    /// Bytes received and not yet read.
    inbound: VecDeque<u8>,
    /// Blocks taken from the peer so far: the unwrapped number of the next one.
    blocks_received: u64,
    /// How the peer numbers past 65535.
    seq_form: SeqForm,
    /// Answers held back while the reader is behind.
    held: VecDeque<Element>,
    peer_closed: bool,
    error: Option<IbbError>,
    transmits: VecDeque<Element>,
    id_prefix: String,
    id_counter: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

impl std::fmt::Debug for IbbStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IbbStream")
            .field("peer", &self.peer)
            .field("sid", &self.sid)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl IbbStream {
    /// The side that opens (the Jingle initiator, XEP-0261 §2): sends `<open/>` with the
    /// negotiated `block_size` to `peer` (a full JID). `id_prefix` makes our iq ids unique on the
    /// connection.
    pub fn opener(
        peer: &str,
        sid: &str,
        block_size: u16,
        config: IbbConfig,
        id_prefix: &str,
        now: Instant,
    ) -> Self {
        let mut s = IbbStream::new(peer, sid, block_size, config, id_prefix, Phase::Opening);
        let open = IbbPacket::Open {
            sid: s.sid.clone(),
            block_size,
        };
        s.open_id = Some(s.request(open.to_element(), now));
        s
    }

    /// The side that waits for the peer's `<open/>` with at most `block_size` (the size it
    /// agreed to in the Jingle negotiation).
    pub fn acceptor(
        peer: &str,
        sid: &str,
        block_size: u16,
        config: IbbConfig,
        id_prefix: &str,
    ) -> Self {
        IbbStream::new(
            peer,
            sid,
            block_size,
            config,
            id_prefix,
            Phase::AwaitingOpen,
        )
    }

    fn new(
        peer: &str,
        sid: &str,
        block_size: u16,
        config: IbbConfig,
        id_prefix: &str,
        phase: Phase,
    ) -> Self {
        IbbStream {
            peer: peer.to_owned(),
            sid: sid.to_owned(),
            block_size: block_size.max(1),
            config,
            phase,
            out: VecDeque::new(),
            next_seq: 0,
            in_flight: HashMap::new(),
            open_id: None,
            close_wanted: false,
            close_id: None,
            inbound: VecDeque::new(),
            blocks_received: 0,
            seq_form: SeqForm::Undecided,
            held: VecDeque::new(),
            peer_closed: false,
            error: None,
            transmits: VecDeque::new(),
            id_prefix: id_prefix.to_owned(),
            id_counter: 0,
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    /// The stream id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The block size in use.
    pub fn block_size(&self) -> u16 {
        self.block_size
    }

    /// Whether the stream is open (both sides agreed; data may flow).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Why the stream failed, if it did.
    pub fn error(&self) -> Option<&IbbError> {
        self.error.as_ref()
    }

    /// Bytes acknowledged by the peer and bytes received, so far.
    pub fn counters(&self) -> (u64, u64) {
        (self.bytes_sent, self.bytes_received)
    }

    /// Takes bytes to send; returns how many were taken (0 when the send buffer is full: wait
    /// until [`IbbStream::writable`]).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, IbbError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.close_wanted || self.peer_closed || self.phase == Phase::Done {
            return Err(IbbError::Closed);
        }
        let room = self.config.send_buffer.saturating_sub(self.out.len());
        let n = room.min(data.len());
        self.out.extend(&data[..n]);
        Ok(n)
    }

    /// Whether [`IbbStream::write`] would take bytes (or fail) now.
    pub fn writable(&self) -> bool {
        self.error.is_some()
            || self.phase == Phase::Done
            || self.out.len() < self.config.send_buffer
    }

    /// Whether everything written has been answered by the peer.
    pub fn flushed(&self) -> bool {
        self.out.is_empty() && self.data_in_flight() == 0
    }

    /// Reads received bytes: `Some(n)` with n > 0, `Some(0)` at the end of the stream (the
    /// peer closed it and everything was read), `None` when nothing is there yet. A failed
    /// stream gives its error once the bytes received before the failure were read.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Option<usize>, IbbError> {
        if !self.inbound.is_empty() && !buf.is_empty() {
            let n = buf.len().min(self.inbound.len());
            copy_front(&self.inbound, &mut buf[..n]);
            self.inbound.drain(..n);
            self.release_answers();
            return Ok(Some(n));
        }
        if self.peer_closed {
            return Ok(Some(0));
        }
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.phase == Phase::Done {
            return Ok(Some(0));
        }
        Ok(None)
    }

    /// Closes our side once everything written was answered (`<close/>`, XEP-0047 §2.3).
    pub fn close(&mut self) {
        self.close_wanted = true;
    }

    /// Ends the stream at once without a word to the peer (its Jingle session ended, which
    /// closes the bytestream too, XEP-0261 §3).
    pub fn abort(&mut self) {
        if self.phase != Phase::Done {
            self.phase = Phase::Done;
            self.error.get_or_insert(IbbError::Closed);
        }
        self.in_flight.clear();
        self.out.clear();
    }

    /// Takes an `<iq/>` received on the connection; returns whether it belonged to this stream
    /// (a request naming its sid from its peer, or the answer to one of our requests). The
    /// answer to a request goes out through [`IbbStream::poll_transmit`].
    pub fn handle_iq(&mut self, stanza: &Element, now: Instant) -> bool {
        if stanza.attr("from") != Some(self.peer.as_str()) {
            return false;
        }
        match iq_type(stanza) {
            Some(IqType::Set) => {
                let names_us = stanza
                    .children()
                    .find(|c| c.ns() == NS_IBB)
                    .is_some_and(|c| c.attr("sid") == Some(self.sid.as_str()));
                if !names_us {
                    return false;
                }
                self.handle_request(stanza, now);
                true
            }
            Some(kind @ (IqType::Result | IqType::Error)) => {
                let Some(id) = stanza.attr("id") else {
                    return false;
                };
                if self.in_flight.remove(id).is_none() {
                    return false;
                }
                let error = (kind == IqType::Error).then(|| {
                    StanzaError::from_stanza(stanza)
                        .map_or_else(|| "an error".to_owned(), |e| e.to_string())
                });
                if self.open_id.as_deref() == Some(id) {
                    self.open_id = None;
                    match error {
                        None if self.phase == Phase::Opening => self.phase = Phase::Open,
                        None => {}
                        Some(e) => self.fail(IbbError::OpenRefused(e)),
                    }
                } else if self.close_id.as_deref() == Some(id) {
                    self.phase = Phase::Done;
                } else if let Some(e) = error {
                    self.fail(IbbError::Refused(e));
                }
                true
            }
            _ => false,
        }
    }

    fn handle_request(&mut self, stanza: &Element, _now: Instant) {
        let packet = match IbbPacket::from_iq(stanza, self.block_size) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                self.reply(iq_error(
                    stanza,
                    Condition::BadRequest,
                    None,
                    Some(&e.to_string()),
                ));
                self.fail(IbbError::Protocol(e.to_string()));
                return;
            }
        };
        match packet {
            IbbPacket::Open { block_size, .. } => {
                if self.phase != Phase::AwaitingOpen {
                    self.reply(iq_error(stanza, Condition::UnexpectedRequest, None, None));
                } else if block_size > self.block_size {
                    // XEP-0261 §2: an open that does not match the negotiated size.
                    self.reply(iq_error(
                        stanza,
                        Condition::ResourceConstraint,
                        None,
                        Some("block-size larger than negotiated"),
                    ));
                } else {
                    self.block_size = block_size;
                    self.phase = Phase::Open;
                    self.reply(iq_result(stanza));
                }
            }
            IbbPacket::Data { seq, bytes, .. } => {
                if self.phase != Phase::Open || self.peer_closed {
                    self.reply(iq_error(stanza, Condition::ItemNotFound, None, None));
                    return;
                }
                if let Err(text) = self.check_seq(seq) {
                    // XEP-0047 §2.2: a wrong sequence number closes the bytestream.
                    self.reply(iq_error(
                        stanza,
                        Condition::UnexpectedRequest,
                        None,
                        Some(&text),
                    ));
                    self.fail(IbbError::Protocol(text));
                    return;
                }
                self.blocks_received += 1;
                self.bytes_received += bytes.len() as u64;
                self.inbound.extend(bytes);
                if self.inbound.len() <= self.config.receive_buffer && self.held.is_empty() {
                    self.reply(iq_result(stanza));
                } else if self.held.len() >= self.config.max_held_answers {
                    let text = "too many blocks sent without waiting for their answers";
                    self.reply(iq_error(
                        stanza,
                        Condition::ResourceConstraint,
                        None,
                        Some(text),
                    ));
                    self.fail(IbbError::Protocol(text.to_owned()));
                } else {
                    self.held.push_back(iq_result(stanza));
                }
            }
            IbbPacket::Close { .. } => {
                self.reply(iq_result(stanza));
                self.peer_closed = true;
                // The bytestream is closed both ways (XEP-0047 §2.3): unsent data is dropped.
                self.out.clear();
                self.in_flight
                    .retain(|id, _| Some(id) == self.close_id.as_ref());
                self.phase = Phase::Done;
            }
        }
    }

    /// Checks the number of the peer's next block against the count so far, in the form the
    /// peer uses (learnt at the first block past 65535; see the module documentation).
    fn check_seq(&mut self, seq: u32) -> Result<(), String> {
        let count = self.blocks_received;
        let wrapped = count % u64::from(SEQ_MODULUS);
        let seq = u64::from(seq);
        let ok = match self.seq_form {
            SeqForm::Undecided => seq == wrapped || seq == count,
            SeqForm::Wrapping => seq == wrapped,
            SeqForm::Counting => seq == count,
        };
        if !ok {
            let due = match self.seq_form {
                SeqForm::Undecided if wrapped != count => format!("{wrapped} or {count}"),
                SeqForm::Counting => count.to_string(),
                _ => wrapped.to_string(),
            };
            return Err(format!("block {seq} where {due} was due"));
        }
        if self.seq_form == SeqForm::Undecided && wrapped != count {
            self.seq_form = if seq == wrapped {
                SeqForm::Wrapping
            } else {
                SeqForm::Counting
            };
        }
        Ok(())
    }

    fn release_answers(&mut self) {
        while self.inbound.len() <= self.config.receive_buffer {
            match self.held.pop_front() {
                Some(answer) => self.transmits.push_back(answer),
                None => break,
            }
        }
    }

    fn reply(&mut self, el: Element) {
        self.transmits.push_back(el);
    }

    fn fail(&mut self, e: IbbError) {
        self.error.get_or_insert(e);
        self.phase = Phase::Done;
        self.out.clear();
        self.in_flight.clear();
    }

    fn data_in_flight(&self) -> usize {
        self.in_flight
            .keys()
            .filter(|id| Some(*id) != self.open_id.as_ref() && Some(*id) != self.close_id.as_ref())
            .count()
    }

    fn request(&mut self, payload: Element, now: Instant) -> String {
        self.id_counter += 1;
        let id = format!("{}-{}", self.id_prefix, self.id_counter);
        self.in_flight
            .insert(id.clone(), now + self.config.request_timeout);
        self.transmits
            .push_back(iq(IqType::Set, &id, &self.peer, Some(payload)));
        id
    }

    /// The next stanza to send (data blocks while the window allows, answers, `<close/>`).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Element> {
        if self.phase == Phase::Open {
            while !self.out.is_empty() && self.data_in_flight() < self.config.window {
                let n = self.out.len().min(usize::from(self.block_size));
                let mut bytes = vec![0; n];
                copy_front(&self.out, &mut bytes);
                self.out.drain(..n);
                // A u16 wraps to 0 after 65535 (XEP-0047 §2.2).
                let seq = u32::from(self.next_seq);
                self.next_seq = self.next_seq.wrapping_add(1);
                self.bytes_sent += n as u64;
                let data = IbbPacket::Data {
                    sid: self.sid.clone(),
                    seq,
                    bytes,
                };
                self.request(data.to_element(), now);
            }
            if self.close_wanted && self.close_id.is_none() && self.flushed() {
                let close = IbbPacket::Close {
                    sid: self.sid.clone(),
                };
                self.close_id = Some(self.request(close.to_element(), now));
            }
        }
        self.transmits.pop_front()
    }

    /// When [`IbbStream::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.values().min().copied()
    }

    /// Fails the stream if a request of ours went unanswered too long.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.in_flight.values().any(|d| *d <= now) {
            if self.close_id.is_some() && self.out.is_empty() && self.data_in_flight() == 0 {
                // Only our close went unanswered: the data all arrived.
                self.phase = Phase::Done;
                self.in_flight.clear();
            } else {
                self.fail(IbbError::Timeout(self.config.request_timeout));
            }
        }
    }
}

/// Copies the first `dst.len()` bytes of `q` (which holds at least as many) into `dst`, a
/// slice at a time rather than byte by byte.
fn copy_front(q: &VecDeque<u8>, dst: &mut [u8]) {
    let (front, back) = q.as_slices();
    let k = dst.len().min(front.len());
    dst[..k].copy_from_slice(&front[..k]);
    let rest = dst.len() - k;
    dst[k..].copy_from_slice(&back[..rest]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::stanza::set_attr;

    const A: &str = "a@example.test/1";
    const B: &str = "b@example.test/2";

    /// Delivers every stanza one side emits to the other, as a server would (from set).
    fn pump(from: &mut IbbStream, from_jid: &str, to: &mut IbbStream, now: Instant) -> usize {
        let mut n = 0;
        while let Some(mut st) = from.poll_transmit(now) {
            set_attr(&mut st, "from", from_jid);
            assert!(to.handle_iq(&st, now), "not taken: {st:?}");
            n += 1;
        }
        n
    }

    /// Appends to `got` whatever `stream` has to read now.
    fn read_all(stream: &mut IbbStream, buf: &mut [u8], got: &mut Vec<u8>) {
        while let Some(n) = stream.read(buf).unwrap() {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }

    fn pair(config: IbbConfig, now: Instant) -> (IbbStream, IbbStream) {
        let mut a = IbbStream::opener(B, "s1", 4096, config.clone(), "a", now);
        let mut b = IbbStream::acceptor(A, "s1", 4096, config, "b");
        pump(&mut a, A, &mut b, now);
        pump(&mut b, B, &mut a, now);
        assert!(a.is_open() && b.is_open());
        (a, b)
    }

    #[test]
    fn bytes_cross_in_order_and_close_gives_end_of_stream() {
        let now = Instant::now();
        let (mut a, mut b) = pair(IbbConfig::default(), now);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut written = 0;
        let mut got = Vec::new();
        let mut buf = [0u8; 3000];
        while got.len() < data.len() {
            written += a.write(&data[written..]).unwrap();
            pump(&mut a, A, &mut b, now);
            pump(&mut b, B, &mut a, now);
            read_all(&mut b, &mut buf, &mut got);
        }
        assert_eq!(got, data);
        assert!(a.flushed());
        a.close();
        pump(&mut a, A, &mut b, now);
        pump(&mut b, B, &mut a, now);
        assert_eq!(b.read(&mut buf).unwrap(), Some(0));
        assert_eq!(a.counters().0, data.len() as u64);
    }

    #[test]
    fn the_window_bounds_unanswered_blocks_and_a_slow_reader_holds_answers() {
        let now = Instant::now();
        let config = IbbConfig {
            window: 3,
            receive_buffer: 8192,
            ..IbbConfig::default()
        };
        let (mut a, mut b) = pair(config, now);
        a.write(&vec![1u8; 100_000]).unwrap();
        // Only three blocks leave before an answer.
        assert_eq!(pump(&mut a, A, &mut b, now), 3);
        // b holds 12 KiB > 8 KiB: the third answer is held back.
        assert_eq!(pump(&mut b, B, &mut a, now), 2);
        assert_eq!(pump(&mut a, A, &mut b, now), 2);
        assert_eq!(pump(&mut b, B, &mut a, now), 0, "reader behind: no answers");
        assert_eq!(pump(&mut a, A, &mut b, now), 0, "window full: nothing sent");
        let mut buf = vec![0u8; 20_000];
        assert_eq!(b.read(&mut buf).unwrap(), Some(20_000));
        assert_eq!(
            pump(&mut b, B, &mut a, now),
            3,
            "reading releases the answers"
        );
        assert!(pump(&mut a, A, &mut b, now) > 0);
    }

    #[test]
    fn a_wrong_sequence_number_closes_the_stream_with_an_error_answer() {
        let now = Instant::now();
        let (mut a, mut b) = pair(IbbConfig::default(), now);
        a.write(&[1, 2, 3]).unwrap();
        let mut st = a.poll_transmit(now).unwrap();
        set_attr(&mut st, "from", A);
        // Re-number the block.
        let mut data = st.get_child("data", NS_IBB).unwrap().clone();
        set_attr(&mut data, "seq", "5");
        let mut forged = iq(IqType::Set, "x1", B, Some(data));
        set_attr(&mut forged, "from", A);
        assert!(b.handle_iq(&forged, now));
        let answer = b.poll_transmit(now).unwrap();
        assert_eq!(answer.attr("type"), Some("error"));
        assert!(matches!(b.error(), Some(IbbError::Protocol(_))));
        let mut buf = [0u8; 8];
        assert!(b.read(&mut buf).is_err());
    }

    /// Hands `b` one block from `A` numbered `seq` (its one byte is `index` as u8), reads
    /// what `b` holds, and returns `b`'s answer and the bytes read.
    fn block(b: &mut IbbStream, index: u64, seq: u64, now: Instant) -> (Element, Vec<u8>) {
        let mut data = IbbPacket::Data {
            sid: "s1".into(),
            seq: 0,
            bytes: vec![index as u8],
        }
        .to_element();
        set_attr(&mut data, "seq", seq.to_string());
        let mut st = iq(IqType::Set, &format!("d{index}"), B, Some(data));
        set_attr(&mut st, "from", A);
        assert!(b.handle_iq(&st, now));
        let answer = b.poll_transmit(now).expect("every block is answered");
        assert!(b.poll_transmit(now).is_none());
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        while let Ok(Some(n)) = b.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        (answer, got)
    }

    /// A stream that has taken the peer's blocks `0..count` (numbered by `seq_of`), each
    /// answered with a result and read in order.
    fn after_blocks(count: u64, seq_of: fn(u64) -> u64, now: Instant) -> IbbStream {
        let (_a, mut b) = pair(IbbConfig::default(), now);
        for i in 0..count {
            let (answer, got) = block(&mut b, i, seq_of(i), now);
            assert_eq!(answer.attr("type"), Some("result"), "block {i}");
            assert_eq!(got, [i as u8], "block {i}");
        }
        b
    }

    fn wrapped(i: u64) -> u64 {
        i % 65536
    }

    fn counting(i: u64) -> u64 {
        i
    }

    /// The answer is `<unexpected-request/>` and the stream has failed.
    fn refused(b: &IbbStream, answer: &Element) {
        assert_eq!(answer.attr("type"), Some("error"), "{answer:?}");
        let error = StanzaError::from_stanza(answer).unwrap();
        assert_eq!(error.condition, Condition::UnexpectedRequest, "{answer:?}");
        assert!(matches!(b.error(), Some(IbbError::Protocol(_))));
    }

    #[test]
    fn the_peers_blocks_are_taken_wrapped_to_0_after_65535_as_dino_sends_them() {
        let now = Instant::now();
        // Blocks 0..=65535, then 0, 1, 2 again (XEP-0047 §2.2).
        let mut b = after_blocks(65536 + 3, wrapped, now);
        assert_eq!(b.counters().1, 65536 + 3);
        // Having wrapped, the peer may not switch to counting on.
        let (answer, got) = block(&mut b, 65536 + 3, 65536 + 3, now);
        assert!(got.is_empty());
        refused(&b, &answer);
    }

    #[test]
    fn the_peers_blocks_are_taken_counting_on_past_65535_as_conversations_sends_them() {
        let now = Instant::now();
        // Blocks 0..=65535, then 65536, 65537, 65538 (Conversations' AtomicInteger).
        let mut b = after_blocks(65536 + 3, counting, now);
        assert_eq!(b.counters().1, 65536 + 3);
        // Having counted on, the peer may not switch to wrapped numbers.
        let (answer, got) = block(&mut b, 65536 + 3, 3, now);
        assert!(got.is_empty());
        refused(&b, &answer);
    }

    #[test]
    fn a_wrong_number_across_the_wrap_is_still_refused() {
        let now = Instant::now();
        // After 65535, 0 or 65536 is due: 1, 65537 and 65535 again are refused.
        for seq in [1, 65537, 65535] {
            let mut b = after_blocks(65536, counting, now);
            let (answer, _) = block(&mut b, 65536, seq, now);
            refused(&b, &answer);
        }
        // Before the wrap, a number past 65535 is as wrong as any other.
        let mut b = after_blocks(3, counting, now);
        let (answer, _) = block(&mut b, 3, 65536 + 3, now);
        refused(&b, &answer);
    }

    #[test]
    fn our_blocks_are_numbered_wrapping_to_0_after_65535() {
        let now = Instant::now();
        let mut a = IbbStream::opener(B, "s1", 1, IbbConfig::default(), "a", now);
        let mut b = IbbStream::acceptor(A, "s1", 1, IbbConfig::default(), "b");
        pump(&mut a, A, &mut b, now);
        pump(&mut b, B, &mut a, now);
        let data: Vec<u8> = (0..65536u32 + 3).map(|i| (i % 253) as u8).collect();
        assert_eq!(a.write(&data).unwrap(), data.len());
        let mut seqs = Vec::new();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for round in 0.. {
            if a.flushed() {
                break;
            }
            assert!(round < 100_000, "the transfer stalled");
            while let Some(mut st) = a.poll_transmit(now) {
                let seq = st.get_child("data", NS_IBB).and_then(|d| d.attr("seq"));
                seqs.push(seq.unwrap().parse::<u64>().unwrap());
                set_attr(&mut st, "from", A);
                assert!(b.handle_iq(&st, now));
            }
            pump(&mut b, B, &mut a, now);
            read_all(&mut b, &mut buf, &mut got);
        }
        assert_eq!(got, data);
        let expected: Vec<u64> = (0..data.len() as u64).map(wrapped).collect();
        assert_eq!(seqs, expected);
    }

    #[test]
    fn blocks_from_anyone_but_the_peer_or_for_another_sid_are_not_taken() {
        let now = Instant::now();
        let (mut a, mut b) = pair(IbbConfig::default(), now);
        a.write(&[1, 2, 3]).unwrap();
        let mut st = a.poll_transmit(now).unwrap();
        set_attr(&mut st, "from", "mallory@example.test/x");
        assert!(!b.handle_iq(&st, now));
        let other = IbbPacket::Data {
            sid: "other".into(),
            seq: 0,
            bytes: vec![1],
        };
        let mut st = iq(IqType::Set, "y", B, Some(other.to_element()));
        set_attr(&mut st, "from", A);
        assert!(!b.handle_iq(&st, now));
        assert!(b.error().is_none());
    }

    #[test]
    fn a_sender_ignoring_flow_control_is_cut_off() {
        let now = Instant::now();
        let config = IbbConfig {
            receive_buffer: 4096,
            max_held_answers: 4,
            ..IbbConfig::default()
        };
        let (_a, mut b) = pair(config, now);
        for seq in 0..8u32 {
            let d = IbbPacket::Data {
                sid: "s1".into(),
                seq,
                bytes: vec![0; 4096],
            };
            let mut st = iq(IqType::Set, &format!("f{seq}"), B, Some(d.to_element()));
            set_attr(&mut st, "from", A);
            b.handle_iq(&st, now);
        }
        assert!(matches!(b.error(), Some(IbbError::Protocol(_))));
    }

    #[test]
    fn an_open_larger_than_negotiated_is_refused() {
        let now = Instant::now();
        let mut a = IbbStream::opener(B, "s1", 8192, IbbConfig::default(), "a", now);
        let mut b = IbbStream::acceptor(A, "s1", 4096, IbbConfig::default(), "b");
        pump(&mut a, A, &mut b, now);
        pump(&mut b, B, &mut a, now);
        assert!(!b.is_open());
        assert!(matches!(a.error(), Some(IbbError::OpenRefused(_))));
    }

    #[test]
    fn an_unanswered_block_times_out() {
        let now = Instant::now();
        let (mut a, _b) = pair(IbbConfig::default(), now);
        a.write(&[1]).unwrap();
        assert!(a.poll_transmit(now).is_some());
        let t = a.poll_timeout().unwrap();
        a.handle_timeout(t);
        assert!(matches!(a.error(), Some(IbbError::Timeout(_))));
        assert!(a.write(&[1]).is_err());
    }
}
