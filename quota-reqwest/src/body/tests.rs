//! The scanner and the event-stream parser, fed whole, byte by byte, and split at every point.

use super::json::{Pointer, Scanner, MAX_DEPTH};
use super::sse::Events;
use std::sync::Arc;

fn pointer(text: &str) -> Arc<Pointer> {
    Arc::new(Pointer::parse(text).unwrap())
}

/// The count `doc` holds at `at`: the same however the document is cut into chunks.
fn scan(at: &str, doc: &str) -> Option<u64> {
    let whole = {
        let mut scanner = Scanner::new(pointer(at));
        scanner.feed(doc.as_bytes());
        scanner.finish()
    };
    let mut bytewise = Scanner::new(pointer(at));
    for b in doc.as_bytes() {
        bytewise.feed(std::slice::from_ref(b));
    }
    assert_eq!(bytewise.finish(), whole, "byte by byte: {doc}");
    for cut in 0..=doc.len() {
        let mut split = Scanner::new(pointer(at));
        split.feed(&doc.as_bytes()[..cut]);
        split.feed(&[]);
        split.feed(&doc.as_bytes()[cut..]);
        assert_eq!(split.finish(), whole, "cut at {cut}: {doc}");
    }
    whole
}

/// The count an event stream reports at `at`, cut likewise.
fn events(at: &str, stream: &str) -> Option<u64> {
    let whole = {
        let mut events = Events::new(pointer(at));
        events.feed(stream.as_bytes());
        events.finish()
    };
    for cut in 0..=stream.len() {
        let mut split = Events::new(pointer(at));
        split.feed(&stream.as_bytes()[..cut]);
        split.feed(&stream.as_bytes()[cut..]);
        assert_eq!(split.finish(), whole, "cut at {cut}: {stream:?}");
    }
    whole
}

const USAGE: &str = "/usage/total_tokens";

