//! Access tokens: JSON Web Tokens signed with HS256 and the secret of an API key from `[auth].api_keys`, or with
//! ES256 and a private key whose public half is in `[auth].es256_keys`.
//!
//! An app's backend (or `hualu token`, for development) mints one per user session; the client presents it to
//! hualu's services, which check the signature, the time window and the grants. The API key rides in the JWT
//! header's `kid` (and in `iss`), so the verifier picks the secret without trying each one.
//!
//! Times are passed in (seconds since the Unix epoch), so checks are testable without a clock; the signature
//! and encoding are the `jsonwebtoken` crate's.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Shortest accepted secret: HS256 wants a key at least as long as its 32-byte output.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest lifetime a token may have.
pub const MAX_TTL_SECS: u64 = 30 * 86_400;
/// Longest accepted token, so a hostile one costs little to refuse.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Clock skew tolerated between the minting backend and hualu.
pub const LEEWAY_SECS: u64 = 30;
/// Longest identity, device id or room name.
pub const MAX_NAME_LEN: usize = 128;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The API key that signed it.
    pub iss: String,
    /// The user's identity (user id).
    pub sub: String,
    /// The user's device, when the app has several per user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Issued at.
    pub iat: u64,
    /// Not valid before.
    pub nbf: u64,
    /// Not valid from.
    pub exp: u64,
    /// What the holder may do.
    #[serde(default)]
    pub grants: Grants,
}

/// Permissions carried by a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// The one room the token opens; `None` opens none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// May publish tracks.
    #[serde(default)]
    pub publish: bool,
    /// May subscribe to tracks.
    #[serde(default)]
    pub subscribe: bool,
    /// May use the admin API (`/admin/...`): list nodes, rooms and calls, drain a node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    /// For a room that spans SFU nodes: the link addresses (`ip:port`, the UDP port of the shard that holds the
    /// room) of the room's other nodes, which the node this token joins relays the room's tracks with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

impl Claims {
    /// Claims for `identity`, signed by `key`, valid from `now` for `ttl_secs`.
    pub fn new(key: &str, identity: &str, now: u64, ttl_secs: u64) -> Self {
        Self {
            iss: key.into(),
            sub: identity.into(),
            device: None,
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl_secs),
            grants: Grants::default(),
        }
    }

    /// Checks names and the time window's shape (not the current time).
    fn check_shape(&self) -> Result<(), TokenError> {
        check_name("sub (identity)", &self.sub)?;
        if let Some(d) = &self.device {
            check_name("device", d)?;
        }
        if let Some(r) = &self.grants.room {
            check_name("grants.room", r)?;
        }
        if self.exp <= self.nbf || self.exp - self.nbf > MAX_TTL_SECS {
            return Err(TokenError::BadClaims(format!(
                "exp must follow nbf by 1 s to {MAX_TTL_SECS} s"
            )));
        }
        Ok(())
    }
}

