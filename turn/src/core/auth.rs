//! Long-term credentials (RFC 8489 §9.2) and stateless nonces.
//!
//! Keys come from static users in the config or from TURN REST API usernames checked against every configured
//! secret (several secrets verify at once, so a secret can rotate without dropping clients).
//!
//! A nonce holds its own expiry and an HMAC over that expiry and the client's IP, keyed by a secret drawn at
//! start-up: the server answers an unauthenticated flood without keeping any state, and a nonce from one IP is
//! useless from another.

use ahash::HashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt::Write as _;
use std::net::IpAddr;
use stun_types::message::{IntegrityAlgorithm, IntegrityKey, LongTermKeyCredentials};

type HmacSha256 = Hmac<Sha256>;

/// RFC 8489 §9.2 nonce cookie, then the base64 of the 24-bit security feature set with the
/// "password algorithms" bit set: this server offers SHA-256 keys besides MD5.
const NONCE_COOKIE: &str = "obMatJos2AAAB";
/// Hex digits of expiry (8) and tag (24) after the cookie.
const NONCE_LEN: usize = NONCE_COOKIE.len() + 8 + 24;

/// How a nonce checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, for this IP, and not expired.
    Fresh,
    /// Ours and for this IP, but expired: answer 438 with a new one.
    Stale,
    /// Not one of ours, or minted for another IP.
    Invalid,
}

/// Why a username yields no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Neither a static user nor a REST username.
    #[error("unknown user")]
    UnknownUser,
    /// A REST username whose expiry has passed.
    #[error("credential expired")]
    Expired,
}

/// The credential store and nonce minter, shared by all shards.
#[derive(Debug)]
pub struct Authenticator {
    realm: String,
    users: HashMap<String, String>,
    secrets: Vec<String>,
    nonce_key: [u8; 32],
    nonce_secs: u32,
}

impl Authenticator {
    /// Builds the store. `nonce_key` must be secret and random.
    pub fn new(
        realm: String,
        users: impl IntoIterator<Item = (String, String)>,
        secrets: Vec<String>,
        nonce_key: [u8; 32],
        nonce_secs: u32,
    ) -> Self {
        Self {
            realm,
            users: users.into_iter().collect(),
            secrets,
            nonce_key,
            nonce_secs,
        }
    }

    /// The REALM.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// A fresh nonce for `ip`.
    pub fn nonce(&self, ip: IpAddr, unix_now: u64) -> String {
        let expiry = (unix_now + u64::from(self.nonce_secs)) as u32;
        let mut s = String::with_capacity(NONCE_LEN);
        s.push_str(NONCE_COOKIE);
        let _ = write!(s, "{expiry:08x}");
        for b in self.tag(expiry, ip) {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Checks a nonce presented by `ip`.
    pub fn check_nonce(&self, nonce: &str, ip: IpAddr, unix_now: u64) -> NonceCheck {
        let Some(rest) = nonce.strip_prefix(NONCE_COOKIE) else {
            return NonceCheck::Invalid;
        };
        if rest.len() != 32 || !rest.is_ascii() {
            return NonceCheck::Invalid;
        }
        let Ok(expiry) = u32::from_str_radix(&rest[..8], 16) else {
            return NonceCheck::Invalid;
        };
        let mut tag = [0u8; 12];
        for (i, b) in tag.iter_mut().enumerate() {
            let Ok(v) = u8::from_str_radix(&rest[8 + 2 * i..10 + 2 * i], 16) else {
                return NonceCheck::Invalid;
            };
            *b = v;
        }
        if !constant_time_eq(&tag, &self.tag(expiry, ip)) {
            return NonceCheck::Invalid;
        }
        if u64::from(expiry) < unix_now {
            NonceCheck::Stale
        } else {
            NonceCheck::Fresh
        }
    }

    /// The candidate keys for `username`: one for a static user, one per secret for a REST username.
    pub fn keys(
        &self,
        username: &str,
        algorithm: IntegrityAlgorithm,
        unix_now: u64,
    ) -> Result<Vec<IntegrityKey>, CredentialError> {
        if let Some(password) = self.users.get(username) {
            return Ok(vec![self.key(username, password, algorithm)]);
        }
        let expiry = hualu_common::rest::expiry_of(username).ok_or(CredentialError::UnknownUser)?;
        if self.secrets.is_empty() {
            return Err(CredentialError::UnknownUser);
        }
        if expiry < unix_now {
            return Err(CredentialError::Expired);
        }
        Ok(self
            .secrets
            .iter()
            .map(|s| self.key(username, &hualu_common::rest::password_for(s, username), algorithm))
            .collect())
    }

    /// The user a quota counts against: the static name, or the user part of a REST username.
    pub fn quota_user<'a>(&self, username: &'a str) -> &'a str {
        if self.users.contains_key(username) {
            return username;
        }
        match username.split_once(':') {
            Some((head, tail)) if head.bytes().all(|b| b.is_ascii_digit()) => tail,
            Some((head, _)) => head,
            None => username,
        }
    }

