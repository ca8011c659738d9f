//! Allocation causes: why each allocation happened, from the allocated
//! object's type (exact where MicroPython names it), the opcode that was
//! running, and what was allocated just before at the same place; and a fix
//! made specific by the line's source text.
//!
//! The runtime reports each allocation with the object's type when it knows
//! it (`qstr_str(type->name)` of MicroPython v1.25) and as a raw buffer (no
//! type) otherwise. Raw buffers are the hard part: they are an object's
//! separate storage (a list's items, a dict's table, a big int's digits, the
//! text of a str), a hash table being resized, a function frame too big for
//! the C stack, or a C function's work buffer. Each rule below names the
//! evidence it relies on; without evidence a raw buffer stays
//! `Other("raw buffer")`.

use mpprof_profile::Cause;

use crate::analysis::opcodes;

/// `type_flags` bit: a class defined in Python (defined by the wire).
pub const FLAG_PYTHON_CLASS: u32 = crate::wire::TypeInfo::FLAG_PYTHON_CLASS;
/// `type_flags` bit: BaseException or a subclass of it (defined by the wire).
pub const FLAG_EXCEPTION: u32 = crate::wire::TypeInfo::FLAG_EXCEPTION;

/// The `Other` text of a raw buffer nothing explains.
pub const RAW_BUFFER: &str = "raw buffer";

/// What is known about one allocation site.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocFacts<'a> {
    /// The object's type name; `None` for a raw buffer (type id 0).
    pub type_name: Option<&'a str>,
    /// [`FLAG_PYTHON_CLASS`], [`FLAG_EXCEPTION`].
    pub type_flags: u32,
    /// A realloc that grew the block.
    pub growth: bool,
    /// The opcode running when the allocation happened.
    pub opcode: Option<u8>,
    /// The cause of a typed object allocated just before (or, for a raw
    /// buffer made first, just after) at the same site: the raw buffer is
    /// that object's storage.
    pub companion_of: Option<&'a Cause>,
    /// The line calls a bytecode function of the program (a name the
    /// profile's code objects have) or runs a class body: an untyped block
    /// at that call with nothing else to explain it is the callee's frame.
    pub calls_bytecode: bool,
    /// The target said a frozen module's top level ran from this site
    /// (FROZEN_IMPORT): an import, or a package's `__getattr__` importing a
    /// submodule on first use (`asyncio.Event`).
    pub frozen_import: bool,
    /// The target told the block is a bytecode frame the call put on the
    /// heap (SITE kind 2).
    pub heap_frame: bool,
}

/// The cause of an allocation.
pub fn classify(f: &AllocFacts) -> Cause {
    if f.frozen_import || matches!(f.opcode, Some(opcodes::IMPORT_NAME | opcodes::IMPORT_FROM)) {
        // Whatever IMPORT_NAME allocates is the import: compiling the
        // module's source (its parse tree, bytecode, boxed constants, the
        // file's buffers), the module object and its namespace; IMPORT_FROM
        // allocates only when it imports a submodule (`from pkg import mod`).
        return Cause::Import;
    }
    if f.growth {
        // Only containers and buffers are ever reallocated larger.
        return Cause::Growth;
    }
    if f.heap_frame {
        return Cause::Frame;
    }
    // Exception first: a Python exception class is also a Python class.
    if f.type_flags & FLAG_EXCEPTION != 0 {
        return Cause::Exception;
    }
    if f.type_flags & FLAG_PYTHON_CLASS != 0 {
        return Cause::Instance;
    }
    match f.type_name {
        Some(name) => classify_type(name, f.opcode),
        None => classify_raw(f),
    }
}

/// A typed object, by its MicroPython v1.25 type name.
fn classify_type(name: &str, opcode: Option<u8>) -> Cause {
    match name {
        "float" => Cause::Float,
        // Small ints live in the object pointer; a heap `int` is always big.
        "int" => Cause::Bigint,
        "bound_method" => Cause::BoundMethod,
        "tuple" => Cause::Tuple,
        "list" => Cause::List,
        "dict" | "OrderedDict" => Cause::Dict,
        "set" | "frozenset" => Cause::Set,
        "str" => Cause::Str,
        "bytes" | "bytearray" | "memoryview" | "array" => Cause::Bytes,
        // `function` is a bytecode function (objfun.c), `closure` one with
        // captured variables (objclosure.c); a captured variable's cell has
        // the empty name (objcell.c).
        "function" | "closure" | "cell" | "" => Cause::Closure,
        // objgenerator.c gives the generator *function* (made by MAKE_*) and
        // the generator *instance* (made by calling it) the same name.
        "generator" if opcode.is_some_and(opcodes::is_make_function) => Cause::Closure,
        "generator" => Cause::Generator,
        other => Cause::Other(other.to_string()),
    }
}

