//! TURN credentials: the long-term mechanism (RFC 8489 §9.2) and the time-limited form of
//! the "TURN REST API" draft (draft-uberti-behave-turn-rest-00 §2.2) that XEP-0215 services
//! (Prosody's `mod_turn_external`) and coturn's `use-auth-secret` use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// How the client authenticates to the TURN server (RFC 8656 §9.2, RFC 8489 §9.2).
#[derive(Clone, PartialEq, Eq)]
pub enum TurnCredentials {
    /// A long-term username and password (RFC 8489 §9.2). The realm and nonce come from the
    /// server's 401 answer.
    LongTerm {
        /// The USERNAME sent to the server.
        username: String,
        /// The password the long-term key is made from (RFC 8489 §9.2.2).
        password: String,
    },
}

impl TurnCredentials {
    /// Long-term credentials as configured (RFC 8489 §9.2).
    pub fn long_term(username: impl Into<String>, password: impl Into<String>) -> Self {
        TurnCredentials::LongTerm {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Time-limited credentials derived from a secret shared with the server (TURN REST API
    /// draft §2.2, coturn `use-auth-secret`, XEP-0215 services): the username is
    /// `"<expiry>"` or `"<expiry>:<user>"` with `expiry` in seconds since the Unix epoch, the
    /// password is base64(HMAC-SHA1(secret, username)).
    pub fn time_limited(secret: &[u8], expiry_unix: u64, user: Option<&str>) -> Self {
        let username = match user {
            Some(user) => format!("{expiry_unix}:{user}"),
            None => expiry_unix.to_string(),
        };
        let password = time_limited_password(secret, &username);
        TurnCredentials::LongTerm { username, password }
    }

    /// [`TurnCredentials::time_limited`] valid for `ttl` after `now` (a wall-clock time, so the
    /// caller passes `SystemTime::now()`).
    pub fn time_limited_for(
        secret: &[u8],
        now: SystemTime,
        ttl: Duration,
        user: Option<&str>,
    ) -> Self {
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let expiry = since_epoch.saturating_add(ttl).as_secs();
        TurnCredentials::time_limited(secret, expiry, user)
    }

    /// The USERNAME these credentials send.
    pub fn username(&self) -> &str {
        match self {
            TurnCredentials::LongTerm { username, .. } => username,
        }
    }

    /// The password the long-term key is made from.
    pub(crate) fn password(&self) -> &str {
        match self {
            TurnCredentials::LongTerm { password, .. } => password,
        }
    }
}

impl std::fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of logs.
        f.debug_struct("LongTerm")
            .field("username", &self.username())
            .finish_non_exhaustive()
    }
}

/// base64(HMAC-SHA1(secret, username)) (TURN REST API draft §2.2).
fn time_limited_password(secret: &[u8], username: &str) -> String {
    let tag: [u8; 20] = match <Hmac<Sha1> as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            mac.finalize().into_bytes().into()
        }
        // HMAC accepts keys of any length; this arm is never taken.
        Err(_) => [0; 20],
    };
    base64::engine::general_purpose::STANDARD.encode(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limited_matches_openssl() {
        // echo -n "1700000000:alice" | openssl dgst -sha1 -hmac S3cret -binary | base64
        let c = TurnCredentials::time_limited(b"S3cret", 1_700_000_000, Some("alice"));
        assert_eq!(c.username(), "1700000000:alice");
        assert_eq!(c.password(), "RWn1onPKprbAeQq8zmxAm/B/btc=");
        let c = TurnCredentials::time_limited(b"S3cret", 1_700_000_000, None);
        assert_eq!(c.username(), "1700000000");
        let c = TurnCredentials::time_limited_for(
            b"S3cret",
            UNIX_EPOCH + Duration::from_secs(1_699_999_000),
            Duration::from_secs(1000),
            Some("alice"),
        );
        assert_eq!(c.password(), "RWn1onPKprbAeQq8zmxAm/B/btc=");
        assert!(!format!("{c:?}").contains("RWn1"));
    }
}
