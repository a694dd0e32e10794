//! SDP fragments (RFC 8840, `application/trickle-ice-sdpfrag`) for WHIP and WHEP PATCH requests.
//!
//! str0m parses whole offers and answers, not fragments, and restarts ICE only from a whole offer. So an ICE
//! restart by PATCH is turned into a whole offer here: the session's original offer with the fragment's new
//! credentials and without its old candidates. The answer's credentials and candidates go back as a fragment.
//! These are line edits on text the SDP parser has already accepted once, which is why they are written here
//! rather than taken from a library: no well-kept crate handles RFC 8840 fragments.

/// An ICE username fragment and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// `a=ice-ufrag`.
    pub ufrag: String,
    /// `a=ice-pwd`.
    pub pwd: String,
}

/// The first value of attribute `name` (`a=<name>:<value>`) in an SDP or fragment.
fn attribute<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines().find_map(|l| {
        l.trim()
            .strip_prefix("a=")
            .and_then(|a| a.strip_prefix(name))
            .and_then(|a| a.strip_prefix(':'))
    })
}

/// The first `a=ice-ufrag` of an SDP or fragment.
pub fn ice_ufrag(sdp: &str) -> Option<String> {
    attribute(sdp, "ice-ufrag").map(|s| s.trim().to_string())
}

/// The credentials of an SDP or fragment, if it names both.
pub fn ice_credentials(sdp: &str) -> Option<IceCredentials> {
    let ufrag = ice_ufrag(sdp)?;
    let pwd = attribute(sdp, "ice-pwd")?.trim().to_string();
    (!ufrag.is_empty() && !pwd.is_empty()).then_some(IceCredentials { ufrag, pwd })
}

/// The `a=candidate:` attributes of a fragment, without the `a=`.
pub fn candidates(frag: &str) -> impl Iterator<Item = &str> {
    frag.lines()
        .filter_map(|l| l.trim().strip_prefix("a="))
        .filter(|a| a.starts_with("candidate:"))
}

/// `offer` with every ICE credential replaced by `creds`, and its candidates removed (the fragment's own
/// candidates are trickled after it).
pub fn restart_offer(offer: &str, creds: &IceCredentials) -> String {
    let mut out = String::with_capacity(offer.len());
    for line in offer.lines().map(str::trim_end) {
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        if line.starts_with("a=ice-ufrag:") {
            out.push_str("a=ice-ufrag:");
            out.push_str(&creds.ufrag);
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str("a=ice-pwd:");
            out.push_str(&creds.pwd);
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// The fragment that answers an ICE restart: the answer's ICE options, credentials, and each media section's
/// mid and candidates.
pub fn answer_fragment(answer: &str) -> String {
    let mut out = String::new();
    let mut push = |line: &str| {
        out.push_str(line);
        out.push_str("\r\n");
    };
    for name in ["ice-lite", "ice-options"] {
        if let Some(line) = answer
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("a={name}")))
        {
            push(line);
        }
    }
    if let Some(c) = ice_credentials(answer) {
        push(&format!("a=ice-ufrag:{}", c.ufrag));
        push(&format!("a=ice-pwd:{}", c.pwd));
    }
    for line in answer.lines().map(str::trim) {
        let keep = line.starts_with("m=")
            || line.starts_with("a=mid:")
            || line.starts_with("a=candidate:")
            || line == "a=end-of-candidates";
        if keep {
            push(line);
        }
    }
    out
}

/// An entity tag for a session whose server ICE ufrag is `ufrag` (RFC 9725 section 4.3.1).
pub fn etag(ufrag: &str) -> String {
    format!("\"{ufrag}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:old1\r\n\
        a=ice-pwd:oldpasswordoldpassword\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
        a=end-of-candidates\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn a_restart_offer_takes_the_new_credentials_and_drops_old_candidates() {
        let creds = IceCredentials {
            ufrag: "new2".into(),
            pwd: "newpasswordnewpassword".into(),
        };
        let offer = restart_offer(OFFER, &creds);
        assert_eq!(ice_credentials(&offer), Some(creds));
        assert!(!offer.contains("candidate"), "{offer}");
        assert!(offer.contains("a=rtpmap:111 opus/48000/2\r\n"), "{offer}");
        assert!(offer.contains("a=mid:0\r\n"), "{offer}");
    }

    #[test]
    fn a_fragment_names_credentials_and_candidates() {
        let frag = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\n\
            a=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host\r\n";
        let creds = ice_credentials(frag).expect("credentials");
        assert_eq!(creds.ufrag, "EsAw");
        assert_eq!(creds.pwd, "P2uYro0UCOQ4zxjKXaWCBui1");
        let c: Vec<_> = candidates(frag).collect();
        assert_eq!(c, ["candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host"]);
        assert_eq!(ice_credentials("a=ice-ufrag:x\r\n"), None, "a password is needed too");
    }

    #[test]
    fn the_answer_fragment_keeps_only_ice_lines() {
        let answer = "v=0\r\na=ice-lite\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:srv1\r\n\
            a=ice-pwd:serverpasswordserverpw\r\na=rtpmap:111 opus/48000/2\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 7000 typ host\r\n";
        let frag = answer_fragment(answer);
        assert_eq!(
            frag,
            "a=ice-lite\r\na=ice-ufrag:srv1\r\na=ice-pwd:serverpasswordserverpw\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 7000 typ host\r\n"
        );
    }
}