/// A raw buffer: explained by the typed object before it, or by the opcode.
fn classify_raw(f: &AllocFacts) -> Cause {
    if let Some(c) = f.companion_of {
        return c.clone();
    }
    let Some(op) = f.opcode else {
        return Cause::Other(RAW_BUFFER.to_string());
    };
    if opcodes::is_star_call(op) {
        // The argument array a `f(*seq)` / `f(**map)` call builds to unpack
        // into: the cost of star-args at the call site.
        return Cause::Tuple;
    }
    if is_text_building_op(op) {
        // str and bytes results of `+`, `*` and `%` are built in a buffer
        // first and wrapped in the object after it (objstr.c); every other
        // type these operators allocate for (list, tuple, big int, array)
        // makes its typed object first, which would have been the companion.
        // No object after the buffer means the result was an interned string.
        return Cause::Str;
    }
    if f.calls_bytecode && is_plain_call(op) {
        // fun_bc_call allocates a frame over the C-stack budget with
        // m_new_obj_var_maybe: an untyped block, at the caller's call.
        return Cause::Frame;
    }
    if opcodes::is_table_store(op) {
        // Stores allocate a raw block only to resize a hash table (map.c,
        // set rehash): a namespace, an object's attributes, a dict or a set
        // outgrowing its table.
        return Cause::Growth;
    }
    Cause::Other(RAW_BUFFER.to_string())
}

fn is_plain_call(op: u8) -> bool {
    matches!(op, opcodes::CALL_FUNCTION | opcodes::CALL_METHOD)
}

/// `+`, `+=`, `*`, `*=`, `%`, `%=`: the operators that build str/bytes text.
fn is_text_building_op(opcode: u8) -> bool {
    opcodes::binary_op_index(opcode).is_some_and(|i| {
        matches!(
            i,
            opcodes::BINARY_OP_ADD
                | opcodes::BINARY_OP_INPLACE_ADD
                | opcodes::BINARY_OP_MULTIPLY
                | opcodes::BINARY_OP_INPLACE_MULTIPLY
                | opcodes::BINARY_OP_MODULO
                | opcodes::BINARY_OP_INPLACE_MODULO
        )
    })
}

/// A specific one-line fix for a site, using the opcode and the line's source
/// text when they say more than the cause alone; the cause's own fix otherwise.
pub fn hint(cause: &Cause, opcode: Option<u8>, source_line: Option<&str>) -> String {
    let src = source_line.map(code_part).unwrap_or("");
    // Module-level statements run once, at import.
    let top_level = source_line.is_some_and(|l| !l.starts_with([' ', '\t']));
    if let Some(h) = definition_hint(cause, src, top_level) {
        return h;
    }
    let specific = match cause {
        Cause::Float => float_hint(src),
        Cause::Bigint => bigint_hint(src),
        Cause::BoundMethod => bound_method_hint(src),
        Cause::Tuple => tuple_hint(opcode, src),
        Cause::List => list_hint(opcode, src),
        Cause::Dict => dict_hint(opcode, src),
        Cause::Set => (opcode == Some(opcodes::BUILD_SET)).then(|| {
            "a set display builds a new set on every pass: build it once, outside the loop".into()
        }),
        Cause::Str => str_hint(opcode, src),
        Cause::Bytes => bytes_hint(opcode, src),
        Cause::Closure => closure_hint(opcode, src),
        Cause::Generator => generator_hint(src),
        Cause::Instance => instance_hint(src),
        Cause::Exception => exception_hint(src),
        Cause::Frame => frame_hint(src),
        Cause::Import => imported_module(src).map(|_| import_hint(src, None)),
        Cause::Growth => growth_hint(opcode, src),
        Cause::Other(t) => other_hint(t, opcode, src),
    };
    specific.unwrap_or_else(|| cause.fix().to_string())
}

/// `def` and `class` lines: what they allocate is the definition itself.
fn definition_hint(cause: &Cause, src: &str, top_level: bool) -> Option<String> {
    if src.starts_with("class ") {
        return Some(if top_level {
            "the class statement builds the class once, at import: a one-off, nothing to fix".into()
        } else {
            "this class statement builds a new class each time it runs: define the class once, at module level".into()
        });
    }
    let is_def = src.starts_with("def ") || src.starts_with("async def ");
    if !is_def || !matches!(cause, Cause::Closure) {
        return None;
    }
    if top_level {
        return Some(
            "a module-level `def` makes its function object once, at import: a one-off, nothing to fix".into(),
        );
    }
    Some(
        "a `def` makes a new function object each time it runs: keep it at module or class level, not inside a function called often".into(),
    )
}

