//! The opcode table and the bytecode walker, checked three ways: against the
//! disassembly MicroPython v1.25 itself printed for `fixtures/bytecode/sample.py`
//! (`micropython -v -v`, saved in `sample.dump.txt`), on hand-assembled
//! sequences, and on arbitrary bytes (never a panic, always a consistent walk).

use std::path::PathBuf;

use mpprof::analysis::opcodes::{self, Arg, Instruction, Stop};
use proptest::prelude::*;

/// One code block of the dump: its raw bytes from the first opcode, and the
/// disassembly lines (offset, mnemonic, the rest of the line).
struct Block {
    name: String,
    bytecode: Vec<u8>,
    declared_len: usize,
    lines: Vec<(usize, String, String)>,
}

fn dump_blocks() -> Vec<Block> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bytecode/sample.dump.txt");
    let text = std::fs::read_to_string(&path).expect("the recorded dump is in the repository");
    let mut blocks: Vec<Block> = Vec::new();
    let mut raw: Vec<u8> = Vec::new();
    let mut prelude = 0usize;
    let mut in_hex = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("File ") {
            let name = rest.split('\'').nth(1).expect("block name").to_string();
            blocks.push(Block {
                name,
                bytecode: Vec::new(),
                declared_len: 0,
                lines: Vec::new(),
            });
            continue;
        }
        if let Some(rest) = line.strip_prefix("Raw bytecode (code_info_size=") {
            let (info, rest) = rest.split_once(", bytecode_size=").expect("sizes");
            prelude = info.parse().expect("code_info_size");
            let declared = rest.trim_end_matches("):").parse().expect("bytecode_size");
            blocks.last_mut().expect("a block").declared_len = declared;
            raw.clear();
            in_hex = true;
            continue;
        }
        if in_hex {
            if line.starts_with(' ') {
                raw.extend(
                    line.split_whitespace()
                        .map(|h| u8::from_str_radix(h, 16).expect("hex")),
                );
                continue;
            }
            in_hex = false;
            blocks.last_mut().expect("a block").bytecode = raw[prelude..].to_vec();
        }
        // Disassembly: "NN MNEMONIC rest" (the script's own output also starts
        // with digits, but never with an upper-case word after them).
        let mut parts = line.splitn(3, ' ');
        let (Some(off), Some(mnem)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(off) = off.parse::<usize>() else {
            continue;
        };
        if mnem.is_empty() || !mnem.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        if let Some(b) = blocks.last_mut() {
            b.lines.push((
                off,
                mnem.to_string(),
                parts.next().unwrap_or("").to_string(),
            ));
        }
    }
    blocks
}

/// Python's special-method name of each binary operator, to cross-check our
/// operator order with the names MicroPython printed.
fn dunder_of_binary(op: &str) -> &'static str {
    match op {
        "less" => "__lt__",
        "more" => "__gt__",
        "equal" => "__eq__",
        "less_equal" => "__le__",
        "more_equal" => "__ge__",
        "not_equal" => "__ne__",
        "in" => "__contains__",
        "inplace_or" => "__ior__",
        "inplace_xor" => "__ixor__",
        "inplace_and" => "__iand__",
        "inplace_lshift" => "__ilshift__",
        "inplace_rshift" => "__irshift__",
        "inplace_add" => "__iadd__",
        "inplace_subtract" => "__isub__",
        "inplace_multiply" => "__imul__",
        "inplace_mat_multiply" => "__imatmul__",
        "inplace_floor_divide" => "__ifloordiv__",
        "inplace_true_divide" => "__itruediv__",
        "inplace_modulo" => "__imod__",
        "inplace_power" => "__ipow__",
        "or" => "__or__",
        "xor" => "__xor__",
        "and" => "__and__",
        "lshift" => "__lshift__",
        "rshift" => "__rshift__",
        "add" => "__add__",
        "subtract" => "__sub__",
        "multiply" => "__mul__",
        "mat_multiply" => "__matmul__",
        "floor_divide" => "__floordiv__",
        "true_divide" => "__truediv__",
        "modulo" => "__mod__",
        "power" => "__pow__",
        _ => "",
    }
}

