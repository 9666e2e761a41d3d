//! The repair of a document that went missing (Redis restarted without its
//! data, say): written back from the read database with the projector's own
//! compare-and-set, expecting "absent".

use super::{DocumentError, Documents};
use event_schema::{MemoryState, SessionState};
use read_model::documents::{Write, write_if_absent};

impl Documents {
    /// Puts back a memory document that generation `g` lacks, unless the
    /// projector wrote one (or erased it) meanwhile.
    pub async fn repair_memory(&self, g: i64, state: &MemoryState) -> Result<bool, DocumentError> {
        let mut redis = self.redis.clone();
        write_if_absent(&mut redis, &self.keys, g, Write::Memory(state))
            .await
            .map_err(DocumentError::Repair)
    }

    pub async fn repair_session(
        &self,
        g: i64,
        state: &SessionState,
    ) -> Result<bool, DocumentError> {
        let mut redis = self.redis.clone();
        write_if_absent(&mut redis, &self.keys, g, Write::Session(state))
            .await
            .map_err(DocumentError::Repair)
    }
}