fn float_hint(src: &str) -> Option<String> {
    if has_true_division(src) {
        return Some(format!(
            "`/` always makes a float: keep the value as a scaled int and divide with `//`: `{}`",
            floor_division(src)
        ));
    }
    if let Some(call) = find_call(src, "float") {
        return Some(format!(
            "`{call}` boxes a new float each time: keep the reading as an int and scale it"
        ));
    }
    if src.contains("math.") {
        return Some(
            "math functions return a new float on every call: precompute a table of scaled ints, or move the maths into a @micropython.viper function".into(),
        );
    }
    if let Some((literal, start, scale, scaled)) = float_literal(src) {
        let rewritten = format!("{}{scaled}{}", &src[..start], &src[start + literal.len()..]);
        return Some(format!(
            "`{literal}` makes every result a float: keep the value as an int scaled by {scale} (fixed point), `{rewritten}`, and divide by {scale} only where it is shown"
        ));
    }
    None
}

/// The first float literal in code (`0.5`, `12.25`): its text, offset,
/// the power of ten that makes it whole and the whole number.
fn float_literal(src: &str) -> Option<(&str, usize, u64, u64)> {
    let code = blank_strings(src);
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit()
            && (i == 0
                || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.'));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
            let mut k = j + 1;
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            let exponent = k < b.len() && matches!(b[k], b'e' | b'E' | b'j' | b'J');
            let decimals = (k - j - 1) as u32;
            if !exponent && decimals <= 4 {
                let text = &src[i..k];
                let scale = 10u64.pow(decimals);
                let whole: u64 = format!("{}{}", &src[i..j], &src[j + 1..k]).parse().ok()?;
                return Some((text, i, scale, whole));
            }
            i = k;
            continue;
        }
        i = j;
    }
    None
}

fn bigint_hint(src: &str) -> Option<String> {
    if src.contains("<<") {
        return Some(
            "this shift goes past the 31-bit small-int range: keep values below 2**30, or keep the wide value in an array('I')".into(),
        );
    }
    if src.contains("ticks_") {
        return Some(
            "tick arithmetic past 2**30 makes big ints: compare ticks only with time.ticks_diff() and time.ticks_add()".into(),
        );
    }
    None
}

fn bound_method_hint(src: &str) -> Option<String> {
    let attr = attribute_values(src).into_iter().next()?;
    let (owner, method) = attr.rsplit_once('.')?;
    Some(if owner == "self" {
        format!("cache `{attr}` once: `self._{method} = {attr}` in __init__, pass `self._{method}`")
    } else {
        format!("cache `{attr}` once, before the loop: `{method} = {attr}`, then use `{method}`")
    })
}

fn tuple_hint(opcode: Option<u8>, src: &str) -> Option<String> {
    let op = opcode?;
    if op == opcodes::FOR_ITER {
        return Some(iteration_tuple_hint(src));
    }
    if opcodes::is_star_call(op) {
        return Some(
            "`*` unpacking at this call builds the argument list on every call: pass the arguments one by one".into(),
        );
    }
    if op == opcodes::BUILD_TUPLE {
        return Some(if src.starts_with("return") || src.starts_with("yield") {
            "returning several values builds a tuple per call: write the results into a preallocated list or attributes".into()
        } else {
            "`(a, b)` builds a tuple on every pass: keep the values in separate variables or a preallocated list".into()
        });
    }
    if opcodes::is_call(op) {
        return Some(format!(
            "{} packs its `*args` into a new tuple per call: give it fixed parameters",
            callee_text(src)
        ));
    }
    None
}

/// A tuple made at each step of a `for` loop: the iterator yields one per
/// item (`d.items()`, `enumerate`, `zip`); looping over keys or indexes
/// makes none (heap_lock on 1.25 and 1.28: `for k in d` and
/// `for i in range(len(xs))` allocate nothing).
fn iteration_tuple_hint(src: &str) -> String {
    if let Some(call) = find_method_call(src, "items") {
        let dict = call.trim_end_matches(".items()");
        return format!(
            "each step of `{call}` makes a new (key, value) tuple: loop over the keys, `for k in {dict}:`, and read `{dict}[k]`, which allocates nothing"
        );
    }
    if let Some(call) = find_call(src, "enumerate") {
        let seq = call
            .strip_prefix("enumerate(")
            .and_then(|r| r.strip_suffix(')'))
            .filter(|s| !s.contains(','))
            .unwrap_or("items");
        return format!(
            "each step of `{call}` makes a new (index, item) tuple: loop `for i in range(len({seq})):` and index `{seq}[i]`, which allocates nothing"
        );
    }
    if let Some(call) = find_call(src, "zip") {
        return format!(
            "each step of `{call}` makes a new tuple of the items: loop over `range(len(...))` and index each sequence, which allocates nothing"
        );
    }
    "each step of this loop's iterator makes a new tuple: loop over indexes with `range()` and read the items by index".into()
}

