use super::{NameKey, QuotaTracker};
use crate::{ManualClock, Period, ServiceConfig, TrackerConfig};

fn tracker(names: &[&str]) -> QuotaTracker {
    let config = TrackerConfig::new(
        names
            .iter()
            .map(|name| ServiceConfig::new(*name, 100, Period::Day)),
    );
    QuotaTracker::new_with_clock(config, ManualClock::new(1_718_000_000_000)).unwrap()
}

#[test]
fn keys_are_exact_up_to_eight_bytes() {
    let names = [
        "", "a", "b", "ab", "ba", "aa", "abc", "acc", "abb", "a\0", "a\0\0", "abcd", "abce",
        "abcde", "abcdf", "bbcde", "aaaabbbb", "bbbbaaaa", "abcdefgh", "abcdefgg",
    ];
    for a in names {
        for b in names {
            assert_eq!(NameKey::of(a) == NameKey::of(b), a == b, "{a:?} {b:?}");
        }
    }
}

#[test]
fn lookups_find_exactly_the_configured_names() {
    // Names that share keys beyond 8 bytes, or whole halves below it.
    let sets: [&[&str]; 4] = [
        &["aaaabbbb", "bbbbaaaa", "llm", "mail"],
        &["service_01", "service_10", "service_1_", "service_0"],
        &[
            "ab",
            "ba",
            "aba",
            "abba",
            "abcdefghijklmnop",
            "abcdefghXjklmnop",
        ],
        &[
            "x",
            "xx",
            "xxx",
            "xxxx",
            "xxxxx",
            "xxxxxxxx",
            "xxxxxxxxx",
            "y",
        ],
    ];
    let absent = [
        "",
        "aaaabbba",
        "bbbb",
        "service_11",
        "ab ",
        "abcdefghijklmnoq",
        "xxxxxx",
        "z",
        "abcdefghYjklmnop",
    ];
    for names in sets {
        let tracker = tracker(names);
        for (position, name) in names.iter().enumerate() {
            assert_eq!(tracker.find(name), Some(position), "{name:?} in {names:?}");
            tracker.record_call(name, position as u64 + 1).unwrap();
        }
        for (position, name) in names.iter().enumerate() {
            assert_eq!(tracker.usage(name).unwrap().used, position as u64 + 1);
        }
        for name in absent {
            assert_eq!(tracker.find(name), None, "{name:?} in {names:?}");
            assert!(tracker.record_call(name, 1).is_err());
        }
    }
}

#[test]
fn random_names_are_found_by_key_as_by_comparing() {
    // Short names over a tiny alphabet collide as often as names can.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let alphabet = ['a', 'b', '\0'];
    let name = |next: &mut dyn FnMut(u64) -> u64| {
        let len = next(12) as usize;
        (0..len)
            .map(|_| alphabet[next(3) as usize])
            .collect::<String>()
    };
    for _ in 0..300 {
        let mut names: Vec<String> = Vec::new();
        while names.len() < 8 {
            let candidate = name(&mut next);
            if !candidate.is_empty() && !names.contains(&candidate) {
                names.push(candidate);
            }
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let tracker = tracker(&refs);
        for _ in 0..50 {
            let query = name(&mut next);
            let expected = names.iter().position(|n| *n == query);
            assert_eq!(tracker.find(&query), expected, "{query:?} in {names:?}");
        }
        for (position, n) in names.iter().enumerate() {
            assert_eq!(tracker.find(n), Some(position));
        }
    }
}