fn check_name(what: &str, value: &str) -> Result<(), TokenError> {
    if value.is_empty() || value.len() > MAX_NAME_LEN || value.chars().any(char::is_control) {
        return Err(TokenError::BadClaims(format!(
            "{what} must be 1 to {MAX_NAME_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// Why a token was refused. The messages are meant for the client's developer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT at all, or not one of ours.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Signed with an algorithm other than the one its key uses (HS256 for API keys, ES256 for public keys).
    #[error("token must be signed with HS256 (API keys) or ES256 (public keys), as its kid's key is")]
    WrongAlgorithm,
    /// A configured ES256 public key does not load.
    #[error("bad ES256 public key: {0}")]
    BadKey(String),
    /// No `kid` header naming the API key.
    #[error("token has no kid header naming its API key")]
    NoKeyId,
    /// The API key is not configured here.
    #[error("token is signed with unknown API key {0:?}")]
    UnknownKey(String),
    /// The signature does not match the key's secret.
    #[error("token signature does not match its API key")]
    BadSignature,
    /// Past its `exp`.
    #[error("token expired at {0} (unix seconds); get a fresh one")]
    Expired(u64),
    /// Before its `nbf`.
    #[error("token is not valid before {0} (unix seconds); check the clocks")]
    NotYetValid(u64),
    /// A claim is missing or out of bounds.
    #[error("bad claims: {0}")]
    BadClaims(String),
}

/// Signs `claims` with `secret`, naming `claims.iss` as the key.
pub fn mint(secret: &str, claims: &Claims) -> Result<String, TokenError> {
    claims.check_shape()?;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(claims.iss.clone());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| TokenError::Malformed(e.to_string()))
}

/// An ES256 public key from PEM text, or from the PEM file at that path.
pub fn es256_key(pem_or_path: &str) -> Result<DecodingKey, TokenError> {
    let pem = if pem_or_path.trim_start().starts_with("-----BEGIN") {
        pem_or_path.to_string()
    } else {
        std::fs::read_to_string(pem_or_path).map_err(|e| TokenError::BadKey(format!("{pem_or_path}: {e}")))?
    };
    DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| TokenError::BadKey(e.to_string()))
}

/// Checks tokens against the configured keys.
pub struct Verifier {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
}

impl Verifier {
    /// A verifier for `api_keys` (key = secret), as in `[auth].api_keys`.
    pub fn new(api_keys: &BTreeMap<String, String>) -> Self {
        let keys = api_keys
            .iter()
            .map(|(k, s)| (k.clone(), (Algorithm::HS256, DecodingKey::from_secret(s.as_bytes()))))
            .collect();
        Self { keys }
    }

    /// A verifier for every key in `[auth]`: API keys (HS256) and public keys (ES256). Public keys that do
    /// not load are left out with an error log (config validation refuses them first).
    pub fn from_auth(auth: &crate::config::AuthConfig) -> Self {
        let mut v = Self::new(&auth.api_keys);
        for (kid, pem) in &auth.es256_keys {
            match es256_key(pem) {
                Ok(k) => {
                    v.keys.insert(kid.clone(), (Algorithm::ES256, k));
                }
                Err(e) => tracing::error!(kid, error = %e, "ES256 key left out"),
            }
        }
        v
    }

    /// The claims of `token` if it is well formed, signed by a configured key and valid at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed(format!("longer than {MAX_TOKEN_LEN} bytes")));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !matches!(header.alg, Algorithm::HS256 | Algorithm::ES256) {
            return Err(TokenError::WrongAlgorithm);
        }
        let kid = header.kid.ok_or(TokenError::NoKeyId)?;
        let (alg, key) = self.keys.get(&kid).ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
        if *alg != header.alg {
            return Err(TokenError::WrongAlgorithm);
        }
        // Time is checked below against the `now` passed in, not the system clock.
        let mut v = Validation::new(*alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.set_required_spec_claims(&["exp", "nbf", "sub", "iss"]);
        v.set_issuer(&[&kid]);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    TokenError::BadClaims("iss must be the API key named by kid".into())
                }
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) => {
                    TokenError::BadClaims(format!("missing claim {c}"))
                }
                _ => TokenError::Malformed(e.to_string()),
            })?
            .claims;
        claims.check_shape()?;
        if now >= claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired(claims.exp));
        }
        if now.saturating_add(LEEWAY_SECS) < claims.nbf {
            return Err(TokenError::NotYetValid(claims.nbf));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn verifier() -> Verifier {
        let mut keys = BTreeMap::new();
        keys.insert("app1".to_string(), SECRET.to_string());
        keys.insert("app2".to_string(), "another-secret-of-at-least-32-chars".to_string());
        Verifier::new(&keys)
    }

    fn claims() -> Claims {
        let mut c = Claims::new("app1", "alice", NOW, 600);
        c.device = Some("phone".into());
        c.grants = Grants {
            room: Some("standup".into()),
            publish: true,
            subscribe: true,
            admin: false,
            links: Vec::new(),
        };
        c
    }

    #[test]
    fn minted_tokens_verify_with_their_claims() {
        let token = mint(SECRET, &claims()).expect("mints");
        assert_eq!(verifier().verify(&token, NOW + 10), Ok(claims()));
    }

    #[test]
    fn time_window_is_checked_against_the_time_passed_in_with_leeway() {
        let token = mint(SECRET, &claims()).expect("mints");
        let v = verifier();
        assert!(
            v.verify(&token, NOW + 600 + LEEWAY_SECS - 1).is_ok(),
            "within the leeway"
        );
        assert_eq!(
            v.verify(&token, NOW + 600 + LEEWAY_SECS),
            Err(TokenError::Expired(NOW + 600))
        );
        assert_eq!(
            v.verify(&token, NOW - LEEWAY_SECS - 1),
            Err(TokenError::NotYetValid(NOW))
        );
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused_with_the_reason() {
        let v = verifier();
        let wrong_secret = mint("not-the-secret-but-long-enough-to-mint", &claims()).expect("mints");
        assert_eq!(v.verify(&wrong_secret, NOW), Err(TokenError::BadSignature));
        let mut other = claims();
        other.iss = "app9".into();
        let unknown = mint(SECRET, &other).expect("mints");
        assert_eq!(v.verify(&unknown, NOW), Err(TokenError::UnknownKey("app9".into())));
        assert!(matches!(v.verify("not.a.jwt", NOW), Err(TokenError::Malformed(_))));
        assert!(matches!(
            v.verify(&"x".repeat(MAX_TOKEN_LEN + 1), NOW),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn a_token_whose_iss_differs_from_its_kid_is_refused() {
        let mut c = claims();
        c.iss = "app2".into();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("app1".into());
        let token = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(SECRET.as_bytes())).expect("encodes");
        assert!(matches!(verifier().verify(&token, NOW), Err(TokenError::BadClaims(_))));
    }

    #[test]
    fn other_algorithms_and_missing_kid_are_refused() {
        let v = verifier();
        let mut header = Header::new(Algorithm::HS384);
        header.kid = Some("app1".into());
        let hs384 =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(SECRET.as_bytes())).expect("encodes");
        assert_eq!(v.verify(&hs384, NOW), Err(TokenError::WrongAlgorithm));
        let no_kid = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encodes");
        assert_eq!(v.verify(&no_kid, NOW), Err(TokenError::NoKeyId));
    }

    #[test]
    fn bad_names_and_lifetimes_are_refused_at_mint() {
        let mut c = claims();
        c.sub = String::new();
        assert!(matches!(mint(SECRET, &c), Err(TokenError::BadClaims(_))));
        let mut c = claims();
        c.grants.room = Some("a\nb".into());
        assert!(matches!(mint(SECRET, &c), Err(TokenError::BadClaims(_))));
        let c = Claims::new("app1", "alice", NOW, MAX_TTL_SECS + 1);
        assert!(matches!(mint(SECRET, &c), Err(TokenError::BadClaims(_))));
    }

    #[test]
    fn grants_default_to_nothing() {
        let c = Claims::new("app1", "bob", NOW, 60);
        let token = mint(SECRET, &c).expect("mints");
        let got = verifier().verify(&token, NOW).expect("verifies");
        assert_eq!(got.grants, Grants::default());
        assert_eq!(got.device, None);
    }

    /// A P-256 key pair made for these tests (`openssl ecparam -name prime256v1 -genkey`), standing in for an
    /// app backend's.
    const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgyo86ekbG9EjEtug5\nFUoBue/P2Om6H2y2tUKNoconsGqhRANCAARzvhhyyICR0WVbT3F+LrxqSQ+Hzd4x\nGqp+Bal26n4mqL/uIUrpUjq6ILD4kBORlhy/Sof9cB4lIuiA+YLMyWO1\n-----END PRIVATE KEY-----\n";
    const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEc74YcsiAkdFlW09xfi68akkPh83e\nMRqqfgWpdup+Jqi/7iFK6VI6uiCw+JATkZYcv0qH/XAeJSLogPmCzMljtQ==\n-----END PUBLIC KEY-----\n";

    fn es256_token(c: &Claims) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(c.iss.clone());
        let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("private key");
        jsonwebtoken::encode(&header, c, &key).expect("encodes")
    }

    fn es256_verifier() -> Verifier {
        let mut auth = crate::config::AuthConfig::default();
        auth.api_keys.insert("app1".into(), SECRET.into());
        auth.es256_keys.insert("backend-2026".into(), EC_PUBLIC.into());
        Verifier::from_auth(&auth)
    }

    #[test]
    fn es256_tokens_from_the_apps_backend_verify_with_its_public_key() {
        let mut c = claims();
        c.iss = "backend-2026".into();
        let v = es256_verifier();
        assert_eq!(v.verify(&es256_token(&c), NOW), Ok(c.clone()));
        assert_eq!(
            v.verify(&mint(SECRET, &claims()).expect("mints"), NOW),
            Ok(claims()),
            "HS256 still works"
        );
        // Change a character well inside the signature (the last one carries unused bits).
        let token = es256_token(&c);
        let at = token.len() - 10;
        let swap = if &token[at..=at] == "A" { "B" } else { "A" };
        let tampered = format!("{}{swap}{}", &token[..at], &token[at + 1..]);
        assert!(v.verify(&tampered, NOW).is_err(), "a changed signature fails");
    }

    #[test]
    fn a_key_takes_only_its_own_algorithm() {
        let v = es256_verifier();
        let mut c = claims();
        c.iss = "backend-2026".into();
        // HS256 keyed with the public key's text: the classic confusion attack.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("backend-2026".into());
        let confused =
            jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(EC_PUBLIC.as_bytes())).expect("encodes");
        assert_eq!(v.verify(&confused, NOW), Err(TokenError::WrongAlgorithm));
        let mut c1 = claims();
        c1.iss = "app1".into();
        assert_eq!(v.verify(&es256_token(&c1), NOW), Err(TokenError::WrongAlgorithm));
    }

    #[test]
    fn a_bad_public_key_is_a_clear_error() {
        assert!(matches!(
            es256_key("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"),
            Err(TokenError::BadKey(_))
        ));
        assert!(matches!(es256_key("/nonexistent/key.pem"), Err(TokenError::BadKey(_))));
    }
}
