//! Moving a file's bytes over a channel (XEP-0234 §6: the content is the file's bytes, exactly
//! `<size/>` of them, with no framing: what Conversations does over its data channel, facts 18
//! and 19 in `xep/webrtc-datachannel.md`), with progress reports.
//!
//! These are plain futures over [`AsyncRead`]/[`AsyncWrite`]: cancelling a transfer is dropping
//! its future (a [`FileSink`] dropped unfinished removes its temporary file).

use std::io;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::file_sink::{FileSink, SinkError};

/// Bytes read from the source or the channel at a time.
const BLOCK: usize = 256 * 1024;
/// Progress is reported at most this often (and once at the end).
const REPORT_EVERY: Duration = Duration::from_millis(100);
/// The rate is measured over intervals of at least this length, then smoothed.
const RATE_INTERVAL: Duration = Duration::from_millis(500);

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Bytes moved so far (including a resumed transfer's first part).
    pub bytes: u64,
    /// Bytes in the whole file.
    pub total: u64,
    /// Time since the transfer started.
    pub elapsed: Duration,
    /// Recent rate, bytes per second (smoothed); 0 before the first measurement.
    pub rate: f64,
    /// Time left at the recent rate, once there is one.
    pub eta: Option<Duration>,
}

/// Keeps the figures of a [`Progress`] up to date.
#[derive(Debug, Clone)]
pub struct ProgressMeter {
    started: Instant,
    total: u64,
    bytes: u64,
    rate: f64,
    mark: (Instant, u64),
    last_report: Option<Instant>,
}

impl ProgressMeter {
    /// A meter for `total` bytes, `already` of them there before the start (resumption).
    pub fn new(total: u64, already: u64) -> ProgressMeter {
        let now = Instant::now();
        ProgressMeter {
            started: now,
            total,
            bytes: already,
            rate: 0.0,
            mark: (now, already),
            last_report: None,
        }
    }

    /// Counts `n` more bytes; says whether a report is due.
    pub fn advance(&mut self, n: u64) -> bool {
        let now = Instant::now();
        self.bytes = self.bytes.saturating_add(n);
        let span = now.saturating_duration_since(self.mark.0);
        if span >= RATE_INTERVAL {
            let sample = (self.bytes - self.mark.1) as f64 / span.as_secs_f64();
            self.rate = if self.rate == 0.0 {
                sample
            } else {
                0.7 * self.rate + 0.3 * sample
            };
            self.mark = (now, self.bytes);
        }
        let due = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= REPORT_EVERY)
            || self.bytes >= self.total;
        if due {
            self.last_report = Some(now);
        }
        due
    }

    /// The figures now.
    pub fn progress(&self) -> Progress {
        let elapsed = self.started.elapsed();
        // Before the first interval, the average so far is the best estimate.
        let rate = if self.rate > 0.0 {
            self.rate
        } else if elapsed > Duration::ZERO {
            (self.bytes - self.mark.1) as f64 / elapsed.as_secs_f64()
        } else {
            0.0
        };
        let left = self.total.saturating_sub(self.bytes);
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate));
        Progress {
            bytes: self.bytes,
            total: self.total,
            elapsed,
            rate,
            eta,
        }
    }
}

/// Why moving the bytes failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The file being sent ended before the size that was offered (it shrank meanwhile).
    #[error("the file ended after {sent} of the {offered} bytes offered (changed while sending?)")]
    SourceShrank {
        /// Bytes sent.
        sent: u64,
        /// Size in the offer.
        offered: u64,
    },
    /// Reading the file being sent failed.
    #[error("reading the file: {0}")]
    Source(io::Error),
    /// The channel ended before the whole file arrived.
    #[error("the channel ended after {got} of {size} bytes")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// Announced size.
        size: u64,
    },
    /// The channel failed.
    #[error("channel: {0}")]
    Channel(io::Error),
    /// Storing the received file failed (disk full, size or hash mismatch, ...).
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Sends exactly `size` bytes from `source` on `channel` and waits until the peer has
/// acknowledged them (`flush`). Returns the SHA-256 of what was sent.
pub async fn send_bytes<R, W>(
    source: &mut R,
    channel: &mut W,
    size: u64,
    meter: &mut ProgressMeter,
    on_progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<[u8; 32], TransferError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    let mut sent = 0u64;
    while sent < size {
        let want = usize::try_from(size - sent)
            .unwrap_or(usize::MAX)
            .min(BLOCK);
        let n = source
            .read(&mut buf[..want])
            .await
            .map_err(TransferError::Source)?;
        if n == 0 {
            return Err(TransferError::SourceShrank {
                sent,
                offered: size,
            });
        }
        channel
            .write_all(&buf[..n])
            .await
            .map_err(TransferError::Channel)?;
        hasher.update(&buf[..n]);
        sent += n as u64;
        if meter.advance(n as u64) {
            on_progress(&meter.progress());
        }
    }
    channel.flush().await.map_err(TransferError::Channel)?;
    Ok(hasher.finalize().into())
}

