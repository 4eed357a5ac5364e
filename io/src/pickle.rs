//! A deliberately small, safe reader for Python pickles of plain data.
//!
//! A pickle is a program for a stack machine that may import any Python callable and call it.
//! This reader interprets only the opcodes that build `dict`, `list`, `tuple`, `str`, `int`,
//! `float`, `bool` and `None` values, plus the memo and framing opcodes. Every other opcode
//! (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, PERSID, EXT*, bytes, sets, ...)
//! is refused with an error naming the opcode and its byte offset. Nothing is ever imported,
//! called or executed; sizes and nesting are bounded and no input makes it panic.
//!
//! Memory is bounded by fixed caps, not by the input's length: at most [`MAX_NODES`] values
//! are built, [`MAX_ITEMS`] container entries made, [`MAX_STACK`] stack slots and
//! [`MAX_MEMO`] memo entries held, and [`MAX_EXPANDED_TEXT`] bytes of text produced when
//! shared references are expanded; the first opcode past a cap is refused with its offset.
//! None of the caps refuses a pickle whose expanded value fits [`MAX_EXPANDED_NODES`]:
//! every value built and every container entry is visited at least once when the value is
//! expanded.

use std::collections::HashMap;
use std::fmt;

/// Largest pickle accepted, in bytes. The reference indicator files are a few kilobytes.
pub const MAX_INPUT_BYTES: usize = 64 << 20;
/// Deepest nesting of containers accepted when reading values out of the pickle.
pub const MAX_DEPTH: usize = 64;
/// Most values produced when expanding shared (memoised) references into a tree.
pub const MAX_EXPANDED_NODES: usize = 1 << 20;
/// Most values the interpreter builds (each is expanded at least once).
pub const MAX_NODES: usize = MAX_EXPANDED_NODES;
/// Most container entries (list/tuple items, dict keys and values) the interpreter records.
pub const MAX_ITEMS: usize = MAX_EXPANDED_NODES;
/// Deepest interpreter stack: values waiting to go into a container, and MARKs.
pub const MAX_STACK: usize = 2 * MAX_EXPANDED_NODES;
/// Most memo entries.
pub const MAX_MEMO: usize = MAX_EXPANDED_NODES;
/// Most bytes of text in the expanded value (a memoised string referenced many times
/// counts each time).
pub const MAX_EXPANDED_TEXT: usize = 2 * MAX_INPUT_BYTES;

/// A plain Python value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Key/value pairs in insertion order; a repeated key keeps its last value, as in Python.
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// Python's name for the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
        }
    }

    /// The value stored under the string key `key` of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Why a pickle was not read.
#[derive(Clone, Debug, PartialEq)]
pub enum PickleError {
    /// An opcode that imports or calls Python code (or refers to objects outside the pickle).
    Refused { opcode: &'static str, offset: usize },
    /// A known opcode this reader does not interpret (bytes, sets, ...).
    Unsupported { opcode: &'static str, offset: usize },
    /// A byte that is not a pickle opcode at all.
    UnknownOpcode { byte: u8, offset: usize },
    /// The input ended inside an opcode or before STOP.
    Truncated { offset: usize },
    /// The input is well-formed bytes but not a valid pickle program.
    Malformed { offset: usize, reason: String },
    /// The input exceeds a size or nesting bound; `offset` is the opcode that crossed it
    /// (`None` for bounds checked on the whole input or while expanding the value).
    TooLarge {
        offset: Option<usize>,
        reason: String,
    },
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PickleError::Refused { opcode, offset } => write!(
                f,
                "refused pickle opcode {opcode} at byte {offset}: it imports or calls Python code, \
                 which this reader never does. Only plain dict/list/tuple/str/int/float values are \
                 accepted; if the values are torch tensors, convert them with float(t) (or t.item()) \
                 before pickling"
            ),
            PickleError::Unsupported { opcode, offset } => write!(
                f,
                "unsupported pickle opcode {opcode} at byte {offset}: only dict/list/tuple/str/int/\
                 float/bool/None values are accepted"
            ),
            PickleError::UnknownOpcode { byte, offset } => {
                write!(f, "unknown pickle opcode 0x{byte:02x} at byte {offset}")
            }
            PickleError::Truncated { offset } => {
                write!(f, "pickle is truncated: input ends at byte {offset} before STOP")
            }
            PickleError::Malformed { offset, reason } => {
                write!(f, "malformed pickle at byte {offset}: {reason}")
            }
            PickleError::TooLarge {
                offset: Some(offset),
                reason,
            } => write!(f, "pickle too large at byte {offset}: {reason}"),
            PickleError::TooLarge {
                offset: None,
                reason,
            } => write!(f, "pickle too large: {reason}"),
        }
    }
}

