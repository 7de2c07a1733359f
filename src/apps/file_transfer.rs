//! Sending and receiving a file over a Jingle session (XEP-0234 over the `webrtc-datachannel:1`
//! transport, the flow Conversations uses; `xep/webrtc-datachannel.md` facts 16–22,
//! `xep/0234.md`).
//!
//! The sender offers the file with its name, size, media type, date, description and SHA-256
//! (XEP-0300), opens its data channel once the session is up, writes exactly `size` bytes,
//! sends `session-info` `<checksum/>`, and waits for the receiver's `<received/>` and
//! `session-terminate` `<success/>`. The receiver checks the offer, stores the bytes through a
//! [`FileSink`] (temporary file, size and hash verified, final name only when complete), then
//! sends `<received/>` and ends the session with `<success/>`; any failure ends it with the
//! reason that fits and leaves no file under the final name.
//!
//! The bytes go over the session's data channel, or, when ICE found no path, over its
//! In-Band Bytestream (XEP-0261, [`JingleSession::ibb`]); [`TransferReport::transport`] says
//! which. Offers announce ranged transfers (XEP-0234 §7.1): a receiver that kept part of the
//! file from an interrupted attempt (a killed process leaves its part file) asks for the rest in
//! its `session-accept`, and only the rest is sent.
//!
//! Cancelling a transfer is dropping its future ([`send_file`], [`IncomingFile::accept`],
//! [`FileRequest::serve`], [`request_file`]), at any point: the session then ends with
//! `<cancel/>` (XEP-0234 §6.3), or `<decline/>` for an offer not yet accepted, and nothing is
//! left under the final name.
//!
//! Sending a file with the runtime of a logged-in client ([`JingleRuntime`], fed by the
//! stanza pump of [`crate::xmpp::runtime`]), and receiving the files offered to it:
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use jid::FullJid;
//! use jingle_ice::apps::file_sink::SinkConfig;
//! use jingle_ice::apps::file_transfer::{send_file, IncomingFile, SendOptions};
//! use jingle_ice::xmpp::JingleRuntime;
//!
//! async fn send(runtime: &JingleRuntime, peer: FullJid) -> Result<(), Box<dyn std::error::Error>> {
//!     let report = send_file(runtime, peer, Path::new("photo.jpg"), SendOptions::default()).await?;
//!     println!("{} bytes over {:?}, verified: {}", report.size, report.transport, report.verified);
//!     Ok(())
//! }
//!
//! async fn receive(runtime: &JingleRuntime) -> Result<(), Box<dyn std::error::Error>> {
//!     let sink = SinkConfig { dir: PathBuf::from("downloads"), overwrite: false, max_size: 1 << 30 };
//!     while let Some(offer) = runtime.next_incoming().await {
//!         let report = IncomingFile::from_session(offer)?.accept(sink.clone(), None).await?;
//!         println!("stored {:?}", report.path);
//!     }
//!     Ok(())
//! }
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jid::FullJid;
use tokio::io::AsyncSeekExt;

use super::file_description::{
    Checksum, File, FileDescription, FileDescriptionError, FileInfo, Hash, Range, Received,
    NS_FILE_TRANSFER,
};
use super::file_sink::{FileSink, SinkConfig, SinkError};
use super::transfer::{
    receive_bytes, send_bytes, sha256_of, Progress, ProgressMeter, TransferError,
};
use crate::jingle::{Creator, Reason, ReasonCondition, Senders};
use crate::net::SelectedPair;
use crate::xmpp::extdisco::format_datetime;
use crate::xmpp::{
    IncomingSession, JingleRuntime, JingleRuntimeConfig, JingleRuntimeError, JingleSession,
};

/// Label and protocol of the channel each side opens (what Conversations uses, fact 16).
pub const CHANNEL_LABEL: &str = "test";
/// See [`CHANNEL_LABEL`].
pub const CHANNEL_PROTOCOL: &str = "xmpp-jingle";
/// How long the sender waits for `<received/>` / `session-terminate` after the last byte, and
/// the receiver for a `<checksum/>` when the offer carried no hash.
pub const END_WAIT: Duration = Duration::from_secs(30);
/// Content name of the file (the libwebrtc mid Conversations expects, fact 7).
const CONTENT: &str = crate::jingle::transports::webrtc_datachannel::CONVERSATIONS_CONTENT_NAME;