fn list_hint(opcode: Option<u8>, src: &str) -> Option<String> {
    if is_comprehension(src, '[') {
        return Some(
            "the list comprehension builds a new list (and a function object) each time: fill a preallocated list in a plain loop".into(),
        );
    }
    if let Some(call) = find_method_call(src, "split") {
        return Some(format!(
            "`{call}` returns a new list of new strings: parse in place with find() and indexes"
        ));
    }
    if let Some(call) = find_call(src, "sorted") {
        // list.sort() sorts in place and allocates nothing, with a key
        // function too (checked with heap_lock on 1.25 and 1.28).
        let key = if contains_word(src, "lambda") {
            ", with the key function defined once (a `lambda` here is a new function object on every pass)"
        } else {
            ""
        };
        return Some(format!(
            "`{call}` copies the list into a new one each time: keep the list and sort it in place with `.sort()`, which allocates nothing{key}"
        ));
    }
    if let Some(slice) = slice_expression(src) {
        return Some(format!(
            "`{slice}` copies the list on every pass: keep an index into a list preallocated once (a ring buffer) instead of slicing"
        ));
    }
    match opcode? {
        opcodes::BUILD_LIST => Some(
            "a list display builds a new list on every pass: create it once, outside the loop, and assign its items".into(),
        ),
        opcodes::UNPACK_EX => Some(
            "`a, *rest = ...` builds a list for `rest`: index the items you need instead".into(),
        ),
        _ => None,
    }
}

fn dict_hint(opcode: Option<u8>, src: &str) -> Option<String> {
    if is_comprehension(src, '{') {
        return Some(
            "the dict comprehension builds a new dict (and a function object) each time: build it once and update it".into(),
        );
    }
    let op = opcode?;
    if op == opcodes::BUILD_MAP {
        return Some(
            "a dict display builds a new dict on every pass: build it once, outside the loop, and update its values".into(),
        );
    }
    if opcodes::is_call(op) {
        return Some(format!(
            "{} collects keyword arguments into a new `**kwargs` dict per call: give it fixed parameters and pass the values positionally",
            callee_text(src)
        ));
    }
    None
}

fn str_hint(opcode: Option<u8>, src: &str) -> Option<String> {
    let op_name = opcode.and_then(opcodes::binary_op);
    if src.contains(".format(") || has_f_string(src) {
        return Some(
            "formatting builds a new string each time: format once outside the loop, or write the digits into a preallocated bytearray".into(),
        );
    }
    if matches!(op_name, Some("modulo" | "inplace_modulo")) {
        return Some(
            "`%` formatting builds a new string each time: format once outside the loop, or write the digits into a preallocated bytearray".into(),
        );
    }
    if matches!(op_name, Some("add" | "inplace_add")) || (opcode.is_none() && src.contains('+')) {
        return Some(
            "`+` on strings makes a new string each time: write the parts separately, or into a preallocated bytearray".into(),
        );
    }
    if let Some(call) = find_call(src, "str") {
        return Some(format!(
            "`{call}` converts into a new string each time: keep the number until it must be shown"
        ));
    }
    if let Some(call) = find_method_call(src, "join") {
        return Some(format!(
            "`{call}` builds a new string: write the parts out one by one, or into a preallocated bytearray"
        ));
    }
    if let Some(call) = find_method_call(src, "decode") {
        return Some(format!(
            "`{call}` makes a new string: compare and parse the bytes directly"
        ));
    }
    None
}

fn bytes_hint(opcode: Option<u8>, src: &str) -> Option<String> {
    if opcode.is_some_and(is_text_building_op) {
        return Some(
            "`+`, `*` or `%` on bytes builds a new bytes object each time: build the value once, outside the loop, or write into a preallocated bytearray".into(),
        );
    }
    if let Some(call) = find_method_call(src, "split") {
        return Some(format!(
            "`{call}` returns a new list of new bytes objects: find the separators with find() and convert each field in place"
        ));
    }
    if let Some(slice) = slice_expression(src) {
        let (base, bounds) = slice.split_once('[').unwrap_or((slice, "a:b]"));
        return Some(format!(
            "`{slice}` copies into a new object: make `mv = memoryview({base})` once, before the loop, and take `mv[{bounds}` (a small view object, not a copy of the data), or pass offsets"
        ));
    }
    if let Some(call) = find_method_call(src, "read") {
        let obj = call.split(".read(").next().unwrap_or("stream");
        let size = call
            .split_once('(')
            .map(|(_, a)| a.trim_end_matches(')').trim())
            .filter(|a| !a.is_empty())
            .unwrap_or("n");
        return Some(format!(
            "`{call}` returns a new bytes object: readinto a buffer made once, `buf = bytearray({size})` before the loop, then `{obj}.readinto(buf)`"
        ));
    }
    if let Some(call) = find_method_call(src, "encode") {
        return Some(format!(
            "`{call}` makes new bytes each time: keep the text as bytes, or encode it once"
        ));
    }
    for ctor in ["bytearray", "bytes", "memoryview", "array"] {
        if let Some(call) = find_call(src, ctor) {
            let reuse = assigned_name(src)
                .map(|n| format!(": `{n} = {call}` once, before the loop, and reuse `{n}`"))
                .unwrap_or_else(|| ": create it once, outside the loop, and reuse it".into());
            return Some(format!(
                "`{call}` allocates on every pass (preallocate the buffer){reuse}"
            ));
        }
    }
    None
}

