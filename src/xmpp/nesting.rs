//! A bound on XML nesting applied to the bytes of an XMPP stream, before any XML parser sees
//! them.
//!
//! tokio-xmpp 6 builds each received stanza with xso's minidom builder, which hands every
//! parser event down through one nested builder per open element: a stanza nested `d` levels
//! deep costs `d` stack frames per event (and time quadratic in `d`). Anyone who can reach
//! our full JID can send such a stanza through the server (10,000 levels are about 70 KB,
//! under every server's stanza size limit), and it overflowed a 2 MiB tokio worker stack in
//! the parser, before any of our code could look at it.
//!
//! [`NestingFilter`] is a sans-IO scanner of the stream's bytes that tracks the nesting depth
//! (start and end tags, self-closing tags, quoted attribute values, comments, CDATA sections,
//! processing instructions, stream restarts after STARTTLS and SASL, RFC 6120 §4.3.3) and
//! removes every element nested deeper than its bound, with all it contains. The stream stays
//! well-formed and the connection stays up; the stanza that held the elided part keeps the
//! bound's full depth, so that [`StanzaLimits`](crate::jingle::StanzaLimits) refuses it (with
//! `<policy-violation/>` for an iq request) when the stanza reaches the application.
//! [`NestingGuard`] applies it to any [`AsyncRead`].
//!
//! [`XmppConnection`](super::XmppConnection) (and so the bots' client) reads through it. A
//! client author with a plain `tokio_xmpp::Client` gets it by connecting with
//! [`XmppTlsConnector`](super::connection::XmppTlsConnector)
//! (`tokio_xmpp::Client::new_with_connector`): tokio-xmpp's own connectors have no such bound.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::xmpp::stanza::MAX_STANZA_DEPTH;

/// Deepest element kept, counting the stream's root element as level 1 and its stanzas as
/// level 2: one level more than [`MAX_STANZA_DEPTH`] allows inside a stanza, so that a
/// stanza whose deeper part was removed still breaks that bound and is refused as a whole.
pub const MAX_STREAM_DEPTH: usize = MAX_STANZA_DEPTH + 2;

/// Longest element name looked at (to recognise a stream restart); longer names are not
/// `stream:stream`.
const NAME_CAP: usize = 32;

/// Where the scanner is in the markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Markup {
    /// Character data between tags.
    Text,
    /// Just after `<`: the next byte says what kind of markup follows.
    Open,
    /// Inside a start tag; `quote` is the open attribute-value delimiter, `slash` whether the
    /// last byte outside quotes was `/` (a self-closing tag ends with `/>`).
    StartTag { quote: Option<u8>, slash: bool },
    /// Inside an end tag, up to its `>`.
    EndTag,
    /// Just after `<!`.
    Bang,
    /// Just after `<!-`.
    CommentOpen,
    /// After `<![` and `seen` bytes of `CDATA[`.
    CdataOpen { seen: usize },
    /// Inside a comment; `dashes` consecutive `-` just read.
    Comment { dashes: usize },
    /// Inside a CDATA section; `brackets` consecutive `]` just read.
    Cdata { brackets: usize },
    /// Inside a processing instruction, up to `?>`; `question` whether `?` was just read.
    Pi { question: bool },
    /// Inside a declaration such as `<!DOCTYPE ...>`, up to `>` (RFC 6120 §11.1 allows none in
    /// a stream; skipped all the same).
    Declaration,
}

/// What follows `<![` in a CDATA section's opener.
const CDATA_OPENER: &[u8] = b"CDATA[";

/// The sans-IO nesting bound on a stream of XML bytes (see the module documentation).
#[derive(Debug, Clone)]
pub struct NestingFilter {
    max_depth: usize,
    depth: usize,
    markup: Markup,
    /// While an over-deep element is being removed: the depth its parent is at.
    eliding: Option<usize>,
    /// The name of the start tag being read (up to [`NAME_CAP`] bytes) and whether it is
    /// complete.
    name: Vec<u8>,
    name_done: bool,
    elided: u64,
}

impl NestingFilter {
    /// A filter that keeps elements down to `max_depth` levels (the stream's root is level 1).
    pub fn new(max_depth: usize) -> Self {
        NestingFilter {
            max_depth: max_depth.max(2),
            depth: 0,
            markup: Markup::Text,
            eliding: None,
            name: Vec::with_capacity(NAME_CAP),
            name_done: true,
            elided: 0,
        }
    }

