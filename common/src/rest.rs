//! TURN REST API credentials (draft-uberti-behave-turn-rest), the convention coturn calls `use-auth-secret`.
//!
//! The app's backend (or hualu's signaling) and the TURN relay share a secret. A credential is
//! `username = "<expiry unix seconds>:<user>"` and `password = base64(HMAC-SHA1(secret, username))`; the relay
//! recomputes the password from the username, so it keeps no per-user state, and the credential dies at its expiry.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// A time-limited TURN credential, ready for a client's `iceServers` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestCredential {
    /// `expiry:user`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub password: String,
    /// Unix seconds after which the relay refuses this credential.
    pub expires_at: u64,
}

/// Mints a credential for `user` valid for `ttl_secs` from `now_unix`.
pub fn mint(secret: &str, user: &str, now_unix: u64, ttl_secs: u64) -> RestCredential {
    let expires_at = now_unix.saturating_add(ttl_secs);
    let username = format!("{expires_at}:{user}");
    let password = password_for(secret, &username);
    RestCredential {
        username,
        password,
        expires_at,
    }
}

/// The password that `secret` gives `username`.
pub fn password_for(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha1::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The expiry of a REST username, or `None` when the username does not follow the convention.
///
/// coturn accepts the timestamp on either side of the separator; hualu mints `expiry:user` and accepts both,
/// so credentials minted for coturn keep working.
pub fn expiry_of(username: &str) -> Option<u64> {
    let (head, tail) = username.split_once(':')?;
    parse_ts(head).or_else(|| parse_ts(tail))
}

fn parse_ts(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_matches_the_rest_api_example_computation() {
        // Independent check: HMAC-SHA1("secret", "1600000000:alice") computed with `openssl dgst -sha1 -hmac`.
        let pw = password_for("secret", "1600000000:alice");
        assert_eq!(pw, "UQpbzqLy8wUgAxlVOh3KKXno2lk=");
    }

    #[test]
    fn mint_puts_expiry_first() {
        let c = mint("s", "bob", 1_000, 60);
        assert_eq!(c.username, "1060:bob");
        assert_eq!(c.expires_at, 1060);
        assert_eq!(c.password, password_for("s", "1060:bob"));
    }

    #[test]
    fn expiry_is_read_from_either_side() {
        assert_eq!(expiry_of("1700:alice"), Some(1700));
        assert_eq!(expiry_of("alice:1700"), Some(1700));
        assert_eq!(expiry_of("alice"), None);
        assert_eq!(expiry_of("alice:bob"), None);
        assert_eq!(expiry_of(":"), None);
    }
}