fn dunder_of_unary(op: &str) -> &'static str {
    match op {
        "positive" => "__pos__",
        "negative" => "__neg__",
        "invert" => "__invert__",
        _ => "",
    }
}

/// The first number in a disassembly argument text.
fn first_number(rest: &str) -> i64 {
    rest.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no number in {rest:?}"))
}

/// Check one instruction's decoded argument against MicroPython's text for it.
fn check_argument(block: &str, ins: &Instruction, mnem: &str, rest: &str) {
    let at = format!("{block}@{}: {mnem} {rest}", ins.offset);
    let op = ins.opcode;
    match mnem {
        "LOAD_CONST_SMALL_INT" => {
            let ours = opcodes::small_int_multi(op).or(match ins.arg {
                Arg::Int(v) => Some(v),
                _ => None,
            });
            assert_eq!(ours, Some(first_number(rest)), "{at}");
        }
        "LOAD_FAST" => assert_eq!(
            opcodes::load_fast_multi(op).map(i64::from),
            Some(first_number(rest)),
            "{at}"
        ),
        "STORE_FAST" => assert_eq!(
            opcodes::store_fast_multi(op).map(i64::from),
            Some(first_number(rest)),
            "{at}"
        ),
        "LOAD_FAST_N" | "STORE_FAST_N" | "LOAD_DEREF" | "STORE_DEREF" | "DELETE_FAST"
        | "DELETE_DEREF" | "BUILD_TUPLE" | "BUILD_LIST" | "BUILD_MAP" | "BUILD_SET"
        | "BUILD_SLICE" | "STORE_COMP" | "UNPACK_SEQUENCE" | "UNPACK_EX" => {
            assert_eq!(ins.arg, Arg::Uint(first_number(rest) as u64), "{at}");
        }
        "JUMP"
        | "POP_JUMP_IF_TRUE"
        | "POP_JUMP_IF_FALSE"
        | "JUMP_IF_TRUE_OR_POP"
        | "JUMP_IF_FALSE_OR_POP"
        | "SETUP_WITH"
        | "SETUP_EXCEPT"
        | "SETUP_FINALLY"
        | "POP_EXCEPT_JUMP"
        | "FOR_ITER" => {
            assert_eq!(
                ins.arg,
                Arg::Jump {
                    target: first_number(rest)
                },
                "{at}"
            );
        }
        "UNWIND_JUMP" => {
            let mut nums = rest
                .split_whitespace()
                .map(|t| t.parse::<i64>().expect("number"));
            assert_eq!(
                ins.arg,
                Arg::Jump {
                    target: nums.next().expect("target")
                },
                "{at}"
            );
            assert_eq!(ins.extra.map(i64::from), nums.next(), "{at}");
        }
        "MAKE_CLOSURE" | "MAKE_CLOSURE_DEFARGS" => {
            let closed: i64 = rest
                .split_whitespace()
                .nth(1)
                .expect("count")
                .parse()
                .expect("number");
            assert!(matches!(ins.arg, Arg::Child(_)), "{at}");
            assert_eq!(ins.extra.map(i64::from), Some(closed), "{at}");
        }
        "MAKE_FUNCTION" | "MAKE_FUNCTION_DEFARGS" => {
            assert!(matches!(ins.arg, Arg::Child(_)), "{at}")
        }
        "CALL_FUNCTION" | "CALL_FUNCTION_VAR_KW" | "CALL_METHOD" | "CALL_METHOD_VAR_KW" => {
            let Arg::Call {
                positional,
                keyword,
            } = ins.arg
            else {
                panic!("{at}: {:?}", ins.arg)
            };
            assert_eq!(rest, format!("n={positional} nkw={keyword}"), "{at}");
        }
        "BINARY_OP" => {
            let index = first_number(rest);
            assert_eq!(
                opcodes::binary_op_index(op).map(i64::from),
                Some(index),
                "{at}"
            );
            let printed = rest.split_whitespace().nth(1).unwrap_or("");
            let ours = opcodes::binary_op(op).expect("a binary op");
            if !printed.is_empty() {
                assert_eq!(dunder_of_binary(ours), printed, "{at}");
            }
        }
        "UNARY_OP" => {
            let index = first_number(rest);
            assert_eq!(
                opcodes::unary_op_index(op).map(i64::from),
                Some(index),
                "{at}"
            );
            let printed = rest.split_whitespace().nth(1).unwrap_or("");
            let ours = opcodes::unary_op(op).expect("a unary op");
            if !printed.is_empty() {
                assert_eq!(dunder_of_unary(ours), printed, "{at}");
            }
        }
        _ if opcodes::format(op) == opcodes::Format::Qstr => {
            assert!(matches!(ins.arg, Arg::Qstr(_)), "{at}");
        }
        _ => {}
    }
}

