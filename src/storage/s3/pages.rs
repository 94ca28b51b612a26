//! Listing a prefix of many pages in one round trip (issue 25: a server's sequential requests
//! to S3 must not grow with the repository). `ListObjectsV2` answers at most 1,000 keys, and
//! its continuation token makes page N+1 wait for page N: 10,000 refs were 10 round trips one
//! after another. A listing is asked again and again (every `refs`), and between two askings
//! few keys change, so each page of the last listing starts where it started before: the key
//! before each page's first one is remembered, and all pages are asked at once, each with
//! `StartAfter` that key.
//!
//! Correct whatever changed meanwhile: each page answers every key after its start up to its
//! last one (S3 lists in key order), so the pages are stitched as runs of keys; where a run
//! ends before the next page starts (keys were added), the gap is listed from where the run
//! ended, one page after another as before; runs that overlap (keys were removed) are cut
//! where they meet. A listing that changed costs only the pages that moved.
//!
//! Pure: the pages come from the caller's `fetch`; no S3 types here.

use futures_util::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Prefixes remembered (each a repository's `refs/`, `objects/pack/`, ...); past this the
/// memory starts over, which costs one sequential listing each.
const MAX_PREFIXES: usize = 4096;
/// Page starts remembered per prefix: 1,000 pages of 1,000 keys.
const MAX_STARTS: usize = 1000;
/// Pages asked at once.
const CONCURRENCY: usize = 16;

/// One answer to a listing request.
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    /// More keys follow the last one.
    pub truncated: bool,
}

/// Where each page of the last listing of a prefix started (the key before its first one),
/// from the second page on.
#[derive(Debug, Default)]
pub(crate) struct Starts {
    inner: Mutex<HashMap<String, Arc<Vec<String>>>>,
}

impl Starts {
    fn get(&self, prefix: &str) -> Arc<Vec<String>> {
        self.inner
            .lock()
            .ok()
            .and_then(|m| m.get(prefix).cloned())
            .unwrap_or_default()
    }

    fn put(&self, prefix: &str, starts: Vec<String>) {
        let Ok(mut map) = self.inner.lock() else {
            return;
        };
        if starts.is_empty() {
            map.remove(prefix);
            return;
        }
        if map.len() >= MAX_PREFIXES && !map.contains_key(prefix) {
            map.clear();
        }
        map.insert(prefix.to_owned(), Arc::new(starts));
    }
}

/// Every item under `prefix`, in key order: the pages of the last listing asked at once,
/// stitched, gaps listed one page after another. `fetch(start_after)` asks one page;
/// `page_size` is how many keys a full page holds.
pub(crate) async fn list<T, E, F, Fut>(
    starts: &Starts,
    prefix: &str,
    page_size: usize,
    key: impl Fn(&T) -> &str,
    fetch: F,
) -> Result<Vec<T>, E>
where
    F: Fn(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, E>>,
{
    let known = starts.get(prefix);
    let firsts: Vec<Option<String>> = std::iter::once(None)
        .chain(known.iter().cloned().map(Some))
        .collect();
    let pages: Vec<Page<T>> = futures_util::stream::iter(firsts.iter().cloned().map(&fetch))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;

    let mut out: Vec<T> = Vec::new();
    let mut complete = false;
    // Appends the items after the last key kept; says whether more keys follow.
    let append = |out: &mut Vec<T>, page: Page<T>| {
        for item in page.items {
            if out.last().is_none_or(|last| key(&item) > key(last)) {
                out.push(item);
            }
        }
        page.truncated
    };
    for (first, page) in firsts.iter().zip(pages) {
        if let Some(first) = first {
            // Keys between the last one kept and this page's start: listed one page after
            // another, from where the run ended.
            while !complete && out.last().is_some_and(|last| key(last) < first.as_str()) {
                let from = out.last().map(|last| key(last).to_owned());
                complete = !append(&mut out, fetch(from).await?);
            }
        }
        if complete {
            break;
        }
        complete = !append(&mut out, page);
    }
    while !complete {
        let from = out.last().map(|last| key(last).to_owned());
        complete = !append(&mut out, fetch(from).await?);
    }

    // Where the pages of this listing start, for the next one.
    let next: Vec<String> = (1..=MAX_STARTS)
        .map(|k| k * page_size.max(1))
        .take_while(|&i| i < out.len())
        .map(|i| key(&out[i - 1]).to_owned())
        .collect();
    starts.put(prefix, next);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store of `keys` listed `size` at a time, counting requests.
    struct Fake {
        keys: Mutex<Vec<String>>,
        size: usize,
        requests: AtomicUsize,
    }

    impl Fake {
        fn new(n: usize, size: usize) -> Fake {
            Fake {
                keys: Mutex::new((0..n).map(|i| format!("k{i:05}")).collect()),
                size,
                requests: AtomicUsize::new(0),
            }
        }

        async fn page(&self, after: Option<String>) -> Result<Page<String>, ()> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            let keys = self.keys.lock().unwrap();
            let rest: Vec<String> = keys
                .iter()
                .filter(|k| after.as_ref().is_none_or(|a| *k > a))
                .cloned()
                .collect();
            Ok(Page {
                truncated: rest.len() > self.size,
                items: rest.into_iter().take(self.size).collect(),
            })
        }

        async fn list(&self, starts: &Starts) -> Vec<String> {
            list(
                starts,
                "p",
                self.size,
                |k: &String| k.as_str(),
                |after| self.page(after),
            )
            .await
            .unwrap()
        }

        fn all(&self) -> Vec<String> {
            self.keys.lock().unwrap().clone()
        }

        fn take_requests(&self) -> usize {
            self.requests.swap(0, Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn the_second_listing_asks_every_page_at_once() {
        let fake = Fake::new(25, 10);
        let starts = Starts::default();
        assert_eq!(fake.list(&starts).await, fake.all());
        assert_eq!(fake.take_requests(), 3, "one page after another, once");
        assert_eq!(*starts.get("p"), vec!["k00009", "k00019"]);
        assert_eq!(fake.list(&starts).await, fake.all());
        assert_eq!(fake.take_requests(), 3, "the same three pages, at once");
    }

    #[tokio::test]
    async fn added_and_removed_keys_are_listed_right() {
        let fake = Fake::new(25, 10);
        let starts = Starts::default();
        fake.list(&starts).await;
        // Keys added inside the first page: its run now ends before the second page starts.
        fake.keys
            .lock()
            .unwrap()
            .extend(["k00003a", "k00003b", "k00003c"].map(String::from));
        fake.keys.lock().unwrap().sort();
        assert_eq!(fake.list(&starts).await, fake.all());
        // Keys removed: runs overlap.
        fake.keys
            .lock()
            .unwrap()
            .retain(|k| !k.starts_with("k0001"));
        assert_eq!(fake.list(&starts).await, fake.all());
        // Everything gone, then many more than before.
        fake.keys.lock().unwrap().clear();
        assert_eq!(fake.list(&starts).await, Vec::<String>::new());
        assert!(starts.get("p").is_empty());
        *fake.keys.lock().unwrap() = (0..57).map(|i| format!("j{i:03}")).collect();
        assert_eq!(fake.list(&starts).await, fake.all());
        assert_eq!(starts.get("p").len(), 5);
    }

    #[tokio::test]
    async fn an_exactly_full_page_needs_no_next() {
        let fake = Fake::new(20, 10);
        let starts = Starts::default();
        assert_eq!(fake.list(&starts).await, fake.all());
        assert_eq!(
            *starts.get("p"),
            vec!["k00009"],
            "no start past the last key"
        );
    }
}
