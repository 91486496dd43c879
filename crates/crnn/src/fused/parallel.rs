//! Data parallelism on libtorch's intra-op threads (`at::parallel_for` through the shim), so
//! the fused kernels share the cores with the convolutions instead of fighting OpenMP workers
//! that spin-wait after each libtorch op. Honours `tch::set_num_threads`.

use std::any::Any;
use std::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;

use crate::{Error, Result};

unsafe extern "C" {
    fn crnn_parallel_for(
        n: i64,
        context: *mut c_void,
        job: extern "C" fn(*mut c_void, i64, i64),
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

type Panic = Box<dyn Any + Send>;

struct Context<'a, I, R, F> {
    items: &'a [Mutex<Option<I>>],
    results: &'a [Mutex<Option<R>>],
    f: &'a F,
    panic: &'a Mutex<Option<Panic>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

extern "C" fn trampoline<I, R, F: Fn(usize, I) -> R>(context: *mut c_void, begin: i64, end: i64) {
    // SAFETY: `context` is the `Context` that `par_map` passes to crnn_parallel_for, alive
    // until that call returns; each index in [begin, end) is visited by exactly one thread.
    let ctx = unsafe { &*(context as *const Context<'_, I, R, F>) };
    for j in begin.max(0) as usize..end.max(0) as usize {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let item = ctx.items.get(j).and_then(|m| lock(m).take());
            if let (Some(item), Some(slot)) = (item, ctx.results.get(j)) {
                *lock(slot) = Some((ctx.f)(j, item));
            }
        }));
        if let Err(p) = outcome {
            lock(ctx.panic).get_or_insert(p);
        }
    }
}

/// `f(index, item)` for every item, spread over libtorch's intra-op threads; the results in
/// item order. A panic in `f` is re-raised here, on the calling thread.
pub(crate) fn par_map<I: Send, R: Send, F: Fn(usize, I) -> R + Sync>(
    items: Vec<I>,
    f: F,
) -> Result<Vec<R>> {
    let n = items.len();
    if n <= 1 {
        return Ok(items
            .into_iter()
            .enumerate()
            .map(|(j, i)| f(j, i))
            .collect());
    }
    let items: Vec<Mutex<Option<I>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let panic = Mutex::new(None);
    let ctx = Context {
        items: &items,
        results: &results,
        f: &f,
        panic: &panic,
    };
    let mut error = vec![0 as c_char; 512];
    // SAFETY: `ctx` outlives the call; the trampoline matches the context's types and never
    // unwinds (it catches panics); `error` is a writable buffer of the length given.
    let rc = unsafe {
        crnn_parallel_for(
            n as i64,
            &ctx as *const Context<'_, I, R, F> as *mut c_void,
            trampoline::<I, R, F>,
            error.as_mut_ptr(),
            error.len(),
        )
    };
    if let Some(p) = lock(&panic).take() {
        resume_unwind(p);
    }
    if rc != 0 {
        return Err(Error::Torch(tch::TchError::Torch(format!(
            "parallel_for: {}",
            super::kernels::c_message(&error)
        ))));
    }
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect::<Option<Vec<R>>>()
        .ok_or_else(|| Error::Torch(tch::TchError::Torch("parallel_for skipped a job".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_in_order_on_any_thread_count() {
        for threads in [1, 2, 3] {
            tch::set_num_threads(threads);
            let out = par_map((0..100u64).collect(), |j, v| (j as u64) * 1000 + v * v).unwrap();
            assert_eq!(
                out,
                (0..100u64).map(|v| v * 1000 + v * v).collect::<Vec<_>>()
            );
        }
        let mut data = vec![0u32; 64];
        par_map(data.chunks_mut(10).collect(), |j, c: &mut [u32]| {
            c.fill(j as u32)
        })
        .unwrap();
        assert_eq!(data[63], 6);
        assert_eq!(data[9], 0);
    }

    #[test]
    fn a_panic_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| {
            par_map((0..8).collect::<Vec<i32>>(), |_, v| {
                assert!(v != 5, "job five");
                v
            })
        });
        assert!(r.is_err());
    }
}