    /// How many over-deep elements were removed so far.
    pub fn elided(&self) -> u64 {
        self.elided
    }

    /// The current nesting depth (the stream's root element is level 1).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Scans `input` and appends to `out` what is kept of it. `out` grows by at most
    /// `input.len() + 1` bytes (a `<` held back at the end of the previous input).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.byte(b, out);
        }
    }

    fn emit(&self, out: &mut Vec<u8>, bytes: &[u8]) {
        if self.eliding.is_none() {
            out.extend_from_slice(bytes);
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.markup {
            Markup::Text => {
                if b == b'<' {
                    // Held back until the next byte says whether a too-deep element starts.
                    self.markup = Markup::Open;
                } else {
                    self.emit(out, &[b]);
                }
            }
            Markup::Open => match b {
                b'/' => {
                    self.emit(out, b"</");
                    self.markup = Markup::EndTag;
                }
                b'!' => {
                    self.emit(out, b"<!");
                    self.markup = Markup::Bang;
                }
                b'?' => {
                    self.emit(out, b"<?");
                    self.markup = Markup::Pi { question: false };
                }
                _ => {
                    if self.eliding.is_none() && self.depth >= self.max_depth {
                        self.eliding = Some(self.depth);
                        self.elided += 1;
                        tracing::debug!(depth = self.depth + 1, "over-deep XML element removed");
                    }
                    self.depth += 1;
                    self.emit(out, &[b'<', b]);
                    self.name.clear();
                    self.name.push(b);
                    self.name_done = false;
                    self.markup = Markup::StartTag {
                        quote: None,
                        slash: false,
                    };
                }
            },
            Markup::StartTag { quote, slash } => {
                self.emit(out, &[b]);
                if !self.name_done {
                    if b.is_ascii_whitespace() || b == b'/' || b == b'>' {
                        self.name_done = true;
                        self.restart_check();
                    } else if self.name.len() < NAME_CAP {
                        self.name.push(b);
                    }
                }
                self.markup = match (quote, b) {
                    (Some(q), _) if b == q => Markup::StartTag {
                        quote: None,
                        slash: false,
                    },
                    (Some(_), _) => Markup::StartTag { quote, slash },
                    (None, b'"' | b'\'') => Markup::StartTag {
                        quote: Some(b),
                        slash: false,
                    },
                    (None, b'>') => {
                        if slash {
                            self.close_element();
                        }
                        Markup::Text
                    }
                    (None, _) => Markup::StartTag {
                        quote: None,
                        slash: b == b'/',
                    },
                };
            }
            Markup::EndTag => {
                self.emit(out, &[b]);
                if b == b'>' {
                    self.markup = Markup::Text;
                    self.close_element();
                }
            }
            Markup::Bang => {
                self.emit(out, &[b]);
                self.markup = match b {
                    b'-' => Markup::CommentOpen,
                    b'[' => Markup::CdataOpen { seen: 0 },
                    b'>' => Markup::Text,
                    _ => Markup::Declaration,
                };
            }
            Markup::CommentOpen => {
                self.emit(out, &[b]);
                self.markup = match b {
                    b'-' => Markup::Comment { dashes: 0 },
                    b'>' => Markup::Text,
                    _ => Markup::Declaration,
                };
            }
            Markup::CdataOpen { seen } => {
                self.emit(out, &[b]);
                self.markup = if CDATA_OPENER.get(seen) == Some(&b) {
                    if seen + 1 == CDATA_OPENER.len() {
                        Markup::Cdata { brackets: 0 }
                    } else {
                        Markup::CdataOpen { seen: seen + 1 }
                    }
                } else if b == b'>' {
                    Markup::Text
                } else {
                    Markup::Declaration
                };
            }
            Markup::Comment { dashes } => {
                self.emit(out, &[b]);
                self.markup = match b {
                    b'-' => Markup::Comment { dashes: dashes + 1 },
                    b'>' if dashes >= 2 => Markup::Text,
                    _ => Markup::Comment { dashes: 0 },
                };
            }
            Markup::Cdata { brackets } => {
                self.emit(out, &[b]);
                self.markup = match b {
                    b']' => Markup::Cdata {
                        brackets: brackets + 1,
                    },
                    b'>' if brackets >= 2 => Markup::Text,
                    _ => Markup::Cdata { brackets: 0 },
                };
            }
            Markup::Pi { question } => {
                self.emit(out, &[b]);
                self.markup = match b {
                    b'>' if question => Markup::Text,
                    _ => Markup::Pi {
                        question: b == b'?',
                    },
                };
            }
            Markup::Declaration => {
                self.emit(out, &[b]);
                if b == b'>' {
                    self.markup = Markup::Text;
                }
            }
        }
    }

    /// A start tag named `stream` (any prefix) directly under the stream's root is the root of
    /// a restarted stream (RFC 6120 §4.3.3: after STARTTLS and after SASL the server opens a
    /// new stream without closing the old one): it takes the root's level.
    fn restart_check(&mut self) {
        if self.depth == 2 && self.eliding.is_none() {
            let local = match self.name.iter().rposition(|&c| c == b':') {
                Some(i) => &self.name[i + 1..],
                None => &self.name[..],
            };
            if local == b"stream" {
                self.depth = 1;
            }
        }
    }

    /// An element ended (end tag or `/>`).
    fn close_element(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.eliding == Some(self.depth) {
            self.eliding = None;
        }
    }
}

