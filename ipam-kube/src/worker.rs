//! A private async runtime on its own thread, so that the synchronous [`ipam::Store`] can use
//! kube's async client from anywhere: a plain thread, or a task of a current-thread tokio
//! runtime such as vswitchd's control thread, where neither `Runtime::block_on` nor
//! `block_in_place` may be called. The caller's thread blocks on a channel until the job ends.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
}

/// The worker thread is gone (it only ends when the store is dropped, or by a panic).
#[derive(Debug)]
pub(crate) struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the Kubernetes client thread has stopped")
    }
}

impl Worker {
    /// The thread ends when the worker is dropped (its channel closes); dropping never waits for
    /// it, so a store may be dropped inside an async context too.
    pub(crate) fn start() -> std::io::Result<Worker> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("ipam-kube".into())
            .spawn(move || {
                rt.block_on(async move {
                    // Jobs run concurrently: callers on several threads share one client.
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                });
            })?;
        Ok(Worker { jobs: tx })
    }

    /// Runs `fut` on the worker and waits for its result. Not cancelled part-way: a commit's
    /// writes and their rollback always run to the end (each API call has its own timeout).
    pub(crate) fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job = Box::pin(async move {
            let _ = tx.send(fut.await);
        });
        self.jobs.send(job).map_err(|_| Stopped)?;
        rx.recv().map_err(|_| Stopped)
    }
}
