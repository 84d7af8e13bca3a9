//! The TLS accept loop and the hygiene of each connection: a cap on open connections with a small reserve
//! for health probes and certificate-bearing clients (the kube-apiserver's front proxy), handshake,
//! header-read and idle timeouts, HTTP/2 keep-alive pings, and draining at shutdown. The limits are those of
//! kube-apiserver's `http.Server` (90 s idle, HTTP/2 GOAWAY when idle), plus the cap Go leaves to the file
//! limit.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::auth::PeerCertificates;

/// Limits on open connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once. Beyond it a connection takes a reserve slot or is closed at once.
    pub max_connections: usize,
    /// Slots kept for when the cap is reached: a connection in one serves health probes, and everything
    /// else only if the client presented a certificate (the front proxy always does), and is closed after
    /// [`RESERVED_IDLE_TIMEOUT`] without a request.
    pub reserve: usize,
    /// A connection without a request in flight for this long is closed (HTTP/2 with GOAWAY).
    pub idle_timeout: Duration,
}

/// Connections served at once when no file limit says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Reserve slots.
pub const DEFAULT_RESERVE: usize = 32;
/// kube-apiserver's idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The idle timeout of a reserve connection.
pub const RESERVED_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// File descriptors kept for everything but served connections: the kube API, the backend, files.
const FILES_FOR_THE_REST: u64 = 256;

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            reserve: DEFAULT_RESERVE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl ConnectionLimits {
    /// `max_connections` (0: automatic), lowered so that served connections, the reserve and
    /// [`FILES_FOR_THE_REST`] fit in `file_limit` open files: running out of files would stop the
    /// adapter from answering even its probes.
    pub fn within_file_limit(
        max_connections: usize,
        file_limit: u64,
        idle_timeout: Duration,
    ) -> Self {
        let wanted = if max_connections == 0 {
            DEFAULT_MAX_CONNECTIONS
        } else {
            max_connections
        };
        let room = file_limit.saturating_sub(FILES_FOR_THE_REST + DEFAULT_RESERVE as u64);
        Self {
            max_connections: wanted
                .min(usize::try_from(room).unwrap_or(usize::MAX))
                .max(1),
            reserve: DEFAULT_RESERVE,
            idle_timeout,
        }
    }
}

/// Raises the soft open-file limit to the hard limit, as Go programs (kube-apiserver among them) do at
/// start, and returns the limit now in force.
pub fn raise_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(%error, "cannot raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Marks a request that arrived on a reserve connection without a client certificate: only probes are
/// served on it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReservedConnection;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (HTTP/1.1).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings on a connection that has been quiet this long, and how long the answer may take.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a connection told to close (idle, or shutdown) may take to finish its requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

/// Held while a request is served; dropped when it ends or is cancelled.
struct Busy(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        })
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
            let quiet = last.elapsed();
            if self.in_flight.load(Ordering::SeqCst) == 0 && quiet >= timeout {
                return;
            }
            tokio::time::sleep(timeout.saturating_sub(quiet).max(timeout / 4)).await;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `app` over TLS on `listener` (HTTP/1.1 and HTTP/2 by ALPN) until `shutdown` completes, then drains.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use hyper_util::server::conn::auto;

    // Without h2 in ALPN (`--disable-http2`), a client speaking HTTP/2 anyway is not served either.
    let http2 = tls.alpn_protocols.iter().any(|p| p == b"h2");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_headers(100)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(250)
        .max_header_list_size(64 * 1024)
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(Some(1024));
    let builder = Arc::new(if http2 { builder } else { builder.http1_only() });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let reserve = Arc::new(Semaphore::new(limits.reserve));
    let (stop, stopping) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small responses go out at once: with Nagle's algorithm, a response written as a HEADERS and a DATA
        // frame waits for the client's delayed ACK (40 ms on Linux) before its second half leaves. Go's
        // servers, kube-apiserver included, set the same.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let (permit, reserved) = match slots.clone().try_acquire_owned() {
            Ok(permit) => (permit, false),
            Err(_) => match reserve.clone().try_acquire_owned() {
                Ok(permit) => (permit, true),
                Err(_) => {
                    // Closed at once: the kernel's backlog stays free for the next probe.
                    tracing::debug!(%peer, "connection refused: every connection slot is taken");
                    continue;
                }
            },
        };
        let connection = Connection {
            acceptor: acceptor.clone(),
            app: app.clone(),
            builder: builder.clone(),
            stopping: stopping.clone(),
            idle_timeout: if reserved {
                RESERVED_IDLE_TIMEOUT.min(limits.idle_timeout)
            } else {
                limits.idle_timeout
            },
            reserved,
        };
        tokio::spawn(connection.serve(tcp, peer, permit));
    }
    drop(listener);
    let _ = stop.send(());
    let drained = async {
        let _ = slots.acquire_many(limits.max_connections as u32).await;
        let _ = reserve.acquire_many(limits.reserve as u32).await;
    };
    tokio::select! {
        () = drained => tracing::info!("all connections drained"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing"),
    }
}

/// One accepted connection and what it is served with.
struct Connection {
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    builder: Arc<hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>>,
    stopping: watch::Receiver<()>,
    idle_timeout: Duration,
    reserved: bool,
}

impl Connection {
    async fn serve(
        mut self,
        tcp: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        _slot: OwnedSemaphorePermit,
    ) {
        use hyper_util::rt::TokioIo;
        use hyper_util::service::TowerToHyperService;
        use tower::ServiceExt;

        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        };
        // Verified per request against the trust of the moment, so CA rotation needs no restart.
        let certificates = stream.get_ref().1.peer_certificates().map(|chain| {
            Arc::new(PeerCertificates::new(
                chain.iter().map(|c| c.clone().into_owned()).collect(),
            ))
        });
        let probes_only = self.reserved && certificates.is_none();
        let activity = Activity::new();
        let app = self.app.clone();
        let tracked = activity.clone();
        let service =
            TowerToHyperService::new(tower::service_fn(move |mut request: Request<_>| {
                let busy = tracked.begin();
                if let Some(certificates) = &certificates {
                    request.extensions_mut().insert(certificates.clone());
                }
                if probes_only {
                    request.extensions_mut().insert(ReservedConnection);
                }
                let app = app.clone();
                async move {
                    let response = app.oneshot(request.map(axum::body::Body::new)).await;
                    drop(busy);
                    response
                }
            }));
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let mut closing: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                () = activity.idle_for(self.idle_timeout), if closing.is_none() => {
                    tracing::debug!(%peer, "closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                }
                _ = self.stopping.changed(), if closing.is_none() => {
                    connection.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                }
                () = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)), if closing.is_some() => {
                    tracing::debug!(%peer, "connection did not finish closing; dropped");
                    return;
                }
            }
        }
    }
}