impl std::error::Error for PickleError {}

/// Names of the opcodes that run or reference code: refused, never interpreted.
fn refused_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'c' => "GLOBAL",
        0x93 => "STACK_GLOBAL",
        b'R' => "REDUCE",
        b'b' => "BUILD",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

/// Names of the data opcodes this reader does not need and so does not interpret.
fn unsupported_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8e => "BINBYTES8",
        0x96 => "BYTEARRAY8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        b'L' => "LONG",
        0x8b => "LONG4",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        _ => return None,
    })
}

/// One value under construction. Containers refer to other nodes by index, so that a
/// memoised container filled after it was memoised is seen filled through every reference,
/// as in Python.
enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<usize>),
    Tuple(Vec<usize>),
    Dict(Vec<(usize, usize)>),
}

enum Slot {
    Mark,
    Node(usize),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    stack: Vec<Slot>,
    memo: HashMap<u32, usize>,
    /// Container entries recorded so far (bounded by [`MAX_ITEMS`]).
    items: usize,
    /// Offset of the opcode being interpreted, for error messages.
    op_offset: usize,
}

/// What the expansion of the node graph may still produce.
struct Budget {
    nodes: usize,
    text: usize,
}

/// Read a pickle of plain data. Returns the value and the protocol declared by PROTO
/// (`None` for protocols 0 and 1, which have no PROTO opcode).
pub fn parse(data: &[u8]) -> Result<(Value, Option<u8>), PickleError> {
    if data.len() > MAX_INPUT_BYTES {
        return Err(PickleError::TooLarge {
            offset: None,
            reason: format!("{} bytes, the limit is {MAX_INPUT_BYTES}", data.len()),
        });
    }
    let mut m = Machine {
        data,
        pos: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        memo: HashMap::new(),
        items: 0,
        op_offset: 0,
    };
    let (root, proto) = m.run()?;
    let mut budget = Budget {
        nodes: MAX_EXPANDED_NODES,
        text: MAX_EXPANDED_TEXT,
    };
    let value = m.expand(root, 0, &mut budget)?;
    Ok((value, proto))
}

