//! MicroPython v1.25 bytecode: opcode numbers and names (the numbering of
//! `py/bc0.h`), argument formats, and a walker that splits a function's
//! bytecode into instructions. Used for the opcode mix, disassembly in
//! reports, and the allocation-cause analysis.
//!
//! An instruction is one opcode byte, then an argument whose encoding depends
//! on the opcode's format class (its high nibble):
//! - qstr and var-uint classes: an unsigned integer, 7 bits per byte, most
//!   significant group first, high bit set on every byte but the last
//!   (`LOAD_CONST_SMALL_INT` is signed: bit 6 of the first byte sign-extends);
//!   qstrs, constant objects and child functions are all indexes in v1.25;
//! - offset class: a jump offset in one byte (high bit clear) or two (high bit
//!   set: low 7 bits, then the next byte shifted by 7); `UNWIND_JUMP` ..
//!   `POP_JUMP_IF_FALSE` are signed (biased by 0x40 or 0x4000), the rest are
//!   forward-only;
//! - byte class: no argument.
//!
//! `MAKE_CLOSURE`, `MAKE_CLOSURE_DEFARGS` and `UNWIND_JUMP` carry one more byte
//! after the argument. Jump targets are relative to the end of the offset
//! bytes (before that extra byte).

use std::fmt;

pub const LOAD_CONST_STRING: u8 = 0x10;
pub const LOAD_NAME: u8 = 0x11;
pub const LOAD_GLOBAL: u8 = 0x12;
pub const LOAD_ATTR: u8 = 0x13;
pub const LOAD_METHOD: u8 = 0x14;
pub const LOAD_SUPER_METHOD: u8 = 0x15;
pub const STORE_NAME: u8 = 0x16;
pub const STORE_GLOBAL: u8 = 0x17;
pub const STORE_ATTR: u8 = 0x18;
pub const DELETE_NAME: u8 = 0x19;
pub const DELETE_GLOBAL: u8 = 0x1a;
pub const IMPORT_NAME: u8 = 0x1b;
pub const IMPORT_FROM: u8 = 0x1c;

pub const MAKE_CLOSURE: u8 = 0x20;
pub const MAKE_CLOSURE_DEFARGS: u8 = 0x21;
pub const LOAD_CONST_SMALL_INT: u8 = 0x22;
pub const LOAD_CONST_OBJ: u8 = 0x23;
pub const LOAD_FAST_N: u8 = 0x24;
pub const LOAD_DEREF: u8 = 0x25;
pub const STORE_FAST_N: u8 = 0x26;
pub const STORE_DEREF: u8 = 0x27;
pub const DELETE_FAST: u8 = 0x28;
pub const DELETE_DEREF: u8 = 0x29;
pub const BUILD_TUPLE: u8 = 0x2a;
pub const BUILD_LIST: u8 = 0x2b;
pub const BUILD_MAP: u8 = 0x2c;
pub const BUILD_SET: u8 = 0x2d;
pub const BUILD_SLICE: u8 = 0x2e;
pub const STORE_COMP: u8 = 0x2f;

pub const UNPACK_SEQUENCE: u8 = 0x30;
pub const UNPACK_EX: u8 = 0x31;
pub const MAKE_FUNCTION: u8 = 0x32;
pub const MAKE_FUNCTION_DEFARGS: u8 = 0x33;
pub const CALL_FUNCTION: u8 = 0x34;
pub const CALL_FUNCTION_VAR_KW: u8 = 0x35;
pub const CALL_METHOD: u8 = 0x36;
pub const CALL_METHOD_VAR_KW: u8 = 0x37;

