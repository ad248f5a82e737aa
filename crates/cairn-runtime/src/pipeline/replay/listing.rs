//! The item list as a replay hands it out: read from the repository a chunk at a time,
//! holding a bounded window of items, so a restore of millions of items holds thousands.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use crate::repo::read::{ChunkReader, ItemStream, Plan};
use crate::repo::snapshot::SourceSnapshot;
use crate::repo::tree::ItemRecord;
use crate::repo::{Indexed, RepoResult};

/// Items a replay holds at most: the ones it handed out last (plugins open the items of
/// the batch they were just given) and the ones it read ahead. A list no longer than this
/// is held whole, so a plugin may open its items in any order at no cost.
pub const HELD: usize = 16 * 1024;

/// Where a snapshot's item list is read from, as often as a replay needs it.
#[derive(Clone)]
pub struct ItemList {
    indexed: Indexed,
    manifest: Arc<SourceSnapshot>,
}

impl ItemList {
    pub fn new(indexed: &Indexed, manifest: &SourceSnapshot) -> ItemList {
        ItemList {
            indexed: indexed.clone(),
            manifest: Arc::new(manifest.clone()),
        }
    }

    /// A chunk reader of the list's repository.
    pub fn reader(&self) -> ChunkReader {
        ChunkReader::new(&self.indexed)
    }

    /// The list from its first item.
    pub fn stream(&self) -> ItemStream {
        ItemStream::new(self.reader(), &self.manifest)
    }

    /// The chunks of every item not in `present`, in item order: what a restore reads,
    /// and so what its prefetch fetches. Ends early if the list cannot be read (the
    /// replay reports that).
    pub fn plan(&self, present: Arc<HashMap<usize, PathBuf>>) -> Plan {
        let state = (self.stream(), 0usize, VecDeque::new());
        Box::pin(futures::stream::unfold(
            state,
            move |(mut items, mut index, mut chunks)| {
                let present = present.clone();
                async move {
                    while chunks.is_empty() {
                        let item: ItemRecord = items.next().await.ok()??;
                        if !present.contains_key(&index) {
                            chunks.extend(item.chunks.iter().map(|(id, _)| *id));
                        }
                        index += 1;
                    }
                    let next = chunks.pop_front()?;
                    Some((next, (items, index, chunks)))
                }
            },
        ))
    }
}

/// An item with its place: its index in the list and where its chunks start in the plan.
#[derive(Clone)]
pub struct Placed {
    pub index: usize,
    pub first_chunk: usize,
    pub record: ItemRecord,
}

/// Places items as the list yields them, as [`ItemList::plan`] orders their chunks.
struct Placer {
    items: ItemStream,
    next_index: usize,
    next_chunk: usize,
}

impl Placer {
    fn new(list: &ItemList) -> Placer {
        Placer {
            items: list.stream(),
            next_index: 0,
            next_chunk: 0,
        }
    }

    async fn next(&mut self, present: &HashMap<usize, PathBuf>) -> RepoResult<Option<Placed>> {
        let Some(record) = self.items.next().await? else {
            return Ok(None);
        };
        let placed = Placed {
            index: self.next_index,
            first_chunk: self.next_chunk,
            record,
        };
        if !present.contains_key(&placed.index) {
            self.next_chunk += placed.record.chunks.len();
        }
        self.next_index += 1;
        Ok(Some(placed))
    }
}

pub struct Listing {
    list: ItemList,
    placer: Placer,
    ended: bool,
    /// Items read from the list, oldest first: up to [`HELD`] handed out, then the rest.
    held: VecDeque<Placed>,
    /// How many of `held` have been handed out.
    handed: usize,
    /// The items of `held` by path (the later of two with one path).
    by_path: HashMap<String, usize>,
    /// Whether items have left `held`: only then can a path missing from it be in the list.
    dropped_any: bool,
}

impl Listing {
    /// Starts reading `list`, up to [`HELD`] items ahead.
    pub async fn start(list: ItemList, present: &HashMap<usize, PathBuf>) -> RepoResult<Listing> {
        let mut listing = Listing {
            placer: Placer::new(&list),
            list,
            ended: false,
            held: VecDeque::new(),
            handed: 0,
            by_path: HashMap::new(),
            dropped_any: false,
        };
        listing.read_ahead(HELD, present).await?;
        Ok(listing)
    }

    async fn read_ahead(
        &mut self,
        wanted: usize,
        present: &HashMap<usize, PathBuf>,
    ) -> RepoResult<()> {
        while !self.ended && self.held.len() - self.handed < wanted {
            match self.placer.next(present).await? {
                Some(placed) => {
                    self.by_path
                        .insert(placed.record.path.clone(), placed.index);
                    self.held.push_back(placed);
                }
                None => self.ended = true,
            }
        }
        Ok(())
    }

    /// The next `max` items (fewer at the end), each passed through `f`.
    pub async fn next_batch<T>(
        &mut self,
        max: usize,
        present: &HashMap<usize, PathBuf>,
        f: impl Fn(&ItemRecord) -> T,
    ) -> RepoResult<Vec<T>> {
        self.read_ahead(max, present).await?;
        let end = (self.handed + max).min(self.held.len());
        let batch = self
            .held
            .range(self.handed..end)
            .map(|p| f(&p.record))
            .collect();
        self.handed = end;
        while self.handed > HELD {
            let old = self.held.pop_front().expect("handed items are held");
            if self.by_path.get(&old.record.path) == Some(&old.index) {
                self.by_path.remove(&old.record.path);
            }
            self.handed -= 1;
            self.dropped_any = true;
        }
        Ok(batch)
    }

