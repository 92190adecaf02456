//! Merging ordered sources into one: a comma list of topics reads several
//! index ranges at once, each in id order; the reader wants one sequence,
//! in id order (or reverse), each frame once even when two patterns match
//! it.

use super::id::Id;
use super::{RawFrame, StoreError};

/// Something that sorts by an id.
pub trait ById {
    fn id(&self) -> Id;
}

impl ById for Id {
    fn id(&self) -> Id {
        *self
    }
}

impl ById for RawFrame {
    fn id(&self) -> Id {
        self.id
    }
}

type Source<T> = std::iter::Peekable<Box<dyn Iterator<Item = Result<T, StoreError>> + Send>>;

pub struct Merge<T: ById> {
    sources: Vec<Source<T>>,
    reverse: bool,
    last: Option<Id>,
}

pub type MergeIds = Merge<Id>;
pub type MergeFrames = Merge<RawFrame>;

impl<T: ById> Merge<T> {
    pub fn new(
        sources: Vec<Box<dyn Iterator<Item = Result<T, StoreError>> + Send>>,
        reverse: bool,
    ) -> Merge<T> {
        Merge {
            sources: sources.into_iter().map(Iterator::peekable).collect(),
            reverse,
            last: None,
        }
    }
}

impl<T: ById> Iterator for Merge<T> {
    type Item = Result<T, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut best: Option<(usize, Id)> = None;
            for (at, source) in self.sources.iter_mut().enumerate() {
                match source.peek() {
                    Some(Ok(item)) => {
                        let id = item.id();
                        let better = match best {
                            None => true,
                            Some((_, b)) => (id < b) != self.reverse && id != b,
                        };
                        if better {
                            best = Some((at, id));
                        }
                    }
                    Some(Err(_)) => return source.next(),
                    None => {}
                }
            }
            let (at, id) = best?;
            let item = self.sources[at].next();
            if self.last == Some(id) {
                continue;
            }
            self.last = Some(id);
            return item;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(ids: &[u128]) -> Box<dyn Iterator<Item = Result<Id, StoreError>> + Send> {
        let ids: Vec<Id> = ids.iter().map(|n| Id::from_u128(*n)).collect();
        Box::new(ids.into_iter().map(Ok))
    }

    fn merged(sources: Vec<&[u128]>, reverse: bool) -> Vec<u128> {
        let sources = sources.into_iter().map(source).collect();
        Merge::new(sources, reverse)
            .map(|id| id.unwrap().to_u128())
            .collect()
    }

    #[test]
    fn interleaves_and_drops_repeats() {
        assert_eq!(
            merged(vec![&[1, 4, 6], &[2, 4, 7]], false),
            vec![1, 2, 4, 6, 7]
        );
        assert_eq!(
            merged(vec![&[6, 4, 1], &[7, 4, 2]], true),
            vec![7, 6, 4, 2, 1]
        );
        assert_eq!(merged(vec![&[], &[3]], false), vec![3]);
    }
}