#[test]
fn finds_the_count_at_a_path_at_depth() {
    let doc = r#"{"id":"x","usage":{"prompt_tokens":9,"total_tokens":1234}}"#;
    assert_eq!(scan(USAGE, doc), Some(1_234));
    assert_eq!(scan("/usage/prompt_tokens", doc), Some(9));
    assert_eq!(scan("/a/b/c/d", r#"{"a":{"b":{"c":{"d":7}}}}"#), Some(7));
    assert_eq!(scan("", "42"), Some(42));
    assert_eq!(scan("", " 0 "), Some(0));
    // The same names elsewhere are not the path.
    let decoys = r#"{"total_tokens":1,"x":{"usage":{"total_tokens":2}},"usage":{"u":{"total_tokens":3},"total_tokens":4}}"#;
    assert_eq!(scan(USAGE, decoys), Some(4));
    assert_eq!(scan(USAGE, r#"{"usage":{"total_tokensx":5}}"#), None);
    assert_eq!(scan(USAGE, r#"{"usage":{"total_token":5}}"#), None);
}

#[test]
fn whitespace_anywhere_between_tokens() {
    let doc = " {\n\t\"usage\" :\r\n { \"total_tokens\"\t:  77 \n} } \n";
    assert_eq!(scan(USAGE, doc), Some(77));
}

#[test]
fn escapes_in_keys_and_values() {
    // `\u0075sage` is `usage`; a `"` and a `/` escaped in a key; a surrogate pair.
    assert_eq!(
        scan(USAGE, r#"{"\u0075sage":{"total_\u0074okens":5}}"#),
        Some(5)
    );
    assert_eq!(scan("/a\"b~1c", r#"{"a\"b\/c":6}"#), Some(6));
    assert_eq!(scan("/😀", r#"{"\ud83d\ude00":8}"#), Some(8));
    assert_eq!(scan("/é", r#"{"é":9}"#), Some(9));
    // A lone surrogate matches nothing (and the document is still JSON).
    assert_eq!(scan("/\u{fffd}", r#"{"\ud83d":1}"#), None);
    // Strings holding the document's punctuation do not confuse the structure.
    let doc = r#"{"text":"}]{[\",:\\\"","usage":{"note":"{\"total_tokens\":1}","total_tokens":3}}"#;
    assert_eq!(scan(USAGE, doc), Some(3));
    assert_eq!(scan("/a~0b", r#"{"a~b":4}"#), Some(4));
}

#[test]
fn arrays_by_index() {
    let doc = r#"{"choices":[{"n":1},{"n":2},[{"n":9}],{"n":3}]}"#;
    assert_eq!(scan("/choices/0/n", doc), Some(1));
    assert_eq!(scan("/choices/1/n", doc), Some(2));
    assert_eq!(scan("/choices/3/n", doc), Some(3));
    assert_eq!(scan("/choices/2/0/n", doc), Some(9));
    assert_eq!(scan("/choices/4/n", doc), None);
    assert_eq!(scan("/1", "[5, 6, 7]"), Some(6));
    assert_eq!(scan("/01", "[5, 6, 7]"), None);
    assert_eq!(scan("/0", "[[], 1]"), None);
    // A token that is a number names a member of an object.
    assert_eq!(scan("/0", r#"{"0":4}"#), Some(4));
}

#[test]
fn numbers_split_across_chunks_are_read_whole() {
    // `scan` cuts every document at every point: here inside the digits.
    assert_eq!(
        scan(USAGE, r#"{"usage":{"total_tokens":9876543210}}"#),
        Some(9_876_543_210)
    );
    assert_eq!(scan("", "18446744073709551615"), Some(u64::MAX));
}

#[test]
fn only_whole_non_negative_numbers_are_counts() {
    for number in [
        "1e3",
        "-1",
        "1.5",
        "1.0",
        "-0",
        "1E+2",
        "18446744073709551616",
    ] {
        let doc = format!(r#"{{"usage":{{"total_tokens":{number}}}}}"#);
        assert_eq!(scan(USAGE, &doc), None, "{number}");
    }
    // Thirty digits: past u64, not a count (and no panic).
    assert_eq!(scan("", &"9".repeat(30)), None);
    for other in [r#""12""#, "null", "true", "false", "{}", "[12]"] {
        let doc = format!(r#"{{"usage":{{"total_tokens":{other}}}}}"#);
        assert_eq!(scan(USAGE, &doc), None, "{other}");
    }
    // Such numbers elsewhere are fine.
    let doc = r#"{"t":-1.5e-3,"a":[0,1E5,-0.0],"usage":{"total_tokens":2}}"#;
    assert_eq!(scan(USAGE, doc), Some(2));
}

#[test]
fn the_last_of_duplicate_keys_wins() {
    let doc = r#"{"usage":{"total_tokens":5,"total_tokens":7}}"#;
    assert_eq!(scan(USAGE, doc), Some(7));
    let doc = r#"{"usage":{"total_tokens":5},"usage":{"total_tokens":8}}"#;
    assert_eq!(scan(USAGE, doc), Some(8));
    // A later value that is no count replaces the earlier count.
    let doc = r#"{"usage":{"total_tokens":5,"total_tokens":null}}"#;
    assert_eq!(scan(USAGE, doc), None);
}

#[test]
fn malformed_json_reports_nothing() {
    for doc in [
        r#"{"usage":{"total_tokens":5}"#,
        r#"{"usage":{"total_tokens":5}}}"#,
        r#"{"usage":{"total_tokens":5}} x"#,
        r#"{"usage":{"total_tokens":5}} {}"#,
        r#"{"usage":{"total_tokens":5},}"#,
        r#"{"usage":{"total_tokens":5]}"#,
        r#"{"usage":{"total_tokens" 5}}"#,
        r#"{"usage":{"total_tokens":05}}"#,
        r#"{"usage":{"total_tokens":5,}}"#,
        r#"{usage:{"total_tokens":5}}"#,
        r#"{"usage":{"total_tokens":5},"s":"a
b"}"#,
        r#"{"usage":{"total_tokens":5},"s":"\x"}"#,
        r#"{"usage":{"total_tokens":5},"s":"\u12G4"}"#,
        r#"{"usage":{"total_tokens":5},"t":tru}"#,
        r#"{"usage":{"total_tokens":5},"t":1.}"#,
        r#"{"usage":{"total_tokens":5},"t":1e}"#,
        r#"{"usage":{"total_tokens":5},"t":-}"#,
        r#"["usage",]"#,
        "",
        "   ",
        "5 5",
    ] {
        assert_eq!(scan(USAGE, doc), None, "{doc}");
    }
    assert_eq!(scan("", "5 5"), None);
    assert_eq!(scan("", "-"), None);
}

#[test]
fn nesting_past_the_limit_is_malformed() {
    let deep = |levels: usize| {
        format!(
            r#"{{"usage":{{"total_tokens":3}},"deep":{}{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    let mut scanner = Scanner::new(pointer(USAGE));
    scanner.feed(deep(MAX_DEPTH - 1).as_bytes());
    assert_eq!(scanner.finish(), Some(3));
    let mut scanner = Scanner::new(pointer(USAGE));
    scanner.feed(deep(MAX_DEPTH).as_bytes());
    assert_eq!(scanner.finish(), None);
    // A million levels: no stack, no allocation, no panic.
    let mut scanner = Scanner::new(pointer(USAGE));
    scanner.feed(deep(1_000_000).as_bytes());
    assert_eq!(scanner.finish(), None);
}

#[test]
fn pointers_parse_as_rfc_6901_says() {
    assert!(Pointer::parse("").is_ok());
    assert!(Pointer::parse("/").is_ok());
    assert!(Pointer::parse("/a~0~1").is_ok());
    assert!(Pointer::parse("usage").is_err());
    assert!(Pointer::parse("/a~2").is_err());
    assert!(Pointer::parse("/a~").is_err());
    // `/` is the member named "".
    assert_eq!(scan("/", r#"{"":3}"#), Some(3));
}

#[test]
fn event_streams_take_the_last_event_that_reports_a_count() {
    let openai = concat!(
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
        "event: message\nid: 2\r\n",
        "data: {\"choices\":[],\"usage\":{\"total_tokens\":57}}\r\n\r\n",
        "data: [DONE]\n\n",
    );
    assert_eq!(events(USAGE, openai), Some(57));
    // One event's data over several lines, joined by newlines.
    let lines = "data: {\"usage\":\ndata: {\"total_tokens\"\ndata: :12}}\n\n";
    assert_eq!(events(USAGE, lines), Some(12));
    // `data:` without a space, and CR line ends.
    assert_eq!(
        events(USAGE, "data:{\"usage\":{\"total_tokens\":4}}\r\r"),
        Some(4)
    );
    // A later count wins; a later event without one does not erase it.
    let two = "data: {\"usage\":{\"total_tokens\":1}}\n\ndata: {\"usage\":{\"total_tokens\":2}}\n\ndata: {\"usage\":null}\n\n";
    assert_eq!(events(USAGE, two), Some(2));
    // An event the stream ends inside of is discarded; other fields are not data.
    assert_eq!(
        events(USAGE, "data: {\"usage\":{\"total_tokens\":4}}\n"),
        None
    );
    assert_eq!(
        events(USAGE, "datax: {\"usage\":{\"total_tokens\":4}}\n\n"),
        None
    );
    assert_eq!(
        events(USAGE, "dat: {\"usage\":{\"total_tokens\":4}}\n\n"),
        None
    );
    assert_eq!(events(USAGE, ""), None);
    // A leading byte order mark is skipped; part of one spoils the first line only.
    let marked = "\u{feff}data: {\"usage\":{\"total_tokens\":6}}\n\n";
    assert_eq!(events(USAGE, marked), Some(6));
    let mut half = Events::new(pointer(USAGE));
    half.feed(b"\xEF\xBBdata: {\"usage\":{\"total_tokens\":6}}\n\ndata: {\"usage\":{\"total_tokens\":3}}\n\n");
    assert_eq!(half.finish(), Some(3));
    let mut half = Events::new(pointer(USAGE));
    half.feed(b"\xEFdata: {\"usage\":{\"total_tokens\":6}}\n\n");
    assert_eq!(half.finish(), None);
}

/// Against serde_json on documents a byte or two away from valid ones: where the scanner
/// reports a count, serde_json's `Value` has the same whole number at the pointer, and the
/// other way round (documents with `-0`, which serde_json reads as the integer 0, aside).
#[test]
fn agrees_with_serde_json_on_mutated_documents() {
    let seeds = [
        r#"{"id":"a\"b","usage":{"prompt_tokens":3,"total_tokens":1234},"x":[1,2.5,-3e2,true,null]}"#,
        r#"{"usage":{"total_tokens":7,"total_tokens":8},"choices":[{"n":[0,{"k":"v"}]}]}"#,
        r#"[{"usage":{"total_tokens":42}},{"usage":{}}]"#,
    ];
    let alphabet = b"{}[]:,\"\\ 0123456789-+.eEtrufalsn_uy/";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    let mut compared = 0;
    for round in 0..20_000 {
        let mut doc = seeds[round % seeds.len()].as_bytes().to_vec();
        for _ in 0..1 + random(2) {
            let at = random(doc.len());
            match random(3) {
                0 => doc[at] = alphabet[random(alphabet.len())],
                1 => doc.insert(at, alphabet[random(alphabet.len())]),
                _ => drop(doc.remove(at)),
            }
        }
        let text = String::from_utf8(doc).unwrap();
        if text.contains("-0") {
            continue;
        }
        for at in [
            USAGE,
            "/0/usage/total_tokens",
            "/x/0",
            "/usage/prompt_tokens",
        ] {
            let expected = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|value| value.pointer(at)?.as_u64());
            let mut scanner = Scanner::new(pointer(at));
            let cut = random(text.len() + 1);
            scanner.feed(&text.as_bytes()[..cut]);
            scanner.feed(&text.as_bytes()[cut..]);
            assert_eq!(scanner.finish(), expected, "{at} in {text}");
            compared += 1;
        }
    }
    assert!(compared > 50_000, "{compared}");
}
