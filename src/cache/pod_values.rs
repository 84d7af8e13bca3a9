//! One namespace's per-pod values, held in two allocations whatever the number of pods: the names end to end
//! in one string, and a hash table of (name span, value). A map of boxed names costs a small allocation per
//! pod, which the allocator scatters among the parse's freed memory and which then keeps whole pages
//! resident; 20 cached answers for 10,000 pods would not fit beside the inventory.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

/// Pod name → value, for one namespace.
#[derive(Debug, Default)]
pub(super) struct PodValues {
    names: String,
    table: HashTable<Entry>,
    hasher: RandomState,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u32,
    len: u32,
    value: f64,
}

impl PodValues {
    /// Room for `pods` pods whose names take `bytes` bytes in all.
    pub(super) fn with_capacity(pods: usize, bytes: usize) -> Self {
        Self {
            names: String::with_capacity(bytes),
            table: HashTable::with_capacity(pods),
            hasher: RandomState::new(),
        }
    }

    fn name<'a>(names: &'a str, entry: &Entry) -> &'a str {
        &names[entry.start as usize..(entry.start + entry.len) as usize]
    }

    /// Sets `pod`'s value (a repeated pod keeps the last, as a map would).
    pub(super) fn insert(&mut self, pod: &str, value: f64) {
        let hash = self.hasher.hash_one(pod);
        let names = &self.names;
        if let Some(entry) = self.table.find_mut(hash, |e| Self::name(names, e) == pod) {
            entry.value = value;
            return;
        }
        // Names are pod names (≤ 253 bytes) in a string far below 4 GiB: the spans fit u32.
        let entry = Entry {
            start: self.names.len() as u32,
            len: pod.len() as u32,
            value,
        };
        self.names.push_str(pod);
        let (names, hasher) = (&self.names, &self.hasher);
        self.table
            .insert_unique(hash, entry, |e| hasher.hash_one(Self::name(names, e)));
    }

    /// `pod`'s value.
    pub(super) fn get(&self, pod: &str) -> Option<f64> {
        let hash = self.hasher.hash_one(pod);
        self.table
            .find(hash, |e| Self::name(&self.names, e) == pod)
            .map(|e| e.value)
    }

    /// Every pod and its value.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.table
            .iter()
            .map(|e| (Self::name(&self.names, e), e.value))
    }

    /// The bytes held.
    pub(super) fn weight(&self) -> usize {
        self.names.capacity() + self.table.capacity() * (std::mem::size_of::<Entry>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_name_and_a_repeated_name_keeps_the_last() {
        let mut values = PodValues::with_capacity(2, 8);
        for i in 0..1000 {
            values.insert(&format!("pod-{i}"), f64::from(i));
        }
        values.insert("pod-7", -1.0);
        assert_eq!(values.iter().count(), 1000);
        assert_eq!(values.get("pod-7"), Some(-1.0));
        assert_eq!(values.get("pod-999"), Some(999.0));
        assert_eq!(values.get("pod-1000"), None);
        assert_eq!(values.get("pod-"), None, "a prefix of a name is not a name");
        let sum: f64 = values.iter().map(|(_, v)| v).sum();
        assert_eq!(sum, (0..1000).sum::<i32>() as f64 - 8.0);
    }
}
