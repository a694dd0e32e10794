//! The HTTP port every service exposes: `/metrics` (Prometheus text format), `/healthz` (the process is up) and
//! `/readyz` (it takes new work; 503 while draining).
//!
//! It runs on its own thread with a small tokio runtime, away from the media and relay event loops.

use axum::{extract::State, http::StatusCode, routing::get, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Readiness shared between the service and its HTTP endpoint.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    /// Marks the process as ready: its listeners are bound.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200: ready and not draining.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.is_draining()
    }

    /// Marks the process as draining: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the process is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Errors starting the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address could not be bound.
    #[error("metrics.listen: cannot bind {addr}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The public API address could not be bound.
    #[error("http.listen: cannot bind {addr}")]
    BindApp {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime could not start.
    #[error("cannot start the metrics thread: {0}")]
    Runtime(std::io::Error),
}

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then ours simply sees nothing.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Binds `addr` and serves the endpoints on a background thread. Returns the bound address (useful with port 0).
pub fn serve(addr: SocketAddr, health: Arc<Health>) -> Result<SocketAddr, HttpError> {
    let handle = recorder();
    let std_listener = std::net::TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
    std_listener
        .set_nonblocking(true)
        .map_err(|source| HttpError::Bind { addr, source })?;
    let bound = std_listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HttpError::Runtime)?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || runtime.block_on(run(std_listener, handle, health)))
        .map_err(HttpError::Runtime)?;
    Ok(bound)
}

/// Binds `addr` and serves the public API (the SFU's `/rtc`, call control's `/ws`) on its own thread. `build`
/// makes the routes inside that thread's tokio runtime, so it may start tasks; its error is returned as is.
/// Returns the bound address.
pub fn serve_app<E>(addr: SocketAddr, build: impl FnOnce() -> Result<Router, E>) -> Result<SocketAddr, ServeError<E>> {
    let bind = |source| ServeError::Http(HttpError::BindApp { addr, source });
    let std_listener = std::net::TcpListener::bind(addr).map_err(bind)?;
    std_listener.set_nonblocking(true).map_err(bind)?;
    let bound = std_listener.local_addr().map_err(bind)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Http(HttpError::Runtime(e)))?;
    let app = {
        let _inside = runtime.enter();
        build().map_err(ServeError::App)?
    };
    std::thread::Builder::new()
        .name("http-api".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                    tracing::error!("the API listener could not join the runtime");
                    return;
                };
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "the API endpoint stopped");
                }
            })
        })
        .map_err(|e| ServeError::Http(HttpError::Runtime(e)))?;
    Ok(bound)
}

/// Why the public API did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError<E> {
    /// Binding or the runtime failed.
    #[error(transparent)]
    Http(HttpError),
    /// Building the routes failed.
    #[error("{0}")]
    App(E),
}

async fn run(listener: std::net::TcpListener, handle: PrometheusHandle, health: Arc<Health>) {
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new()
        .route(
            "/metrics",
            get(|State((h, _)): State<AppState>| async move { h.render() }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state((handle, health));
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        tracing::error!("metrics listener could not join the runtime");
        return;
    };
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}

type AppState = (PrometheusHandle, Arc<Health>);

async fn ready(State((_, health)): State<AppState>) -> (StatusCode, &'static str) {
    if health.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}