/// The plain name a simple assignment stores to: `z = ...` gives `z`.
fn assigned_name(src: &str) -> Option<&str> {
    let (lhs, rhs) = src.split_once('=')?;
    let lhs = lhs.trim();
    let plain = !lhs.is_empty() && lhs.chars().all(|c| is_ident_char(c) || c == '.');
    (plain && !rhs.starts_with('=')).then_some(lhs)
}

fn closure_hint(opcode: Option<u8>, src: &str) -> Option<String> {
    if contains_word(src, "lambda") {
        return Some(
            "the lambda is created on every pass: define it once, outside the loop".into(),
        );
    }
    if is_comprehension(src, '[') || is_comprehension(src, '{') || is_comprehension(src, '(') {
        return Some(
            "the comprehension runs as a new function object each time: write a plain loop".into(),
        );
    }
    if matches!(
        opcode,
        Some(opcodes::MAKE_CLOSURE | opcodes::MAKE_CLOSURE_DEFARGS)
    ) {
        return Some(
            "a closure is made on every pass: define the function once and pass its state as arguments".into(),
        );
    }
    None
}

fn frame_hint(src: &str) -> Option<String> {
    let callee = called_name(src)?;
    Some(format!(
        "`{callee}` needs a frame bigger than the C stack's budget, so every call allocates it on the heap: fewer arguments and locals in this hot function, or @micropython.native"
    ))
}

/// The module an `import` line imports: `import a.b as c` gives `a.b`,
/// `from x import y` gives `x`.
pub fn imported_module(src: &str) -> Option<&str> {
    let src = code_part(src);
    let rest = src
        .strip_prefix("from ")
        .or_else(|| src.strip_prefix("import "))?;
    let name = rest
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == ',')
        .next()?;
    (!name.is_empty()).then_some(name)
}

/// Compiling a module at import. `module_file` is the imported file's
/// short name when its code ran in the profile.
pub fn import_hint(src: &str, module_file: Option<&str>) -> String {
    let file = module_file.map(str::to_string).or_else(|| {
        imported_module(src).map(|m| format!("{}.py", m.trim_start_matches('.').replace('.', "/")))
    });
    match file {
        Some(f) => format!(
            "precompile {f} with mpy-cross (`mpy-cross {f}` gives a .mpy that imports without compiling) or freeze it into the firmware"
        ),
        None => "precompile the module with mpy-cross or freeze it into the firmware".into(),
    }
}

/// The line with `/` written as `//`.
fn floor_division(src: &str) -> String {
    let code = blank_strings(src);
    let b = code.as_bytes();
    let mut out = String::with_capacity(src.len() + 2);
    for (i, ch) in src.char_indices() {
        out.push(ch);
        let slash =
            b.get(i) == Some(&b'/') && b.get(i + 1) != Some(&b'/') && (i == 0 || b[i - 1] != b'/');
        if slash {
            out.push('/');
        }
    }
    out
}

fn generator_hint(src: &str) -> Option<String> {
    if is_comprehension(src, '(') {
        return Some(
            "the generator expression makes a generator (and a function object) each time: write a plain loop".into(),
        );
    }
    let callee = called_name(src)?;
    Some(format!(
        "calling `{callee}` makes a generator object each time: iterate with a plain loop, or keep one generator and resume it"
    ))
}

fn instance_hint(src: &str) -> Option<String> {
    // A class is called by a capitalised name, possibly through a module.
    let class = called_names(src).into_iter().find(|n| {
        n.rsplit('.')
            .next()
            .is_some_and(|last| last.starts_with(|c: char| c.is_uppercase()))
    })?;
    Some(format!(
        "`{class}()` makes a new object on every pass: create one before the loop and reset its attributes"
    ))
}

fn exception_hint(src: &str) -> Option<String> {
    if contains_word(src, "raise") {
        return Some(
            "raising creates the exception and its traceback every time: on a hot path return a status value instead".into(),
        );
    }
    let callee = called_name(src)?;
    Some(format!(
        "`{callee}` raises here each time (a new exception object): test the condition first instead of catching the error"
    ))
}

fn growth_hint(opcode: Option<u8>, src: &str) -> Option<String> {
    for method in ["append", "extend"] {
        if let Some(call) = find_method_call(src, method) {
            return Some(format!(
                "`{call}` regrows the list as it fills: preallocate `[0] * n` once and assign by index"
            ));
        }
    }
    match opcode? {
        opcodes::RAISE_OBJ | opcodes::RAISE_FROM | opcodes::RAISE_LAST => Some(
            "raising the same exception object again appends to its traceback, which keeps growing: return a status value on this path".into(),
        ),
        opcodes::STORE_ATTR => Some(
            "adding an attribute outside __init__ grows the object's attribute table: set every attribute in __init__".into(),
        ),
        opcodes::STORE_SUBSCR => Some(
            "adding keys grows the dict's table: create the dict with all its keys once, then only update values".into(),
        ),
        opcodes::STORE_NAME | opcodes::STORE_GLOBAL => Some(
            "a new global name grows the module's namespace table: a one-off at import; only names created in a loop are a concern".into(),
        ),
        _ => None,
    }
}