#[test]
fn the_walk_matches_micropythons_own_disassembly() {
    let blocks = dump_blocks();
    assert!(
        blocks.len() >= 20,
        "the dump has {} code blocks",
        blocks.len()
    );
    let mut mnemonics_seen = std::collections::BTreeSet::new();
    let mut two_byte_jumps = 0;
    let mut backward_jumps = 0;
    for b in &blocks {
        assert_eq!(
            b.bytecode.len(),
            b.declared_len,
            "{}: raw byte count",
            b.name
        );
        let (ins, stop) = opcodes::disassemble(&b.bytecode);
        assert_eq!(stop, None, "{}: stopped early", b.name);
        assert_eq!(ins.len(), b.lines.len(), "{}: instruction count", b.name);
        assert_eq!(
            ins.iter().map(|i| i.len).sum::<usize>(),
            b.bytecode.len(),
            "{}",
            b.name
        );
        for (i, (off, mnem, rest)) in ins.iter().zip(&b.lines) {
            assert_eq!(i.offset, *off, "{}: offsets", b.name);
            let ours = i.name();
            let family = ours.split(' ').next().unwrap_or("");
            assert_eq!(family, mnem, "{}@{off}", b.name);
            check_argument(&b.name, i, mnem, rest);
            mnemonics_seen.insert(mnem.clone());
            if let Arg::Jump { target } = i.arg {
                if opcodes::format(i.opcode) == opcodes::Format::Offset
                    && i.len - usize::from(i.extra.is_some()) == 3
                {
                    two_byte_jumps += 1;
                }
                if target <= i.offset as i64 {
                    backward_jumps += 1;
                }
            }
        }
    }
    // The sample exercises nearly every opcode, long and backward jumps.
    assert!(
        mnemonics_seen.len() >= 75,
        "only {} mnemonics: {mnemonics_seen:?}",
        mnemonics_seen.len()
    );
    assert!(two_byte_jumps > 0, "no two-byte jump offsets in the sample");
    assert!(backward_jumps > 0, "no backward jumps in the sample");
}

