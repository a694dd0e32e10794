//! Access tokens: HS256 JSON Web Tokens signed with the secret of an API key from `[auth].api_keys`.
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
    /// Signed with an algorithm other than HS256.
    #[error("token must be signed with HS256")]
    WrongAlgorithm,
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

/// Checks tokens against the configured API keys.
pub struct Verifier {
    keys: HashMap<String, DecodingKey>,
}

impl Verifier {
    /// A verifier for `api_keys` (key = secret), as in `[auth].api_keys`.
    pub fn new(api_keys: &BTreeMap<String, String>) -> Self {
        let keys = api_keys
            .iter()
            .map(|(k, s)| (k.clone(), DecodingKey::from_secret(s.as_bytes())))
            .collect();
        Self { keys }
    }

    /// The claims of `token` if it is well formed, signed by a configured key and valid at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed(format!("longer than {MAX_TOKEN_LEN} bytes")));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::WrongAlgorithm);
        }
        let kid = header.kid.ok_or(TokenError::NoKeyId)?;
        let key = self.keys.get(&kid).ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
        // Time is checked below against the `now` passed in, not the system clock.
        let mut v = Validation::new(Algorithm::HS256);
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
}