fn other_hint(type_name: &str, opcode: Option<u8>, src: &str) -> Option<String> {
    match type_name {
        "slice" => {
            // From 1.26 the VM builds the slice of a bytearray or
            // memoryview subscript on the C stack (types flagged
            // MP_TYPE_FLAG_SUBSCR_ALLOWS_STACK_SLICE); a list's, a tuple's,
            // a str's or a bytes' is still a heap object.
            let slice = slice_expression(src).unwrap_or("x[a:b]");
            let (base, bounds) = slice.split_once('[').unwrap_or(("x", "a:b]"));
            Some(format!(
                "`{slice}` builds a slice object (1.26 and later build none for a bytearray or memoryview) and a copy on every pass: make `mv = memoryview({base})` once and take `mv[{bounds}` (a small view object, not a copy of the data), or keep indexes (a ring buffer over a preallocated list)"
            ))
        }
        RAW_BUFFER if opcode.is_some_and(opcodes::is_call) => Some(
            "an untyped block at a call: usually the frame of a Python function with more than 11 words of locals and stack, heap-allocated on every call; split or slim that function, or it is a C function's work buffer".into(),
        ),
        "iterator" | "enumerate" | "zip" | "map" | "filter" | "reversed" => Some(format!(
            "a new `{type_name}` object each time: loop with `for i in range(n)` and index, which compiles to a plain counter"
        )),
        "range" => Some(
            "a `range` object is made when it is stored or passed: write `for i in range(...)` directly, which compiles to a counter".into(),
        ),
        "type" => Some(
            "a class statement runs here each time, making a new class: define the class once at module level".into(),
        ),
        _ => None,
    }
}

/// The line without its comment and surrounding blanks.
pub(crate) fn code_part(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return line[..i].trim(),
            None => {}
        }
    }
    line.trim()
}

/// The line with every string literal's contents blanked to spaces, so that
/// text inside quotes never looks like code (same length, same offsets).
pub(crate) fn blank_strings(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in src.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                    continue;
                }
                // Keep byte offsets: one space per byte of the character.
                for _ in 0..c.len_utf8() {
                    out.push(' ');
                }
            }
            None => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Dotted names (`a.b`, `self.led.on`) in code, with their byte spans.
/// Numbers (`1.5`) are not names: a name starts with a letter or `_`.
fn dotted_names(code: &str) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = code.char_indices().collect();
    let starts_ident = |c: char| c.is_alphabetic() || c == '_';
    let mut out = Vec::new();
    let mut k = 0;
    while k < chars.len() {
        let (start, c) = chars[k];
        let prev = k.checked_sub(1).map(|j| chars[j].1);
        if !starts_ident(c) || prev.is_some_and(|p| is_ident_char(p) || p == '.') {
            k += 1;
            continue;
        }
        let mut j = k;
        let mut parts = 0;
        loop {
            while j < chars.len() && is_ident_char(chars[j].1) {
                j += 1;
            }
            parts += 1;
            let dot_then_name = chars.get(j).is_some_and(|&(_, d)| d == '.')
                && chars.get(j + 1).is_some_and(|&(_, n)| starts_ident(n));
            if !dot_then_name {
                break;
            }
            j += 1;
        }
        if parts > 1 {
            out.push((start, chars.get(j).map_or(code.len(), |&(i, _)| i)));
        }
        k = j.max(k + 1);
    }
    out
}

/// Attribute reads used as values: `a.b` not called (`a.b(`), not assigned
/// to (`a.b =`), outside strings, imports and comments. `register(self.cb)`
/// gives `self.cb`.
pub(crate) fn attribute_values(src: &str) -> Vec<&str> {
    if src.starts_with("import ") || src.starts_with("from ") {
        return Vec::new();
    }
    let code = blank_strings(src);
    dotted_names(&code)
        .into_iter()
        .filter(|&(_, end)| {
            let after = code[end..].trim_start();
            let called = after.starts_with('(');
            let assigned = after.starts_with('=') && !after.starts_with("==");
            let augmented = after.len() >= 2
                && after.as_bytes().get(1) == Some(&b'=')
                && "+-*/%&|^@".contains(&after[..1]);
            !called && !assigned && !augmented
        })
        .filter_map(|(start, end)| src.get(start..end))
        .collect()
}

