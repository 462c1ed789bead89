//! One cancellation signal for the whole process: SIGTERM or SIGINT (or a test's [`Trigger`]) starts a graceful
//! shutdown that every long-lived task observes through a cloned [`Signal`].

use tokio::sync::watch;

/// Fires the shutdown signal. Dropping it without firing does not cancel.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A cloneable view of the shutdown signal.
#[derive(Debug, Clone)]
pub struct Signal(watch::Receiver<bool>);

/// A new, unfired trigger and its signal.
pub fn channel() -> (Trigger, Signal) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Signal(rx))
}

/// A signal fired by SIGTERM ("Kubernetes sends this to start a graceful shutdown") or SIGINT (Ctrl-C).
///
/// Must be called inside a tokio runtime. If the signal handlers cannot be installed, the returned signal only
/// fires on Ctrl-C as seen by tokio's portable handler.
pub fn os_signal() -> Signal {
    let (trigger, signal) = channel();
    tokio::spawn(async move {
        wait_for_os_signal().await;
        tracing::info!("shutdown signal received; draining");
        trigger.fire();
    });
    signal
}

async fn wait_for_os_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot install the SIGTERM handler; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

// === impl Trigger ===

impl Trigger {
    /// Starts the shutdown: every [`Signal::cancelled`] completes.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

// === impl Signal ===

impl Signal {
    /// Shutdown has started.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once shutdown has started (at once if it already has, or if the trigger is gone after firing).
    pub async fn cancelled(&self) {
        let mut rx = self.0.clone();
        // A dropped trigger that never fired must not cancel: wait forever in that case.
        if rx.wait_for(|fired| *fired).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn firing_the_trigger_cancels_every_clone() {
        let (trigger, signal) = channel();
        let clone = signal.clone();
        assert!(!signal.is_cancelled());
        trigger.fire();
        clone.cancelled().await;
        assert!(signal.is_cancelled());
    }
}
