//! How busy the runtime that serves the endpoints is: identity analytics yield when it is
//! saturated ([`SATURATED`]), since what they would cost then is requests served.

use std::time::{Duration, Instant};

use tokio::runtime::RuntimeMetrics;

/// The share of the serving runtime's time its workers spent busy, over the analytics worker's
/// last window, from which the node counts as saturated: identities served meanwhile are
/// dropped and counted (the default; `flaglog serve --analytics-shed-above`).
pub const SATURATED: f64 = 0.9;

/// The serving runtime's busy share between two readings. A worker's busy time is counted
/// when it parks, so a reading lags by what a worker has been doing since it last parked.
pub(crate) struct BusyMeter {
    metrics: RuntimeMetrics,
    at: Instant,
    busy: Duration,
}

impl BusyMeter {
    /// A meter of the runtime the caller runs on.
    pub(crate) fn of_current_runtime() -> Self {
        let metrics = tokio::runtime::Handle::current().metrics();
        let busy = total_busy(&metrics);
        BusyMeter {
            metrics,
            at: Instant::now(),
            busy,
        }
    }

    /// The share of the time since the last reading its workers were busy (0 to 1).
    pub(crate) fn read(&mut self) -> f64 {
        let (now, busy) = (Instant::now(), total_busy(&self.metrics));
        let elapsed = now.duration_since(self.at).as_secs_f64() * self.metrics.num_workers() as f64;
        let share = (busy.saturating_sub(self.busy).as_secs_f64() / elapsed.max(1e-9)).min(1.0);
        (self.at, self.busy) = (now, busy);
        share
    }
}

fn total_busy(metrics: &RuntimeMetrics) -> Duration {
    (0..metrics.num_workers())
        .map(|worker| metrics.worker_total_busy_duration(worker))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Workers kept busy read as saturated; the same workers parked read as nearly idle.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn busy_workers_read_as_saturated_and_parked_ones_as_idle() {
        let mut meter = BusyMeter::of_current_runtime();
        let spin = |length: Duration| {
            tokio::spawn(async move {
                let until = Instant::now() + length;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            })
        };
        let (a, b) = (
            spin(Duration::from_millis(600)),
            spin(Duration::from_millis(600)),
        );
        let (a, b) = tokio::join!(a, b);
        a.unwrap();
        b.unwrap();
        // A worker's busy time is counted when it parks.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let busy = meter.read();
        assert!(busy > SATURATED, "spinning on both workers: {busy}");

        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = meter.read();
        assert!(idle < 0.5, "parked: {idle}");
    }
}
