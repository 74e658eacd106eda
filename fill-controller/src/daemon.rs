//! `fill-controller daemon`: every night, when the first site's fill window opens, gather the
//! inputs, plan, save the plan and execute it (each appliance's worker waits for its own
//! site's window and stops when it closes); then sleep until every window of that night has
//! closed, so one night is planned once. Serves `/metrics` (`fill_*`) and `/healthz` on
//! `daemon.metrics-listen`; tells systemd READY, WATCHDOG (half of `WATCHDOG_USEC`) and
//! STOPPING. SIGTERM/SIGINT stop it after the objects in flight.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::error::FillError;
use crate::metrics::Metrics;
use crate::nightly;
use crate::window::{SiteWindow, WindowState};

/// What the daemon does next, given every site's window state at `now` (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A window is open: plan and run now.
    RunNow,
    /// Nothing is open: sleep this long (until the first window opens).
    Sleep(Duration),
    /// No site has a window.
    Idle,
}

/// The daemon's decision (pure, fixed `now` in tests).
pub fn next(windows: &[SiteWindow], now: Timestamp) -> Next {
    let mut soonest: Option<Timestamp> = None;
    for w in windows {
        match w.state(now) {
            Some(WindowState::Open { .. }) => return Next::RunNow,
            Some(WindowState::Closed { opens, .. }) => {
                soonest = Some(soonest.map_or(opens, |s| s.min(opens)));
            }
            None => {}
        }
    }
    match soonest {
        Some(t) => Next::Sleep(Duration::from_secs(
            u64::try_from(t.as_second() - now.as_second())
                .unwrap_or(0)
                .max(1),
        )),
        None => Next::Idle,
    }
}

/// How long until every window open at `now` has closed (pure); zero if none is open.
pub fn until_all_closed(windows: &[SiteWindow], now: Timestamp) -> Duration {
    let last = windows
        .iter()
        .filter_map(|w| match w.state(now) {
            Some(WindowState::Open { closes, .. }) => Some(closes),
            _ => None,
        })
        .max();
    last.map_or(Duration::ZERO, |t| {
        Duration::from_secs(u64::try_from(t.as_second() - now.as_second()).unwrap_or(0))
    })
}

async fn serve_metrics(listener: tokio::net::TcpListener, registry: Arc<Registry>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move {
                    let (status, ctype, body) = match req.uri().path() {
                        "/metrics" => {
                            let mut out = String::new();
                            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
                            (
                                200,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                out,
                            )
                        }
                        "/healthz" => (200, "text/plain", "ok\n".to_string()),
                        _ => (404, "text/plain", "not found\n".to_string()),
                    };
                    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = hyper::StatusCode::from_u16(status)
                        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(ctype),
                    );
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn notify(state: sd_notify::NotifyState<'_>) {
    let _ = sd_notify::notify(&[state]);
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), FillError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let registry = Arc::new(registry);
    let listener = tokio::net::TcpListener::bind(cfg.daemon.metrics_listen)
        .await
        .map_err(|source| FillError::Io {
            what: format!(
                "listening on {} (daemon.metrics-listen)",
                cfg.daemon.metrics_listen
            ),
            source,
        })?;
    tokio::spawn(serve_metrics(listener, registry));
    let mut term = signal(SignalKind::terminate()).map_err(|source| FillError::Io {
        what: "installing signal handlers".into(),
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| FillError::Io {
        what: "installing signal handlers".into(),
        source,
    })?;
    if let Some(every) = sd_notify::watchdog_enabled() {
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every / 2);
            loop {
                t.tick().await;
                notify(sd_notify::NotifyState::Watchdog);
            }
        });
    }
    notify(sd_notify::NotifyState::Ready);
    tracing::info!(metrics = %cfg.daemon.metrics_listen, "fill-controller daemon ready");
    let shutdown = async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    tokio::pin!(shutdown);
    loop {
        // Only the sites file decides when to wake; inventories are fetched when the night
        // starts.
        let sites = nightly::load_sites(&cfg);
        let windows: Vec<SiteWindow> = match &sites {
            Ok(s) => s
                .sites
                .iter()
                .filter_map(|s| SiteWindow::of_site(s).ok())
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the inputs; retrying in a minute");
                Vec::new()
            }
        };
        let wait = match (sites.is_ok(), next(&windows, Timestamp::now())) {
            (false, _) | (true, Next::Idle) => Some(Duration::from_secs(60)),
            (true, Next::Sleep(d)) => Some(d.min(Duration::from_secs(3600))),
            (true, Next::RunNow) => None,
        };
        if let Some(d) = wait {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(d) => continue,
            }
        }
        let night = async {
            let loaded = nightly::gather(&cfg).await?;
            let saved =
                nightly::SavedPlan::new(crate::plan::plan(&loaded.input), crate::now_unix());
            nightly::write_atomic(
                &nightly::plan_path(&cfg),
                &serde_json::to_vec(&saved).unwrap_or_default(),
            )?;
            tracing::info!(plan = %saved.id, fills = saved.plan.fills.len(), deletes = saved.plan.deletes.len(), "tonight's plan");
            nightly::execute(&cfg, &loaded, &saved, false, metrics.clone()).await
        };
        tokio::select! {
            _ = &mut shutdown => {
                // Ask the run to stop after the objects in flight, as `cancel` does.
                let _ = std::fs::write(nightly::cancel_path(&cfg), b"daemon stopping\n");
                break;
            }
            r = night => match r {
                Ok(report) => {
                    for (id, r) in &report {
                        tracing::info!(appliance = %id, bytes = r.bytes, filled = r.filled.len(), failed = r.failed.len(), stop = ?r.stop, "night done");
                    }
                }
                Err(e) => tracing::error!(error = %e, "tonight's fill failed"),
            }
        }
        let rest = until_all_closed(&windows, Timestamp::now()).max(Duration::from_secs(60));
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(rest) => {}
        }
    }
    notify(sd_notify::NotifyState::Stopping);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn runs_inside_a_window_and_sleeps_until_the_first_opening_otherwise() {
        let a = SiteWindow::new("a", "UTC", "02:00-14:00").unwrap();
        let b = SiteWindow::new("b", "Europe/Berlin", "01:00-07:00").unwrap();
        // 23:00 UTC: Berlin's 01:00 opens at 00:00 UTC, UTC's at 02:00.
        assert_eq!(
            next(&[a.clone(), b.clone()], ts("2026-11-22T23:00:00Z")),
            Next::Sleep(Duration::from_secs(3600))
        );
        assert_eq!(
            next(&[a.clone(), b.clone()], ts("2026-11-23T00:30:00Z")),
            Next::RunNow
        );
        assert_eq!(next(&[], ts("2026-11-23T00:30:00Z")), Next::Idle);
        // Both open at 03:00 UTC: the night ends when the last one (UTC, 14:00) closes.
        assert_eq!(
            until_all_closed(&[a.clone(), b.clone()], ts("2026-11-23T03:00:00Z")),
            Duration::from_secs(11 * 3600)
        );
        assert_eq!(
            until_all_closed(&[a, b], ts("2026-11-23T15:00:00Z")),
            Duration::ZERO
        );
    }
}