impl<'a> Machine<'a> {
    fn malformed(&self, reason: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            offset: self.op_offset,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(PickleError::Truncated {
                offset: self.data.len(),
            }),
        }
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le_u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn le_u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn le_u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A newline-terminated argument (protocol 0 opcodes), without the newline.
    fn line_bytes(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError::Truncated {
                offset: self.data.len(),
            });
        };
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    /// A newline-terminated ASCII argument: a number or memo key.
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let bytes = self.line_bytes()?;
        std::str::from_utf8(bytes).map_err(|_| self.malformed("text argument is not UTF-8"))
    }

    fn utf8(&self, bytes: &[u8]) -> Result<String, PickleError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed("string is not valid UTF-8"))
    }

    /// The error for a bound crossed by the current opcode.
    fn too_large(&self, reason: String) -> PickleError {
        PickleError::TooLarge {
            offset: Some(self.op_offset),
            reason,
        }
    }

    /// Room for one more stack slot.
    fn stack_room(&self) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.too_large(format!(
                "more than {MAX_STACK} values and MARKs on the stack"
            )));
        }
        Ok(())
    }

    /// Records `n` more container entries.
    fn count_items(&mut self, n: usize) -> Result<(), PickleError> {
        self.items = self.items.saturating_add(n);
        if self.items > MAX_ITEMS {
            return Err(self.too_large(format!("more than {MAX_ITEMS} container entries")));
        }
        Ok(())
    }

    fn push_node(&mut self, node: Node) -> Result<(), PickleError> {
        if self.nodes.len() >= MAX_NODES {
            return Err(self.too_large(format!("more than {MAX_NODES} values")));
        }
        self.stack_room()?;
        self.nodes.push(node);
        self.stack.push(Slot::Node(self.nodes.len() - 1));
        Ok(())
    }

    fn push_mark(&mut self) -> Result<(), PickleError> {
        self.stack_room()?;
        self.stack.push(Slot::Mark);
        Ok(())
    }

    fn pop_node(&mut self) -> Result<usize, PickleError> {
        match self.stack.pop() {
            Some(Slot::Node(i)) => Ok(i),
            Some(Slot::Mark) => Err(self.malformed("expected a value, found MARK")),
            None => Err(self.malformed("stack underflow")),
        }
    }

    fn top_node(&self) -> Result<usize, PickleError> {
        match self.stack.last() {
            Some(Slot::Node(i)) => Ok(*i),
            Some(Slot::Mark) => Err(self.malformed("expected a value, found MARK")),
            None => Err(self.malformed("stack underflow")),
        }
    }

    /// Pop everything above the topmost MARK and the MARK itself.
    fn pop_to_mark(&mut self) -> Result<Vec<usize>, PickleError> {
        let Some(mark) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return Err(self.malformed("no MARK on the stack"));
        };
        // Everything above the topmost MARK is a node.
        let items = self
            .stack
            .drain(mark + 1..)
            .filter_map(|s| match s {
                Slot::Node(i) => Some(i),
                Slot::Mark => None,
            })
            .collect();
        self.stack.pop();
        Ok(items)
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let top = self.top_node()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(self.too_large(format!("more than {MAX_MEMO} memo entries")));
        }
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        match self.memo.get(&key) {
            Some(&i) => {
                self.stack_room()?;
                self.stack.push(Slot::Node(i));
                Ok(())
            }
            None => Err(self.malformed(format!("memo key {key} was never stored"))),
        }
    }

    /// Dict keys are limited to scalars and tuples of scalars: all a plain-data pickle needs,
    /// and checking them cannot recurse.
    fn is_plain_key(&self, i: usize) -> bool {
        let scalar = |j: usize| {
            matches!(
                self.nodes[j],
                Node::None | Node::Bool(_) | Node::Int(_) | Node::Float(_) | Node::Str(_)
            )
        };
        match &self.nodes[i] {
            Node::Tuple(items) => items.iter().all(|&j| scalar(j)),
            _ => scalar(i),
        }
    }

    fn set_items(&mut self, dict: usize, pairs: &[usize]) -> Result<(), PickleError> {
        if pairs.len() % 2 != 0 {
            return Err(self.malformed("SETITEMS with an odd number of values"));
        }
        for kv in pairs.chunks_exact(2) {
            if !self.is_plain_key(kv[0]) {
                return Err(
                    self.malformed("dict key is not a str, number, bool, None or tuple of those")
                );
            }
        }
        if !matches!(self.nodes[dict], Node::Dict(_)) {
            return Err(self.malformed("SETITEM(S) target is not a dict"));
        }
        self.count_items(pairs.len())?;
        let Node::Dict(items) = &mut self.nodes[dict] else {
            return Err(self.malformed("SETITEM(S) target is not a dict"));
        };
        items.extend(pairs.chunks_exact(2).map(|kv| (kv[0], kv[1])));
        Ok(())
    }

    fn append_items(&mut self, list: usize, values: &[usize]) -> Result<(), PickleError> {
        if !matches!(self.nodes[list], Node::List(_)) {
            return Err(self.malformed("APPEND(S) target is not a list"));
        }
        self.count_items(values.len())?;
        let Node::List(items) = &mut self.nodes[list] else {
            return Err(self.malformed("APPEND(S) target is not a list"));
        };
        items.extend_from_slice(values);
        Ok(())
    }

    fn parse_int_text(&self, text: &str) -> Result<i64, PickleError> {
        text.trim()
            .parse::<i64>()
            .map_err(|_| self.malformed(format!("bad integer {text:?}")))
    }

    fn memo_key_text(&self, text: &str) -> Result<u32, PickleError> {
        text.trim()
            .parse::<u32>()
            .map_err(|_| self.malformed(format!("bad memo key {text:?}")))
    }

    /// Interpret opcodes up to STOP; returns the root node and the protocol.
    fn run(&mut self) -> Result<(usize, Option<u8>), PickleError> {
        let mut proto = None;
        loop {
            self.op_offset = self.pos;
            let op = self.byte()?;
            match op {
                0x80 => {
                    let p = self.byte()?;
                    if p > 5 {
                        return Err(self.malformed(format!("unknown protocol {p}")));
                    }
                    proto = Some(p);
                }
                // FRAME: a length hint for buffered reading; the data is read straight through.
                0x95 => {
                    self.le_u64()?;
                }
                b'.' => {
                    let root = self.pop_node()?;
                    if !self.stack.is_empty() {
                        return Err(self.malformed("values left on the stack at STOP"));
                    }
                    return Ok((root, proto));
                }
                b'}' => self.push_node(Node::Dict(Vec::new()))?,
                b']' => self.push_node(Node::List(Vec::new()))?,
                b')' => self.push_node(Node::Tuple(Vec::new()))?,
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(self.malformed("stack underflow"));
                    }
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop_node()?;
                    }
                    self.count_items(n)?;
                    self.push_node(Node::Tuple(items))?;
                }
                b't' => {
                    let items = self.pop_to_mark()?;
                    self.count_items(items.len())?;
                    self.push_node(Node::Tuple(items))?;
                }
                b'd' => {
                    let items = self.pop_to_mark()?;
                    self.push_node(Node::Dict(Vec::new()))?;
                    let dict = self.top_node()?;
                    self.set_items(dict, &items)?;
                }
                b'l' => {
                    let items = self.pop_to_mark()?;
                    self.count_items(items.len())?;
                    self.push_node(Node::List(items))?;
                }
                b'(' => self.push_mark()?,
                b's' => {
                    let value = self.pop_node()?;
                    let key = self.pop_node()?;
                    let dict = self.top_node()?;
                    self.set_items(dict, &[key, value])?;
                }
                b'u' => {
                    let items = self.pop_to_mark()?;
                    let dict = self.top_node()?;
                    self.set_items(dict, &items)?;
                }
                b'a' => {
                    let value = self.pop_node()?;
                    let list = self.top_node()?;
                    self.append_items(list, &[value])?;
                }
                b'e' => {
                    let items = self.pop_to_mark()?;
                    let list = self.top_node()?;
                    self.append_items(list, &items)?;
                }
                b'X' => {
                    let n = self.le_u32()? as usize;
                    let s = self.take(n)?;
                    let s = self.utf8(s)?;
                    self.push_node(Node::Str(s))?;
                }
                0x8c => {
                    let n = usize::from(self.byte()?);
                    let s = self.take(n)?;
                    let s = self.utf8(s)?;
                    self.push_node(Node::Str(s))?;
                }
                0x8d => {
                    let n = self.le_u64()?;
                    let n = usize::try_from(n).map_err(|_| PickleError::Truncated {
                        offset: self.data.len(),
                    })?;
                    let s = self.take(n)?;
                    let s = self.utf8(s)?;
                    self.push_node(Node::Str(s))?;
                }
                b'V' => {
                    let text = self.line_bytes()?;
                    let s = decode_raw_unicode_escape(text)
                        .ok_or_else(|| self.malformed("bad raw-unicode-escape string"))?;
                    self.push_node(Node::Str(s))?;
                }
                b'J' => {
                    let v = self.le_u32()? as i32;
                    self.push_node(Node::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push_node(Node::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = self.le_u16()?;
                    self.push_node(Node::Int(i64::from(v)))?;
                }
                b'I' => {
                    let text = self.line()?;
                    // Protocol 0 writes booleans as INT with these exact arguments.
                    let node = match text {
                        "01" => Node::Bool(true),
                        "00" => Node::Bool(false),
                        t => Node::Int(self.parse_int_text(t)?),
                    };
                    self.push_node(node)?;
                }
                0x8a => {
                    let n = usize::from(self.byte()?);
                    let bytes = self.take(n)?;
                    let v = long_le(bytes)
                        .ok_or_else(|| self.malformed("integer does not fit in 64 bits"))?;
                    self.push_node(Node::Int(v))?;
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push_node(Node::Float(f64::from_be_bytes(a)))?;
                }
                b'F' => {
                    let text = self.line()?;
                    let v = text
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| self.malformed(format!("bad float {text:?}")))?;
                    self.push_node(Node::Float(v))?;
                }
                b'N' => self.push_node(Node::None)?,
                0x88 => self.push_node(Node::Bool(true))?,
                0x89 => self.push_node(Node::Bool(false))?,
                0x94 => {
                    let key = u32::try_from(self.memo.len())
                        .map_err(|_| self.malformed("memo is full"))?;
                    self.memo_put(key)?;
                }
                b'p' => {
                    let text = self.line()?;
                    let key = self.memo_key_text(text)?;
                    self.memo_put(key)?;
                }
                b'q' => {
                    let key = u32::from(self.byte()?);
                    self.memo_put(key)?;
                }
                b'r' => {
                    let key = self.le_u32()?;
                    self.memo_put(key)?;
                }
                b'g' => {
                    let text = self.line()?;
                    let key = self.memo_key_text(text)?;
                    self.memo_get(key)?;
                }
                b'h' => {
                    let key = u32::from(self.byte()?);
                    self.memo_get(key)?;
                }
                b'j' => {
                    let key = self.le_u32()?;
                    self.memo_get(key)?;
                }
                _ => {
                    let offset = self.op_offset;
                    if let Some(opcode) = refused_name(op) {
                        return Err(PickleError::Refused { opcode, offset });
                    }
                    if let Some(opcode) = unsupported_name(op) {
                        return Err(PickleError::Unsupported { opcode, offset });
                    }
                    return Err(PickleError::UnknownOpcode { byte: op, offset });
                }
            }
        }
    }

    /// Turn the node graph into a tree, refusing cycles, deep nesting and blow-up by sharing.
    fn expand(&self, i: usize, depth: usize, budget: &mut Budget) -> Result<Value, PickleError> {
        if depth > MAX_DEPTH {
            return Err(PickleError::TooLarge {
                offset: None,
                reason: format!(
                    "containers nested deeper than {MAX_DEPTH} levels (or a container contains itself)"
                ),
            });
        }
        if budget.nodes == 0 {
            return Err(PickleError::TooLarge {
                offset: None,
                reason: format!(
                    "more than {MAX_EXPANDED_NODES} values once shared references are expanded"
                ),
            });
        }
        budget.nodes -= 1;
        Ok(match &self.nodes[i] {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(v) => Value::Int(*v),
            Node::Float(v) => Value::Float(*v),
            Node::Str(s) => {
                if s.len() > budget.text {
                    return Err(PickleError::TooLarge {
                        offset: None,
                        reason: format!(
                            "more than {MAX_EXPANDED_TEXT} bytes of text once shared references \
                             are expanded"
                        ),
                    });
                }
                budget.text -= s.len();
                Value::Str(s.clone())
            }
            Node::List(items) => Value::List(
                items
                    .iter()
                    .map(|&j| self.expand(j, depth + 1, budget))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Tuple(items) => Value::Tuple(
                items
                    .iter()
                    .map(|&j| self.expand(j, depth + 1, budget))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Dict(items) => {
                let mut out: Vec<(Value, Value)> = Vec::with_capacity(items.len());
                let mut position: HashMap<KeyRepr, usize> = HashMap::with_capacity(items.len());
                for &(k, v) in items {
                    let k = self.expand(k, depth + 1, budget)?;
                    let v = self.expand(v, depth + 1, budget)?;
                    // Python keeps the first insertion position and the last value.
                    match position.entry(KeyRepr::of(&k)) {
                        std::collections::hash_map::Entry::Occupied(e) => out[*e.get()].1 = v,
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(out.len());
                            out.push((k, v));
                        }
                    }
                }
                Value::Dict(out)
            }
        })
    }
}

