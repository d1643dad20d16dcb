//! CPU time: the process's, and a future's own (the CPU its polls took on
//! whichever threads polled it), for per-shard search figures.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// CPU time a clock reports (user + system), or zero where it cannot be read.
#[allow(unsafe_code)]
fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given, which
    // lives on this stack frame for the whole call.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The CPU time the calling thread has used.
pub fn thread_time() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The CPU time the whole process has used, all threads.
pub fn process_time() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// A future that adds the CPU time of its polls to a counter: the calling
/// thread's CPU clock read around each poll. Work the future hands to other
/// tasks or threads (a spawned task, a blocking pool) is not counted.
pub struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    spent: Duration,
}

/// Measures the CPU time `fut` spends in its own polls; the output comes
/// with that time.
pub fn timed<F: Future>(fut: F) -> CpuTimed<F> {
    CpuTimed {
        inner: Box::pin(fut),
        spent: Duration::ZERO,
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let before = thread_time();
        let polled = self.inner.as_mut().poll(cx);
        let spent = thread_time().saturating_sub(before);
        self.spent += spent;
        match polled {
            Poll::Ready(out) => Poll::Ready((out, self.spent)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_future_counts_its_cpu_and_a_sleeping_one_little() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let busy = rt.block_on(timed(async {
            let start = std::time::Instant::now();
            let mut x = 0u64;
            while start.elapsed() < Duration::from_millis(60) {
                x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(7));
            }
            x
        }));
        assert!(busy.1 >= Duration::from_millis(30), "busy: {:?}", busy.1);
        let idle = rt.block_on(timed(async {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }));
        assert!(idle.1 < Duration::from_millis(20), "idle: {:?}", idle.1);
        assert!(process_time() >= busy.1);
    }
}