#[test]
fn hand_assembled_instructions_decode() {
    // x = 3; f(x, key=200); a[1:2]; return -1000
    let code = [
        0x70 + 16 + 3, // LOAD_CONST_SMALL_INT 3
        0xc0,          // STORE_FAST 0
        0x12,
        0x05, // LOAD_GLOBAL qstr 5
        0xb0, // LOAD_FAST 0
        0x10,
        0x06, // LOAD_CONST_STRING qstr 6
        0x22,
        0x81,
        0x48, // LOAD_CONST_SMALL_INT 200 (two bytes, sign bit clear)
        0x34,
        0x82,
        0x01, // CALL_FUNCTION n=1 nkw=1 (0x0101)
        0x2e,
        0x02, // BUILD_SLICE 2
        0x22,
        0xf8,
        0x18,      // LOAD_CONST_SMALL_INT -1000 (sign bit set)
        0xd7 + 14, // BINARY_OP inplace_add
        0x20,
        0x03,
        0x02, // MAKE_CLOSURE child 3, 2 closed over
        0x40,
        0x3e,
        0x01, // UNWIND_JUMP -2 from 24, unwind 1
        0x4b,
        0x85,
        0x01, // FOR_ITER +133 (two-byte unsigned)
        0x42,
        0x80,
        0x00, // JUMP two-byte signed: 0 - 0x4000
        0x63, // RETURN_VALUE
    ];
    let (ins, stop) = opcodes::disassemble(&code);
    assert_eq!(stop, None);
    let summary: Vec<(usize, String, usize)> =
        ins.iter().map(|i| (i.offset, i.name(), i.len)).collect();
    assert_eq!(
        summary,
        vec![
            (0, "LOAD_CONST_SMALL_INT 3".to_string(), 1),
            (1, "STORE_FAST 0".to_string(), 1),
            (2, "LOAD_GLOBAL".to_string(), 2),
            (4, "LOAD_FAST 0".to_string(), 1),
            (5, "LOAD_CONST_STRING".to_string(), 2),
            (7, "LOAD_CONST_SMALL_INT".to_string(), 3),
            (10, "CALL_FUNCTION".to_string(), 3),
            (13, "BUILD_SLICE".to_string(), 2),
            (15, "LOAD_CONST_SMALL_INT".to_string(), 3),
            (18, "BINARY_OP inplace_add".to_string(), 1),
            (19, "MAKE_CLOSURE".to_string(), 3),
            (22, "UNWIND_JUMP".to_string(), 3),
            (25, "FOR_ITER".to_string(), 3),
            (28, "JUMP".to_string(), 3),
            (31, "RETURN_VALUE".to_string(), 1),
        ]
    );
    assert_eq!(ins[2].arg, Arg::Qstr(5));
    assert_eq!(ins[5].arg, Arg::Int(200));
    assert_eq!(
        ins[6].arg,
        Arg::Call {
            positional: 1,
            keyword: 1
        }
    );
    assert_eq!(ins[8].arg, Arg::Int(-1000));
    assert_eq!((ins[10].arg, ins[10].extra), (Arg::Child(3), Some(2)));
    // UNWIND_JUMP's target counts from the end of its offset byte (24), not
    // from after the unwind count.
    assert_eq!(
        (ins[11].arg, ins[11].extra),
        (Arg::Jump { target: 24 - 2 }, Some(1))
    );
    assert_eq!(ins[12].arg, Arg::Jump { target: 28 + 133 });
    assert_eq!(
        ins[13].arg,
        Arg::Jump {
            target: 31 - 0x4000
        }
    );
    assert_eq!(ins[6].to_string(), "CALL_FUNCTION n=1 nkw=1");
    assert_eq!(ins[10].to_string(), "MAKE_CLOSURE child=3 closed=2");
    assert_eq!(ins[11].to_string(), "UNWIND_JUMP 22 unwind=1");
    assert_eq!(opcodes::opcode_at(&code, 10), Some(opcodes::CALL_FUNCTION));
    assert_eq!(opcodes::opcode_at(&code, 11), None, "inside an argument");
}

