//! Immutable views: a snapshot maps table names to tables, a table keys to encoded values.

use std::collections::HashMap;
use std::sync::Arc;

use super::Bytes;

#[derive(Default, Clone)]
pub struct Table {
    pub version: u64,
    pub entries: HashMap<Vec<u8>, Bytes>,
}

#[derive(Default, Clone)]
pub struct Snapshot {
    pub tables: HashMap<String, Arc<Table>>,
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

    pub fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tables.keys().cloned().collect();
        names.sort();
        names
    }
}
