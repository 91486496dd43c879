//! [`Parallel`]: how a pass spreads its jobs over threads, supplied by the caller.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use crate::{Error, Result};

/// Runs the jobs of a pass. A pass splits its work into a fixed number of jobs (see
/// [`Plan::jobs`](crate::Plan::jobs)) whose partial sums are added in job order, so the result
/// never depends on how an implementation schedules them.
///
/// Implement it over the thread pool your program already has, so the passes share the
/// cores with the rest of it (crnn supplies libtorch's `at::parallel_for`; the tests of this
/// crate use rayon).
pub trait Parallel: Send + Sync {
    /// Calls `job(i)` exactly once for every `i` in `0..n`, in any order and on any threads,
    /// and returns after all calls have returned. `job` never unwinds (the passes catch
    /// panics inside it), so it may be called from across an FFI boundary. An `Err` is the
    /// runner's own failure; the pass reports it as [`Error::Parallel`].
    fn for_each(&self, n: usize, job: &(dyn Fn(usize) + Sync)) -> std::result::Result<(), String>;
}

/// Every job on the calling thread, in order.
#[derive(Debug, Default, Clone, Copy)]
pub struct Serial;

impl Parallel for Serial {
    fn for_each(&self, n: usize, job: &(dyn Fn(usize) + Sync)) -> std::result::Result<(), String> {
        (0..n).for_each(job);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

/// `f(index, item)` for every item through `par`; the results in item order. A panic in `f`
/// becomes [`Error::JobPanicked`] naming `pass`.
pub(crate) fn par_map<I: Send, R: Send, F: Fn(usize, I) -> R + Sync>(
    par: &dyn Parallel,
    pass: &'static str,
    items: Vec<I>,
    f: F,
) -> Result<Vec<R>> {
    let n = items.len();
    let items: Vec<Mutex<Option<I>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let panic: Mutex<Option<String>> = Mutex::new(None);
    let job = |j: usize| {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let item = items.get(j).and_then(|m| lock(m).take());
            if let (Some(item), Some(slot)) = (item, results.get(j)) {
                *lock(slot) = Some(f(j, item));
            }
        }));
        if let Err(p) = outcome {
            lock(&panic).get_or_insert_with(|| panic_message(p.as_ref()));
        }
    };
    let ran = if n == 1 {
        job(0);
        Ok(())
    } else {
        par.for_each(n, &job)
    };
    if let Some(message) = lock(&panic).take() {
        return Err(Error::JobPanicked { pass, message });
    }
    ran.map_err(Error::Parallel)?;
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect::<Option<Vec<R>>>()
        .ok_or_else(|| Error::Parallel(format!("{pass}: the runner skipped a job")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runner that forgets the last job.
    struct Forgetful;
    impl Parallel for Forgetful {
        fn for_each(
            &self,
            n: usize,
            job: &(dyn Fn(usize) + Sync),
        ) -> std::result::Result<(), String> {
            (0..n.saturating_sub(1)).for_each(job);
            Ok(())
        }
    }

    #[test]
    fn maps_in_order_and_reports_panics_and_skips() {
        let out = par_map(&Serial, "t", (0..10u64).collect(), |j, v| {
            j as u64 * 100 + v
        })
        .unwrap();
        assert_eq!(out, (0..10u64).map(|v| v * 101).collect::<Vec<_>>());
        let err = par_map(&Serial, "boom", (0..4).collect::<Vec<i32>>(), |_, v| {
            assert!(v != 2, "job two");
            v
        })
        .unwrap_err();
        assert!(
            matches!(&err, Error::JobPanicked { pass: "boom", message } if message.contains("job two")),
            "{err}"
        );
        let err = par_map(&Forgetful, "skip", vec![1, 2, 3], |_, v| v).unwrap_err();
        assert!(err.to_string().contains("skipped"), "{err}");
    }
}
