//! systemd service notifications (`Type=notify`, `sd_notify(3)`) through the `sd-notify`
//! crate: `READY=1` once the index is loaded and the listeners are bound, `RELOADING=1` …
//! `READY=1` around a SIGHUP reload, `STOPPING=1` when the drain starts, and `WATCHDOG=1`
//! at half the `WATCHDOG_USEC` interval systemd sets for `WatchdogSec=`, from a task on the
//! runtime (so a wedged runtime stops the pings and systemd restarts the service).
//!
//! Without `NOTIFY_SOCKET` in the environment (not started by systemd) every call is a
//! no-op. A failure to notify is logged, never fatal. It does not pass file descriptors
//! (no socket activation or fd store).

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn send(what: &str, states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, what, "systemd notification failed");
    }
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    send("ready", &[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` (a `READY=1` follows when the reload is done).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(t) => send("reloading", &[NotifyState::Reloading, t]),
        Err(_) => send("reloading", &[NotifyState::Reloading]),
    }
}

/// `STOPPING=1` with a status line.
pub fn stopping(status: &str) {
    send(
        "stopping",
        &[NotifyState::Stopping, NotifyState::Status(status)],
    );
}

/// The interval at which to send `WATCHDOG=1`: half of what systemd asked for, or `None`
/// when no watchdog is set (`WATCHDOG_USEC` absent, or meant for another process).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

/// Starts the watchdog pings on the current runtime when systemd asked for them; they stop
/// at `cancel`.
pub fn start_watchdog(cancel: CancellationToken) {
    let Some(every) = watchdog_interval() else {
        return;
    };
    tracing::info!(?every, "systemd watchdog");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => send("watchdog", &[NotifyState::Watchdog]),
            }
        }
    });
}
