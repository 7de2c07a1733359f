//! Where a received file goes while it arrives (XEP-0234 receiver side): a temporary file in
//! the target directory, checked for size and SHA-256 (XEP-0300) as it is written, and moved
//! under its final name only once complete and verified. A transfer that fails for any reason
//! removes the temporary file, so nothing half-written ever carries the final name.
//!
//! The temporary name is `.<final name>.<key>.part`, where the key is derived from the offer
//! (name, size, hash): a receiver that was killed mid-way finds its part file again and can ask
//! for the rest with a `<range/>` (XEP-0234 §7.1), see [`FileSink::resume`].

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::file_name::{free_name, sanitize};
use crate::hex;

/// Where and how received files are stored.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The directory files are written to (must exist).
    pub dir: PathBuf,
    /// Replace an existing file of the same name instead of picking `name (1).ext`.
    pub overwrite: bool,
    /// Largest file accepted, in bytes; a bigger offer is refused before anything is written.
    pub max_size: u64,
}

/// Why a received file was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The offer announces more bytes than [`SinkConfig::max_size`].
    #[error("the file is {size} bytes, more than the {max} bytes accepted")]
    TooLarge {
        /// Announced size.
        size: u64,
        /// Our limit.
        max: u64,
    },
    /// The peer sent more bytes than it announced.
    #[error("the peer sent more than the {announced} bytes it announced")]
    TooLong {
        /// Announced size.
        announced: u64,
    },
    /// The transfer ended before the announced size.
    #[error("the transfer ended after {got} of the {announced} bytes announced")]
    TooShort {
        /// Bytes received.
        got: u64,
        /// Announced size.
        announced: u64,
    },
    /// The SHA-256 of what arrived is not the one the peer announced.
    #[error("SHA-256 mismatch: announced {announced}, received data hashes to {got}")]
    HashMismatch {
        /// Hex of the announced hash.
        announced: String,
        /// Hex of the received data's hash.
        got: String,
    },
    /// Every candidate name in the directory is taken.
    #[error("no free file name for {0:?} in the target directory")]
    NoFreeName(String),
    /// The file system refused (disk full, permissions, ...).
    #[error("storing the file: {0}")]
    Io(#[from] io::Error),
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// The final path.
    pub path: PathBuf,
    /// Bytes in the file.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// Whether the hash was compared with one the peer announced (in the offer or in a
    /// `<checksum/>`); `false` when the peer never sent one.
    pub verified: bool,
}

/// A file being received: temporary while it is written, final once [`FileSink::finish`]
/// verified it. Dropping it unfinished removes the temporary file.
#[derive(Debug)]
pub struct FileSink {
    config: SinkConfig,
    name: String,
    part: PathBuf,
    file: Option<tokio::fs::File>,
    announced: u64,
    /// Every SHA-256 the peer announced (offer, `<checksum/>`): the content must match all.
    expected_sha256: Vec<[u8; 32]>,
    written: u64,
    hasher: Sha256,
    done: bool,
}

