//! The browser SDK at `/sdk/*` and, in dev mode, the demo app at `/`. Both are compiled into the binary, so
//! `hualu up` serves them with nothing else on disk.

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const JS: &str = "text/javascript; charset=utf-8";

/// One embedded file: its URL path, content type and text.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const SDK: &[Asset] = &[
    Asset {
        path: "/sdk/hualu.js",
        content_type: JS,
        body: include_str!("../web/sdk/hualu.js"),
    },
    Asset {
        path: "/sdk/room.js",
        content_type: JS,
        body: include_str!("../web/sdk/room.js"),
    },
    Asset {
        path: "/sdk/quality.js",
        content_type: JS,
        body: include_str!("../web/sdk/quality.js"),
    },
    Asset {
        path: "/sdk/hualu.d.ts",
        content_type: "text/plain; charset=utf-8",
        body: include_str!("../web/sdk/hualu.d.ts"),
    },
];

const APP: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../web/app/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: JS,
        body: include_str!("../web/app/app.js"),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/app/app.css"),
    },
];

/// The SDK's routes, and the demo app's when `app` is set (dev mode only: it signs in by name).
pub fn router(app: bool) -> Router {
    let assets = SDK.iter().chain(APP.iter().filter(|_| app));
    assets.fold(Router::new(), |r, a| {
        let (content_type, body) = (a.content_type, a.body);
        r.route(
            a.path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                    ],
                    body,
                )
                    .into_response()
            }),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_module_an_asset_imports_is_served() {
        // A relative import the router does not serve would break the SDK in the browser only.
        for a in SDK.iter().chain(APP) {
            for line in a
                .body
                .lines()
                .filter(|l| l.trim_start().starts_with("import ") || l.starts_with("export {"))
            {
                let Some(start) = line.find('\'') else { continue };
                let spec = &line[start + 1..line[start + 1..].find('\'').map_or(line.len(), |e| start + 1 + e)];
                let path = match spec.strip_prefix("./") {
                    Some(rest) => format!("{}/{rest}", &a.path[..a.path.rfind('/').unwrap_or(0)]),
                    None => spec.to_string(),
                };
                assert!(
                    SDK.iter().any(|s| s.path == path),
                    "{} imports {spec}, which is not served",
                    a.path
                );
            }
        }
    }
}
