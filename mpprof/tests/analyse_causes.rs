//! Cause classification and hints, rule by rule, through the public API.

use mpprof::analysis::classify::{
    classify, hint, AllocFacts, FLAG_EXCEPTION, FLAG_PYTHON_CLASS, RAW_BUFFER,
};
use mpprof::analysis::opcodes;
use mpprof_profile::Cause;

fn typed(name: &str) -> Cause {
    classify(&AllocFacts {
        type_name: Some(name),
        ..AllocFacts::default()
    })
}

fn typed_at(name: &str, opcode: u8) -> Cause {
    classify(&AllocFacts {
        type_name: Some(name),
        opcode: Some(opcode),
        ..AllocFacts::default()
    })
}

fn raw_at(opcode: Option<u8>) -> Cause {
    classify(&AllocFacts {
        opcode,
        ..AllocFacts::default()
    })
}

fn binary(op_index: u8) -> u8 {
    opcodes::BINARY_OP_MULTI + op_index
}

fn raw() -> Cause {
    Cause::Other(RAW_BUFFER.to_string())
}

#[test]
fn micropython_type_names_give_their_causes() {
    let table = [
        ("float", Cause::Float),
        ("int", Cause::Bigint),
        ("bound_method", Cause::BoundMethod),
        ("tuple", Cause::Tuple),
        ("list", Cause::List),
        ("dict", Cause::Dict),
        ("OrderedDict", Cause::Dict),
        ("set", Cause::Set),
        ("frozenset", Cause::Set),
        ("str", Cause::Str),
        ("bytes", Cause::Bytes),
        ("bytearray", Cause::Bytes),
        ("memoryview", Cause::Bytes),
        ("array", Cause::Bytes),
        ("function", Cause::Closure),
        ("closure", Cause::Closure),
        // objcell.c names the cell type with the empty qstr.
        ("", Cause::Closure),
        ("generator", Cause::Generator),
    ];
    for (name, cause) in table {
        assert_eq!(typed(name), cause, "type {name:?}");
    }
}

#[test]
fn unknown_types_keep_their_name() {
    assert_eq!(typed("slice"), Cause::Other("slice".into()));
    assert_eq!(typed("FileIO"), Cause::Other("FileIO".into()));
    assert_eq!(typed("range"), Cause::Other("range".into()));
}

#[test]
fn a_generator_made_by_make_function_is_the_generator_function() {
    // mp_type_gen_wrap (the function) and mp_type_gen_instance share the name.
    for op in [
        opcodes::MAKE_FUNCTION,
        opcodes::MAKE_FUNCTION_DEFARGS,
        opcodes::MAKE_CLOSURE,
        opcodes::MAKE_CLOSURE_DEFARGS,
    ] {
        assert_eq!(
            typed_at("generator", op),
            Cause::Closure,
            "{}",
            opcodes::name(op)
        );
    }
    assert_eq!(
        typed_at("generator", opcodes::CALL_FUNCTION),
        Cause::Generator
    );
}

#[test]
fn type_flags_win_over_names() {
    let exc = |name, flags| {
        classify(&AllocFacts {
            type_name: Some(name),
            type_flags: flags,
            ..AllocFacts::default()
        })
    };
    assert_eq!(exc("ValueError", FLAG_EXCEPTION), Cause::Exception);
    // A Python subclass of an exception is both: it is an exception.
    assert_eq!(
        exc("SensorError", FLAG_EXCEPTION | FLAG_PYTHON_CLASS),
        Cause::Exception
    );
    assert_eq!(exc("Led", FLAG_PYTHON_CLASS), Cause::Instance);
    // A Python subclass of list is an instance of the user's class.
    assert_eq!(exc("list", FLAG_PYTHON_CLASS), Cause::Instance);
    assert_eq!(exc("ValueError", 0), Cause::Other("ValueError".into()));
}

#[test]
fn growth_is_growth_whatever_else_is_known() {
    for type_name in [None, Some("list"), Some("float")] {
        let f = AllocFacts {
            type_name,
            growth: true,
            opcode: Some(opcodes::CALL_METHOD),
            companion_of: Some(&Cause::Str),
            type_flags: FLAG_EXCEPTION,
            calls_bytecode: true,
            frozen_import: false,
            heap_frame: false,
        };
        assert_eq!(classify(&f), Cause::Growth, "{type_name:?}");
    }
}