/// A progress callback (see [`Progress`]).
pub type OnProgress = Box<dyn FnMut(&Progress) + Send>;

/// Advertises file transfer in the runtime's disco#info answers and caps (XEP-0234 §10), so that peers such as
/// Conversations offer it files. Nothing else needs enabling: the session layer passes a
/// session's own `session-info` payloads (`<checksum/>`, `<received/>`) to it whatever the
/// configuration.
///
/// One call for either way of running the runtime: `enable(&mut config)` for a
/// [`JingleRuntime`] in the application's own XMPP client, `enable(&mut config.runtime)` for a
/// [`JingleClient`](crate::xmpp::JingleClient) bot.
pub fn enable(config: &mut JingleRuntimeConfig) {
    let ns = NS_FILE_TRANSFER.to_string();
    if !config.extra_features.contains(&ns) {
        config.extra_features.push(ns);
    }
}

/// How the bytes travelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportUsed {
    /// A WebRTC data channel (DTLS + SCTP) over the ICE pair.
    DataChannel {
        /// The ICE pair it ran on.
        pair: Option<Box<SelectedPair>>,
    },
    /// In-Band Bytestreams through the XMPP server (XEP-0261), the fallback when ICE found no
    /// path.
    Ibb {
        /// Bytes per block.
        block_size: u16,
    },
}

impl TransportUsed {
    /// What carries an established session's bytes.
    pub fn of(session: &JingleSession) -> TransportUsed {
        match session.ibb() {
            Some(ibb) => TransportUsed::Ibb {
                block_size: ibb.block_size(),
            },
            None => TransportUsed::DataChannel {
                pair: session.selected_pair().map(Box::new),
            },
        }
    }
}

impl std::fmt::Display for TransportUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportUsed::DataChannel { pair: Some(p) } => write!(
                f,
                "WebRTC data channel over ICE ({} {} -> {} {})",
                p.local.kind, p.local.address, p.remote.kind, p.remote.address
            ),
            TransportUsed::DataChannel { pair: None } => {
                f.write_str("WebRTC data channel over ICE")
            }
            TransportUsed::Ibb { block_size } => write!(
                f,
                "In-Band Bytestreams through the XMPP server (no peer-to-peer path; blocks of {block_size} bytes)"
            ),
        }
    }
}

/// What a finished transfer did.
#[derive(Debug, Clone)]
pub struct TransferReport {
    /// The file's name (as offered by the sender; as stored by the receiver).
    pub name: String,
    /// Where it was stored (receiver only).
    pub path: Option<PathBuf>,
    /// Bytes in the file.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// Receiver: the content's hash was compared with one the sender announced. Sender: the
    /// receiver confirmed (`<received/>` or `<success/>`) and what was sent hashes to the
    /// offered value (jingle-ice receivers confirm only after checking it; Conversations does
    /// not check, `xep/0234.md`).
    pub verified: bool,
    /// How the bytes travelled.
    pub transport: TransportUsed,
    /// Our ICE candidates (type and address) when the session connected.
    pub local_candidates: Vec<String>,
    /// From the offer to a working ICE pair.
    pub connect_time: Duration,
    /// From the first byte to the last acknowledged / stored.
    pub transfer_time: Duration,
    /// Where this transfer started in the file: 0, or the bytes an interrupted earlier
    /// attempt had stored, which the receiver asked to skip (XEP-0234 §7.1 `<range/>`).
    pub resumed_from: u64,
}

impl TransferReport {
    /// Bytes that travelled in this transfer (the file less what was resumed).
    pub fn transferred(&self) -> u64 {
        self.size.saturating_sub(self.resumed_from)
    }

    /// Bytes per second over [`TransferReport::transfer_time`].
    pub fn throughput(&self) -> f64 {
        self.transferred() as f64 / self.transfer_time.as_secs_f64().max(1e-9)
    }
}