pub const UNWIND_JUMP: u8 = 0x40;
pub const JUMP: u8 = 0x42;
pub const POP_JUMP_IF_TRUE: u8 = 0x43;
pub const POP_JUMP_IF_FALSE: u8 = 0x44;
pub const JUMP_IF_TRUE_OR_POP: u8 = 0x45;
pub const JUMP_IF_FALSE_OR_POP: u8 = 0x46;
pub const SETUP_WITH: u8 = 0x47;
pub const SETUP_EXCEPT: u8 = 0x48;
pub const SETUP_FINALLY: u8 = 0x49;
pub const POP_EXCEPT_JUMP: u8 = 0x4a;
pub const FOR_ITER: u8 = 0x4b;

pub const LOAD_CONST_FALSE: u8 = 0x50;
pub const LOAD_CONST_NONE: u8 = 0x51;
pub const LOAD_CONST_TRUE: u8 = 0x52;
pub const LOAD_NULL: u8 = 0x53;
pub const LOAD_BUILD_CLASS: u8 = 0x54;
pub const LOAD_SUBSCR: u8 = 0x55;
pub const STORE_SUBSCR: u8 = 0x56;
pub const DUP_TOP: u8 = 0x57;
pub const DUP_TOP_TWO: u8 = 0x58;
pub const POP_TOP: u8 = 0x59;
pub const ROT_TWO: u8 = 0x5a;
pub const ROT_THREE: u8 = 0x5b;
pub const WITH_CLEANUP: u8 = 0x5c;
pub const END_FINALLY: u8 = 0x5d;
pub const GET_ITER: u8 = 0x5e;
pub const GET_ITER_STACK: u8 = 0x5f;

pub const STORE_MAP: u8 = 0x62;
pub const RETURN_VALUE: u8 = 0x63;
pub const RAISE_LAST: u8 = 0x64;
pub const RAISE_OBJ: u8 = 0x65;
pub const RAISE_FROM: u8 = 0x66;
pub const YIELD_VALUE: u8 = 0x67;
pub const YIELD_FROM: u8 = 0x68;
pub const IMPORT_STAR: u8 = 0x69;

/// 64 opcodes each loading one small int, -16 ..= 47.
pub const LOAD_CONST_SMALL_INT_MULTI: u8 = 0x70;
/// The int loaded by `LOAD_CONST_SMALL_INT_MULTI + 0`.
pub const LOAD_CONST_SMALL_INT_MULTI_FIRST: i64 = -16;
const LOAD_CONST_SMALL_INT_MULTI_NUM: u8 = 64;
/// 16 opcodes each loading one of the first 16 locals.
pub const LOAD_FAST_MULTI: u8 = 0xb0;
/// 16 opcodes each storing one of the first 16 locals.
pub const STORE_FAST_MULTI: u8 = 0xc0;
const FAST_MULTI_NUM: u8 = 16;
/// One opcode per unary operator that bytecode uses, in `mp_unary_op_t` order.
pub const UNARY_OP_MULTI: u8 = 0xd0;
/// One opcode per binary operator that bytecode uses, in `mp_binary_op_t` order.
pub const BINARY_OP_MULTI: u8 = 0xd7;

/// The unary operators that appear in bytecode, in `mp_unary_op_t` order
/// (`py/runtime0.h`).
const UNARY_OPS: [(&str, &str); 4] = [
    ("positive", "+"),
    ("negative", "-"),
    ("invert", "~"),
    ("not", "not"),
];

/// The binary operators that appear in bytecode, in `mp_binary_op_t` order
/// (`py/runtime0.h`): 9 relational, 13 in-place, 13 plain.
const BINARY_OPS: [(&str, &str); 35] = [
    ("less", "<"),
    ("more", ">"),
    ("equal", "=="),
    ("less_equal", "<="),
    ("more_equal", ">="),
    ("not_equal", "!="),
    ("in", "in"),
    ("is", "is"),
    ("exception_match", "except-match"),
    ("inplace_or", "|="),
    ("inplace_xor", "^="),
    ("inplace_and", "&="),
    ("inplace_lshift", "<<="),
    ("inplace_rshift", ">>="),
    ("inplace_add", "+="),
    ("inplace_subtract", "-="),
    ("inplace_multiply", "*="),
    ("inplace_mat_multiply", "@="),
    ("inplace_floor_divide", "//="),
    ("inplace_true_divide", "/="),
    ("inplace_modulo", "%="),
    ("inplace_power", "**="),
    ("or", "|"),
    ("xor", "^"),
    ("and", "&"),
    ("lshift", "<<"),
    ("rshift", ">>"),
    ("add", "+"),
    ("subtract", "-"),
    ("multiply", "*"),
    ("mat_multiply", "@"),
    ("floor_divide", "//"),
    ("true_divide", "/"),
    ("modulo", "%"),
    ("power", "**"),
];

