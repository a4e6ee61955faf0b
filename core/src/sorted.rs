//! The crate's ordered maps: `BTreeMap`, except on wasm32 (the JS module, the dashboard), where
//! they are sorted vectors (`litemap`). Each `BTreeMap` of another key or value type
//! carries its own B-tree code (inserting, removing, rebalancing: several KB of wasm per map
//! type), where a sorted vector's is a few binary searches. The maps there are small (a
//! localStorage document's entries, a tracker's subscriptions), so the vector's O(n) inserts
//! cost nothing. Code that uses them sees one API: `get`, `get_mut`, `insert`, `remove`,
//! `entry(..).or_insert_with`, `values`, `is_empty`, and the ranges below.

#[cfg(target_arch = "wasm32")]
pub(crate) type Map<K, V> = litemap::LiteMap<K, V>;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type Map<K, V> = std::collections::BTreeMap<K, V>;

/// A lookup by key (a service's name to its position), in no particular order: hashed natively
/// (rustc-hash: constant time for any number of services), a sorted vector on wasm32 (a binary
/// search over a page's few services; no hash table code in the `.wasm`). Code that uses it sees
/// `default`, `get`, `contains_key`, `insert` (the old value, if any) and `collect`.
#[cfg(target_arch = "wasm32")]
pub(crate) type Lookup<K, V> = litemap::LiteMap<K, V>;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type Lookup<K, V> = rustc_hash::FxHashMap<K, V>;

/// The entries of `map` with keys from `first` to `last`, both included, in key order.
#[cfg(target_arch = "wasm32")]
pub(crate) fn between<'a, K: Ord, V>(
    map: &'a Map<K, V>,
    first: &K,
    last: &K,
) -> impl Iterator<Item = (&'a K, &'a V)> {
    let start = map.find_index(first).unwrap_or_else(|index| index);
    let end = map
        .find_index(last)
        .map_or_else(|index| index, |index| index + 1);
    entries(map, start, end)
}

/// The entries of `map` with keys below `end`, in key order.
#[cfg(target_arch = "wasm32")]
pub(crate) fn below<'a, K: Ord, V>(
    map: &'a Map<K, V>,
    end: &K,
) -> impl Iterator<Item = (&'a K, &'a V)> {
    let end = map.find_index(end).unwrap_or_else(|index| index);
    entries(map, 0, end)
}

/// The entries from index `start` to `end` (excluded); none if that is not a range of `map`.
#[cfg(target_arch = "wasm32")]
fn entries<K, V>(map: &Map<K, V>, start: usize, end: usize) -> impl Iterator<Item = (&K, &V)> {
    map.as_slice()
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|(key, value)| (key, value))
}

/// The entries of `map` with keys from `first` to `last`, both included, in key order.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn between<'a, K: Ord, V>(
    map: &'a Map<K, V>,
    first: &K,
    last: &K,
) -> impl Iterator<Item = (&'a K, &'a V)> {
    use std::ops::Bound::Included;
    map.range::<K, _>((Included(first), Included(last)))
}

/// The entries of `map` with keys below `end`, in key order.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn below<'a, K: Ord, V>(
    map: &'a Map<K, V>,
    end: &K,
) -> impl Iterator<Item = (&'a K, &'a V)> {
    map.range::<K, _>(..end)
}
