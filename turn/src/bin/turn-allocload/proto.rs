//! The three requests a job sends and the little it needs from the answers.
//!
//! Answers are not integrity-checked: the tool measures the server, and the client core should spend
//! its time sending requests.

use std::net::SocketAddr;
use stun_types::attribute::{ErrorCode, Nonce, Realm, Username};
use stun_types::message::{
    IntegrityAlgorithm, IntegrityKey, LongTermKeyCredentials, Message, MessageClass, MessageWriteVec, TransactionId,
};
use stun_types::prelude::*;
use turn_types::attribute::{Lifetime, RequestedTransport, XorRelayedAddress};
use turn_types::message::{ALLOCATE, REFRESH};

/// A request ready to send (and resend) with its transaction id.
pub struct Request {
    pub txid: TransactionId,
    pub bytes: Vec<u8>,
}

/// What came back for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Success {
        relayed: Option<SocketAddr>,
    },
    Error {
        code: u16,
        realm: Option<String>,
        nonce: Option<String>,
    },
}

/// Long-term credentials with the key cached for the realm the server announced.
pub struct Creds {
    user: String,
    password: String,
    realm: String,
    key: Option<IntegrityKey>,
}

impl Creds {
    pub fn new(user: &str, password: &str) -> Self {
        Self {
            user: user.to_string(),
            password: password.to_string(),
            realm: String::new(),
            key: None,
        }
    }

    /// The key for `realm`, computed once (MD5 of user:realm:password).
    fn key_for(&mut self, realm: &str) -> IntegrityKey {
        match &self.key {
            Some(key) if self.realm == realm => key.clone(),
            _ => {
                let creds = LongTermKeyCredentials::new(self.user.clone(), self.password.clone(), realm.to_string());
                let key = creds.make_key(IntegrityAlgorithm::Sha1);
                self.realm = realm.to_string();
                self.key = Some(key.clone());
                key
            }
        }
    }
}

/// The realm and nonce a job got from its 401 (or a later 438).
#[derive(Clone, Debug)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
}

type BuildResult = Result<Request, stun_types::message::StunWriteError>;

/// Allocate for UDP without credentials: the server should answer 401 with REALM and NONCE.
pub fn allocate_unauth() -> BuildResult {
    let mut msg = Message::builder_request(ALLOCATE, MessageWriteVec::new());
    msg.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))?;
    msg.add_fingerprint()?;
    Ok(finish(msg))
}

/// Allocate for UDP with long-term credentials.
pub fn allocate_auth(creds: &mut Creds, challenge: &Challenge) -> BuildResult {
    let mut msg = Message::builder_request(ALLOCATE, MessageWriteVec::new());
    msg.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))?;
    sign(msg, creds, challenge)
}

/// Refresh with LIFETIME 0: releases the allocation.
pub fn refresh_release(creds: &mut Creds, challenge: &Challenge) -> BuildResult {
    let mut msg = Message::builder_request(REFRESH, MessageWriteVec::new());
    msg.add_attribute(&Lifetime::new(0))?;
    sign(msg, creds, challenge)
}

fn sign(mut msg: MessageWriteVec, creds: &mut Creds, challenge: &Challenge) -> BuildResult {
    msg.add_attribute(&Username::new(&creds.user)?)?;
    msg.add_attribute(&Realm::new(&challenge.realm)?)?;
    msg.add_attribute(&Nonce::new(&challenge.nonce)?)?;
    let key = creds.key_for(&challenge.realm);
    msg.add_message_integrity_with_key(&key, IntegrityAlgorithm::Sha1)?;
    msg.add_fingerprint()?;
    Ok(finish(msg))
}

fn finish(msg: MessageWriteVec) -> Request {
    let txid = msg.transaction_id();
    Request {
        txid,
        bytes: msg.finish(),
    }
}

/// Parses an answer to the request `txid`; None for anything else (garbage, an old transaction).
pub fn parse_reply(data: &[u8], txid: TransactionId) -> Option<Reply> {
    let msg = Message::from_bytes(data).ok()?;
    if msg.transaction_id() != txid {
        return None;
    }
    match msg.class() {
        MessageClass::Success => Some(Reply::Success {
            relayed: msg.attribute::<XorRelayedAddress>().ok().map(|a| a.addr(txid)),
        }),
        MessageClass::Error => Some(Reply::Error {
            code: msg.attribute::<ErrorCode>().map(|e| e.code()).unwrap_or(0),
            realm: msg.attribute::<Realm>().ok().map(|r| r.realm().to_string()),
            nonce: msg.attribute::<Nonce>().ok().map(|n| n.nonce().to_string()),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_types::message::MessageIntegrityCredentials;

    #[test]
    fn signed_requests_validate_with_the_long_term_key() {
        let mut creds = Creds::new("test", "test123");
        let challenge = Challenge {
            realm: "hualu.test".into(),
            nonce: "abc".into(),
        };
        let req = refresh_release(&mut creds, &challenge).expect("builds");
        let msg = Message::from_bytes(&req.bytes).expect("parses");
        assert_eq!(msg.transaction_id(), req.txid);
        let lt: MessageIntegrityCredentials =
            LongTermKeyCredentials::new("test".into(), "test123".into(), "hualu.test".into()).into();
        assert!(msg.validate_integrity(&lt).is_ok());
        assert_eq!(msg.attribute::<Lifetime>().expect("lifetime").seconds(), 0);
    }

    #[test]
    fn parses_a_401_and_ignores_other_transactions() {
        let req = allocate_unauth().expect("builds");
        let orig = Message::from_bytes(&req.bytes).expect("parses");
        let mut err = Message::builder_error(&orig, MessageWriteVec::new());
        err.add_attribute(&ErrorCode::new(401, "Unauthorized").expect("code"))
            .expect("adds");
        err.add_attribute(&Realm::new("r").expect("realm")).expect("adds");
        err.add_attribute(&Nonce::new("n").expect("nonce")).expect("adds");
        let bytes = err.finish();
        let reply = parse_reply(&bytes, req.txid).expect("matches");
        assert_eq!(
            reply,
            Reply::Error {
                code: 401,
                realm: Some("r".into()),
                nonce: Some("n".into())
            }
        );
        assert!(parse_reply(&bytes, TransactionId::generate()).is_none());
    }
}