/// Why a transfer failed. The session has been ended with the matching reason.
#[derive(Debug, thiserror::Error)]
pub enum FileTransferError {
    /// Opening the session failed (peer unreachable, declined, ICE failed, ...).
    #[error("session: {0}")]
    Session(#[from] JingleRuntimeError),
    /// The peer ended the session.
    #[error("the peer ended the session: {0:?}")]
    PeerEnded(Reason),
    /// The session has no data channel (the peer chose plain ICE-UDP, which carries no file).
    #[error("the session carries no data channel")]
    NoChannel,
    /// The peer did not open its data channel.
    #[error("the peer opened no data channel")]
    PeerChannelMissing,
    /// The offer was malformed or not a file transfer.
    #[error("offer: {0}")]
    Offer(#[from] FileDescriptionError),
    /// The offer lacks something we need (a size).
    #[error("offer: {0}")]
    OfferIncomplete(&'static str),
    /// Moving or storing the bytes failed.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// Reading the local file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file here is not the one the peer asked for.
    #[error("{0}")]
    NotRequested(&'static str),
    /// The receiver asked for a range the file does not have.
    #[error("range: {0}")]
    BadRange(String),
    /// The peer did not confirm in time.
    #[error("no confirmation from the peer within {0:?}")]
    NoConfirmation(Duration),
    /// The offer is encrypted end to end (XEP-0391 Jingle Encrypted Transports, as OMEMO file
    /// transfer uses): we cannot decrypt it, so it was declined with `<security-error/>` and
    /// nothing was stored. `security` names the method, `file` is what the offer said of the
    /// file (for telling the user who tried to send what).
    #[error("the offer{} is encrypted ({security}), which is not supported: declined", .file.as_ref().and_then(|f| f.name.as_ref()).map(|n| format!(" of {n:?}")).unwrap_or_default())]
    Encrypted {
        /// The security method: namespace, `type` and `cipher`.
        security: String,
        /// The offered file, when its description could be read.
        file: Option<Box<File>>,
    },
    /// The sender's `<checksum/>` (XEP-0234 §8.2) is malformed (a hash of the wrong length, not
    /// base64...): the file cannot be verified, so it is not kept (`<media-error/>`).
    #[error("the sender's checksum is malformed: {0}")]
    BadChecksum(FileDescriptionError),
}

/// Settings of an offer.
#[derive(Default)]
pub struct SendOptions {
    /// The name to offer instead of the file's own.
    pub name: Option<String>,
    /// `<media-type/>`.
    pub media_type: Option<String>,
    /// `<desc/>`.
    pub desc: Option<String>,
    /// Called with the progress now and then.
    pub on_progress: Option<OnProgress>,
}

/// Offers the file at `path` to `peer` and sends it.
pub async fn send_file(
    jingle: &JingleRuntime,
    peer: FullJid,
    path: &Path,
    mut options: SendOptions,
) -> Result<TransferReport, FileTransferError> {
    let mut local = LocalFile::open(path, &mut options).await?;
    let session = jingle
        .connect(peer, FileDescription::new(local.offer.clone()).to_element())
        .await?;
    // The receiver's range, if it asked for one (XEP-0234 §7.1: the sender SHOULD honour it).
    let offset = session
        .peer_description()
        .and_then(|d| FileDescription::from_element(&d).ok())
        .and_then(|d| d.file.range)
        .map_or(0, |r| r.offset);
    send_over(&session, &mut local, offset, options.on_progress.as_mut()).await
}

/// A local file to send: open, hashed, described.
struct LocalFile {
    path: PathBuf,
    source: tokio::fs::File,
    /// The description offered (name, size, media type, date, desc, SHA-256, `<range/>`).
    offer: File,
    name: String,
    size: u64,
    sha256: [u8; 32],
}

impl LocalFile {
    /// Opens and hashes `path`; `options` give the name and the other offered fields.
    async fn open(path: &Path, options: &mut SendOptions) -> Result<LocalFile, FileTransferError> {
        let file_err = |source| FileTransferError::File {
            path: path.to_path_buf(),
            source,
        };
        let mut source = tokio::fs::File::open(path).await.map_err(file_err)?;
        let meta = source.metadata().await.map_err(file_err)?;
        let size = meta.len();
        // The hash is part of the offer (XEP-0234 §4), so the receiver checks what it stores.
        let sha256 = sha256_of(&mut source, size).await?;
        source
            .seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(file_err)?;
        let name = options.name.take().unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into())
        });
        let offer = File {
            name: Some(name.clone()),
            size: Some(size),
            media_type: options.media_type.take(),
            date: meta.modified().ok().map(format_datetime),
            desc: options.desc.take(),
            hashes: vec![Hash::sha256(sha256)],
            // Announces ranged transfers (XEP-0234 §4): a receiver that kept part of the file
            // from an interrupted attempt asks for the rest.
            range: Some(Range::default()),
            ..File::default()
        };
        Ok(LocalFile {
            path: path.to_path_buf(),
            source,
            offer,
            name,
            size,
            sha256,
        })
    }
}

/// Sends `local` from `offset` over an established session and waits for the receiver's
/// confirmation (the sending half of an offer and of a served request).
async fn send_over(
    session: &JingleSession,
    local: &mut LocalFile,
    offset: u64,
    on_progress: Option<&mut OnProgress>,
) -> Result<TransferReport, FileTransferError> {
    let file_err = |source| FileTransferError::File {
        path: local.path.clone(),
        source,
    };
    let (name, size, sha256) = (local.name.clone(), local.size, local.sha256);
    let source = &mut local.source;
    let transport = TransportUsed::of(session);
    let connect_time = session.established_in();
    let local_candidates = candidates_of(session);
    if offset > size {
        let text = format!("the receiver asked for offset {offset} of a {size}-byte file");
        session.end(Reason::with_text(
            ReasonCondition::FailedApplication,
            text.clone(),
        ));
        return Err(FileTransferError::BadRange(text));
    }
    if offset > 0 {
        source
            .seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(file_err)?;
    }
    let mut channel = match session.open_stream(CHANNEL_LABEL, CHANNEL_PROTOCOL) {
        Ok(c) => c,
        Err(e) => {
            let condition = match e {
                JingleRuntimeError::NoStream => ReasonCondition::FailedTransport,
                _ => ReasonCondition::ConnectivityError,
            };
            session.end(Reason::with_text(condition, e.to_string()));
            return Err(FileTransferError::NoChannel);
        }
    };
    let started = Instant::now();
    let mut meter = ProgressMeter::new(size, offset);
    let mut noop = |_: &Progress| {};
    let on_progress: &mut (dyn FnMut(&Progress) + Send) = match on_progress {
        Some(f) => f.as_mut(),
        None => &mut noop,
    };
    // The receiver may verify the last bytes (against the offer's hash) and end the session
    // with <success/> before their acknowledgement reaches us: the session then ends while we
    // are still writing (or our stream fails because of it), and the file has arrived.
    let ended = |reason: Reason, transport: TransportUsed, local_candidates: Vec<String>| {
        if reason.condition == ReasonCondition::Success {
            Ok(TransferReport {
                name: name.clone(),
                path: None,
                size,
                sha256,
                verified: true,
                transport,
                local_candidates,
                connect_time,
                transfer_time: started.elapsed(),
                resumed_from: offset,
            })
        } else {
            Err(FileTransferError::PeerEnded(reason))
        }
    };
    let sent = tokio::select! {
        r = send_bytes(source, &mut channel, size - offset, &mut meter, on_progress) => r,
        reason = session.closed() => return ended(reason, transport, local_candidates),
    };
    let sent_hash = match sent {
        Ok(h) => h,
        Err(e) => {
            if let Some(reason) = ended_by_peer(session, &e).await {
                return ended(reason, transport, local_candidates);
            }
            session.end(Reason::with_text(fail_condition(&e), e.to_string()));
            return Err(e.into());
        }
    };
    // The hash of the whole file: of what was sent, unless only the rest was sent (then the
    // offer's, which the receiver checks over the part it kept and the rest).
    let whole = if offset == 0 { sent_hash } else { sha256 };
    let checksum = Checksum::new(Creator::Initiator, CONTENT, vec![Hash::sha256(whole)]);
    let _ = session.send_info(FileInfo::Checksum(Box::new(checksum)).to_element());
    // The receiver confirms with <received/> and ends the session with <success/>.
    let confirmed = tokio::time::timeout(END_WAIT, async {
        loop {
            tokio::select! {
                reason = session.closed() => return reason,
                info = session.next_info() => {
                    let Some(info) = info else { return session.closed().await };
                    if let Ok(Some(FileInfo::Received(_))) = FileInfo::from_element(&info) {
                        // Give the peer a moment to end the session itself, as Conversations does.
                        return tokio::time::timeout(Duration::from_secs(2), session.closed())
                            .await
                            .unwrap_or_else(|_| Reason::new(ReasonCondition::Success));
                    }
                }
            }
        }
    })
    .await;
    let transfer_time = started.elapsed();
    session.end(Reason::new(ReasonCondition::Success));
    match confirmed {
        Ok(r) if r.condition == ReasonCondition::Success => Ok(TransferReport {
            name,
            path: None,
            size,
            sha256: whole,
            verified: whole == sha256,
            transport,
            local_candidates,
            connect_time,
            transfer_time,
            resumed_from: offset,
        }),
        Ok(r) => Err(FileTransferError::PeerEnded(r)),
        Err(_) => Err(FileTransferError::NoConfirmation(END_WAIT)),
    }
}

/// A file offered by a peer, waiting for the application's decision.
pub struct IncomingFile {
    session: IncomingSession,
    offer: File,
}

impl std::fmt::Debug for IncomingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingFile")
            .field("peer", &self.session.key().peer)
            .field("offer", &self.offer)
            .finish()
    }
}

