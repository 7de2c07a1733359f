//! One stream API over every transport of a session: a [`SessionStream`] is an
//! `AsyncRead + AsyncWrite` byte stream, whether the session carries WebRTC data channels (one
//! reliable, ordered channel per stream) or fell back to In-Band Bytestreams (the session's
//! one bytestream through the server). Applications (file transfer, tubes) are written once
//! against it: [`JingleSession::open_stream`](super::JingleSession::open_stream) and
//! [`JingleSession::accept_stream`](super::JingleSession::accept_stream).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::ibb::IbbChannel;
use crate::net::DataChannel;

/// A byte stream of a session (see the module documentation).
#[derive(Debug)]
pub enum SessionStream {
    /// A reliable, ordered data channel of the session's association (RFC 8831).
    Channel(DataChannel),
    /// The session's In-Band Bytestream (XEP-0047 through XEP-0261).
    Ibb(IbbChannel),
}

impl SessionStream {
    /// The data channel under it, for the message API and channel details; `None` over
    /// In-Band Bytestreams.
    pub fn channel(&self) -> Option<&DataChannel> {
        match self {
            SessionStream::Channel(c) => Some(c),
            SessionStream::Ibb(_) => None,
        }
    }
}

impl AsyncRead for SessionStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SessionStream::Channel(c) => Pin::new(c).poll_read(cx, buf),
            SessionStream::Ibb(i) => Pin::new(i).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SessionStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SessionStream::Channel(c) => Pin::new(c).poll_write(cx, buf),
            SessionStream::Ibb(i) => Pin::new(i).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SessionStream::Channel(c) => Pin::new(c).poll_flush(cx),
            SessionStream::Ibb(i) => Pin::new(i).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SessionStream::Channel(c) => Pin::new(c).poll_shutdown(cx),
            SessionStream::Ibb(i) => Pin::new(i).poll_shutdown(cx),
        }
    }
}
