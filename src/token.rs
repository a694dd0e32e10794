//! `hualu token`: an access token for development and tests, signed with a configured API key.

use crate::cli::TokenArgs;
use anyhow::{bail, Context as _};
use hualu_common::config::Config;
use hualu_common::token::{self, Claims, Grants};

/// The token `args` asks for, signed with the chosen key of `config`.
pub fn mint(config: &Config, args: &TokenArgs) -> anyhow::Result<String> {
    let keys = &config.auth.api_keys;
    let (key, secret) = match &args.key {
        Some(k) => match keys.get_key_value(k) {
            Some(pair) => pair,
            None => bail!(
                "API key {k:?} is not in auth.api_keys (configured: {:?})",
                keys.keys().collect::<Vec<_>>()
            ),
        },
        None => match keys.len() {
            0 => bail!(
                "no API key configured: add one under [auth.api_keys] in the config, or pass \
                 --set auth.api_keys.NAME=SECRET (a secret of at least {} characters)",
                token::MIN_SECRET_LEN
            ),
            1 => keys.iter().next().context("one key")?,
            _ => bail!("several API keys are configured; choose one with --key"),
        },
    };
    let ttl = args.ttl.unwrap_or(config.auth.token_ttl_secs);
    let mut claims = Claims::new(key, &args.identity, hualu_common::clock::unix_now(), ttl);
    claims.device = args.device.clone();
    claims.grants = Grants {
        room: args.room.clone(),
        publish: !args.no_publish,
        subscribe: !args.no_subscribe,
        admin: args.admin,
        links: Vec::new(),
    };
    Ok(token::mint(secret, &claims)?)
}