/// Size of the buffer a [`NestingGuard`] reads into.
const READ_CHUNK: usize = 16 * 1024;

/// An [`AsyncRead`] + [`AsyncWrite`] that passes writes through and filters reads with a
/// [`NestingFilter`]: put it between the TLS stream and the XMPP parser.
#[derive(Debug)]
pub struct NestingGuard<S> {
    inner: S,
    filter: NestingFilter,
    scratch: Box<[u8]>,
    out: Vec<u8>,
    out_pos: usize,
}

impl<S> NestingGuard<S> {
    /// Wraps `inner`, keeping elements down to [`MAX_STREAM_DEPTH`] levels.
    pub fn new(inner: S) -> Self {
        NestingGuard {
            inner,
            filter: NestingFilter::new(MAX_STREAM_DEPTH),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            out: Vec::with_capacity(READ_CHUNK + 1),
            out_pos: 0,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// How many over-deep elements were removed from what was read.
    pub fn elided(&self) -> u64 {
        self.filter.elided()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for NestingGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.out.len() {
                let n = (this.out.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                // End of stream.
                return Poll::Ready(Ok(()));
            }
            this.out.clear();
            this.out_pos = 0;
            this.filter.feed(&this.scratch[..n], &mut this.out);
            // Everything read may have been removed: read on rather than report an empty
            // read, which would mean the end of the stream.
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NestingGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
                          xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

    fn run(filter: &mut NestingFilter, input: &str, chunk: usize) -> String {
        let mut out = Vec::new();
        for part in input.as_bytes().chunks(chunk.max(1)) {
            filter.feed(part, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    /// The stanzas of `stream` (a header followed by stanzas), filtered with `max` levels.
    fn filtered(max: usize, body: &str) -> String {
        let all = run(&mut NestingFilter::new(max), &format!("{HEADER}{body}"), 7);
        all.strip_prefix(HEADER).unwrap().to_owned()
    }

    fn nested(depth: usize) -> String {
        format!("{}{}", "<x>".repeat(depth), "</x>".repeat(depth))
    }

    fn depth_of(el: &Element) -> usize {
        1 + el.children().map(depth_of).max().unwrap_or(0)
    }

    #[test]
    fn shallow_streams_pass_unchanged_whatever_the_chunking() {
        let body = "<iq type='set' id='a&amp;b' to='x@y/z'><q xmlns='urn:q' v=\"a>b/c\" w='\"'>\
                    text > with &lt; <![CDATA[ <not-a-tag> ]] ]]> <!-- a <comment> --> \
                    <?pi some ? thing?><e/><e a='/>'/></q></iq><message><body>hi</body></message>";
        let input = format!("{HEADER}{body}");
        for chunk in [1, 2, 3, 5, 16, 1000] {
            let mut f = NestingFilter::new(4);
            assert_eq!(run(&mut f, &input, chunk), input, "chunk {chunk}");
            assert_eq!(f.elided(), 0);
            assert_eq!(f.depth(), 1, "back at the stream's level");
        }
    }

    #[test]
    fn deeper_elements_are_removed_and_the_stanza_stays_well_formed() {
        let out = filtered(
            5,
            &format!("<iq id='1'><a>{}</a><b>kept</b></iq>", nested(1000)),
        );
        let el: Element = out
            .replacen("<iq ", "<iq xmlns='jabber:client' ", 1)
            .parse()
            .expect("well-formed");
        // Stream root 1, iq 2, a 3, x 4, x 5: the iq keeps depth 4 below it.
        assert_eq!(depth_of(&el), 4);
        assert_eq!(el.children().nth(1).map(|b| b.text()), Some("kept".into()));
        assert_eq!(out, "<iq id='1'><a><x><x></x></x></a><b>kept</b></iq>");
    }

    #[test]
    fn an_over_deep_self_closing_tag_and_the_next_stanza() {
        let out = filtered(3, "<iq><a><b x='>' /><c>t</c></a></iq><iq id='2'><a/></iq>");
        assert_eq!(out, "<iq><a></a></iq><iq id='2'><a/></iq>");
    }

    #[test]
    fn stream_restarts_keep_the_root_level() {
        // After STARTTLS or SASL the server opens a new stream inside the old one.
        let body = format!("<features/>{HEADER}<features/>{HEADER}<iq><a><b/></a></iq>");
        let mut f = NestingFilter::new(4);
        let out = run(&mut f, &format!("{HEADER}{body}"), 4);
        assert_eq!(f.elided(), 0, "{out}");
        assert!(out.ends_with("<iq><a><b/></a></iq>"));
    }

    #[test]
    fn markup_inside_removed_parts_does_not_confuse_the_count() {
        let hidden = "<y v='</x>'><![CDATA[</x></x>]]><!-- </x> --><z/></y>";
        let out = filtered(3, &format!("<iq><a><x>{hidden}</x></a><b/></iq>"));
        assert_eq!(out, "<iq><a></a><b/></iq>");
    }

    #[tokio::test]
    async fn the_guard_filters_reads_and_passes_writes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut guard = NestingGuard::new(ours);
        let deep = format!(
            "{HEADER}<iq>{}</iq><iq id='2'/>",
            nested(MAX_STREAM_DEPTH * 4)
        );
        let writer = tokio::spawn(async move {
            theirs.write_all(deep.as_bytes()).await.unwrap();
            let mut back = [0u8; 5];
            theirs.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"hello");
        });
        guard.write_all(b"hello").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 13];
        while !String::from_utf8_lossy(&got).ends_with("<iq id='2'/>") {
            let n = guard.read(&mut buf).await.unwrap();
            assert!(n > 0, "no end of stream before the last stanza");
            got.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        assert_eq!(guard.elided(), 1);
        let text = String::from_utf8(got).unwrap();
        let kept = text.matches("<x>").count();
        assert_eq!(kept, MAX_STREAM_DEPTH - 2, "down to the bound: {text}");
    }

    /// A random tree `depth` levels deep at most, with attribute values and texts full of
    /// markup characters.
    fn tree(depth: u32) -> impl proptest::strategy::Strategy<Value = Element> {
        use proptest::prelude::*;
        let leaf = ("[a-c]{1,3}", "[<>/'\"&a ]{0,6}", "[<>/'\"&a ]{0,6}").prop_map(
            |(name, value, text)| {
                let mut el = Element::builder(name, "urn:t").build();
                crate::xmpp::stanza::set_attr(&mut el, "v", value);
                el.append_text_node(text);
                el
            },
        );
        leaf.prop_recursive(depth, 256, 3, |inner| {
            (inner.clone(), proptest::collection::vec(inner, 0..3)).prop_map(
                |(mut parent, children)| {
                    for c in children {
                        parent.append_child(c);
                    }
                    parent
                },
            )
        })
    }

    proptest::proptest! {
        #[test]
        fn any_stanza_comes_out_well_formed_and_within_the_bound(
            el in tree(12),
            max in 3usize..10,
            chunk in 1usize..40,
        ) {
            let stanza = String::from(&el);
            let input = format!("{HEADER}{stanza}<iq/>");
            let mut f = NestingFilter::new(max);
            let out = run(&mut f, &input, chunk);
            let body = out.strip_prefix(HEADER).unwrap().strip_suffix("<iq/>").unwrap();
            let back: Element = body.parse().expect("well-formed");
            proptest::prop_assert!(depth_of(&back) < max);
            if depth_of(&el) < max {
                proptest::prop_assert_eq!(body, stanza.as_str());
                proptest::prop_assert_eq!(f.elided(), 0);
            } else {
                proptest::prop_assert_eq!(depth_of(&back), max - 1);
                proptest::prop_assert!(f.elided() > 0);
            }
            proptest::prop_assert_eq!(f.depth(), 1);
        }
    }
}
