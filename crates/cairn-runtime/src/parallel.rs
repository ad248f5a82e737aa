//! Bounded parallelism for host calls that take a batch (storing several blobs, loading
//! several COPYs): each input runs on its own task, at most `limit` at a time; results
//! come back in input order, and the first failure aborts the tasks still running.

use std::future::Future;

use crate::plugin_api::PluginError;

pub async fn in_order<I, T, F, Fut>(
    limit: usize,
    inputs: Vec<I>,
    work: F,
) -> Result<Vec<T>, PluginError>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T, PluginError>> + Send + 'static,
{
    let mut results: Vec<Option<T>> = (0..inputs.len()).map(|_| None).collect();
    let mut pending = inputs.into_iter().enumerate();
    // Dropping the set (on an early return) aborts what is still running.
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < limit.max(1)
            && let Some((index, input)) = pending.next()
        {
            let task = work(input);
            running.spawn(async move { task.await.map(|r| (index, r)) });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (index, result) = joined
            .map_err(|e| PluginError::Permanent(format!("a parallel task failed: {e}")))??;
        results[index] = Some(result);
    }
    Ok(results.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_keep_input_order_and_the_limit_holds() {
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let out = in_order(3, (0..20u64).collect(), |i| {
            let (now, most) = (now.clone(), most.clone());
            async move {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(running, Ordering::SeqCst);
                // Later inputs finish first.
                tokio::time::sleep(Duration::from_millis(20 - i)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok(i * 2)
            }
        })
        .await
        .unwrap();
        assert_eq!(out, (0..20).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_first_failure_is_returned() {
        let out = in_order(2, vec![1, 2, 3], |i| async move {
            if i == 2 {
                Err(PluginError::Permanent("two".into()))
            } else {
                Ok(i)
            }
        })
        .await;
        assert!(matches!(out, Err(PluginError::Permanent(m)) if m == "two"));
    }
}