#[test]
fn imports_and_heap_frames_are_named() {
    // Whatever IMPORT_NAME allocates is compiling the module, typed or not.
    for type_name in [None, Some("float"), Some("FileIO"), Some("function")] {
        for op in [opcodes::IMPORT_NAME, opcodes::IMPORT_FROM] {
            let f = AllocFacts {
                type_name,
                opcode: Some(op),
                ..AllocFacts::default()
            };
            assert_eq!(classify(&f), Cause::Import, "{type_name:?}");
        }
        // A frozen module run from an attribute load (asyncio's lazy
        // submodules) is an import too.
        let lazy = AllocFacts {
            type_name,
            opcode: Some(opcodes::LOAD_METHOD),
            frozen_import: true,
            ..AllocFacts::default()
        };
        assert_eq!(classify(&lazy), Cause::Import, "{type_name:?}");
    }
    // An untyped block at a call of the program's own function is its frame;
    // at a call of something else it stays unexplained.
    let frame = AllocFacts {
        opcode: Some(opcodes::CALL_FUNCTION),
        calls_bytecode: true,
        ..AllocFacts::default()
    };
    assert_eq!(classify(&frame), Cause::Frame);
    assert_eq!(
        classify(&AllocFacts {
            calls_bytecode: false,
            ..frame
        }),
        raw()
    );
}

#[test]
fn a_raw_buffer_after_a_typed_object_is_its_storage() {
    for companion in [
        Cause::List,
        Cause::Dict,
        Cause::Bigint,
        Cause::Other("slice".into()),
    ] {
        let f = AllocFacts {
            opcode: Some(opcodes::BUILD_LIST),
            companion_of: Some(&companion),
            ..AllocFacts::default()
        };
        assert_eq!(classify(&f), companion);
    }
    // The companion only explains raw buffers, never a typed object.
    let typed_after = AllocFacts {
        type_name: Some("float"),
        companion_of: Some(&Cause::List),
        ..AllocFacts::default()
    };
    assert_eq!(classify(&typed_after), Cause::Float);
}

#[test]
fn raw_buffers_explained_by_the_opcode() {
    // Star calls: the argument array built to unpack *seq/**map.
    assert_eq!(raw_at(Some(opcodes::CALL_FUNCTION_VAR_KW)), Cause::Tuple);
    assert_eq!(raw_at(Some(opcodes::CALL_METHOD_VAR_KW)), Cause::Tuple);
    // str/bytes text built before its object by +, *, % and their in-place forms.
    for i in [
        opcodes::BINARY_OP_ADD,
        opcodes::BINARY_OP_INPLACE_ADD,
        opcodes::BINARY_OP_MULTIPLY,
        opcodes::BINARY_OP_INPLACE_MULTIPLY,
        opcodes::BINARY_OP_MODULO,
        opcodes::BINARY_OP_INPLACE_MODULO,
    ] {
        assert_eq!(
            raw_at(Some(binary(i))),
            Cause::Str,
            "{}",
            opcodes::name(binary(i))
        );
    }
    // Stores allocate raw blocks only to resize a hash table.
    for op in [
        opcodes::STORE_NAME,
        opcodes::STORE_GLOBAL,
        opcodes::STORE_ATTR,
        opcodes::STORE_SUBSCR,
        opcodes::STORE_MAP,
        opcodes::STORE_COMP,
    ] {
        assert_eq!(raw_at(Some(op)), Cause::Growth, "{}", opcodes::name(op));
    }
}

#[test]
fn raw_buffers_without_evidence_stay_unexplained() {
    assert_eq!(raw_at(None), raw());
    // A plain call: a big frame or a C work buffer, not knowable here.
    assert_eq!(raw_at(Some(opcodes::CALL_FUNCTION)), raw());
    assert_eq!(raw_at(Some(opcodes::CALL_METHOD)), raw());
    assert_eq!(raw_at(Some(opcodes::LOAD_SUBSCR)), raw());
    // Operators that never build text first.
    assert_eq!(raw_at(Some(binary(opcodes::BINARY_OP_TRUE_DIVIDE))), raw());
    assert_eq!(raw_at(Some(binary(0))), raw());
    assert_eq!(raw_at(Some(0xfa)), raw(), "not an opcode");
}