/// Index of `add` in `BINARY_OPS`: `BINARY_OP_MULTI + BINARY_OP_ADD` is `a + b`.
pub const BINARY_OP_ADD: u8 = 27;
pub const BINARY_OP_INPLACE_ADD: u8 = 14;
pub const BINARY_OP_MULTIPLY: u8 = 29;
pub const BINARY_OP_INPLACE_MULTIPLY: u8 = 16;
pub const BINARY_OP_MODULO: u8 = 33;
pub const BINARY_OP_INPLACE_MODULO: u8 = 20;
pub const BINARY_OP_TRUE_DIVIDE: u8 = 32;
pub const BINARY_OP_INPLACE_TRUE_DIVIDE: u8 = 19;

/// A var-uint longer than this is garbage: 9 groups of 7 bits already hold
/// the widest value a 64-bit MicroPython encodes.
const MAX_VAR_UINT_BYTES: usize = 9;

/// How an opcode's argument is encoded, from its high nibble (`MP_BC_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// No argument.
    Byte,
    /// A var-uint index into the module's qstr table.
    Qstr,
    /// A var-uint (a count, a local's index, a constant's or child's index).
    VarUint,
    /// A one- or two-byte jump offset.
    Offset,
}

/// The argument format of an opcode.
pub fn format(opcode: u8) -> Format {
    match opcode >> 4 {
        0x1 => Format::Qstr,
        0x2 | 0x3 => Format::VarUint,
        0x4 => Format::Offset,
        _ => Format::Byte,
    }
}

/// Whether one more byte follows the argument (`MP_BC_MASK_EXTRA_BYTE`):
/// the closed-over count of `MAKE_CLOSURE*`, the unwind count of `UNWIND_JUMP`.
pub fn has_extra_byte(opcode: u8) -> bool {
    opcode & 0x9e == 0
}

/// Whether the opcode's jump offset is signed (it may jump backwards).
pub fn has_signed_offset(opcode: u8) -> bool {
    (UNWIND_JUMP..=POP_JUMP_IF_FALSE).contains(&opcode)
}

