//! A bulk import (a restore, `POST /import` of NDJSON): frames sent to the
//! writer in order with a window of them in flight, so they share syncs.

use crossbeam_channel::Receiver;

use super::write::{WriteOp, WriteReply};
use super::{Frame, Store, StoreError};

/// Imports frames in order, up to `IMPORT_WINDOW` unanswered at once
/// (`Store::bulk_import`).
pub struct BulkImport<'s> {
    pub(super) store: &'s Store,
    pub(super) in_flight: std::collections::VecDeque<Receiver<WriteReply>>,
    pub(super) imported: u64,
}

/// How many bulk-imported frames may wait for the writer at once.
const IMPORT_WINDOW: usize = 4096;

impl BulkImport<'_> {
    /// Sends `frame`; fails with the first refusal among the frames sent
    /// before it that have been answered (stop sending then).
    pub fn push(&mut self, frame: Frame) -> Result<(), StoreError> {
        self.in_flight
            .push_back(self.store.submit(WriteOp::Import(frame, None)));
        if self.in_flight.len() >= IMPORT_WINDOW {
            self.settle_one()?;
        }
        Ok(())
    }

    /// Waits for every frame sent: how many were imported, or the first
    /// refusal.
    pub fn finish(mut self) -> Result<u64, StoreError> {
        let mut failure = None;
        while !self.in_flight.is_empty() {
            if let Err(e) = self.settle_one() {
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(self.imported),
        }
    }

    fn settle_one(&mut self) -> Result<(), StoreError> {
        let Some(reply) = self.in_flight.pop_front() else {
            return Ok(());
        };
        reply.recv().unwrap_or(Err(StoreError::Closed))?;
        self.imported += 1;
        Ok(())
    }
}
