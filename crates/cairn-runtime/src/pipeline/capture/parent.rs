//! The previous snapshot's items of a source, looked up by path as a backup walks it, so
//! that unchanged files are not read again. A short list is held whole; a long one is read
//! along with the walk, a chunk at a time, since a source that walks a tree lists it in
//! the same order each time.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::repo::read::ItemStream;
use crate::repo::tree::ItemRecord;
use crate::repo::{RepoError, RepoResult};

/// Lists up to this many items are held whole, in any order; longer ones are read along.
pub const HELD_WHOLE: u64 = 16 * 1024;

pub struct Parent(Lookup);

enum Lookup {
    Nothing,
    Whole(HashMap<String, ItemRecord>),
    /// Read in step with the walk: `head` is the first item not yet passed, and `asked`
    /// the last path looked up.
    Along {
        items: Box<ItemStream>,
        head: Option<ItemRecord>,
        asked: Option<String>,
    },
}

/// The order a tree walk lists paths in: depth first, each directory before its entries,
/// entries by name (bytewise). That is comparing paths component by component.
pub fn walk_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

impl Parent {
    /// No previous snapshot: every file is read.
    pub fn none() -> Parent {
        Parent(Lookup::Nothing)
    }

    /// The previous snapshot's `items`, of which it recorded `count`.
    pub async fn of(mut items: ItemStream, count: u64) -> RepoResult<Parent> {
        if count <= HELD_WHOLE {
            let mut whole = HashMap::new();
            while let Some(item) = items.next().await? {
                whole.insert(item.path.clone(), item);
            }
            return Ok(Parent(Lookup::Whole(whole)));
        }
        let head = items.next().await?;
        Ok(Parent(Lookup::Along {
            items: Box::new(items),
            head,
            asked: None,
        }))
    }

    /// The previous record of `path`, if there is one and the lookup finds it: read along,
    /// a path asked out of walk order, or passed already, is not found (its file is read).
    /// Taken, not cloned: each path is asked once.
    pub async fn take(&mut self, path: &str) -> RepoResult<Option<ItemRecord>> {
        match &mut self.0 {
            Lookup::Nothing => Ok(None),
            Lookup::Whole(whole) => Ok(whole.remove(path)),
            Lookup::Along { items, head, asked } => {
                if asked
                    .as_deref()
                    .is_some_and(|last| walk_order(path, last) != Ordering::Greater)
                {
                    return Ok(None);
                }
                *asked = Some(path.to_string());
                loop {
                    let Some(item) = head.as_ref() else {
                        return Ok(None);
                    };
                    match walk_order(&item.path, path) {
                        Ordering::Less => *head = items.next().await?,
                        Ordering::Equal => {
                            let found = head.take();
                            *head = items.next().await?;
                            return Ok(found);
                        }
                        Ordering::Greater => return Ok(None),
                    }
                }
            }
        }
    }

    /// Stops looking up: the list could not be read on.
    pub fn give_up(&mut self, why: &RepoError) {
        tracing::warn!(
            "the previous snapshot's item list stopped being readable ({why}): the files after this one are read again"
        );
        self.0 = Lookup::Nothing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::memory;
    use crate::repo::read::ChunkReader;

    /// Paths in walk order: `d{k}/f{i}` across a few directories.
    fn paths(count: usize) -> Vec<String> {
        let mut paths: Vec<String> = (0..count).map(|i| format!("d{}/f{i:06}", i % 7)).collect();
        paths.sort_by(|a, b| walk_order(a, b));
        paths
    }

    async fn parent_of(paths: &[String]) -> Parent {
        let repo = memory::repository().await;
        let (indexed, manifest) =
            memory::item_list(&repo, paths.iter().map(|p| memory::file_item(p)))
                .await
                .unwrap();
        Parent::of(
            ItemStream::new(ChunkReader::new(&indexed), &manifest),
            manifest.items,
        )
        .await
        .unwrap()
    }

    #[test]
    fn walk_order_is_depth_first_with_names_bytewise() {
        let walked = ["", "a", "a/b", "a/b/c", "a/z", "a-c", "a.d", "b", "b/a"];
        for pair in walked.windows(2) {
            assert_eq!(walk_order(pair[0], pair[1]), Ordering::Less, "{pair:?}");
        }
        assert_eq!(walk_order("a/b", "a/b"), Ordering::Equal);
    }

    #[tokio::test]
    async fn a_long_parent_read_along_finds_every_path_asked_in_walk_order() {
        let paths = paths(HELD_WHOLE as usize + 3000);
        let mut parent = parent_of(&paths).await;
        assert!(matches!(parent.0, Lookup::Along { .. }));
        let mut found = 0;
        for (i, path) in paths.iter().enumerate() {
            // Every tenth file was deleted since, and new files appear between.
            if i % 10 == 3 {
                continue;
            }
            let taken = parent.take(path).await.unwrap();
            assert_eq!(taken.map(|r| r.path).as_ref(), Some(path));
            found += 1;
            if i % 10 == 5 {
                assert_eq!(parent.take(&format!("{path}-new")).await.unwrap(), None);
            }
        }
        assert_eq!(found, paths.len() - paths.len().div_ceil(10));
        // Asked again, or out of walk order: not found, and the file is read.
        assert_eq!(parent.take(&paths[0]).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_short_parent_is_held_whole_and_found_in_any_order() {
        let paths = paths(100);
        let mut parent = parent_of(&paths).await;
        for path in paths.iter().rev() {
            assert!(parent.take(path).await.unwrap().is_some(), "{path}");
        }
    }
}
