//! The thread identity analytics send from: a single-threaded runtime on a thread that the
//! operating system runs only when a CPU would otherwise be idle (Linux's `SCHED_IDLE`), so
//! that building and sending vendors' requests never takes a CPU from the SDK endpoints, and
//! is not in the serving runtime's busy share ([`super::load`]). When the CPUs are busy, the
//! senders fall behind, their queues fill, and what does not fit is dropped and counted:
//! analytics yield, serving does not.
//!
//! Elsewhere than Linux the thread runs at normal priority.

use std::future::Future;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// A runtime on its own idle-priority thread; dropping it (or [`IdleRuntime::stop`]) ends the
/// thread, and with it every task spawned on it.
pub(crate) struct IdleRuntime {
    handle: Handle,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
    /// Whether the thread got idle priority (false where the system refused it).
    pub(crate) idle: bool,
}

impl IdleRuntime {
    /// Starts the thread, named `name`.
    pub(crate) async fn start(name: &str) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Other(format!("starting {name}'s runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let (started, priority) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = started.send(lower_priority());
                runtime.block_on(stopped.cancelled());
            })
            .map_err(|e| Error::Other(format!("starting {name}'s thread: {e}")))?;
        let idle = priority.await.unwrap_or(false);
        Ok(IdleRuntime {
            handle,
            stop,
            thread: Some(thread),
            idle,
        })
    }

    /// Runs `task` on the idle thread.
    pub(crate) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }

    /// Ends the thread and waits for it (its tasks are dropped).
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for IdleRuntime {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Puts the calling thread in `SCHED_IDLE`; whether it could.
#[cfg(target_os = "linux")]
fn lower_priority() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param` only; pid 0 is the calling thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks run on the runtime's own thread, which Linux schedules as idle; stopping it ends
    /// the thread and drops what still runs there.
    #[tokio::test]
    async fn tasks_run_on_an_idle_priority_thread() {
        let runtime = IdleRuntime::start("flaglog-idle-test").await.unwrap();
        let seen = runtime
            .spawn(async {
                let name = std::thread::current().name().map(str::to_string);
                (name, scheduling_policy())
            })
            .await
            .unwrap();
        assert_eq!(seen.0.as_deref(), Some("flaglog-idle-test"));
        if cfg!(target_os = "linux") {
            assert!(runtime.idle);
            assert_eq!(seen.1, Some(libc::SCHED_IDLE));
        }
        let (kept, dropped) = oneshot::channel::<()>();
        let forever = runtime.spawn(async move {
            let _kept = kept;
            std::future::pending::<()>().await
        });
        runtime.stop().await;
        assert!(dropped.await.is_err(), "the task was dropped");
        assert!(forever.await.unwrap_err().is_cancelled());
    }

    #[cfg(target_os = "linux")]
    fn scheduling_policy() -> Option<i32> {
        // SAFETY: no arguments but the calling thread's id (0).
        Some(unsafe { libc::sched_getscheduler(0) })
    }

    #[cfg(not(target_os = "linux"))]
    fn scheduling_policy() -> Option<i32> {
        None
    }
}
