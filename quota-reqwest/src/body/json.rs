//! A constant-memory, incremental JSON scanner: it is fed a document in chunks of any size,
//! checks its grammar, and captures the whole number found at one JSON pointer.

/// The deepest nesting the scanner follows (as serde_json's default recursion limit): a
/// deeper document is treated as malformed.
pub(crate) const MAX_DEPTH: usize = 128;

/// A JSON pointer (RFC 6901) parsed into its reference tokens: `/usage/total_tokens` is
/// `["usage", "total_tokens"]`; `~1` is `/`, `~0` is `~`; the empty pointer is the whole
/// document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pointer {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    /// The member name it selects in an object.
    key: Vec<u8>,
    /// The element it selects in an array: `0`, or digits without a leading zero.
    index: Option<u64>,
}

impl Pointer {
    /// Parses `text`; `Err` says why it is not a JSON pointer.
    pub(crate) fn parse(text: &str) -> Result<Pointer, &'static str> {
        if text.is_empty() {
            return Ok(Pointer { tokens: Vec::new() });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err("must be a JSON pointer: empty, or starting with `/`");
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut key = Vec::with_capacity(raw.len());
            let mut bytes = raw.bytes();
            while let Some(b) = bytes.next() {
                if b != b'~' {
                    key.push(b);
                    continue;
                }
                match bytes.next() {
                    Some(b'0') => key.push(b'~'),
                    Some(b'1') => key.push(b'/'),
                    _ => return Err("`~` must be followed by `0` or `1` in a JSON pointer"),
                }
            }
            let index = match key.as_slice() {
                [b'0'] => Some(0),
                [b'1'..=b'9', ..] if key.iter().all(u8::is_ascii_digit) => {
                    std::str::from_utf8(&key).ok().and_then(|s| s.parse().ok())
                }
                _ => None,
            };
            tokens.push(Token { key, index });
        }
        Ok(Pointer { tokens })
    }
}

