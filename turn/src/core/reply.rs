//! Building responses and indications with the `stun-types` writer.

use std::net::SocketAddr;
use stun_types::attribute::{
    AlternateServer, AttributeType, ErrorCode, Fingerprint, Nonce, PasswordAlgorithmValue, PasswordAlgorithms, Realm,
    Software, UnknownAttributes, XorMappedAddress,
};
use stun_types::message::{
    IntegrityAlgorithm, IntegrityKey, Message, MessageClass, MessageType, MessageWrite, MessageWriteExt,
    MessageWriteMutSlice, MessageWriteVec, Method, TransactionId,
};
use stun_types::prelude::*;
use turn_types::attribute::{Data, XorPeerAddress};

/// The SOFTWARE attribute on every response.
const SOFTWARE: &str = concat!("hualu-turn ", env!("CARGO_PKG_VERSION"));

/// Signs a response: with the key of an authenticated request, or not at all.
pub type Signer<'k> = Option<(&'k IntegrityKey, IntegrityAlgorithm)>;

/// What an answer needs of its request, kept when the answer comes later (Connect waits for the TCP
/// connection to the peer).
#[derive(Debug, Clone, Copy)]
pub struct RequestRef {
    method: Method,
    txid: TransactionId,
    fingerprint: bool,
}

impl RequestRef {
    /// The parts of `req` an answer echoes.
    pub fn of(req: &Message<'_>) -> Self {
        Self {
            method: req.method(),
            txid: req.transaction_id(),
            fingerprint: req.has_attribute(Fingerprint::TYPE),
        }
    }
}

/// A response or indication under construction.
pub struct Reply {
    w: MessageWriteVec,
    txid: TransactionId,
    fingerprint: bool,
}

impl Reply {
    /// A success response to `req`.
    pub fn success(req: &Message<'_>) -> Self {
        Self::success_to(RequestRef::of(req))
    }

    /// An error response to `req` with `code`.
    pub fn error(req: &Message<'_>, code: u16) -> Self {
        Self::error_to(RequestRef::of(req), code)
    }

    /// A success response to a request answered later.
    pub fn success_to(req: RequestRef) -> Self {
        Self::start(req, MessageClass::Success)
    }

    /// An error response to a request answered later.
    pub fn error_to(req: RequestRef, code: u16) -> Self {
        let mut r = Self::start(req, MessageClass::Error);
        if let Ok(e) = ErrorCode::builder(code).reason(reason(code)).build() {
            r.add(&e);
        }
        r
    }

    /// An indication of `method` (a fresh transaction id, no fingerprint).
    pub fn indication(method: Method) -> Self {
        let req = RequestRef {
            method,
            txid: TransactionId::generate(),
            fingerprint: false,
        };
        Self::start(req, MessageClass::Indication)
    }

    fn start(req: RequestRef, class: MessageClass) -> Self {
        let mtype = MessageType::from_class_method(class, req.method);
        let w = Message::builder(mtype, req.txid, MessageWriteVec::with_capacity(128));
        let mut r = Self {
            w,
            txid: req.txid,
            fingerprint: req.fingerprint,
        };
        if let Ok(s) = Software::new(SOFTWARE) {
            r.add(&s);
        }
        r
    }

    /// Adds an attribute. The writer grows as needed, so this fails only on a duplicate, which is a bug here.
    pub fn add(&mut self, attr: &dyn AttributeWrite) -> &mut Self {
        if let Err(e) = self.w.add_attribute(attr) {
            tracing::debug!(error = %e, "attribute not added");
        }
        self
    }

    /// XOR-MAPPED-ADDRESS.
    pub fn mapped(&mut self, addr: SocketAddr) -> &mut Self {
        let a = XorMappedAddress::new(addr, self.txid);
        self.add(&a)
    }

    /// REALM, NONCE and PASSWORD-ALGORITHMS: the challenge of a 401 or 438.
    pub fn challenge(&mut self, realm: &str, nonce: &str) -> &mut Self {
        if let (Ok(r), Ok(n)) = (Realm::new(realm), Nonce::new(nonce)) {
            self.add(&r);
            self.add(&n);
            self.add(&PasswordAlgorithms::new(&[
                PasswordAlgorithmValue::MD5,
                PasswordAlgorithmValue::SHA256,
            ]));
        }
        self
    }

    /// ALTERNATE-SERVER.
    pub fn alternate(&mut self, addr: SocketAddr) -> &mut Self {
        self.add(&AlternateServer::new(addr))
    }

    /// UNKNOWN-ATTRIBUTES.
    pub fn unknown(&mut self, types: &[AttributeType]) -> &mut Self {
        self.add(&UnknownAttributes::new(types))
    }

    /// The transaction id, for XOR-encoded attributes.
    pub fn txid(&self) -> TransactionId {
        self.txid
    }

    /// Adds MESSAGE-INTEGRITY (when signed) and FINGERPRINT (when the request had one), and returns the bytes.
    pub fn finish(mut self, signer: Signer<'_>) -> Vec<u8> {
        if let Some((key, algorithm)) = signer {
            if let Err(e) = self.w.add_message_integrity_with_key(key, algorithm) {
                tracing::debug!(error = %e, "integrity not added");
            }
        }
        if self.fingerprint {
            let _ = self.w.add_fingerprint();
        }
        self.w.finish()
    }
}

/// Writes a Data indication (RFC 8656 §11.4) for `payload` from `peer` into `out`; returns its length, or
/// `None` when `out` is too small.
pub fn data_indication(out: &mut [u8], peer: SocketAddr, payload: &[u8]) -> Option<usize> {
    let needed = 20 + 24 + 4 + payload.len() + 3;
    if out.len() < needed {
        return None;
    }
    let mut w = Message::builder_indication(turn_types::message::DATA, MessageWriteMutSlice::new(out));
    let txid = w.transaction_id();
    w.add_attribute(&XorPeerAddress::new(peer, txid)).ok()?;
    w.add_attribute(&Data::new(payload)).ok()?;
    Some(w.finish())
}

/// The reason phrase for each code this server sends.
pub fn reason(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        446 => "Connection Already Exists",
        447 => "Connection Timeout or Failure",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        _ => "Server Error",
    }
}