    /// The item at `path`: from the window, else from further along the list, else (an
    /// item handed out long ago) by reading the list again from its start.
    pub async fn find(
        &mut self,
        path: &str,
        present: &HashMap<usize, PathBuf>,
    ) -> RepoResult<Option<Placed>> {
        if let Some(found) = self.held_at(path) {
            return Ok(Some(found));
        }
        // Ahead of the window: read on, holding what it passes (the plugin will be handed
        // those next), up to the bound; past it, look without holding.
        while !self.ended && self.held.len() < 2 * HELD {
            self.read_ahead(self.held.len() - self.handed + 1, present)
                .await?;
            if let Some(found) = self.held_at(path) {
                return Ok(Some(found));
            }
        }
        let mut found = None;
        if !self.ended || self.dropped_any {
            let mut again = Placer::new(&self.list);
            while let Some(placed) = again.next(present).await? {
                if placed.record.path == path {
                    found = Some(placed);
                }
            }
        }
        Ok(found)
    }

    fn held_at(&self, path: &str) -> Option<Placed> {
        let index = *self.by_path.get(path)?;
        let first = self.held.front()?.index;
        self.held.get(index - first).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::crypto::ChunkId;
    use crate::repo::memory;

    fn file(i: usize) -> ItemRecord {
        ItemRecord {
            inode: i as u64,
            // Never read here: only where each item's chunks fall in the plan.
            chunks: vec![(ChunkId([(i % 251) as u8; 32]), 1); 1 + i % 2],
            ..memory::file_item(&format!("dir/{i:06}"))
        }
    }

    /// Where item `i` of [`file`]s starts in the plan, none present.
    fn first_chunk(i: usize) -> usize {
        (0..i).map(|k| 1 + k % 2).sum()
    }

    #[tokio::test]
    async fn a_long_list_is_handed_out_whole_through_a_bounded_window_and_found_in_any_order() {
        let repo = memory::repository().await;
        let count = 2 * HELD + 700;
        let (indexed, manifest) = memory::item_list(&repo, (0..count).map(file))
            .await
            .unwrap();
        let list = ItemList::new(&indexed, &manifest);
        let present = HashMap::from([(3, PathBuf::from("/elsewhere"))]);
        let mut listing = Listing::start(list, &present).await.unwrap();
        assert!(
            !listing.ended,
            "a list longer than the window is not read whole"
        );

        let mut handed = Vec::new();
        loop {
            let batch = listing
                .next_batch(1000, &present, |r| r.path.clone())
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            assert!(
                listing.held.len() <= HELD + 1000,
                "{} held",
                listing.held.len()
            );
            handed.extend(batch);
        }
        let expected: Vec<String> = (0..count).map(|i| file(i).path).collect();
        assert_eq!(handed, expected);

        // Long handed out, still in the window, and a path the list lacks.
        for i in [0, 2, 3, 4, count - 10] {
            let placed = listing.find(&file(i).path, &present).await.unwrap();
            let placed = placed.unwrap_or_else(|| panic!("item {i} not found"));
            assert_eq!(placed.index, i);
            // Item 3 is present, so its chunks are not in the plan.
            let expected = first_chunk(i)
                - if i > 3 {
                    first_chunk(4) - first_chunk(3)
                } else {
                    0
                };
            assert_eq!(placed.first_chunk, expected, "item {i}");
            assert_eq!(placed.record, file(i));
        }
        assert!(listing.find("dir/none", &present).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn items_opened_before_they_are_handed_out_are_found_and_still_handed_out() {
        let repo = memory::repository().await;
        let count = 3 * HELD;
        let (indexed, manifest) = memory::item_list(&repo, (0..count).map(file))
            .await
            .unwrap();
        let none = HashMap::new();
        let mut listing = Listing::start(ItemList::new(&indexed, &manifest), &none)
            .await
            .unwrap();
        for i in [HELD + 5, count - 1, 7] {
            let placed = listing.find(&file(i).path, &none).await.unwrap().unwrap();
            assert_eq!((placed.index, placed.first_chunk), (i, first_chunk(i)));
        }
        let mut handed = 0;
        loop {
            let batch = listing.next_batch(4096, &none, |_| ()).await.unwrap();
            if batch.is_empty() {
                break;
            }
            handed += batch.len();
        }
        assert_eq!(handed, count);
    }

    #[tokio::test]
    async fn the_plan_holds_the_chunks_of_every_item_not_present_in_order() {
        use futures::StreamExt;
        let repo = memory::repository().await;
        let (indexed, manifest) = memory::item_list(&repo, (0..50).map(file)).await.unwrap();
        let present = Arc::new(HashMap::from([(1, PathBuf::from("/elsewhere"))]));
        let plan: Vec<ChunkId> = ItemList::new(&indexed, &manifest)
            .plan(present)
            .collect()
            .await;
        let expected: Vec<ChunkId> = (0..50)
            .filter(|&i| i != 1)
            .flat_map(|i| file(i).chunks.into_iter().map(|(id, _)| id))
            .collect();
        assert_eq!(plan, expected);
    }
}
