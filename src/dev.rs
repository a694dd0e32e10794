//! Dev mode: credentials generated at start-up and printed, so `hualu up` needs no config.

use hualu_common::config::Config;
use hualu_common::rest;
use hualu_common::token::{self, Claims, Grants};
use rand::distr::{Alphanumeric, SampleString};

/// Fills in a dev TURN user, a REST secret and (with the SFU) an API key when none are configured, and prints
/// how to use them.
pub fn credentials(config: &mut Config, sfu: bool) {
    turn_credentials(config);
    if sfu {
        api_key(config);
    }
}

fn turn_credentials(config: &mut Config) {
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

fn api_key(config: &mut Config) {
    if config.auth.api_keys.is_empty() {
        let secret = Alphanumeric.sample_string(&mut rand::rng(), 40);
        config.auth.api_keys.insert("dev".into(), secret.clone());
        println!("  API key:           dev / {secret}");
        println!("  mint more:         hualu token --set auth.api_keys.dev={secret} --identity bob --room demo");
    }
    let Some((key, secret)) = config.auth.api_keys.iter().next() else {
        return;
    };
    let mint = |user: &str, device: Option<&str>, room: Option<&str>| {
        let mut claims = Claims::new(key, user, hualu_common::clock::unix_now(), 86_400);
        claims.device = device.map(str::to_string);
        if room.is_some() {
            claims.grants = Grants {
                room: room.map(str::to_string),
                publish: true,
                subscribe: true,
                admin: false,
                links: Vec::new(),
            };
        }
        token::mint(secret, &claims).ok()
    };
    let http = config.http.listen;
    if let Some(t) = mint("alice", None, Some("demo")) {
        println!("  room token:        {t} (alice in room demo, valid 24 h)");
        println!("  join:              ws://{http}/rtc?access_token=<token>");
    }
    for user in ["alice", "bob"] {
        if let Some(t) = mint(user, Some("web"), None) {
            println!("  call token:        {t} ({user} on device web, valid 24 h)");
        }
    }
    println!("  calls:             ws://{http}/ws?access_token=<call token>");
    println!("  more call tokens:  http://{http}/dev/token?user=carol&device=web");
}
