//! Where things are in a config file's text: line and column of a byte offset, and the offset
//! of a key path (`services[1].limit`) in TOML or in JSON (read by hand with a cursor, as
//! serde_json keeps no spans), so that an invalid value's error points at its field.

/// A step into a TOML or JSON document.
#[derive(Debug, Clone, Copy)]
pub(super) enum Key<'a> {
    Field(&'a str),
    Index(usize),
}

/// serde_json's message without its ` at line L column C` (the error carries those).
pub(super) fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// The line and column (from 1; the column in characters) of byte `offset` in `text`.
pub(super) fn position_at(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// `line` and `column` as serde_json counts them (the column in bytes) with the column in
/// characters.
pub(super) fn position_at_line(text: &str, line: usize, column: usize) -> (usize, usize) {
    let line_start = match line {
        0 | 1 => 0,
        _ => text
            .match_indices('\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1),
    };
    let offset = line_start.saturating_add(column.saturating_sub(1));
    let (_, column) = position_at(text, offset);
    (line, column)
}

/// The byte offset of the key (or element) at `keys` in a TOML document, or of the deepest
/// part of the path that exists.
pub(super) fn toml_offset(text: &str, keys: &[Key<'_>]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut offset = root.span().start;
    let root = DeValue::Table(root.into_inner());
    let mut value = &root;
    for key in keys {
        let next = match (key, value) {
            (Key::Field(name), DeValue::Table(table)) => table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == *name)
                .map(|(k, v)| (k.span().start, v)),
            // An element points at its start (`[[services]]`, `{`), not at its first key.
            (Key::Index(index), DeValue::Array(array)) => array
                .into_iter()
                .nth(*index)
                .map(|item| (item.span().start, item)),
            _ => None,
        };
        let Some((start, item)) = next else { break };
        offset = start;
        value = item.get_ref();
    }
    Some(offset)
}

/// The byte offset of the key (or element) at `keys` in a JSON document that parsed, or of
/// the deepest part of the path that exists.
pub(super) fn json_offset(text: &str, keys: &[Key<'_>]) -> Option<usize> {
    let mut cursor = JsonCursor { text, at: 0 };
    cursor.space();
    let mut found = cursor.at;
    for key in keys {
        cursor.space();
        let next = match key {
            Key::Field(name) => cursor.find_member(name)?,
            Key::Index(index) => cursor.find_element(*index)?,
        };
        let Some(start) = next else { break };
        found = start;
    }
    Some(found)
}

/// A read position in a JSON text that parsed (so it is well-formed; a surprise answers
/// `None`, never a panic).
struct JsonCursor<'a> {
    text: &'a str,
    at: usize,
}

impl JsonCursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Skips a string; answers its text, decoded.
    fn string(&mut self) -> Option<String> {
        self.space();
        let start = self.at;
        self.eat(b'"')?;
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        serde_json::from_str(self.text.get(start..self.at)?).ok()
    }

    /// Skips one value (nesting at most `depth` deep).
    fn skip(&mut self, depth: usize) -> Option<()> {
        self.space();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth == 0 => None,
            b'{' => {
                self.at += 1;
                self.space();
                if self.peek()? == b'}' {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.eat(b':')?;
                    self.skip(depth - 1)?;
                    self.space();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                self.space();
                if self.peek()? == b']' {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth - 1)?;
                    self.space();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    /// In an object: moves to the value of member `name` and answers where its key starts
    /// (`Some(None)`: not an object, or no such member).
    fn find_member(&mut self, name: &str) -> Option<Option<usize>> {
        self.space();
        if self.peek()? != b'{' {
            return Some(None);
        }
        self.at += 1;
        self.space();
        if self.peek()? == b'}' {
            return Some(None);
        }
        loop {
            self.space();
            let key_start = self.at;
            let key = self.string()?;
            self.eat(b':')?;
            if key == name {
                self.space();
                return Some(Some(key_start));
            }
            self.skip(JSON_DEPTH)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                _ => return Some(None),
            }
        }
    }

    /// In an array: moves to element `index` and answers where it starts.
    fn find_element(&mut self, index: usize) -> Option<Option<usize>> {
        self.space();
        if self.peek()? != b'[' {
            return Some(None);
        }
        self.at += 1;
        self.space();
        if self.peek()? == b']' {
            return Some(None);
        }
        for _ in 0..index {
            self.skip(JSON_DEPTH)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                _ => return Some(None),
            }
            self.space();
        }
        Some(Some(self.at))
    }
}

/// How deep the locator follows nested JSON (serde_json refuses more than 128 levels).
const JSON_DEPTH: usize = 256;