/// The opcode's name in `py/bc0.h` without the `MP_BC_` prefix, e.g.
/// `LOAD_ATTR`, `BINARY_OP_MULTI`; `None` for a byte no opcode uses.
pub fn mnemonic(opcode: u8) -> Option<&'static str> {
    let name = match opcode {
        LOAD_CONST_STRING => "LOAD_CONST_STRING",
        LOAD_NAME => "LOAD_NAME",
        LOAD_GLOBAL => "LOAD_GLOBAL",
        LOAD_ATTR => "LOAD_ATTR",
        LOAD_METHOD => "LOAD_METHOD",
        LOAD_SUPER_METHOD => "LOAD_SUPER_METHOD",
        STORE_NAME => "STORE_NAME",
        STORE_GLOBAL => "STORE_GLOBAL",
        STORE_ATTR => "STORE_ATTR",
        DELETE_NAME => "DELETE_NAME",
        DELETE_GLOBAL => "DELETE_GLOBAL",
        IMPORT_NAME => "IMPORT_NAME",
        IMPORT_FROM => "IMPORT_FROM",
        MAKE_CLOSURE => "MAKE_CLOSURE",
        MAKE_CLOSURE_DEFARGS => "MAKE_CLOSURE_DEFARGS",
        LOAD_CONST_SMALL_INT => "LOAD_CONST_SMALL_INT",
        LOAD_CONST_OBJ => "LOAD_CONST_OBJ",
        LOAD_FAST_N => "LOAD_FAST_N",
        LOAD_DEREF => "LOAD_DEREF",
        STORE_FAST_N => "STORE_FAST_N",
        STORE_DEREF => "STORE_DEREF",
        DELETE_FAST => "DELETE_FAST",
        DELETE_DEREF => "DELETE_DEREF",
        BUILD_TUPLE => "BUILD_TUPLE",
        BUILD_LIST => "BUILD_LIST",
        BUILD_MAP => "BUILD_MAP",
        BUILD_SET => "BUILD_SET",
        BUILD_SLICE => "BUILD_SLICE",
        STORE_COMP => "STORE_COMP",
        UNPACK_SEQUENCE => "UNPACK_SEQUENCE",
        UNPACK_EX => "UNPACK_EX",
        MAKE_FUNCTION => "MAKE_FUNCTION",
        MAKE_FUNCTION_DEFARGS => "MAKE_FUNCTION_DEFARGS",
        CALL_FUNCTION => "CALL_FUNCTION",
        CALL_FUNCTION_VAR_KW => "CALL_FUNCTION_VAR_KW",
        CALL_METHOD => "CALL_METHOD",
        CALL_METHOD_VAR_KW => "CALL_METHOD_VAR_KW",
        UNWIND_JUMP => "UNWIND_JUMP",
        JUMP => "JUMP",
        POP_JUMP_IF_TRUE => "POP_JUMP_IF_TRUE",
        POP_JUMP_IF_FALSE => "POP_JUMP_IF_FALSE",
        JUMP_IF_TRUE_OR_POP => "JUMP_IF_TRUE_OR_POP",
        JUMP_IF_FALSE_OR_POP => "JUMP_IF_FALSE_OR_POP",
        SETUP_WITH => "SETUP_WITH",
        SETUP_EXCEPT => "SETUP_EXCEPT",
        SETUP_FINALLY => "SETUP_FINALLY",
        POP_EXCEPT_JUMP => "POP_EXCEPT_JUMP",
        FOR_ITER => "FOR_ITER",
        LOAD_CONST_FALSE => "LOAD_CONST_FALSE",
        LOAD_CONST_NONE => "LOAD_CONST_NONE",
        LOAD_CONST_TRUE => "LOAD_CONST_TRUE",
        LOAD_NULL => "LOAD_NULL",
        LOAD_BUILD_CLASS => "LOAD_BUILD_CLASS",
        LOAD_SUBSCR => "LOAD_SUBSCR",
        STORE_SUBSCR => "STORE_SUBSCR",
        DUP_TOP => "DUP_TOP",
        DUP_TOP_TWO => "DUP_TOP_TWO",
        POP_TOP => "POP_TOP",
        ROT_TWO => "ROT_TWO",
        ROT_THREE => "ROT_THREE",
        WITH_CLEANUP => "WITH_CLEANUP",
        END_FINALLY => "END_FINALLY",
        GET_ITER => "GET_ITER",
        GET_ITER_STACK => "GET_ITER_STACK",
        STORE_MAP => "STORE_MAP",
        RETURN_VALUE => "RETURN_VALUE",
        RAISE_LAST => "RAISE_LAST",
        RAISE_OBJ => "RAISE_OBJ",
        RAISE_FROM => "RAISE_FROM",
        YIELD_VALUE => "YIELD_VALUE",
        YIELD_FROM => "YIELD_FROM",
        IMPORT_STAR => "IMPORT_STAR",
        _ if small_int_multi(opcode).is_some() => "LOAD_CONST_SMALL_INT_MULTI",
        _ if load_fast_multi(opcode).is_some() => "LOAD_FAST_MULTI",
        _ if store_fast_multi(opcode).is_some() => "STORE_FAST_MULTI",
        _ if unary_op_index(opcode).is_some() => "UNARY_OP_MULTI",
        _ if binary_op_index(opcode).is_some() => "BINARY_OP_MULTI",
        _ => return None,
    };
    Some(name)
}