#[test]
fn bound_method_hints_name_the_attribute() {
    let h = hint(
        &Cause::BoundMethod,
        Some(opcodes::LOAD_ATTR),
        Some("        register(self.cb)  # ALLOC: bound_method"),
    );
    assert_eq!(
        h,
        "cache `self.cb` once: `self._cb = self.cb` in __init__, pass `self._cb`"
    );
    let h = hint(
        &Cause::BoundMethod,
        Some(opcodes::LOAD_ATTR),
        Some("    timer.init(period=10, callback=sensor.read)"),
    );
    assert_eq!(
        h,
        "cache `sensor.read` once, before the loop: `read = sensor.read`, then use `read`"
    );
    // Nothing to name: the cause's own fix.
    let h = hint(
        &Cause::BoundMethod,
        Some(opcodes::LOAD_ATTR),
        Some("    cb()"),
    );
    assert_eq!(h, Cause::BoundMethod.fix());
}

#[test]
fn hints_follow_the_opcode() {
    let star = hint(
        &Cause::Tuple,
        Some(opcodes::CALL_FUNCTION_VAR_KW),
        Some("f(*args)"),
    );
    assert!(star.contains("`*` unpacking"), "{star}");
    let packs = hint(
        &Cause::Tuple,
        Some(opcodes::CALL_FUNCTION),
        Some("t += total(i, i)"),
    );
    assert!(packs.contains("`total` packs its `*args`"), "{packs}");
    let ret = hint(
        &Cause::Tuple,
        Some(opcodes::BUILD_TUPLE),
        Some("    return a, b"),
    );
    assert!(ret.starts_with("returning several values"), "{ret}");
    let kw = hint(
        &Cause::Dict,
        Some(opcodes::CALL_FUNCTION),
        Some("n += configure(speed=i)"),
    );
    assert!(
        kw.contains("`configure` collects keyword arguments"),
        "{kw}"
    );
    let disp = hint(&Cause::Dict, Some(opcodes::BUILD_MAP), Some("d = {'a': x}"));
    assert!(disp.starts_with("a dict display"), "{disp}");
    let set = hint(&Cause::Set, Some(opcodes::BUILD_SET), None);
    assert!(set.starts_with("a set display"), "{set}");
    let frame = hint(&raw(), Some(opcodes::CALL_FUNCTION), Some("big(1, 2, 3)"));
    assert!(frame.contains("11 words"), "{frame}");
    let traceback = hint(&Cause::Growth, Some(opcodes::RAISE_OBJ), Some("raise ERR"));
    assert!(traceback.contains("traceback"), "{traceback}");
    let attr = hint(
        &Cause::Growth,
        Some(opcodes::STORE_ATTR),
        Some("self.extra = 1"),
    );
    assert!(attr.contains("__init__"), "{attr}");
}