impl IncomingFile {
    /// Reads a file offer. A session that is not a well-formed file offer is declined here
    /// (`<unsupported-applications/>` or `<failed-application/>` with the reason) and the error
    /// returned.
    pub fn from_session(session: IncomingSession) -> Result<IncomingFile, FileTransferError> {
        match incoming(session)? {
            IncomingTransfer::Offer(f) => Ok(f),
            IncomingTransfer::Request(r) => {
                r.session.decline(Reason::with_text(
                    ReasonCondition::Decline,
                    "files are not served here",
                ));
                Err(FileTransferError::OfferIncomplete(
                    "a file request, not an offer",
                ))
            }
        }
    }

    /// Who offers it.
    pub fn peer(&self) -> &FullJid {
        &self.session.key().peer
    }

    /// The offer as sent (sanitise the name before any use as a path; [`IncomingFile::accept`]
    /// does).
    pub fn offer(&self) -> &File {
        &self.offer
    }

    /// Size announced.
    pub fn size(&self) -> u64 {
        self.offer.size.unwrap_or(0)
    }

    /// Declines (`<decline/>`).
    pub fn decline(self) {
        self.session.decline(Reason::new(ReasonCondition::Decline));
    }

    /// Accepts and receives the file into `sink` settings' directory.
    pub async fn accept(
        self,
        sink_config: SinkConfig,
        on_progress: Option<OnProgress>,
    ) -> Result<TransferReport, FileTransferError> {
        let size = self.size();
        let offered_name = self.offer.name.clone().unwrap_or_default();
        // A sender that announced ranged transfers, with a hash to check the kept part against:
        // continue a part file an interrupted attempt at this offer left behind.
        let resumable = self.offer.range.is_some() && self.offer.sha256().is_some();
        let opened = if resumable {
            FileSink::resume(sink_config, &offered_name, size, self.offer.sha256()).await
        } else {
            FileSink::create(sink_config, &offered_name, size, self.offer.sha256()).await
        };
        let sink = match opened {
            Ok(s) => s,
            Err(e) => {
                let condition = match e {
                    SinkError::TooLarge { .. } => ReasonCondition::Decline,
                    _ => ReasonCondition::FailedApplication,
                };
                self.session
                    .decline(Reason::with_text(condition, e.to_string()));
                return Err(TransferError::Sink(e).into());
            }
        };
        let mut answer = self.offer.clone();
        answer.range = resumable.then(|| Range {
            offset: sink.written(),
            ..Range::default()
        });
        let resumed_from = sink.written();
        let description = FileDescription::new(answer).to_element();
        let session = self.session.accept(description).await?;
        receive_over(&session, sink, on_progress, resumed_from).await
    }
}

