//! MicroPython v1.25 bytecode opcode names (from the numbering in `py/bc0.h`),
//! for the opcode mix, disassembly in reports, and cause analysis.

const BINARY_OPS: [&str; 35] = [
    "<",
    ">",
    "==",
    "<=",
    ">=",
    "!=",
    "in",
    "is",
    "exception_match",
    "|=",
    "^=",
    "&=",
    "<<=",
    ">>=",
    "+=",
    "-=",
    "*=",
    "@=",
    "//=",
    "/=",
    "%=",
    "**=",
    "|",
    "^",
    "&",
    "<<",
    ">>",
    "+",
    "-",
    "*",
    "@",
    "//",
    "/",
    "%",
    "**",
];
const UNARY_OPS: [&str; 4] = ["+x", "-x", "~x", "not"];

pub const LOAD_ATTR: u8 = 0x13;
pub const LOAD_METHOD: u8 = 0x14;
pub const BUILD_TUPLE: u8 = 0x2a;
pub const BUILD_LIST: u8 = 0x2b;
pub const BUILD_MAP: u8 = 0x2c;
pub const BUILD_SET: u8 = 0x2d;
pub const BUILD_SLICE: u8 = 0x2e;
pub const STORE_COMP: u8 = 0x2f;
pub const MAKE_FUNCTION: u8 = 0x32;
pub const MAKE_FUNCTION_DEFARGS: u8 = 0x33;
pub const MAKE_CLOSURE: u8 = 0x20;
pub const MAKE_CLOSURE_DEFARGS: u8 = 0x21;
pub const CALL_FUNCTION: u8 = 0x34;
pub const CALL_FUNCTION_VAR_KW: u8 = 0x35;
pub const CALL_METHOD: u8 = 0x36;
pub const CALL_METHOD_VAR_KW: u8 = 0x37;
pub const LOAD_SUBSCR: u8 = 0x55;
pub const BINARY_OP_MULTI: u8 = 0xd7;
pub const UNARY_OP_MULTI: u8 = 0xd0;

/// The binary operator of a BINARY_OP opcode (`+`, `+=`, ...).
pub fn binary_op(opcode: u8) -> Option<&'static str> {
    opcode
        .checked_sub(BINARY_OP_MULTI)
        .and_then(|i| BINARY_OPS.get(i as usize).copied())
}

/// The opcode's name, e.g. `LOAD_ATTR`, `BINARY_OP +`, `LOAD_FAST 3`.
pub fn name(opcode: u8) -> String {
    let fixed = match opcode {
        0x10 => "LOAD_CONST_STRING",
        0x11 => "LOAD_NAME",
        0x12 => "LOAD_GLOBAL",
        0x13 => "LOAD_ATTR",
        0x14 => "LOAD_METHOD",
        0x15 => "LOAD_SUPER_METHOD",
        0x16 => "STORE_NAME",
        0x17 => "STORE_GLOBAL",
        0x18 => "STORE_ATTR",
        0x19 => "DELETE_NAME",
        0x1a => "DELETE_GLOBAL",
        0x1b => "IMPORT_NAME",
        0x1c => "IMPORT_FROM",
        0x20 => "MAKE_CLOSURE",
        0x21 => "MAKE_CLOSURE_DEFARGS",
        0x22 => "LOAD_CONST_SMALL_INT",
        0x23 => "LOAD_CONST_OBJ",
        0x24 => "LOAD_FAST_N",
        0x25 => "LOAD_DEREF",
        0x26 => "STORE_FAST_N",
        0x27 => "STORE_DEREF",
        0x28 => "DELETE_FAST",
        0x29 => "DELETE_DEREF",
        0x2a => "BUILD_TUPLE",
        0x2b => "BUILD_LIST",
        0x2c => "BUILD_MAP",
        0x2d => "BUILD_SET",
        0x2e => "BUILD_SLICE",
        0x2f => "STORE_COMP",
        0x30 => "UNPACK_SEQUENCE",
        0x31 => "UNPACK_EX",
        0x32 => "MAKE_FUNCTION",
        0x33 => "MAKE_FUNCTION_DEFARGS",
        0x34 => "CALL_FUNCTION",
        0x35 => "CALL_FUNCTION_VAR_KW",
        0x36 => "CALL_METHOD",
        0x37 => "CALL_METHOD_VAR_KW",
        0x40 => "UNWIND_JUMP",
        0x42 => "JUMP",
        0x43 => "POP_JUMP_IF_TRUE",
        0x44 => "POP_JUMP_IF_FALSE",
        0x45 => "JUMP_IF_TRUE_OR_POP",
        0x46 => "JUMP_IF_FALSE_OR_POP",
        0x47 => "SETUP_WITH",
        0x48 => "SETUP_EXCEPT",
        0x49 => "SETUP_FINALLY",
        0x4a => "POP_EXCEPT_JUMP",
        0x4b => "FOR_ITER",
        0x50 => "LOAD_CONST_FALSE",
        0x51 => "LOAD_CONST_NONE",
        0x52 => "LOAD_CONST_TRUE",
        0x53 => "LOAD_NULL",
        0x54 => "LOAD_BUILD_CLASS",
        0x55 => "LOAD_SUBSCR",
        0x56 => "STORE_SUBSCR",
        0x57 => "DUP_TOP",
        0x58 => "DUP_TOP_TWO",
        0x59 => "POP_TOP",
        0x5a => "ROT_TWO",
        0x5b => "ROT_THREE",
        0x5c => "WITH_CLEANUP",
        0x5d => "END_FINALLY",
        0x5e => "GET_ITER",
        0x5f => "GET_ITER_STACK",
        0x62 => "STORE_MAP",
        0x63 => "RETURN_VALUE",
        0x64 => "RAISE_LAST",
        0x65 => "RAISE_OBJ",
        0x66 => "RAISE_FROM",
        0x67 => "YIELD_VALUE",
        0x68 => "YIELD_FROM",
        0x69 => "IMPORT_STAR",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_string();
    }
    match opcode {
        0x70..=0xaf => format!("LOAD_CONST_SMALL_INT {}", opcode as i32 - 0x70 - 16),
        0xb0..=0xbf => format!("LOAD_FAST {}", opcode - 0xb0),
        0xc0..=0xcf => format!("STORE_FAST {}", opcode - 0xc0),
        0xd0..=0xd3 => format!("UNARY_OP {}", UNARY_OPS[(opcode - 0xd0) as usize]),
        _ => match binary_op(opcode) {
            Some(op) => format!("BINARY_OP {op}"),
            None => format!("OPCODE {opcode:#04x}"),
        },
    }
}

/// A call that packs `*args`/`**kwargs`.
pub fn is_star_call(opcode: u8) -> bool {
    matches!(opcode, CALL_FUNCTION_VAR_KW | CALL_METHOD_VAR_KW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_fixed_and_multi_opcodes() {
        assert_eq!(name(LOAD_ATTR), "LOAD_ATTR");
        assert_eq!(name(0x70 + 16), "LOAD_CONST_SMALL_INT 0");
        assert_eq!(name(0x70), "LOAD_CONST_SMALL_INT -16");
        assert_eq!(name(0xb2), "LOAD_FAST 2");
        assert_eq!(name(BINARY_OP_MULTI + 27), "BINARY_OP +");
        assert_eq!(name(BINARY_OP_MULTI + 14), "BINARY_OP +=");
        assert_eq!(name(BINARY_OP_MULTI + 34), "BINARY_OP **");
        assert_eq!(name(0xfa), "OPCODE 0xfa");
        assert_eq!(binary_op(0x10), None);
    }
}