/// Names called on the line, in order: `g = counter(i)` gives `counter`,
/// `total(self.read())` gives `total`, `self.read`.
pub(crate) fn called_names(src: &str) -> Vec<&str> {
    let code = blank_strings(src);
    let mut out = Vec::new();
    let mut name_start: Option<usize> = None;
    // A sentinel end so a name running to the end of the line is closed too.
    for (i, c) in code
        .char_indices()
        .chain(std::iter::once((code.len(), ' ')))
    {
        if is_ident_char(c) || (c == '.' && name_start.is_some()) {
            name_start.get_or_insert(i);
            continue;
        }
        let Some(start) = name_start.take() else {
            continue;
        };
        let Some(name) = src.get(start..i) else {
            continue;
        };
        let called = code
            .get(i..)
            .is_some_and(|r| r.trim_start().starts_with('('));
        if called && !name.starts_with(|ch: char| ch.is_ascii_digit()) && !is_keyword(name) {
            out.push(name);
        }
    }
    out
}

/// The first called name in backquotes, or "the called function".
pub(crate) fn callee_text(src: &str) -> String {
    called_name(src).map_or_else(|| "the called function".to_string(), |c| format!("`{c}`"))
}

fn called_name(src: &str) -> Option<&str> {
    called_names(src).into_iter().next()
}

fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "if" | "elif"
            | "while"
            | "for"
            | "in"
            | "not"
            | "and"
            | "or"
            | "return"
            | "yield"
            | "raise"
            | "assert"
            | "lambda"
            | "print"
            | "await"
            | "del"
            | "is"
            | "else"
            | "with"
            | "as"
    )
}

/// `name(...)` called as a plain function on the line, as written (up to its
/// closing parenthesis when it is on the line).
fn find_call<'s>(src: &'s str, name: &str) -> Option<&'s str> {
    let code = blank_strings(src);
    let mut from = 0;
    while let Some(p) = code[from..].find(name) {
        let start = from + p;
        let end = start + name.len();
        from = end;
        let before_ok = !code[..start]
            .chars()
            .next_back()
            .is_some_and(|c| is_ident_char(c) || c == '.');
        if before_ok && code[end..].starts_with('(') {
            return src.get(start..call_end(&code, end));
        }
    }
    None
}

/// `obj.method(...)` on the line, as written.
pub(crate) fn find_method_call<'s>(src: &'s str, method: &str) -> Option<&'s str> {
    let code = blank_strings(src);
    let needle = format!(".{method}(");
    let dot = code.find(&needle)?;
    let start = code[..dot]
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_ident_char(c) || c == '.')
        .last()
        .map_or(dot, |(i, _)| i);
    let open = dot + needle.len() - 1;
    src.get(start..call_end(&code, open))
}