/// A file-transfer session offered by a peer: a file it offers, or a file it asks us for.
#[derive(Debug)]
pub enum IncomingTransfer {
    /// The peer offers a file (XEP-0234 §4.1).
    Offer(IncomingFile),
    /// The peer asks us for a file (XEP-0234 §4.2, `senders='responder'`).
    Request(FileRequest),
}

/// Reads a file-transfer session offered by a peer. A session that is not a well-formed offer
/// or request is declined here (`<unsupported-applications/>` or `<failed-application/>` with
/// the reason) and the error returned.
pub fn incoming(session: IncomingSession) -> Result<IncomingTransfer, FileTransferError> {
    if let Some(security) = session.security_summary() {
        // Never take ciphertext for the file (XEP-0391): say no, and say why.
        let file = session
            .description()
            .and_then(|d| FileDescription::from_element(d).ok())
            .map(|d| Box::new(d.file));
        session.decline(Reason::with_text(
            ReasonCondition::SecurityError,
            format!("encrypted file transfer ({security}) is not supported"),
        ));
        return Err(FileTransferError::Encrypted { security, file });
    }
    let request = session
        .contents()
        .iter()
        .find(|c| c.description.is_some())
        .is_some_and(|c| c.senders == Senders::Responder);
    let Some(description) = session.description() else {
        session.decline(Reason::with_text(
            ReasonCondition::UnsupportedApplications,
            "no application description",
        ));
        return Err(FileTransferError::OfferIncomplete("no description"));
    };
    let parsed = FileDescription::from_element(description);
    match parsed {
        Ok(d) if request => Ok(IncomingTransfer::Request(FileRequest {
            session,
            want: d.file,
        })),
        Ok(d) if d.file.size.is_some() => Ok(IncomingTransfer::Offer(IncomingFile {
            session,
            offer: d.file,
        })),
        Ok(_) => {
            session.decline(Reason::with_text(
                ReasonCondition::FailedApplication,
                "the offer has no size",
            ));
            Err(FileTransferError::OfferIncomplete("no size"))
        }
        Err(e) => {
            let condition = if session
                .description()
                .is_some_and(|d| d.ns() != NS_FILE_TRANSFER)
            {
                ReasonCondition::UnsupportedApplications
            } else {
                ReasonCondition::FailedApplication
            };
            session.decline(Reason::with_text(condition, e.to_string()));
            Err(e.into())
        }
    }
}

