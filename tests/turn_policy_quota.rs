//! Peer policy and quotas: loopback peers are denied unless `turn.allow_peers` lists them (403 on ChannelBind and
//! on CreatePermission), and allocations past `turn.quota.max_allocations_per_user` or `turn.quota.max_allocations`
//! get 486. Each refusal comes with a control showing the same server serves what the policy allows.
//!
//! Allocation counting: a uclient client with `-c` makes exactly two allocations (its probe and its RTP one), so
//! `-c -m 1` fits a quota of 2 exactly and `-c -m 2` needs 4.

mod common;

use common::{assert_refused_with, assert_relayed_without_loss, Server, ServerSpec, Uclient};

fn loopback_denied() -> Server {
    Server::start(&ServerSpec {
        allow_loopback_peers: false,
        ..ServerSpec::default()
    })
}

#[test]
fn loopback_peer_without_allow_peers_gets_403_on_channel_bind() {
    let server = loopback_denied();
    let out = Uclient::new(&server).run();
    assert_refused_with(&server, &out, 403, "channel bind: error 403");
    server.wait_counter("hualu_turn_denied_peers_total", &[], 1.0);
}

#[test]
fn loopback_peer_without_allow_peers_gets_403_on_create_permission() {
    let server = loopback_denied();
    let out = Uclient::new(&server).send_indications().run();
    assert_refused_with(&server, &out, 403, "create permission error 403");
    server.wait_counter("hualu_turn_denied_peers_total", &[], 1.0);
}

#[test]
fn allocations_past_the_per_user_quota_get_486() {
    let spec = ServerSpec {
        max_allocations_per_user: Some(2),
        ..ServerSpec::default().user("bob", "bob-secret-pw")
    };
    let server = Server::start(&spec);
    // The control: alice's two allocations fit her quota exactly.
    assert_relayed_without_loss(&server, &Uclient::new(&server).no_rtcp().messages(10));

    let out = Uclient::new(&server)
        .no_rtcp()
        .clients(2)
        .user("bob", "bob-secret-pw")
        .run();
    assert_refused_with(&server, &out, 486, "error 486");
    assert_quota_counted(&server);
}

#[test]
fn allocations_past_the_server_quota_get_486() {
    let spec = ServerSpec {
        max_allocations: Some(2),
        ..ServerSpec::default()
    };
    let server = Server::start(&spec);
    assert_relayed_without_loss(&server, &Uclient::new(&server).no_rtcp().messages(10));

    let out = Uclient::new(&server).no_rtcp().clients(2).run();
    assert_refused_with(&server, &out, 486, "error 486");
    assert_quota_counted(&server);
}

fn assert_quota_counted(server: &Server) {
    server.wait_counter("hualu_turn_quota_rejections_total", &[], 1.0);
    server.wait_counter("hualu_turn_allocations_created_total", &[("result", "quota")], 1.0);
}