/// Where the scanner is in the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value is expected (the document's, after `:`, after `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ArrayFirst,
    /// After `{`: a key or `}`.
    ObjectFirst,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,`, the container's close, or (at the top) the end.
    AfterValue,
    /// In a string; `key`: an object's member name.
    Str { key: bool },
    /// After `\` in a string.
    Escape { key: bool },
    /// In `\uXXXX`: `left` hex digits still to come, `code` so far.
    Unicode { key: bool, left: u8, code: u32 },
    /// In a number.
    Number(Num),
    /// In `true`, `false` or `null`: the bytes still expected.
    Literal(&'static [u8]),
    /// The document ended: only whitespace may follow.
    Done,
    /// Not JSON (or nested deeper than [`MAX_DEPTH`]): nothing is reported.
    Invalid,
}

/// Where a number is in its grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    /// Whether a number may end here.
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

/// The scanner: a few words of state plus a bit per open container, whatever the input.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    pointer: std::sync::Arc<Pointer>,
    state: State,
    /// Open containers: bit `d` set when the container at depth `d` is an object.
    objects: [u64; MAX_DEPTH / 64],
    depth: usize,
    /// How many of the outermost open containers lie on the pointer's way (each one the
    /// value the pointer's first tokens select), with fewer than all its tokens used.
    matched: usize,
    /// For each container on the way that is an array: the index of its current element.
    indices: Vec<u64>,
    /// Whether the current member of the innermost container (if it is on the way) is the
    /// one the pointer's next token selects.
    member: bool,
    /// A member name being compared: how many bytes of the token matched so far, and
    /// whether all have. `high`: a `\uD8xx` escape waiting for its low half.
    key_at: usize,
    key_ok: bool,
    high: Option<u32>,
    /// The number being read is the pointer's value: its value so far, or `None` once it
    /// is not a whole count (a sign, a fraction, an exponent, past `u64::MAX`).
    target: Option<Option<u64>>,
    /// The last whole count found at the pointer (`None`: none, or a later value there is
    /// not one: the last of duplicate keys wins, as in serde_json's `Value`).
    found: Option<u64>,
}

impl Scanner {
    /// A scanner for one document, looking for `pointer`'s value.
    pub(crate) fn new(pointer: std::sync::Arc<Pointer>) -> Scanner {
        let indices = vec![0; pointer.tokens.len()];
        Scanner {
            pointer,
            state: State::Value,
            objects: [0; MAX_DEPTH / 64],
            depth: 0,
            matched: 0,
            indices,
            member: false,
            key_at: 0,
            key_ok: false,
            high: None,
            target: None,
            found: None,
        }
    }

    /// Feeds the next bytes of the document.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Invalid {
                return;
            }
            // Plain string bytes, the bulk of a body, skipped in a tight loop when no key
            // is compared.
            if self.state == (State::Str { key: false }) {
                let rest = &bytes[i..];
                let n = rest
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                    .unwrap_or(rest.len());
                i += n;
                if i == bytes.len() {
                    return;
                }
            }
            if self.step(bytes[i]) {
                i += 1;
            }
        }
    }

    /// The whole count at the pointer, if the document is complete and valid JSON.
    pub(crate) fn finish(mut self) -> Option<u64> {
        if let State::Number(num) = self.state {
            if self.depth == 0 && num.complete() {
                self.end_number();
                self.state = State::Done;
            }
        }
        (self.state == State::Done).then_some(self.found).flatten()
    }

    fn is_object(&self, depth: usize) -> bool {
        self.objects[depth / 64] & (1 << (depth % 64)) != 0
    }

    /// Whether a value starting now is on the pointer's way, and whether it is its end.
    fn on_way(&self) -> (bool, bool) {
        let on = self.matched == self.depth && (self.depth == 0 || self.member);
        (on, on && self.depth == self.pointer.tokens.len())
    }

    /// Takes one byte; `false`: the byte ended a number and must be read again.
    fn step(&mut self, b: u8) -> bool {
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.state {
            State::Value | State::ArrayFirst if space => {}
            State::ArrayFirst if b == b']' => self.close(false),
            State::Value | State::ArrayFirst => self.value(b),
            State::ObjectFirst | State::Key if space => {}
            State::ObjectFirst if b == b'}' => self.close(true),
            State::ObjectFirst | State::Key if b == b'"' => {
                self.key_at = 0;
                self.key_ok = self.matched == self.depth;
                self.high = None;
                self.state = State::Str { key: true };
            }
            State::Colon if space => {}
            State::Colon if b == b':' => self.state = State::Value,
            State::AfterValue | State::Done if space => {}
            State::AfterValue if b == b',' && self.depth > 0 => {
                if self.is_object(self.depth - 1) {
                    self.state = State::Key;
                } else {
                    self.next_element();
                    self.state = State::Value;
                }
            }
            State::AfterValue if b == b'}' || b == b']' => self.close(b == b'}'),
            State::Str { key } => self.string(b, key),
            State::Escape { key } => self.escape(b, key),
            State::Unicode { key, left, code } => match (b as char).to_digit(16) {
                Some(digit) if left > 1 => {
                    self.state = State::Unicode {
                        key,
                        left: left - 1,
                        code: code * 16 + digit,
                    }
                }
                Some(digit) => {
                    self.code_point(code * 16 + digit, key);
                    self.state = State::Str { key };
                }
                None => self.state = State::Invalid,
            },
            State::Number(num) => return self.number(b, num),
            State::Literal(rest) => match rest {
                [first, tail @ ..] if *first == b => {
                    self.state = State::Literal(tail);
                    if tail.is_empty() {
                        self.end_value();
                    }
                }
                _ => self.state = State::Invalid,
            },
            _ => self.state = State::Invalid,
        }
        true
    }

    /// The first byte of a value.
    fn value(&mut self, b: u8) {
        let (on, end) = self.on_way();
        if end {
            // Whatever this value is, it replaces a count found before (the last wins).
            self.found = None;
        }
        match b {
            b'{' | b'[' => {
                if self.depth == MAX_DEPTH {
                    self.state = State::Invalid;
                    return;
                }
                let object = b == b'{';
                let (word, bit) = (self.depth / 64, 1 << (self.depth % 64));
                if object {
                    self.objects[word] |= bit;
                } else {
                    self.objects[word] &= !bit;
                }
                if on && !end {
                    self.matched += 1;
                    self.indices[self.depth] = 0;
                }
                self.depth += 1;
                if object {
                    self.member = false;
                    self.state = State::ObjectFirst;
                } else {
                    self.member_is_index();
                    self.state = State::ArrayFirst;
                }
            }
            b'"' => self.state = State::Str { key: false },
            // A sign: not a whole count, whatever follows.
            b'-' => self.start_number(Num::Minus, end.then_some(None)),
            b'0' => self.start_number(Num::Zero, end.then_some(Some(0))),
            b'1'..=b'9' => self.start_number(Num::Int, end.then_some(Some(u64::from(b - b'0')))),
            b't' => self.state = State::Literal(b"rue"),
            b'f' => self.state = State::Literal(b"alse"),
            b'n' => self.state = State::Literal(b"ull"),
            _ => self.state = State::Invalid,
        }
    }

    fn start_number(&mut self, num: Num, target: Option<Option<u64>>) {
        self.target = target;
        self.state = State::Number(num);
    }

    /// A value ended (a scalar, or a container's close).
    fn end_value(&mut self) {
        self.state = if self.depth == 0 {
            State::Done
        } else {
            State::AfterValue
        };
    }

    fn close(&mut self, object: bool) {
        if self.depth == 0 || self.is_object(self.depth - 1) != object {
            self.state = State::Invalid;
            return;
        }
        self.depth -= 1;
        self.matched = self.matched.min(self.depth);
        self.end_value();
    }

    /// The innermost container is an array on the way: is its current element the one?
    fn member_is_index(&mut self) {
        let at = self.depth - 1;
        self.member =
            self.matched == self.depth && self.pointer.tokens[at].index == Some(self.indices[at]);
    }

    fn next_element(&mut self) {
        if self.matched == self.depth {
            let at = self.depth - 1;
            self.indices[at] = self.indices[at].saturating_add(1);
        }
        self.member_is_index();
    }

    fn string(&mut self, b: u8, key: bool) {
        match b {
            b'"' => {
                if key {
                    if self.high.is_some() {
                        self.key_ok = false;
                    }
                    self.member =
                        self.key_ok && self.key_at == self.pointer.tokens[self.depth - 1].key.len();
                    self.state = State::Colon;
                } else {
                    self.end_value();
                }
            }
            b'\\' => self.state = State::Escape { key },
            0..=0x1f => self.state = State::Invalid,
            _ => {
                if key {
                    self.key_byte(b);
                }
            }
        }
    }

    fn escape(&mut self, b: u8, key: bool) {
        let byte = match b {
            b'"' | b'\\' | b'/' => b,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                self.state = State::Unicode {
                    key,
                    left: 4,
                    code: 0,
                };
                return;
            }
            _ => {
                self.state = State::Invalid;
                return;
            }
        };
        if key {
            self.key_byte(byte);
        }
        self.state = State::Str { key };
    }

    /// A `\uXXXX` escape's code unit, in a key: compared as its UTF-8 bytes (a surrogate
    /// pair as one code point; a lone surrogate matches no pointer token).
    fn code_point(&mut self, unit: u32, key: bool) {
        if !key {
            return;
        }
        let point = match (self.high.take(), unit) {
            (None, 0xD800..=0xDBFF) => {
                self.high = Some(unit);
                return;
            }
            (Some(high), 0xDC00..=0xDFFF) => 0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00),
            (Some(_), _) | (None, 0xDC00..=0xDFFF) => {
                self.key_ok = false;
                return;
            }
            (None, _) => unit,
        };
        let Some(c) = char::from_u32(point) else {
            self.key_ok = false;
            return;
        };
        let mut buf = [0; 4];
        for &byte in c.encode_utf8(&mut buf).as_bytes() {
            self.key_byte(byte);
        }
    }

    fn key_byte(&mut self, b: u8) {
        if self.high.take().is_some() {
            // A high surrogate not followed by its low half.
            self.key_ok = false;
        }
        if !self.key_ok {
            return;
        }
        let token = &self.pointer.tokens[self.depth - 1].key;
        if token.get(self.key_at) == Some(&b) {
            self.key_at += 1;
        } else {
            self.key_ok = false;
        }
    }

    /// One byte of a number; `false`: the number ended before `b`, which is read again.
    fn number(&mut self, b: u8, num: Num) -> bool {
        let next = match (num, b) {
            (Num::Zero, b'0'..=b'9') => None,
            (Num::Minus, b'0') => Some(Num::Zero),
            (Num::Minus, b'1'..=b'9') | (Num::Int, b'0'..=b'9') => Some(Num::Int),
            (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
            (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::Exp),
            (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
            (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Some(Num::ExpDigits),
            _ if num.complete() => {
                self.end_number();
                self.end_value();
                return false;
            }
            _ => None,
        };
        let Some(next) = next else {
            self.state = State::Invalid;
            return true;
        };
        if let Some(Some(value)) = self.target {
            self.target = Some(match next {
                Num::Zero | Num::Int => value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(b - b'0'))),
                _ => None,
            });
        }
        self.state = State::Number(next);
        true
    }

    fn end_number(&mut self) {
        if let Some(value) = self.target.take() {
            self.found = value;
        }
    }
}