/// A file a peer asks us for (XEP-0234 §4.2), waiting for the application's decision.
pub struct FileRequest {
    session: IncomingSession,
    want: File,
}

impl std::fmt::Debug for FileRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRequest")
            .field("peer", &self.session.key().peer)
            .field("want", &self.want)
            .finish()
    }
}

impl FileRequest {
    /// Who asks.
    pub fn peer(&self) -> &FullJid {
        &self.session.key().peer
    }

    /// What it asks for (a name, a hash, maybe a range), as sent: the application decides
    /// which local file that is, if any.
    pub fn wanted(&self) -> &File {
        &self.want
    }

    /// Declines (`<decline/>`).
    pub fn decline(self) {
        self.session.decline(Reason::new(ReasonCondition::Decline));
    }

    /// Sends the file at `path`: accepts with its full description (size, date, SHA-256) and
    /// sends it from the requested range's offset. A file whose SHA-256 differs from the one
    /// asked for is refused (`<failed-application/>`, [`FileTransferError::NotRequested`]).
    pub async fn serve(
        self,
        path: &Path,
        mut options: SendOptions,
    ) -> Result<TransferReport, FileTransferError> {
        let mut local = match LocalFile::open(path, &mut options).await {
            Ok(l) => l,
            Err(e) => {
                self.session.decline(Reason::with_text(
                    ReasonCondition::FailedApplication,
                    e.to_string(),
                ));
                return Err(e);
            }
        };
        if self.want.sha256().is_some_and(|h| h != local.sha256) {
            let text = "the file here is not the one asked for (SHA-256 differs)";
            self.session
                .decline(Reason::with_text(ReasonCondition::FailedApplication, text));
            return Err(FileTransferError::NotRequested(text));
        }
        let offset = self.want.range.as_ref().map_or(0, |r| r.offset);
        let session = self
            .session
            .accept(FileDescription::new(local.offer.clone()).to_element())
            .await?;
        send_over(&session, &mut local, offset, options.on_progress.as_mut()).await
    }
}

/// Asks `peer` for a file (XEP-0234 §4.2: a `session-initiate` with `senders='responder'`):
/// `want` identifies it (a name, a SHA-256 when known). The peer answers with the file's full
/// description and sends it; it is stored through `sink_config` like an accepted offer, and a
/// file whose SHA-256 differs from the one asked for is refused.
pub async fn request_file(
    jingle: &JingleRuntime,
    peer: FullJid,
    want: File,
    sink_config: SinkConfig,
    on_progress: Option<OnProgress>,
) -> Result<TransferReport, FileTransferError> {
    let description = FileDescription::new(want.clone()).to_element();
    let session = jingle
        .connect_with_senders(peer, description, Senders::Responder)
        .await?;
    let fail = |text: &'static str| {
        session.end(Reason::with_text(ReasonCondition::FailedApplication, text));
        FileTransferError::OfferIncomplete(text)
    };
    let Some(answer) = session
        .peer_description()
        .and_then(|d| FileDescription::from_element(&d).ok())
    else {
        return Err(fail("the answer carries no file description"));
    };
    let Some(size) = answer.file.size else {
        return Err(fail("the answer has no size"));
    };
    let sha256 = match (want.sha256(), answer.file.sha256()) {
        (Some(a), Some(b)) if a != b => return Err(fail("the peer offers another file")),
        (a, b) => a.or(b),
    };
    let name = answer.file.name.clone().or(want.name).unwrap_or_default();
    let sink = match FileSink::create(sink_config, &name, size, sha256).await {
        Ok(s) => s,
        Err(e) => {
            let condition = match e {
                SinkError::TooLarge { .. } => ReasonCondition::Decline,
                _ => ReasonCondition::FailedApplication,
            };
            session.end(Reason::with_text(condition, e.to_string()));
            return Err(TransferError::Sink(e).into());
        }
    };
    receive_over(&session, sink, on_progress, 0).await
}