/// Whether a byte is an opcode of MicroPython v1.25.
pub fn is_known(opcode: u8) -> bool {
    mnemonic(opcode).is_some()
}

/// The int a `LOAD_CONST_SMALL_INT_MULTI` opcode loads.
pub fn small_int_multi(opcode: u8) -> Option<i64> {
    let i = opcode.checked_sub(LOAD_CONST_SMALL_INT_MULTI)?;
    (i < LOAD_CONST_SMALL_INT_MULTI_NUM).then_some(i64::from(i) + LOAD_CONST_SMALL_INT_MULTI_FIRST)
}

/// The local a `LOAD_FAST_MULTI` opcode loads.
pub fn load_fast_multi(opcode: u8) -> Option<u8> {
    let i = opcode.checked_sub(LOAD_FAST_MULTI)?;
    (i < FAST_MULTI_NUM).then_some(i)
}

/// The local a `STORE_FAST_MULTI` opcode stores.
pub fn store_fast_multi(opcode: u8) -> Option<u8> {
    let i = opcode.checked_sub(STORE_FAST_MULTI)?;
    (i < FAST_MULTI_NUM).then_some(i)
}

/// The `mp_unary_op_t` number of a `UNARY_OP_MULTI` opcode.
pub fn unary_op_index(opcode: u8) -> Option<u8> {
    let i = opcode.checked_sub(UNARY_OP_MULTI)?;
    ((i as usize) < UNARY_OPS.len()).then_some(i)
}

/// The `mp_binary_op_t` number of a `BINARY_OP_MULTI` opcode.
pub fn binary_op_index(opcode: u8) -> Option<u8> {
    let i = opcode.checked_sub(BINARY_OP_MULTI)?;
    ((i as usize) < BINARY_OPS.len()).then_some(i)
}

/// The operator of a `BINARY_OP_MULTI` opcode, named after `mp_binary_op_t`
/// in lower case: `add`, `inplace_add`, `less`, ...
pub fn binary_op(opcode: u8) -> Option<&'static str> {
    binary_op_index(opcode).map(|i| BINARY_OPS[i as usize].0)
}

/// The operator of a `BINARY_OP_MULTI` opcode as written in Python: `+`, `+=`.
pub fn binary_op_symbol(opcode: u8) -> Option<&'static str> {
    binary_op_index(opcode).map(|i| BINARY_OPS[i as usize].1)
}

/// The operator of a `UNARY_OP_MULTI` opcode: `positive`, `negative`,
/// `invert`, `not`.
pub fn unary_op(opcode: u8) -> Option<&'static str> {
    unary_op_index(opcode).map(|i| UNARY_OPS[i as usize].0)
}

/// The operator of a `UNARY_OP_MULTI` opcode as written in Python: `-`.
pub fn unary_op_symbol(opcode: u8) -> Option<&'static str> {
    unary_op_index(opcode).map(|i| UNARY_OPS[i as usize].1)
}

/// The opcode's display name: the mnemonic, with the operand that the
/// multi-opcodes carry in the opcode byte itself: `LOAD_ATTR`, `LOAD_FAST 2`,
/// `LOAD_CONST_SMALL_INT -1`, `UNARY_OP negative`, `BINARY_OP inplace_add`;
/// `OPCODE 0xfa` for a byte no opcode uses.
pub fn name(opcode: u8) -> String {
    if let Some(v) = small_int_multi(opcode) {
        format!("LOAD_CONST_SMALL_INT {v}")
    } else if let Some(i) = load_fast_multi(opcode) {
        format!("LOAD_FAST {i}")
    } else if let Some(i) = store_fast_multi(opcode) {
        format!("STORE_FAST {i}")
    } else if let Some(op) = unary_op(opcode) {
        format!("UNARY_OP {op}")
    } else if let Some(op) = binary_op(opcode) {
        format!("BINARY_OP {op}")
    } else if let Some(m) = mnemonic(opcode) {
        m.to_string()
    } else {
        format!("OPCODE {opcode:#04x}")
    }
}