/// The end of a call whose `(` is at `open`: after its matching `)`, or the
/// end of the line.
fn call_end(code: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (i, c) in code[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return open + i + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// The first `name[a:b]` slice on the line, as written.
fn slice_expression(src: &str) -> Option<&str> {
    // A slice assignment (`buf[:] = data`) copies nothing out of `buf`: the
    // copy the line makes is a slice of the value assigned.
    let value_at = assignment_value_start(src).unwrap_or(0);
    slice_expression_from(src, value_at)
}

/// The first slice of the line that starts at `from` or later.
fn slice_expression_from(src: &str, from: usize) -> Option<&str> {
    let code = blank_strings(src);
    let mut from = from;
    while let Some(p) = code[from..].find('[') {
        let open = from + p;
        from = open + 1;
        let close = open + code[open..].find(']')?;
        let inner = &code[open + 1..close];
        if !inner.contains(':') || inner.contains('[') {
            continue;
        }
        let start = code[..open]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_ident_char(c) || c == '.')
            .last()
            .map(|(i, _)| i)?;
        return src.get(start..=close);
    }
    None
}

/// A call that runs asyncio's event loop until it ends: `asyncio.run(...)`,
/// `loop.run_until_complete(...)`, `loop.run_forever()`.
pub(crate) fn runs_event_loop(src: &str) -> bool {
    called_names(src).iter().any(|n| {
        *n == "asyncio.run" || n.ends_with(".run_until_complete") || n.ends_with(".run_forever")
    })
}

/// The slice an assignment stores into (`buf[2:4]` of `buf[2:4] = data`).
pub(crate) fn slice_target(src: &str) -> Option<&str> {
    let value_at = assignment_value_start(src)?;
    slice_expression_from(src, 0).filter(|t| {
        let at = t.as_ptr() as usize - src.as_ptr() as usize;
        at < value_at
    })
}

/// Where the value of an assignment (`target = value`, `target += value`)
/// begins: the byte after its `=`, outside brackets and strings; `None` for
/// a line that is no assignment (`==`, `<=`, `>=`, `!=` are comparisons).
fn assignment_value_start(src: &str) -> Option<usize> {
    let code = blank_strings(src);
    let b = code.as_bytes();
    let mut depth = 0i32;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b'=' if depth == 0 => {
                let prev = i.checked_sub(1).map(|j| b[j]);
                let next = b.get(i + 1).copied();
                let comparison =
                    next == Some(b'=') || matches!(prev, Some(b'=' | b'<' | b'>' | b'!'));
                if !comparison {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether the line holds a comprehension opening with `open`:
/// `[x for x in xs]`, `{k: v for ...}`, `(x for x in xs)`.
fn is_comprehension(src: &str, open: char) -> bool {
    let code = blank_strings(src);
    code.match_indices(open)
        .any(|(i, _)| contains_word(&code[i..], "for") && contains_word(&code[i..], "in"))
}

fn contains_word(src: &str, word: &str) -> bool {
    src.match_indices(word).any(|(i, _)| {
        let before = src[..i].chars().next_back();
        let after = src[i + word.len()..].chars().next();
        !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)
    })
}

/// An f-string literal: `f"` or `f'` where the `f` starts a token.
fn has_f_string(src: &str) -> bool {
    ["f\"", "f'", "F\"", "F'"].iter().any(|p| {
        src.match_indices(p)
            .any(|(i, _)| !src[..i].chars().next_back().is_some_and(is_ident_char))
    })
}

/// `/` or `/=` that is not `//`.
pub(crate) fn has_true_division(src: &str) -> bool {
    let code = blank_strings(src);
    let b = code.as_bytes();
    b.iter()
        .enumerate()
        .any(|(i, &c)| c == b'/' && b.get(i + 1) != Some(&b'/') && (i == 0 || b[i - 1] != b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_and_attribute_values() {
        assert_eq!(attribute_values("register(self.cb)"), vec!["self.cb"]);
        // A method called directly (LOAD_METHOD) is no bound-method value.
        assert!(attribute_values("self.led.on()").is_empty());
        assert_eq!(attribute_values("self._cb = self.cb"), vec!["self.cb"]);
        assert_eq!(attribute_values("x.total += obj.step"), vec!["obj.step"]);
        assert!(attribute_values("x = 1.5 + 2.25").is_empty());
        assert!(attribute_values("print(\"a.b\")").is_empty());
        assert!(attribute_values("import os.path").is_empty());
    }

    #[test]
    fn calls_and_slices_found_as_written() {
        assert_eq!(called_names("g = counter(i)"), vec!["counter"]);
        assert_eq!(called_names("if ok(x): s = Sample()"), vec!["ok", "Sample"]);
        assert_eq!(find_call("v = float(raw) * 2", "float"), Some("float(raw)"));
        assert_eq!(find_call("v = myfloat(raw)", "float"), None);
        assert_eq!(
            find_method_call("data = uart.read(4)", "read"),
            Some("uart.read(4)")
        );
        assert_eq!(slice_expression("chunk = buf[2:6]"), Some("buf[2:6]"));
        assert_eq!(slice_expression("x = d['a:b']"), None);
        // A slice assignment copies out of its value, not its target.
        assert_eq!(slice_expression("buf[:] = regs[0:2]"), Some("regs[0:2]"));
        assert_eq!(slice_target("buf[:] = regs[0:2]"), Some("buf[:]"));
        assert_eq!(slice_expression("buf[0:2] = data"), None);
        assert_eq!(slice_expression("ok = a[1:3] == b[0:2]"), Some("a[1:3]"));
        assert_eq!(slice_target("if a[1:3] == b:"), None);
        assert_eq!(code_part("  x = a + b  # ALLOC: str"), "x = a + b");
        assert_eq!(code_part("s = '#' + t"), "s = '#' + t");
        assert!(has_true_division("y = x / 3"));
        assert!(!has_true_division("y = x // 3"));
    }

    #[test]
    fn sorted_is_told_to_sort_in_place() {
        let h = hint(
            &Cause::List,
            Some(opcodes::CALL_FUNCTION),
            Some("    top = sorted(values, key=lambda v: -v)[:3]"),
        );
        assert!(
            h.contains("`sorted(values, key=lambda v: -v)` copies the list"),
            "{h}"
        );
        assert!(h.contains("`.sort()`") && h.contains("defined once"), "{h}");
        let h = hint(&Cause::List, None, Some("    s = sorted(xs)"));
        assert!(
            h.contains("sort it in place") && !h.contains("lambda"),
            "{h}"
        );
    }

    #[test]
    fn a_tuple_per_loop_step_is_the_iterators() {
        let h = |src| hint(&Cause::Tuple, Some(opcodes::FOR_ITER), Some(src));
        let items = h("    for k, v in d.items():");
        assert!(
            items.contains("`for k in d:`") && items.contains("`d[k]`"),
            "{items}"
        );
        let e = h("    for i, x in enumerate(items):");
        assert!(
            e.contains("`for i in range(len(items)):`") && e.contains("`items[i]`"),
            "{e}"
        );
        let z = h("    for a, b in zip(xs, ys):");
        assert!(z.starts_with("each step of `zip(xs, ys)`"), "{z}");
        assert!(!z.contains("*args"), "{z}");
    }
}