/// Receives into `sink` over an established session, checks and stores the file, confirms
/// (`<received/>`, `<success/>`) or ends the session with the failure's reason (the receiving
/// half of an accepted offer and of a request).
async fn receive_over(
    session: &JingleSession,
    mut sink: FileSink,
    mut on_progress: Option<OnProgress>,
    resumed_from: u64,
) -> Result<TransferReport, FileTransferError> {
    let transport = TransportUsed::of(session);
    let connect_time = session.established_in();
    let local_candidates = candidates_of(session);
    let result = receive(session, &mut sink, &mut on_progress).await;
    match result {
        Ok(started) => {
            let transfer_time = started.elapsed();
            match sink.finish().await {
                Ok(stored) => {
                    let received = Received::new(Creator::Initiator, CONTENT);
                    let _ = session.send_info(FileInfo::Received(received).to_element());
                    session.end(Reason::new(ReasonCondition::Success));
                    Ok(TransferReport {
                        name: stored
                            .path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        path: Some(stored.path),
                        size: stored.size,
                        sha256: stored.sha256,
                        verified: stored.verified,
                        transport,
                        local_candidates,
                        connect_time,
                        transfer_time,
                        resumed_from,
                    })
                }
                Err(e) => {
                    let e = TransferError::Sink(e);
                    session.end(Reason::with_text(fail_condition(&e), e.to_string()));
                    Err(e.into())
                }
            }
        }
        Err(e) => {
            sink.discard().await;
            if let FileTransferError::Transfer(t) = &e {
                if let Some(reason) = ended_by_peer(session, t).await {
                    return Err(FileTransferError::PeerEnded(reason));
                }
                session.end(Reason::with_text(fail_condition(t), t.to_string()));
            } else if !matches!(e, FileTransferError::PeerEnded(_)) {
                // XEP-0234 §8.1: a file that cannot be verified is a media error.
                let condition = match e {
                    FileTransferError::BadChecksum(_) => ReasonCondition::MediaError,
                    _ => ReasonCondition::FailedTransport,
                };
                session.end(Reason::with_text(condition, e.to_string()));
            }
            Err(e)
        }
    }
}