/// A call that unpacks `*seq` or `**map` arguments at the call site.
pub fn is_star_call(opcode: u8) -> bool {
    matches!(opcode, CALL_FUNCTION_VAR_KW | CALL_METHOD_VAR_KW)
}

/// Any of the four call opcodes.
pub fn is_call(opcode: u8) -> bool {
    (CALL_FUNCTION..=CALL_METHOD_VAR_KW).contains(&opcode)
}

/// An opcode that creates a function object (plain, with defaults, or a closure).
pub fn is_make_function(opcode: u8) -> bool {
    matches!(
        opcode,
        MAKE_FUNCTION | MAKE_FUNCTION_DEFARGS | MAKE_CLOSURE | MAKE_CLOSURE_DEFARGS
    )
}

/// An opcode that stores into a hash table: a namespace, an object's
/// attributes, a dict or set (subscript, display or comprehension).
pub fn is_table_store(opcode: u8) -> bool {
    matches!(
        opcode,
        STORE_NAME | STORE_GLOBAL | STORE_ATTR | STORE_SUBSCR | STORE_MAP | STORE_COMP
    )
}

/// The decoded argument of one instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// No argument (byte-format opcodes, including the multi-opcodes, whose
    /// operand is in the opcode byte).
    None,
    /// Index into the module's qstr table (a name).
    Qstr(u64),
    /// `LOAD_CONST_SMALL_INT`'s value.
    Int(i64),
    /// `LOAD_CONST_OBJ`'s index into the module's constant objects.
    Const(u64),
    /// `MAKE_FUNCTION*`/`MAKE_CLOSURE*`'s index into the function's children.
    Child(u64),
    /// A call's argument counts.
    Call { positional: u8, keyword: u8 },
    /// Any other var-uint: a local's index, an item count, a flag word.
    Uint(u64),
    /// A jump, with its target as an offset from the start of the bytecode
    /// (negative or past the end only in garbage).
    Jump { target: i64 },
}

/// One decoded instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instruction {
    /// Offset of the opcode from the start of the bytecode.
    pub offset: usize,
    pub opcode: u8,
    /// Bytes the instruction takes, opcode included.
    pub len: usize,
    pub arg: Arg,
    /// The byte after the argument, for the opcodes that have one.
    pub extra: Option<u8>,
}

impl Instruction {
    /// The opcode's display name (see [`name`]).
    pub fn name(&self) -> String {
        name(self.opcode)
    }

    /// Offset of the next instruction.
    pub fn end(&self) -> usize {
        self.offset + self.len
    }
}

/// One line of disassembly, e.g. `JUMP 12`, `CALL_METHOD n=1 nkw=0`,
/// `MAKE_CLOSURE child=0 closed=2`, `LOAD_ATTR qstr=5`.
impl fmt::Display for Instruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        match self.arg {
            Arg::None => {}
            Arg::Qstr(q) => write!(f, " qstr={q}")?,
            Arg::Int(v) => write!(f, " {v}")?,
            Arg::Const(i) => write!(f, " const={i}")?,
            Arg::Child(i) => write!(f, " child={i}")?,
            Arg::Call {
                positional,
                keyword,
            } => write!(f, " n={positional} nkw={keyword}")?,
            Arg::Uint(v) => write!(f, " {v}")?,
            Arg::Jump { target } => write!(f, " {target}")?,
        }
        match (self.opcode, self.extra) {
            (MAKE_CLOSURE | MAKE_CLOSURE_DEFARGS, Some(n)) => write!(f, " closed={n}"),
            (_, Some(n)) => write!(f, " unwind={n}"),
            (_, None) => Ok(()),
        }
    }
}