/// A dict key as Python's dict compares it for the plain types (1 == 1.0 == True).
#[derive(PartialEq, Eq, Hash)]
enum KeyRepr {
    None,
    Int(i64),
    FloatBits(u64),
    Str(String),
    Tuple(Vec<KeyRepr>),
    /// Never produced for keys (they are checked while reading), kept for totality.
    Other,
}

impl KeyRepr {
    fn of(v: &Value) -> KeyRepr {
        match v {
            Value::None => KeyRepr::None,
            Value::Bool(b) => KeyRepr::Int(i64::from(*b)),
            Value::Int(i) => KeyRepr::Int(*i),
            Value::Float(f) => {
                // An integral float equals the int of the same value.
                if f.fract() == 0.0 && f.abs() < 9.0e18 {
                    KeyRepr::Int(*f as i64)
                } else {
                    KeyRepr::FloatBits(f.to_bits())
                }
            }
            Value::Str(s) => KeyRepr::Str(s.clone()),
            Value::Tuple(items) => KeyRepr::Tuple(items.iter().map(KeyRepr::of).collect()),
            Value::List(_) | Value::Dict(_) => KeyRepr::Other,
        }
    }
}

/// A little-endian two's-complement integer of any width, if it fits in an i64.
fn long_le(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() {
        return Some(0);
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let fill = if negative { 0xff } else { 0x00 };
    let (low, high) = bytes.split_at(bytes.len().min(8));
    if high.iter().any(|&b| b != fill) {
        return None;
    }
    let mut a = [fill; 8];
    a[..low.len()].copy_from_slice(low);
    let v = i64::from_le_bytes(a);
    // The sign of the truncated value must match the sign of the full one.
    if (v < 0) != negative {
        return None;
    }
    Some(v)
}

/// Python's raw-unicode-escape: `\uXXXX` and `\UXXXXXXXX` escapes; every other byte is Latin-1.
fn decode_raw_unicode_escape(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 1 < bytes.len()
            && (bytes[i + 1] == b'u' || bytes[i + 1] == b'U')
        {
            let width = if bytes[i + 1] == b'u' { 4 } else { 8 };
            let hex = bytes.get(i + 2..i + 2 + width)?;
            let hex = std::str::from_utf8(hex).ok()?;
            let code = u32::from_str_radix(hex, 16).ok()?;
            out.push(char::from_u32(code)?);
            i += 2 + width;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps({'a': [1.5, 2, 300, 70000, 2**40, True, None, ('x',)]}, protocol=2)`.
    const PROTO2: &[u8] = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(G?\xf8\x00\x00\x00\x00\x00\x00K\x02M,\x01Jp\x11\x01\x00\x8a\x06\x00\x00\x00\x00\x00\x01\x88NX\x01\x00\x00\x00xq\x03\x85q\x04es.";

    fn expected() -> Value {
        Value::Dict(vec![(
            Value::Str("a".into()),
            Value::List(vec![
                Value::Float(1.5),
                Value::Int(2),
                Value::Int(300),
                Value::Int(70000),
                Value::Int(1 << 40),
                Value::Bool(true),
                Value::None,
                Value::Tuple(vec![Value::Str("x".into())]),
            ]),
        )])
    }

    #[test]
    fn reads_protocol_2_plain_data() {
        let (v, proto) = parse(PROTO2).unwrap();
        assert_eq!(proto, Some(2));
        assert_eq!(v, expected());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for n in 0..PROTO2.len() {
            assert!(parse(&PROTO2[..n]).is_err(), "prefix of {n} bytes parsed");
        }
    }

    #[test]
    fn refuses_global_and_reduce_naming_the_opcode() {
        // pickle.dumps(os.system, protocol=0) starts with GLOBAL 'posix system'.
        let e = parse(b"cposix\nsystem\np0\n.").unwrap_err();
        assert_eq!(
            e,
            PickleError::Refused {
                opcode: "GLOBAL",
                offset: 0
            }
        );
        // A REDUCE after a valid prefix is refused at its own offset.
        let e = parse(b"\x80\x02)R.").unwrap_err();
        assert_eq!(
            e,
            PickleError::Refused {
                opcode: "REDUCE",
                offset: 3
            }
        );
        assert!(e.to_string().contains("float(t)"));
    }

    #[test]
    fn shared_memo_references_see_later_items() {
        // d = {}; l = [d, d]; then d['k'] = 1 through the memo; root = (l, d).
        let data = b"\x80\x02]q\x00}q\x01ah\x01ah\x01X\x01\x00\x00\x00kK\x01s\x86.";
        let (v, _) = parse(data).unwrap();
        let d = Value::Dict(vec![(Value::Str("k".into()), Value::Int(1))]);
        assert_eq!(
            v,
            Value::Tuple(vec![Value::List(vec![d.clone(), d.clone()]), d])
        );
    }

    #[test]
    fn self_containing_list_is_an_error_not_a_hang() {
        // l = []; l.append(l)
        let e = parse(b"\x80\x02]q\x00h\x00a.").unwrap_err();
        assert!(matches!(e, PickleError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn sharing_blow_up_is_bounded() {
        // Each level is the 2-tuple (prev, prev): 2^40 leaves if expanded naively.
        let mut data = b"\x80\x02K\x01q\x00".to_vec();
        for level in 0..40u8 {
            data.extend_from_slice(&[b'h', level, 0x86, b'q', level + 1]);
        }
        data.push(b'.');
        let e = parse(&data).unwrap_err();
        assert!(matches!(e, PickleError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn protocol_0_unicode_is_latin1_with_escapes() {
        // pickle.dumps('\xe9\u20ac\\', protocol=0)
        let (v, proto) = parse(b"V\xe9\\u20ac\\u005c\np0\n.").unwrap();
        assert_eq!(proto, None);
        assert_eq!(v, Value::Str("\u{e9}\u{20ac}\\".into()));
        assert!(parse(b"V\\u12\n.").is_err());
    }

    #[test]
    fn long1_limits() {
        assert_eq!(long_le(&[]), Some(0));
        assert_eq!(long_le(&[0xff]), Some(-1));
        assert_eq!(long_le(&[0x00, 0x01]), Some(256));
        assert_eq!(
            long_le(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Some(i64::MAX)
        );
        assert_eq!(
            long_le(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00]),
            Some(i64::MAX)
        );
        assert_eq!(long_le(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0x00]), None);
        assert_eq!(long_le(&[0, 0, 0, 0, 0, 0, 0, 0, 0x01]), None);
    }

    /// 60 MiB of EMPTY_TUPLE opcodes once took ~48 bytes of memory per input byte before
    /// failing. Now the value cap stops the interpreter at the opcode that crosses it.
    #[test]
    fn a_long_run_of_empty_tuples_stops_at_the_value_cap() {
        let mut data = vec![0x80, 0x02];
        data.resize(60 << 20, b')');
        let e = parse(&data).unwrap_err();
        assert_eq!(
            e,
            PickleError::TooLarge {
                offset: Some(2 + MAX_NODES),
                reason: format!("more than {MAX_NODES} values"),
            }
        );
        assert!(
            e.to_string()
                .contains(&format!("at byte {}", 2 + MAX_NODES)),
            "{e}"
        );
    }

    /// MARKs build no value; the stack cap bounds them.
    #[test]
    fn a_long_run_of_marks_stops_at_the_stack_cap() {
        let mut data = vec![0x80, 0x02];
        data.resize(2 + MAX_STACK + 10, b'(');
        let e = parse(&data).unwrap_err();
        assert!(
            matches!(e, PickleError::TooLarge { offset: Some(o), .. } if o == 2 + MAX_STACK),
            "{e}"
        );
    }

    /// Pushing one memoised value again and again builds no value either.
    #[test]
    fn repeated_memo_gets_stop_at_the_stack_cap() {
        let mut data = b"\x80\x02K\x01q\x00".to_vec();
        let start = data.len();
        for _ in 0..MAX_STACK + 10 {
            data.extend_from_slice(b"h\x00");
        }
        let e = parse(&data).unwrap_err();
        // The first GET finds one value on the stack already.
        let at = start + 2 * (MAX_STACK - 1);
        assert!(
            matches!(e, PickleError::TooLarge { offset: Some(o), .. } if o == at),
            "{e}"
        );
    }

    /// MEMOIZE on the same value gives it a new key each time: the memo cap bounds that.
    #[test]
    fn repeated_memoize_stops_at_the_memo_cap() {
        let mut data = b"\x80\x04K\x01".to_vec();
        let start = data.len();
        data.resize(start + MAX_MEMO + 10, 0x94);
        let e = parse(&data).unwrap_err();
        assert!(
            matches!(e, PickleError::TooLarge { offset: Some(o), .. } if o == start + MAX_MEMO),
            "{e}"
        );
    }

    /// Appending one memoised list to another over and over adds entries, not values.
    #[test]
    fn repeated_appends_stop_at_the_entry_cap() {
        let mut data = b"\x80\x02]q\x00]q\x01".to_vec();
        for _ in 0..MAX_ITEMS + 10 {
            data.extend_from_slice(b"h\x00a");
        }
        let e = parse(&data).unwrap_err();
        assert!(
            matches!(&e, PickleError::TooLarge { offset: Some(_), reason } if reason.contains("entries")),
            "{e}"
        );
    }

    /// One 1 MiB string referenced 1000 times would expand to 1 GiB of text.
    #[test]
    fn shared_long_strings_are_bounded_when_expanded() {
        let n = 1usize << 20;
        let mut data = b"\x80\x02]q\x00X".to_vec();
        data.extend_from_slice(&(n as u32).to_le_bytes());
        data.resize(data.len() + n, b'a');
        data.extend_from_slice(b"q\x01a");
        for _ in 0..(MAX_EXPANDED_TEXT / n) + 1 {
            data.extend_from_slice(b"h\x01a");
        }
        data.push(b'.');
        let e = parse(&data).unwrap_err();
        assert!(
            matches!(&e, PickleError::TooLarge { offset: None, reason } if reason.contains("bytes of text")),
            "{e}"
        );
    }

    /// xorshift64*: a tiny seeded generator, so failures reproduce from the printed seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        for seed in 1..=20_000u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let len = (rng.next() % 64) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half the cases start like a real pickle so the interpreter gets past byte 0.
            if seed % 2 == 0 {
                data.splice(0..0, [0x80, 0x04]);
            }
            let _ = parse(&data);
        }
    }

    /// Random programs made of the accepted opcodes with random short arguments: these get
    /// much deeper into the interpreter (marks, memo, containers) than random bytes do.
    #[test]
    fn random_opcode_programs_never_panic() {
        const OPS: &[u8] = b"}]()t\x85\x86\x87dlsuaeNGJKM\x88\x89\x94qhrjXV\x8c\x8a\x95\x80";
        let mut parsed = 0;
        for seed in 1..=20_000u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut data = vec![0x80, 0x04];
            for _ in 0..rng.next() % 40 {
                let op = OPS[(rng.next() as usize) % OPS.len()];
                data.push(op);
                match op {
                    b'q' | b'h' | b'K' => data.push((rng.next() % 4) as u8),
                    b'M' => data.extend_from_slice(&[(rng.next() % 4) as u8, 0]),
                    b'r' | b'j' | b'J' => {
                        data.extend_from_slice(&(rng.next() as u32 % 4).to_le_bytes())
                    }
                    b'G' => data.extend_from_slice(&(rng.next() as f64).to_be_bytes()),
                    b'X' => data.extend_from_slice(&[1, 0, 0, b'a' + (rng.next() % 3) as u8]),
                    0x8c => data.extend_from_slice(&[1, b'a' + (rng.next() % 3) as u8]),
                    b'V' => data.extend_from_slice(b"k\n"),
                    0x8a => data.extend_from_slice(&[1, rng.next() as u8]),
                    0x95 => data.extend_from_slice(&[0; 8]),
                    0x80 => data.push(rng.next() as u8 % 7),
                    _ => {}
                }
            }
            data.push(b'.');
            if parse(&data).is_ok() {
                parsed += 1;
            }
        }
        // The generator must reach the accepting path sometimes, or it tests little.
        assert!(parsed > 100, "only {parsed} random programs parsed");
    }

    #[test]
    fn mutated_valid_pickles_never_panic() {
        for seed in 1..=20_000u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut data = PROTO2.to_vec();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % data.len();
                match rng.next() % 3 {
                    0 => data[at] = rng.next() as u8,
                    1 => data.insert(at, rng.next() as u8),
                    _ => {
                        data.remove(at);
                        if data.is_empty() {
                            break;
                        }
                    }
                }
            }
            if let Ok((v, _)) = parse(&data) {
                // Whatever parsed must still be a plain value.
                let _ = v.type_name();
            }
        }
    }
}