#[test]
fn names_of_operators_and_multi_opcodes() {
    assert_eq!(opcodes::name(opcodes::LOAD_ATTR), "LOAD_ATTR");
    assert_eq!(opcodes::name(opcodes::LOAD_METHOD), "LOAD_METHOD");
    assert_eq!(opcodes::name(0x70), "LOAD_CONST_SMALL_INT -16");
    assert_eq!(opcodes::name(0xaf), "LOAD_CONST_SMALL_INT 47");
    assert_eq!(opcodes::name(0xb2), "LOAD_FAST 2");
    assert_eq!(opcodes::name(0xc5), "STORE_FAST 5");
    assert_eq!(opcodes::name(0xd1), "UNARY_OP negative");
    assert_eq!(
        opcodes::name(opcodes::BINARY_OP_MULTI + opcodes::BINARY_OP_ADD),
        "BINARY_OP add"
    );
    assert_eq!(
        opcodes::name(opcodes::BINARY_OP_MULTI + opcodes::BINARY_OP_INPLACE_ADD),
        "BINARY_OP inplace_add"
    );
    assert_eq!(
        opcodes::binary_op_symbol(opcodes::BINARY_OP_MULTI + opcodes::BINARY_OP_MODULO),
        Some("%")
    );
    assert_eq!(opcodes::name(0xfa), "OPCODE 0xfa");
    assert_eq!(opcodes::name(0x00), "OPCODE 0x00");
    assert_eq!(opcodes::mnemonic(0xb2), Some("LOAD_FAST_MULTI"));
    assert_eq!(opcodes::mnemonic(0x41), None);
    assert!(opcodes::is_star_call(opcodes::CALL_METHOD_VAR_KW));
    assert!(!opcodes::is_star_call(opcodes::CALL_METHOD));
}

#[test]
fn truncated_and_garbage_bytecode_stop_the_walk() {
    // Cut inside a var-uint, inside a two-byte offset, before an extra byte.
    for (code, at) in [
        (&[0x51, 0x12, 0x85][..], 1),
        (&[0x51, 0x42, 0x80][..], 1),
        (&[0x20, 0x03][..], 0),
        (&[0x13][..], 0),
    ] {
        let mut w = opcodes::walk(code);
        let got: Vec<usize> = w.by_ref().map(|i| i.offset).collect();
        assert_eq!(got, (0..at).collect::<Vec<_>>(), "{code:02x?}");
        assert_eq!(
            w.stop(),
            Some(Stop::Truncated {
                offset: at,
                opcode: code[at]
            }),
            "{code:02x?}"
        );
    }
    // An unused byte.
    let (ins, stop) = opcodes::disassemble(&[0x59, 0x3a, 0x63]);
    assert_eq!(ins.len(), 1);
    assert_eq!(
        stop,
        Some(Stop::UnknownOpcode {
            offset: 1,
            opcode: 0x3a
        })
    );
    // A var-uint that never ends within nine bytes.
    let mut long = vec![0x2b];
    long.extend([0xff; 12]);
    let (ins, stop) = opcodes::disassemble(&long);
    assert!(ins.is_empty());
    assert_eq!(
        stop,
        Some(Stop::OversizedArgument {
            offset: 0,
            opcode: 0x2b
        })
    );
    assert!(stop.is_some_and(|s| s.to_string().contains("BUILD_LIST")));
    // Empty bytecode is a clean, empty walk.
    assert_eq!(opcodes::disassemble(&[]), (Vec::new(), None));
    assert_eq!(
        opcodes::decode(&[0x63], 5),
        Err(Stop::Truncated {
            offset: 5,
            opcode: 0
        })
    );
}

proptest! {
    #[test]
    fn any_bytes_walk_consistently(code in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut w = opcodes::walk(&code);
        let ins: Vec<Instruction> = w.by_ref().collect();
        let mut expected_offset = 0;
        for i in &ins {
            prop_assert_eq!(i.offset, expected_offset);
            prop_assert!(i.len >= 1 && i.end() <= code.len());
            prop_assert!(opcodes::is_known(i.opcode));
            expected_offset = i.end();
        }
        match w.stop() {
            None => prop_assert_eq!(expected_offset, code.len()),
            Some(s) => prop_assert_eq!(s.offset(), expected_offset),
        }
    }
}