impl FileSink {
    /// Starts receiving `size` bytes offered as `offered_name` (sanitised here), with the
    /// SHA-256 the offer carried if any. Any part file of an earlier attempt is discarded.
    pub async fn create(
        config: SinkConfig,
        offered_name: &str,
        size: u64,
        sha256: Option<[u8; 32]>,
    ) -> Result<FileSink, SinkError> {
        let mut sink = FileSink::prepare(config, offered_name, size, sha256)?;
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&sink.part)
            .await?;
        sink.file = Some(file);
        Ok(sink)
    }

    /// Like [`FileSink::create`], but keeps the part file an interrupted attempt at the same
    /// offer left behind: its bytes are hashed again and writing continues after them. The
    /// caller asks the sender for the rest from [`FileSink::written`] (XEP-0234 §7.1 range).
    pub async fn resume(
        config: SinkConfig,
        offered_name: &str,
        size: u64,
        sha256: Option<[u8; 32]>,
    ) -> Result<FileSink, SinkError> {
        let mut sink = FileSink::prepare(config, offered_name, size, sha256)?;
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&sink.part)
            .await?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut have = 0u64;
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let keep = n.min(usize::try_from(size - have).unwrap_or(usize::MAX));
            sink.hasher.update(&buf[..keep]);
            have += keep as u64;
            if have == size {
                break;
            }
        }
        // Anything beyond the announced size cannot be part of this file.
        file.set_len(have).await?;
        file.seek(io::SeekFrom::Start(have)).await?;
        sink.written = have;
        sink.file = Some(file);
        Ok(sink)
    }

    fn prepare(
        config: SinkConfig,
        offered_name: &str,
        size: u64,
        sha256: Option<[u8; 32]>,
    ) -> Result<FileSink, SinkError> {
        if size > config.max_size {
            return Err(SinkError::TooLarge {
                size,
                max: config.max_size,
            });
        }
        let name = sanitize(offered_name);
        let part = config
            .dir
            .join(part_name(&name, offered_name, size, sha256));
        Ok(FileSink {
            config,
            name,
            part,
            file: None,
            announced: size,
            expected_sha256: sha256.into_iter().collect(),
            written: 0,
            hasher: Sha256::new(),
            done: false,
        })
    }

    /// The sanitised name the file will get (or `name (N).ext` if taken then).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The temporary file being written.
    pub fn part_path(&self) -> &Path {
        &self.part
    }

    /// Bytes written so far (where a resumed transfer continues).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The size the offer announced.
    pub fn announced(&self) -> u64 {
        self.announced
    }

    /// Whether a SHA-256 to check against is known.
    pub fn has_expected_sha256(&self) -> bool {
        !self.expected_sha256.is_empty()
    }

    /// Adds a SHA-256 announced late (XEP-0234 §8.2 `<checksum/>` in `session-info`). The
    /// content must match every hash announced: one that contradicts the offer's fails.
    pub fn set_expected_sha256(&mut self, sha256: [u8; 32]) {
        if !self.expected_sha256.contains(&sha256) {
            self.expected_sha256.push(sha256);
        }
    }

    /// Appends received bytes. More than announced is an error and nothing of it is written.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        let after = self.written.saturating_add(data.len() as u64);
        if after > self.announced {
            return Err(SinkError::TooLong {
                announced: self.announced,
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(SinkError::Io(io::Error::other("file already closed")));
        };
        file.write_all(data).await?;
        self.hasher.update(data);
        self.written = after;
        Ok(())
    }

    /// Completes the file: checks the size and (when the peer announced one) the SHA-256,
    /// syncs it to disk and moves it under its final name without replacing an existing file
    /// (unless [`SinkConfig::overwrite`]). On error the temporary file is removed.
    pub async fn finish(mut self) -> Result<StoredFile, SinkError> {
        let result = self.complete().await;
        if result.is_err() {
            self.discard().await;
        }
        result
    }

    async fn complete(&mut self) -> Result<StoredFile, SinkError> {
        if self.written != self.announced {
            return Err(SinkError::TooShort {
                got: self.written,
                announced: self.announced,
            });
        }
        let sha256: [u8; 32] = self.hasher.clone().finalize().into();
        if let Some(expected) = self.expected_sha256.iter().find(|e| **e != sha256) {
            return Err(SinkError::HashMismatch {
                announced: hex::encode(expected),
                got: hex::encode(&sha256),
            });
        }
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
            file.sync_all().await?;
        }
        let path = self.place().await?;
        self.done = true;
        Ok(StoredFile {
            path,
            size: self.written,
            sha256,
            verified: !self.expected_sha256.is_empty(),
        })
    }

    /// Moves the part file to a free final name; a name taken meanwhile is never replaced.
    async fn place(&self) -> Result<PathBuf, SinkError> {
        let dir = self.config.dir.clone();
        if self.config.overwrite {
            let path = dir.join(&self.name);
            tokio::fs::rename(&self.part, &path).await?;
            return Ok(path);
        }
        for _ in 0..16 {
            let name = free_name(&dir, &self.name, false)
                .ok_or_else(|| SinkError::NoFreeName(self.name.clone()))?;
            let path = dir.join(&name);
            // A hard link fails if the name exists: no window in which a file that appeared
            // after the check gets replaced.
            match tokio::fs::hard_link(&self.part, &path).await {
                Ok(()) => {
                    tokio::fs::remove_file(&self.part).await?;
                    return Ok(path);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(_) => {
                    // A file system without hard links: check, then rename.
                    if tokio::fs::try_exists(&path).await? {
                        continue;
                    }
                    tokio::fs::rename(&self.part, &path).await?;
                    return Ok(path);
                }
            }
        }
        Err(SinkError::NoFreeName(self.name.clone()))
    }

    /// Gives up: closes and removes the temporary file.
    pub async fn discard(&mut self) {
        self.file = None;
        if !self.done {
            self.done = true;
            if let Err(e) = tokio::fs::remove_file(&self.part).await {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.part.display(), error = %e, "part file not removed");
                }
            }
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if !self.done {
            self.file = None;
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

/// `.<name>.<key>.part`, the key derived from the offer so that a retry finds it again; the
/// whole name stays within the file-system limit.
fn part_name(name: &str, offered: &str, size: u64, sha256: Option<[u8; 32]>) -> String {
    let mut h = Sha256::new();
    h.update(offered.as_bytes());
    h.update(size.to_be_bytes());
    if let Some(s) = sha256 {
        h.update(s);
    }
    let key: [u8; 32] = h.finalize().into();
    let key = hex::encode(&key[..8]);
    let room = super::file_name::MAX_NAME_BYTES - key.len() - ".".len() * 2 - ".part".len();
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}.{key}.part", &name[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("jingle-ice-sink-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn config(dir: &Path) -> SinkConfig {
        SinkConfig {
            dir: dir.to_path_buf(),
            overwrite: false,
            max_size: 1 << 20,
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    #[tokio::test]
    async fn a_verified_file_lands_under_its_sanitised_name() {
        let d = dir("ok");
        let data = b"hello, peer".repeat(1000);
        let mut sink = FileSink::create(
            config(&d),
            "../x/report.txt",
            data.len() as u64,
            Some(sha(&data)),
        )
        .await
        .unwrap();
        assert!(sink.part_path().starts_with(&d));
        for chunk in data.chunks(777) {
            sink.write(chunk).await.unwrap();
        }
        let stored = sink.finish().await.unwrap();
        assert_eq!(stored.path, d.join("report.txt"));
        assert!(stored.verified);
        assert_eq!(std::fs::read(&stored.path).unwrap(), data);
        assert_eq!(entries(&d), vec!["report.txt"]);
    }

    #[tokio::test]
    async fn an_existing_file_is_kept_and_the_new_one_gets_a_free_name() {
        let d = dir("exists");
        std::fs::write(d.join("a.bin"), b"mine").unwrap();
        let mut sink = FileSink::create(config(&d), "a.bin", 3, None)
            .await
            .unwrap();
        sink.write(b"new").await.unwrap();
        let stored = sink.finish().await.unwrap();
        assert_eq!(stored.path, d.join("a (1).bin"));
        assert!(!stored.verified);
        assert_eq!(std::fs::read(d.join("a.bin")).unwrap(), b"mine");
        let mut over = config(&d);
        over.overwrite = true;
        let mut sink = FileSink::create(over, "a.bin", 3, None).await.unwrap();
        sink.write(b"new").await.unwrap();
        sink.finish().await.unwrap();
        assert_eq!(std::fs::read(d.join("a.bin")).unwrap(), b"new");
    }

    #[tokio::test]
    async fn size_lies_and_hash_mismatches_leave_nothing_behind() {
        let d = dir("lies");
        // More than announced: refused, nothing written beyond.
        let mut sink = FileSink::create(config(&d), "long.txt", 4, None)
            .await
            .unwrap();
        sink.write(b"abc").await.unwrap();
        assert!(matches!(
            sink.write(b"de").await,
            Err(SinkError::TooLong { announced: 4 })
        ));
        drop(sink);
        // Fewer than announced.
        let mut sink = FileSink::create(config(&d), "short.txt", 10, None)
            .await
            .unwrap();
        sink.write(b"abc").await.unwrap();
        assert!(matches!(
            sink.finish().await,
            Err(SinkError::TooShort {
                got: 3,
                announced: 10
            })
        ));
        // Wrong hash, announced late.
        let mut sink = FileSink::create(config(&d), "hash.txt", 3, None)
            .await
            .unwrap();
        sink.write(b"abc").await.unwrap();
        sink.set_expected_sha256(sha(b"abd"));
        assert!(matches!(
            sink.finish().await,
            Err(SinkError::HashMismatch { .. })
        ));
        // Offer and checksum disagree: whichever the content matches, it fails.
        let mut sink = FileSink::create(config(&d), "two.txt", 3, Some(sha(b"abc")))
            .await
            .unwrap();
        sink.write(b"abc").await.unwrap();
        sink.set_expected_sha256(sha(b"xyz"));
        assert!(matches!(
            sink.finish().await,
            Err(SinkError::HashMismatch { .. })
        ));
        // Too large for us: refused before anything exists.
        let err = FileSink::create(config(&d), "big", 2 << 20, None)
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::TooLarge { .. }));
        assert_eq!(entries(&d), Vec::<String>::new());
    }

    #[tokio::test]
    async fn an_interrupted_transfer_resumes_from_its_part_file() {
        let d = dir("resume");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let hash = sha(&data);
        let mut first = FileSink::create(config(&d), "big.dat", data.len() as u64, Some(hash))
            .await
            .unwrap();
        first.write(&data[..40_000]).await.unwrap();
        // The receiver is killed: nothing runs Drop.
        std::mem::forget(first);
        let mut again = FileSink::resume(config(&d), "big.dat", data.len() as u64, Some(hash))
            .await
            .unwrap();
        assert_eq!(again.written(), 40_000);
        again.write(&data[40_000..]).await.unwrap();
        let stored = again.finish().await.unwrap();
        assert!(stored.verified);
        assert_eq!(std::fs::read(&stored.path).unwrap(), data);
        assert_eq!(entries(&d), vec!["big.dat"]);
    }
}