/// Why decoding stopped before the end of the bytecode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The instruction at `offset` runs past the end of the bytes (the
    /// bytecode was cut short, e.g. truncated to fit a frame).
    Truncated { offset: usize, opcode: u8 },
    /// The byte at `offset` is no MicroPython v1.25 opcode.
    UnknownOpcode { offset: usize, opcode: u8 },
    /// The var-uint argument at `offset` is longer than any real one.
    OversizedArgument { offset: usize, opcode: u8 },
}

impl Stop {
    pub fn offset(&self) -> usize {
        match *self {
            Stop::Truncated { offset, .. }
            | Stop::UnknownOpcode { offset, .. }
            | Stop::OversizedArgument { offset, .. } => offset,
        }
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Stop::Truncated { offset, opcode } => write!(
                f,
                "bytecode ends inside the {} at offset {offset}",
                name(opcode)
            ),
            Stop::UnknownOpcode { offset, opcode } => write!(
                f,
                "byte {opcode:#04x} at offset {offset} is not a MicroPython v1.25 opcode"
            ),
            Stop::OversizedArgument { offset, opcode } => write!(
                f,
                "the {} at offset {offset} has an argument longer than {MAX_VAR_UINT_BYTES} bytes",
                name(opcode)
            ),
        }
    }
}

/// Decode the instruction at `offset` of `code` (bytecode starting at its
/// first opcode). Never panics: an offset at or past the end is `Truncated`.
pub fn decode(code: &[u8], offset: usize) -> Result<Instruction, Stop> {
    let Some(&opcode) = code.get(offset) else {
        return Err(Stop::Truncated { offset, opcode: 0 });
    };
    if !is_known(opcode) {
        return Err(Stop::UnknownOpcode { offset, opcode });
    }
    let truncated = Stop::Truncated { offset, opcode };
    let mut pos = offset + 1;
    let arg = match format(opcode) {
        Format::Byte => Arg::None,
        Format::Qstr | Format::VarUint => {
            let first = *code.get(pos).ok_or(truncated)?;
            let mut bytes_used = 0;
            let mut value: u64 = 0;
            loop {
                let b = *code.get(pos).ok_or(truncated)?;
                pos += 1;
                bytes_used += 1;
                if bytes_used > MAX_VAR_UINT_BYTES {
                    return Err(Stop::OversizedArgument { offset, opcode });
                }
                value = (value << 7) | u64::from(b & 0x7f);
                if b & 0x80 == 0 {
                    break;
                }
            }
            match opcode {
                _ if format(opcode) == Format::Qstr => Arg::Qstr(value),
                LOAD_CONST_SMALL_INT => Arg::Int(sign_extend(value, bytes_used, first)),
                LOAD_CONST_OBJ => Arg::Const(value),
                _ if is_make_function(opcode) => Arg::Child(value),
                _ if is_call(opcode) => Arg::Call {
                    positional: (value & 0xff) as u8,
                    keyword: ((value >> 8) & 0xff) as u8,
                },
                _ => Arg::Uint(value),
            }
        }
        Format::Offset => {
            let first = *code.get(pos).ok_or(truncated)?;
            let (raw, bias) = if first & 0x80 == 0 {
                pos += 1;
                (i64::from(first), 0x40)
            } else {
                let second = *code.get(pos + 1).ok_or(truncated)?;
                pos += 2;
                (i64::from(first & 0x7f) | (i64::from(second) << 7), 0x4000)
            };
            let delta = if has_signed_offset(opcode) {
                raw - bias
            } else {
                raw
            };
            Arg::Jump {
                target: pos as i64 + delta,
            }
        }
    };
    let extra = if has_extra_byte(opcode) {
        let b = *code.get(pos).ok_or(truncated)?;
        pos += 1;
        Some(b)
    } else {
        None
    };
    Ok(Instruction {
        offset,
        opcode,
        len: pos - offset,
        arg,
        extra,
    })
}