    fn key(&self, username: &str, password: &str, algorithm: IntegrityAlgorithm) -> IntegrityKey {
        LongTermKeyCredentials::new(username.into(), password.into(), self.realm.clone()).make_key(algorithm)
    }

    fn tag(&self, expiry: u32, ip: IpAddr) -> [u8; 12] {
        let mut mac = HmacSha256::new_from_slice(&self.nonce_key).expect("HMAC takes any key length");
        mac.update(&expiry.to_be_bytes());
        match ip {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 12];
        out.copy_from_slice(&full[..12]);
        out
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(
            "example.org".into(),
            [("alice".to_string(), "pw".to_string())],
            vec!["old-secret-0123456789".into(), "new-secret-0123456789".into()],
            [7; 32],
            600,
        )
    }

    #[test]
    fn nonce_round_trips_for_the_same_ip_only() {
        let a = auth();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let n = a.nonce(ip, 1000);
        assert_eq!(n.len(), NONCE_LEN);
        assert!(n.starts_with("obMatJos2"));
        assert_eq!(a.check_nonce(&n, ip, 1000), NonceCheck::Fresh);
        assert_eq!(a.check_nonce(&n, ip, 1601), NonceCheck::Stale);
        assert_eq!(
            a.check_nonce(&n, "192.0.2.2".parse().expect("ip"), 1000),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn forged_nonces_are_invalid() {
        let a = auth();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let mut n = a.nonce(ip, 1000).into_bytes();
        let last = n.len() - 1;
        n[last] = if n[last] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(n).expect("ascii");
        assert_eq!(a.check_nonce(&forged, ip, 1000), NonceCheck::Invalid);
        assert_eq!(a.check_nonce("short", ip, 1000), NonceCheck::Invalid);
        assert_eq!(a.check_nonce("obMatJos2AAABzzzzzzzz", ip, 1000), NonceCheck::Invalid);
    }

    #[test]
    fn rest_usernames_get_one_key_per_secret() {
        let a = auth();
        let keys = a.keys("2000:bob", IntegrityAlgorithm::Sha1, 1000).expect("keys");
        assert_eq!(keys.len(), 2);
        assert_eq!(
            a.keys("900:bob", IntegrityAlgorithm::Sha1, 1000).err(),
            Some(CredentialError::Expired)
        );
        assert_eq!(
            a.keys("mallory", IntegrityAlgorithm::Sha1, 1000).err(),
            Some(CredentialError::UnknownUser)
        );
        assert_eq!(
            a.keys("alice", IntegrityAlgorithm::Sha1, 1000).expect("static").len(),
            1
        );
    }

    #[test]
    fn quota_user_strips_the_expiry() {
        let a = auth();
        assert_eq!(a.quota_user("2000:bob"), "bob");
        assert_eq!(a.quota_user("bob:2000"), "bob");
        assert_eq!(a.quota_user("alice"), "alice");
    }
}
