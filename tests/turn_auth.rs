//! Long-term credentials: static users and TURN REST credentials (`expiry:user` with password
//! base64(HMAC-SHA1(secret, username)), which uclient derives itself from `-W secret`) allocate and relay; a wrong
//! password, an unknown user or a wrong REST secret gets 401 every time and never an allocation.

mod common;

use common::{assert_refused_credentials, assert_relayed_without_loss, Server, ServerSpec, Uclient, PASSWORD, USER};

const SECRET: &str = "first-rest-secret-0123456789";
const OLD_SECRET: &str = "second-rest-secret-9876543210";

fn rest_server() -> Server {
    Server::start(&ServerSpec::default().rest_secret(SECRET).rest_secret(OLD_SECRET))
}

#[test]
fn static_user_relays_and_wrong_password_gets_401() {
    let server = Server::start(&ServerSpec::default());
    // The control: the right password works on this very server.
    assert_relayed_without_loss(&server, &Uclient::new(&server).clients(2).user(USER, PASSWORD));

    let wrong = Uclient::new(&server).verbose().user(USER, "not-the-password").run();
    assert_refused_credentials(&server, &wrong);
}

#[test]
fn unknown_user_gets_401() {
    let server = Server::start(&ServerSpec::default());
    let out = Uclient::new(&server).verbose().user("mallory", PASSWORD).run();
    assert_refused_credentials(&server, &out);
}

#[test]
fn wrong_password_over_tcp_gets_401() {
    let server = Server::start(&ServerSpec::default());
    let out = Uclient::new(&server)
        .tcp()
        .verbose()
        .user(USER, "not-the-password")
        .run();
    assert_refused_credentials(&server, &out);
}

#[test]
fn rest_credentials_from_every_secret_relay() {
    let server = rest_server();
    // The first secret mints, every listed one verifies (rotation).
    for secret in [SECRET, OLD_SECRET] {
        assert_relayed_without_loss(&server, &Uclient::new(&server).clients(2).rest("carol", secret));
    }
}

/// (coturn cannot do this: with REST secrets it ignores static users, so this fails in `HUALU_E2E_SERVER=coturn`.)
#[test]
fn static_users_work_next_to_rest_secrets() {
    let server = rest_server();
    assert_relayed_without_loss(&server, &Uclient::new(&server).clients(2).user(USER, PASSWORD));
}

#[test]
fn rest_credentials_from_an_unknown_secret_get_401() {
    let server = rest_server();
    let out = Uclient::new(&server)
        .verbose()
        .rest("carol", "some-other-secret-0123456789")
        .run();
    assert_refused_credentials(&server, &out);
}