#[test]
fn hints_use_the_source_text() {
    let cases: [(Cause, Option<u8>, &str, &str); 18] = [
        (
            Cause::Float,
            None,
            "v = raw / 4095",
            "`/` always makes a float",
        ),
        (Cause::Float, None, "v = raw / 4095", "`v = raw // 4095`"),
        (
            Cause::Float,
            None,
            "    x = x + 0.25  # step",
            "scaled by 100 (fixed point), `x = x + 25`",
        ),
        (
            Cause::Bytes,
            None,
            "data = uart.read(4)",
            "`buf = bytearray(4)` before the loop, then `uart.readinto(buf)`",
        ),
        (
            Cause::Bytes,
            Some(opcodes::CALL_FUNCTION),
            "z = bytearray(64)",
            "`z = bytearray(64)` once, before the loop",
        ),
        (Cause::Float, None, "v = float(raw)", "`float(raw)` boxes"),
        (
            Cause::Str,
            Some(binary(opcodes::BINARY_OP_ADD)),
            "msg = base + tail",
            "`+` on strings",
        ),
        (
            Cause::Str,
            Some(binary(opcodes::BINARY_OP_MODULO)),
            "s = '%d' % n",
            "`%` formatting",
        ),
        (
            Cause::Str,
            Some(opcodes::CALL_METHOD),
            "s = '{}'.format(n)",
            "formatting builds",
        ),
        (
            Cause::Str,
            Some(opcodes::CALL_FUNCTION),
            "s = str(n)",
            "`str(n)` converts",
        ),
        (
            Cause::Bytes,
            Some(opcodes::LOAD_SUBSCR),
            "chunk = buf[2:6]",
            "`buf[2:6]` copies",
        ),
        (
            Cause::Bytes,
            Some(opcodes::CALL_METHOD),
            "data = uart.read(4)",
            "`uart.read(4)` returns",
        ),
        (
            Cause::Closure,
            Some(opcodes::MAKE_FUNCTION),
            "f = lambda x: x + 1",
            "the lambda",
        ),
        (
            Cause::Closure,
            Some(opcodes::MAKE_FUNCTION),
            "    def inner():",
            "a `def` makes a new function object each time it runs",
        ),
        (
            Cause::Generator,
            Some(opcodes::CALL_FUNCTION),
            "g = counter(i)",
            "calling `counter`",
        ),
        (
            Cause::Instance,
            Some(opcodes::CALL_FUNCTION),
            "s = Sample()",
            "`Sample()` makes",
        ),
        (
            Cause::Growth,
            Some(opcodes::CALL_METHOD),
            "items.append(i)",
            "`items.append(i)` regrows",
        ),
        (
            Cause::Other("slice".into()),
            Some(opcodes::BUILD_SLICE),
            "x = mv[2:6]",
            "`mv[2:6]` builds a slice",
        ),
    ];
    for (cause, op, src, expected) in cases {
        let h = hint(&cause, op, Some(src));
        assert!(
            h.contains(expected),
            "{}: {src:?} gave {h:?}",
            cause.label()
        );
    }
}

#[test]
fn module_level_definitions_are_one_offs() {
    let def = hint(
        &Cause::Closure,
        Some(opcodes::MAKE_FUNCTION),
        Some("def hot():"),
    );
    assert!(def.contains("once, at import"), "{def}");
    let class = hint(
        &Cause::Dict,
        Some(opcodes::CALL_FUNCTION),
        Some("class Sensor:"),
    );
    assert!(class.contains("once, at import"), "{class}");
    let nested = hint(
        &Cause::Closure,
        Some(opcodes::CALL_FUNCTION),
        Some("    class Local:"),
    );
    assert!(
        nested.contains("define the class once, at module level"),
        "{nested}"
    );
    let global = hint(&Cause::Growth, Some(opcodes::STORE_NAME), Some("N = 100"));
    assert!(global.contains("namespace"), "{global}");
    // An unknown callee is described, not quoted as code.
    let kw = hint(&Cause::Dict, Some(opcodes::CALL_FUNCTION), Some("x = y"));
    assert!(kw.starts_with("the called function collects"), "{kw}");
}

#[test]
fn hints_ignore_comments_and_strings() {
    // The `+` is in a comment and the slice in a string: no specific hint.
    let h = hint(
        &Cause::Str,
        Some(opcodes::CALL_FUNCTION),
        Some("s = make()  # a + b"),
    );
    assert_eq!(h, Cause::Str.fix());
    let h = hint(
        &Cause::Bytes,
        Some(opcodes::CALL_FUNCTION),
        Some("log('buf[2:6]')"),
    );
    assert_eq!(h, Cause::Bytes.fix());
}

#[test]
fn without_source_or_evidence_the_hint_is_the_catalogue_fix() {
    for c in Cause::all() {
        assert_eq!(hint(c, None, None), c.fix(), "{}", c.label());
    }
    let odd = Cause::Other("FileIO".into());
    assert_eq!(
        hint(&odd, Some(opcodes::CALL_FUNCTION), Some("f = open(p)")),
        odd.fix()
    );
}

proptest::proptest! {
    #[test]
    fn hints_never_panic_on_any_source_line(
        src in "[a-zA-Z_.()\\[\\]:'\"#+%/={} ,*éü€0-9\\\\]{0,60}",
        op in proptest::option::of(proptest::prelude::any::<u8>()),
        which in 0usize..16,
    ) {
        let mut causes: Vec<Cause> = Cause::all().to_vec();
        causes.push(Cause::Other("slice".into()));
        causes.push(raw());
        let c = &causes[which % causes.len()];
        let h = hint(c, op, Some(&src));
        proptest::prop_assert!(!h.is_empty());
    }
}
