//! Immutable views over persistent maps: a snapshot maps table names to tables, a table keys to encoded
//! values. A write builds the next snapshot from the current one by changing a path of O(log n) nodes; every
//! other node is shared, so older snapshots stay valid and cost nothing to keep.

use rpds::HashTrieMapSync;
use std::sync::Arc;

use super::Bytes;

pub type Entries = HashTrieMapSync<Vec<u8>, Bytes>;

#[derive(Clone)]
pub struct Table {
    pub version: u64,
    pub entries: Entries,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            version: 0,
            entries: HashTrieMapSync::new_sync(),
        }
    }
}

#[derive(Clone)]
pub struct Snapshot {
    pub tables: HashTrieMapSync<String, Arc<Table>>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            tables: HashTrieMapSync::new_sync(),
        }
    }
}

impl Snapshot {
    pub fn get(&self, table: &str, key: &[u8]) -> Option<Bytes> {
        self.tables.get(table)?.entries.get(key).cloned()
    }

    /// 0 for a table never written.
    pub fn version(&self, table: &str) -> u64 {
        self.tables.get(table).map_or(0, |t| t.version)
    }

    pub fn table(&self, table: &str) -> Option<&Arc<Table>> {
        self.tables.get(table)
    }

    pub fn len(&self, table: &str) -> usize {
        self.tables.get(table).map_or(0, |t| t.entries.size())
    }

    pub fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tables.keys().cloned().collect();
        names.sort();
        names
    }
}
