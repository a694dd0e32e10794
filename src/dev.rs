//! Dev mode: credentials generated at start-up and printed, so `hualu up` needs no config.

use hualu_common::config::Config;
use hualu_common::rest;
use rand::distr::{Alphanumeric, SampleString};

/// Fills in a dev user and a REST secret when none are configured, and prints how to use them.
pub fn credentials(config: &mut Config) {
    let t = &mut config.turn;
    if t.has_credentials() {
        return;
    }
    let mut rng = rand::rng();
    let password = Alphanumeric.sample_string(&mut rng, 16);
    let secret = Alphanumeric.sample_string(&mut rng, 32);
    t.users.insert("dev".into(), password.clone());
    t.rest_secrets.push(secret.clone());
    let example = rest::mint(&secret, "alice", hualu_common::clock::unix_now(), 86_400);
    let ip = t.listen_ips.first().map(ToString::to_string).unwrap_or_default();
    println!("hualu dev mode: generated credentials (they change at every start)");
    println!("  TURN realm:        {}", t.realm);
    println!("  TURN static user:  dev / {password}");
    println!("  TURN REST secret:  {secret}");
    println!(
        "  REST credential:   {} / {} (valid 24 h)",
        example.username, example.password
    );
    println!(
        "  try: turnutils_uclient -u dev -w {password} -p {} -e {ip} -r 3480 {ip}",
        t.udp_port
    );
}