/// Receives the bytes and, when the offer had no hash, waits for the `<checksum/>`. Returns
/// when the transfer started.
async fn receive(
    session: &JingleSession,
    sink: &mut FileSink,
    on_progress: &mut Option<OnProgress>,
) -> Result<Instant, FileTransferError> {
    // Kept open while receiving: each side opens its own stream and writes only to it (fact
    // 16); ours stays idle. Over In-Band Bytestreams both are the session's one bytestream.
    let _ours = match session.open_stream(CHANNEL_LABEL, CHANNEL_PROTOCOL) {
        Err(JingleRuntimeError::NoStream) => return Err(FileTransferError::NoChannel),
        ours => ours,
    };
    let mut theirs = tokio::select! {
        c = tokio::time::timeout(END_WAIT, session.accept_stream()) => match c {
            Ok(Some(c)) => c,
            _ => return Err(FileTransferError::PeerChannelMissing),
        },
        reason = session.closed() => return Err(FileTransferError::PeerEnded(reason)),
    };
    let started = Instant::now();
    let mut meter = ProgressMeter::new(sink.announced(), sink.written());
    let mut noop = |_: &Progress| {};
    let progress: &mut (dyn FnMut(&Progress) + Send) = match on_progress.as_mut() {
        Some(f) => f.as_mut(),
        None => &mut noop,
    };
    // A checksum may arrive while bytes are still coming: keep it.
    let mut late_hash = None;
    {
        let bytes = receive_bytes(&mut theirs, sink, &mut meter, progress);
        tokio::pin!(bytes);
        loop {
            tokio::select! {
                biased;
                r = &mut bytes => { r?; break; }
                reason = session.closed() => {
                    // A sender that ends with <success/> right after its last byte (Dino does)
                    // has had every byte answered: what is left is already ours to read.
                    if reason.condition != ReasonCondition::Success {
                        return Err(FileTransferError::PeerEnded(reason));
                    }
                    match tokio::time::timeout(PEER_END_WAIT, &mut bytes).await {
                        Ok(r) => { r?; break; }
                        Err(_) => return Err(FileTransferError::PeerEnded(reason)),
                    }
                }
                Some(info) = session.next_info() => {
                    late_hash = checksum_of(&info)?.or(late_hash);
                }
            }
        }
    }
    if let Some(h) = late_hash {
        sink.set_expected_sha256(h);
    }
    // No hash yet (the offer had none and no checksum came with the bytes): wait for one.
    if !sink.has_expected_sha256() {
        let waited = tokio::time::timeout(END_WAIT, async {
            loop {
                tokio::select! {
                    reason = session.closed() => return done_without_checksum(reason),
                    info = session.next_info() => match info {
                        Some(info) => {
                            if let Some(h) = checksum_of(&info)? {
                                return Ok(Some(h));
                            }
                        }
                        None => return done_without_checksum(session.closed().await),
                    },
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(Some(h))) => sink.set_expected_sha256(h),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => return Err(e),
            // No checksum: the file is stored unverified and the report says so.
            Err(_) => {}
        }
    }
    Ok(started)
}

/// The sender ended the session while the receiver waited for a `<checksum/>`: with
/// `<success/>` the file is complete and is stored unverified (Dino sends no hash at all); any
/// other reason fails the transfer.
fn done_without_checksum(reason: Reason) -> Result<Option<[u8; 32]>, FileTransferError> {
    match reason.condition {
        ReasonCondition::Success => Ok(None),
        _ => Err(FileTransferError::PeerEnded(reason)),
    }
}

/// The SHA-256 a `session-info` payload announces, if it is a `<checksum/>` with one; a
/// malformed checksum is an error (the file could not be verified against it).
fn checksum_of(info: &minidom::Element) -> Result<Option<[u8; 32]>, FileTransferError> {
    match FileInfo::from_element(info) {
        Ok(Some(FileInfo::Checksum(c))) => Ok(c.file.sha256()),
        Ok(_) => Ok(None),
        Err(e) => Err(FileTransferError::BadChecksum(e)),
    }
}

/// How long a side whose channel broke waits for the peer's `session-terminate`, which may
/// trail the channel's end (the peer cancelled, or ended after a failure of its own).
const PEER_END_WAIT: Duration = Duration::from_secs(2);

/// When the channel ended under us, the peer's reason if it ended the session.
async fn ended_by_peer(session: &JingleSession, e: &TransferError) -> Option<Reason> {
    if !matches!(
        e,
        TransferError::Truncated { .. } | TransferError::Channel(_)
    ) {
        return None;
    }
    tokio::time::timeout(PEER_END_WAIT, session.closed())
        .await
        .ok()
}

/// Our ICE candidates (none for a session offered with In-Band Bytestreams only).
fn candidates_of(session: &JingleSession) -> Vec<String> {
    session.connection().map_or_else(Vec::new, |conn| {
        conn.local_candidates()
            .iter()
            .map(|c| format!("{} {}", c.kind, c.address))
            .collect()
    })
}

/// The `session-terminate` reason for a failed transfer (XEP-0234 §8.1: a size or hash that
/// does not match is `<media-error/>`).
fn fail_condition(e: &TransferError) -> ReasonCondition {
    match e {
        TransferError::Sink(SinkError::HashMismatch { .. })
        | TransferError::Sink(SinkError::TooLong { .. })
        | TransferError::Sink(SinkError::TooShort { .. })
        | TransferError::SourceShrank { .. }
        | TransferError::Truncated { .. } => ReasonCondition::MediaError,
        TransferError::Channel(_) => ReasonCondition::ConnectivityError,
        TransferError::Sink(_) | TransferError::Source(_) => ReasonCondition::FailedApplication,
    }
}
