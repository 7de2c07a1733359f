//! ICE credentials: the username fragment and password of RFC 8445 §5.3, signalled to the peer
//! and used as the short-term credentials of connectivity checks (RFC 8445 §7.2.2).

use rand::Rng;

/// Characters allowed in `ice-ufrag` and `ice-pwd` (RFC 8839 §5.4: `ice-char`).
const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Length of a generated ufrag: 8 chars of 6 bits = 48 bits (RFC 8445 §5.3 asks for ≥ 24 bits).
const UFRAG_LEN: usize = 8;
/// Length of a generated pwd: 24 chars of 6 bits = 144 bits (RFC 8445 §5.3 asks for ≥ 128 bits).
const PWD_LEN: usize = 24;

/// A username fragment and password pair (RFC 8445 §5.3).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username fragment (`ice-ufrag`).
    pub ufrag: String,
    /// The password (`ice-pwd`).
    pub pwd: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("ufrag", &self.ufrag)
            .field("pwd", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Fresh credentials from a cryptographically secure generator.
    pub fn random<R: Rng + rand::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut draw = |n: usize| -> String {
            (0..n)
                .map(|_| ICE_CHARS[rng.random_range(0..ICE_CHARS.len())] as char)
                .collect()
        };
        let ufrag = draw(UFRAG_LEN);
        let pwd = draw(PWD_LEN);
        Credentials { ufrag, pwd }
    }

    /// Credentials given by the peer or by configuration.
    pub fn new(ufrag: impl Into<String>, pwd: impl Into<String>) -> Self {
        Credentials {
            ufrag: ufrag.into(),
            pwd: pwd.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_credentials_have_enough_entropy_and_valid_chars() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a = Credentials::random(&mut rng);
        let b = Credentials::random(&mut rng);
        assert_ne!(a, b);
        // 6 bits per ice-char.
        assert!(a.ufrag.len() * 6 >= 24);
        assert!(a.pwd.len() * 6 >= 128);
        assert!(a
            .ufrag
            .bytes()
            .chain(a.pwd.bytes())
            .all(|c| ICE_CHARS.contains(&c)));
        assert!(!format!("{a:?}").contains(&a.pwd));
    }
}