/// `LOAD_CONST_SMALL_INT`'s argument: bit 6 of the first byte is the sign,
/// extended over every higher bit.
fn sign_extend(value: u64, bytes_used: usize, first: u8) -> i64 {
    let bits = 7 * bytes_used as u32;
    if first & 0x40 == 0 || bits >= 64 {
        return value as i64;
    }
    (value | (u64::MAX << bits)) as i64
}

/// Walk `code` (bytecode from its first opcode) instruction by instruction.
/// Stops at the end, or early at the first instruction that is cut short,
/// unknown, or malformed; [`Walk::stop`] then says why.
pub fn walk(code: &[u8]) -> Walk<'_> {
    Walk {
        code,
        pos: 0,
        stop: None,
    }
}

/// The iterator [`walk`] returns.
#[derive(Debug, Clone)]
pub struct Walk<'a> {
    code: &'a [u8],
    pos: usize,
    stop: Option<Stop>,
}

impl Walk<'_> {
    /// Why the walk ended before the end of the bytes (`None` while it runs
    /// and when it reached the end cleanly).
    pub fn stop(&self) -> Option<Stop> {
        self.stop
    }
}

impl Iterator for Walk<'_> {
    type Item = Instruction;

    fn next(&mut self) -> Option<Instruction> {
        if self.stop.is_some() || self.pos >= self.code.len() {
            return None;
        }
        match decode(self.code, self.pos) {
            Ok(ins) => {
                self.pos = ins.end();
                Some(ins)
            }
            Err(stop) => {
                self.stop = Some(stop);
                None
            }
        }
    }
}

/// The whole walk at once: the instructions, and why it stopped early if it did.
pub fn disassemble(code: &[u8]) -> (Vec<Instruction>, Option<Stop>) {
    let mut w = walk(code);
    let instructions: Vec<Instruction> = w.by_ref().collect();
    (instructions, w.stop())
}

/// The opcode of the instruction that starts at `offset`, if one does: walks
/// from the start, so an offset inside an instruction's argument is `None`.
pub fn opcode_at(code: &[u8], offset: usize) -> Option<u8> {
    walk(code)
        .take_while(|i| i.offset <= offset)
        .find(|i| i.offset == offset)
        .map(|i| i.opcode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_classes_follow_the_high_nibble() {
        assert_eq!(format(LOAD_ATTR), Format::Qstr);
        assert_eq!(format(BUILD_LIST), Format::VarUint);
        assert_eq!(format(CALL_METHOD), Format::VarUint);
        assert_eq!(format(FOR_ITER), Format::Offset);
        assert_eq!(format(RETURN_VALUE), Format::Byte);
        assert_eq!(format(BINARY_OP_MULTI), Format::Byte);
        let extra: Vec<u8> = (0..=255u8)
            .filter(|&b| is_known(b) && has_extra_byte(b))
            .collect();
        assert_eq!(extra, vec![MAKE_CLOSURE, MAKE_CLOSURE_DEFARGS, UNWIND_JUMP]);
    }

    #[test]
    fn every_multi_opcode_range_is_complete_and_disjoint() {
        let known = (0..=255u8).filter(|&b| is_known(b)).count();
        // 72 fixed opcodes + 64 small ints + 16 + 16 fast locals + 4 unary + 35 binary.
        assert_eq!(known, 72 + 64 + 16 + 16 + 4 + 35);
        assert_eq!(small_int_multi(0x70 + 63), Some(47));
        assert_eq!(small_int_multi(0x70 + 64), None);
        assert_eq!(load_fast_multi(0xbf), Some(15));
        assert_eq!(store_fast_multi(0xcf), Some(15));
        assert_eq!(unary_op(0xd4), None);
        assert_eq!(binary_op(0xf9), Some("power"));
        assert_eq!(binary_op(0xfa), None);
    }
}