/// Receives the rest of the file announced to `sink` from `channel` (from
/// [`FileSink::written`], so a resumed sink continues): exactly that many bytes.
pub async fn receive_bytes<R>(
    channel: &mut R,
    sink: &mut FileSink,
    meter: &mut ProgressMeter,
    on_progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<(), TransferError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let size = sink.announced();
    let mut buf = vec![0u8; BLOCK];
    while sink.written() < size {
        let want = usize::try_from(size - sink.written())
            .unwrap_or(usize::MAX)
            .min(BLOCK);
        let n = channel
            .read(&mut buf[..want])
            .await
            .map_err(TransferError::Channel)?;
        if n == 0 {
            return Err(TransferError::Truncated {
                got: sink.written(),
                size,
            });
        }
        sink.write(&buf[..n]).await?;
        if meter.advance(n as u64) {
            on_progress(&meter.progress());
        }
    }
    Ok(())
}

/// The SHA-256 of the first `size` bytes of a file (what an offer announces before sending).
pub async fn sha256_of<R>(source: &mut R, size: u64) -> Result<[u8; 32], TransferError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut meter = ProgressMeter::new(size, 0);
    send_bytes(
        source,
        &mut tokio::io::sink(),
        size,
        &mut meter,
        &mut |_| {},
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::super::file_sink::SinkConfig;
    use super::*;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("jingle-ice-xfer-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn bytes_cross_a_stream_with_hash_and_progress() {
        let d = dir("ok");
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let expected: [u8; 32] = Sha256::digest(&data).into();
        let (mut tx, mut rx) = tokio::io::duplex(64 * 1024);
        let size = data.len() as u64;
        let sender = tokio::spawn(async move {
            let mut src = &data[..];
            let mut meter = ProgressMeter::new(size, 0);
            let mut reports = 0;
            let hash = send_bytes(&mut src, &mut tx, size, &mut meter, &mut |_| reports += 1)
                .await
                .unwrap();
            (hash, reports)
        });
        let config = SinkConfig {
            dir: d.clone(),
            overwrite: false,
            max_size: u64::MAX,
        };
        let mut sink = FileSink::create(config, "data.bin", size, Some(expected))
            .await
            .unwrap();
        let mut meter = ProgressMeter::new(size, 0);
        let mut last = None;
        receive_bytes(&mut rx, &mut sink, &mut meter, &mut |p| last = Some(*p))
            .await
            .unwrap();
        let stored = sink.finish().await.unwrap();
        let (hash, reports) = sender.await.unwrap();
        assert_eq!(hash, expected);
        assert!(reports >= 1);
        let last = last.unwrap();
        assert_eq!((last.bytes, last.total), (size, size));
        assert_eq!(last.eta, Some(Duration::ZERO));
        assert!(stored.verified);
    }

    #[tokio::test]
    async fn a_shrinking_source_and_a_short_channel_are_errors() {
        let mut short = &b"only ten b"[..];
        let mut sink = tokio::io::sink();
        let mut meter = ProgressMeter::new(100, 0);
        let err = send_bytes(&mut short, &mut sink, 100, &mut meter, &mut |_| {})
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            TransferError::SourceShrank {
                sent: 10,
                offered: 100
            }
        ));

        let d = dir("short");
        let config = SinkConfig {
            dir: d.clone(),
            overwrite: false,
            max_size: u64::MAX,
        };
        let mut sink = FileSink::create(config, "x", 100, None).await.unwrap();
        let mut channel = &b"twenty bytes, no more"[..20];
        let mut meter = ProgressMeter::new(100, 0);
        let err = receive_bytes(&mut channel, &mut sink, &mut meter, &mut |_| {})
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            TransferError::Truncated { got: 20, size: 100 }
        ));
        drop(sink);
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            0,
            "no part file left"
        );
    }

    #[test]
    fn the_meter_estimates_rate_and_time_left() {
        let mut m = ProgressMeter::new(1000, 400);
        assert_eq!(m.progress().bytes, 400);
        std::thread::sleep(Duration::from_millis(20));
        m.advance(100);
        let p = m.progress();
        assert_eq!(p.bytes, 500);
        assert!(p.rate > 0.0);
        let eta = p.eta.unwrap();
        // 500 bytes left at the rate of the 100 bytes just seen: five times the time taken.
        assert!(eta >= p.elapsed * 4 && eta <= p.elapsed * 6, "{p:?}");
    }
}
