//! Numbered entries that JS objects stand for (a lean `Service` handle, a `Hold`): JS keeps the
//! number, wasm the entry. Number `n` is entry `n - 1`; 0 is no entry.

/// A thread's entries of one kind, with the freed ones reused.
pub(super) struct Slab<T> {
    entries: Vec<Option<T>>,
    /// Entries freed, to be reused.
    free: Vec<usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Stores `entry`; its number (at least 1). Numbers fit in a `u32`: each entry takes
    /// memory, of which wasm32 has at most 4 GiB.
    pub(super) fn insert(&mut self, entry: T) -> u32 {
        let number = match self.free.pop() {
            Some(index) => {
                self.entries[index] = Some(entry);
                index + 1
            }
            None => {
                self.entries.push(Some(entry));
                self.entries.len()
            }
        };
        number as u32
    }

    /// Entry `number`, if it is there.
    pub(super) fn get(&self, number: u32) -> Option<&T> {
        let index = (number as usize).checked_sub(1)?;
        self.entries.get(index)?.as_ref()
    }

    /// Takes entry `number` out, if it is there.
    pub(super) fn remove(&mut self, number: u32) -> Option<T> {
        let index = (number as usize).checked_sub(1)?;
        let removed = self.entries.get_mut(index)?.take()?;
        self.free.push(index);
        Some(removed)
    }
}
