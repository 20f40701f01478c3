//! The in-process side of the audio cache: small hot entries, bounded
//! in total size, least recently used out first.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Entry, MEMORY_ENTRY_MAX};

const MEMORY_BUDGET: usize = 32 * 1024 * 1024;

#[derive(Default)]
pub struct Memory {
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    entries: HashMap<String, (std::sync::Arc<Entry>, u64)>,
    bytes: usize,
    tick: u64,
}

impl Memory {
    pub fn get(&self, key: &str) -> Option<std::sync::Arc<Entry>> {
        let mut m = self.inner.lock().ok()?;
        m.tick += 1;
        let tick = m.tick;
        let (entry, used) = m.entries.get_mut(key)?;
        *used = tick;
        Some(entry.clone())
    }

    pub fn put(&self, key: &str, entry: Entry) -> std::sync::Arc<Entry> {
        let entry = std::sync::Arc::new(entry);
        if entry.data.len() > MEMORY_ENTRY_MAX {
            return entry;
        }
        if let Ok(mut m) = self.inner.lock() {
            m.tick += 1;
            let tick = m.tick;
            m.bytes += entry.data.len();
            if let Some((old, _)) = m.entries.insert(key.to_string(), (entry.clone(), tick)) {
                m.bytes -= old.data.len();
            }
            while m.bytes > MEMORY_BUDGET {
                let Some(oldest) = m
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some((gone, _)) = m.entries.remove(&oldest) {
                    m.bytes -= gone.data.len();
                }
            }
        }
        entry
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut m) = self.inner.lock()
            && let Some((gone, _)) = m.entries.remove(key)
        {
            m.bytes -= gone.data.len();
        }
    }
}
