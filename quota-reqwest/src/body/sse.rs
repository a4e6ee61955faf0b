//! Server-Sent Events (the WHATWG HTML event-stream format, as OpenAI streams completions):
//! each event's `data` is scanned as one JSON document; the last count found wins.

use super::json::{Pointer, Scanner};
use std::sync::Arc;

/// Where the parser is in a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// In the field name: `len` bytes so far, `data` while they are a prefix of `data`.
    Name { len: usize, data: bool },
    /// After the name's `:`, where one space is skipped.
    Space { data: bool },
    /// In the value.
    Value { data: bool },
}

const START: Line = Line::Name { len: 0, data: true };

/// The event-stream parser: constant memory (one [`Scanner`] for the event being read).
#[derive(Debug)]
pub(crate) struct Events {
    pointer: Arc<Pointer>,
    line: Line,
    /// The previous byte was a CR: a LF now ends nothing more.
    after_cr: bool,
    /// How many bytes of a leading byte order mark were skipped (`None`: past the start).
    bom: Option<usize>,
    /// The current event's data, scanned as it comes (`None`: no `data` line yet).
    event: Option<Scanner>,
    /// The count of the last event that had one.
    found: Option<u64>,
}

impl Events {
    pub(crate) fn new(pointer: Arc<Pointer>) -> Self {
        Events {
            pointer,
            line: START,
            after_cr: false,
            bom: Some(0),
            event: None,
            found: None,
        }
    }

    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&b, rest)) = bytes.split_first() {
            // A UTF-8 byte order mark that starts the stream is skipped, as the format says.
            if let Some(at) = self.bom {
                const BOM: &[u8] = b"\xEF\xBB\xBF";
                if BOM.get(at) == Some(&b) {
                    self.bom = (at + 1 < BOM.len()).then_some(at + 1);
                    bytes = rest;
                    continue;
                }
                self.bom = None;
                if at > 0 {
                    // Part of one: the first line's name is not `data`.
                    self.line = Line::Name {
                        len: at,
                        data: false,
                    };
                }
            }
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            if b == b'\n' && after_cr {
                bytes = rest;
                continue;
            }
            if b == b'\r' || b == b'\n' {
                self.end_line();
                bytes = rest;
                continue;
            }
            match self.line {
                Line::Name { len, data } => {
                    if b == b':' {
                        if len == 0 {
                            // A comment: its value is skipped.
                            self.line = Line::Value { data: false };
                        } else {
                            let data = data && len == 4;
                            if data {
                                self.data_line();
                            }
                            self.line = Line::Space { data };
                        }
                    } else {
                        let data = data && b"data".get(len) == Some(&b);
                        self.line = Line::Name {
                            len: len.saturating_add(1),
                            data,
                        };
                    }
                    bytes = rest;
                }
                Line::Space { data } => {
                    self.line = Line::Value { data };
                    if b == b' ' {
                        bytes = rest;
                    }
                }
                Line::Value { data } => {
                    let n = bytes
                        .iter()
                        .position(|&b| b == b'\r' || b == b'\n')
                        .unwrap_or(bytes.len());
                    if data {
                        if let Some(event) = &mut self.event {
                            event.feed(&bytes[..n]);
                        }
                    }
                    bytes = &bytes[n..];
                }
            }
        }
    }

    /// A `data` field starts: its value follows the event's earlier data after a newline.
    fn data_line(&mut self) {
        match &mut self.event {
            Some(event) => event.feed(b"\n"),
            None => self.event = Some(Scanner::new(Arc::clone(&self.pointer))),
        }
    }

    fn end_line(&mut self) {
        match self.line {
            // A blank line dispatches the event.
            Line::Name { len: 0, .. } => {
                if let Some(count) = self.event.take().and_then(Scanner::finish) {
                    self.found = Some(count);
                }
            }
            // `data` alone: a data field with an empty value.
            Line::Name { len: 4, data: true } => self.data_line(),
            _ => {}
        }
        self.line = START;
    }

    /// The last count an event reported. An event the stream ends in without its blank
    /// line is discarded, as the format says.
    pub(crate) fn finish(self) -> Option<u64> {
        self.found
    }
}
