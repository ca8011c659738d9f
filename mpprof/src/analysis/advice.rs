//! The advice stored with each allocation site: the exact object it made
//! and the one fix every report shows. Computed once, when the Profile is
//! built, from the cause ([`crate::analysis::classify`]), the allocating
//! opcode, the object's type, the line's source and how many times the
//! allocating opcode ran (its exact count): a line that ran once is a
//! one-off and is never given loop advice.

use mpprof_profile::Cause;

use crate::analysis::classify::{self, code_part};
use crate::analysis::opcodes;

/// What is known about a site when its advice is written.
#[derive(Debug, Clone, Copy)]
pub struct SiteContext<'a> {
    pub cause: &'a Cause,
    pub opcode: Option<u8>,
    /// The object's type name; `None` for a raw buffer.
    pub type_name: Option<&'a str>,
    /// A realloc that grew a block.
    pub growth: bool,
    /// The line's source text, when the file could be read.
    pub source_line: Option<&'a str>,
    /// For a raw buffer that is an object's storage: that object's type.
    pub companion_type: Option<&'a str>,
    /// The opcode after the allocating one: a BUILD_SLICE followed by
    /// STORE_SUBSCR makes the slice an assignment stores into, one followed
    /// by LOAD_SUBSCR the slice a copy is taken with.
    pub next_opcode: Option<u8>,
    /// The line calls a bytecode function of the program: a tuple made at
    /// its call is that function's `*args`, where a tuple made at a call of
    /// a C function only (`struct.unpack`) is what the function returned.
    pub calls_bytecode: bool,
    /// Made by asyncio's event loop inside the call that runs it
    /// ([`event_loop_site`]).
    pub event_loop: bool,
    /// An exception object was made in a function this site's frame
    /// called (directly or further down): it passed through this frame.
    pub exception_below: bool,
    /// How many times the allocating opcode ran (0: unknown).
    pub executions: u64,
    /// How many allocations the site made.
    pub count: u64,
    /// The running code object's name: `<module>`, a function's name, or a
    /// class body's (the class name).
    pub code_name: &'a str,
    /// For an import: the imported module's file (short name) when its code
    /// ran in the profile.
    pub module_file: Option<&'a str>,
    /// For an import that ran a frozen module (the target said so): the
    /// module's source file as frozen, e.g. `asyncio/__init__.py`.
    pub frozen_module: Option<&'a str>,
}

/// The exact object and the fix for one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advice {
    pub what: String,
    pub fix: String,
}

/// The advice for a site.
pub fn advise(c: &SiteContext) -> Advice {
    Advice {
        what: what(c),
        fix: fix(c),
    }
}

fn src<'a>(c: &SiteContext<'a>) -> &'a str {
    c.source_line.map(code_part).unwrap_or("")
}

/// The object allocated, named exactly.
pub fn what(c: &SiteContext) -> String {
    let src = src(c);
    match c.cause {
        Cause::Import => {
            if let Some(frozen) = c.frozen_module {
                if lazy_import(c) {
                    return format!("importing frozen {frozen} on first use");
                }
                return match classify::imported_module(src) {
                    Some(m) => format!("running frozen {m} at import"),
                    None => "running a frozen module at import".into(),
                };
            }
            return match (c.module_file, classify::imported_module(src)) {
                (Some(f), _) => format!("compiling {f} at import"),
                (None, Some(m)) => format!("compiling {m} at import"),
                (None, None) => "compiling at import".into(),
            };
        }
        Cause::Frame => return "heap frame".into(),
        _ => {}
    }
    let op = c.opcode;
    match c.type_name {
        // MAKE_CLOSURE makes the function and the closure wrapping it.
        Some("function")
            if matches!(
                op,
                Some(opcodes::MAKE_CLOSURE | opcodes::MAKE_CLOSURE_DEFARGS)
            ) =>
        {
            "closure".into()
        }
        Some("function") => "function object".into(),
        Some("closure") => "closure".into(),
        Some("cell") | Some("") => "closure cell".into(),
        Some("bound_method") => "bound method".into(),
        Some("generator") if op.is_some_and(opcodes::is_make_function) => {
            "generator function".into()
        }
        Some("tuple") => tuple_what(op, src, c.calls_bytecode).into(),
        Some(t) if matches!(c.cause, Cause::Instance) => format!("{t} instance"),
        Some(t) => t.to_string(),
        None if traceback_growth(c, src) => "traceback regrown".into(),
        None if c.growth || matches!(c.cause, Cause::Growth) => growth_what(op, src).into(),
        None => match c.cause {
            _ if c.companion_type.is_some() => {
                format!("{} storage", c.companion_type.unwrap_or_default())
            }
            Cause::Tuple if op.is_some_and(opcodes::is_star_call) => "*args unpacking".into(),
            Cause::Other(t) => t.clone(),
            cause => cause.label(),
        },
    }
}

fn tuple_what(op: Option<u8>, src: &str, calls_bytecode: bool) -> &'static str {
    match op {
        Some(o) if opcodes::is_star_call(o) => "*args unpacking",
        Some(o) if opcodes::is_call(o) && calls_bytecode => "*args tuple",
        Some(o) if opcodes::is_call(o) => "returned tuple",
        Some(opcodes::BUILD_TUPLE) if src.starts_with("return") || src.starts_with("yield") => {
            "returned tuple"
        }
        _ => "tuple",
    }
}

fn growth_what(op: Option<u8>, src: &str) -> &'static str {
    if classify::find_method_call(src, "append").is_some()
        || classify::find_method_call(src, "extend").is_some()
    {
        return "list regrown";
    }
    match op {
        Some(opcodes::STORE_ATTR) => "attribute table regrown",
        Some(opcodes::STORE_NAME | opcodes::STORE_GLOBAL) => "namespace table regrown",
        Some(opcodes::STORE_SUBSCR) => "dict table regrown",
        _ => "block regrown",
    }
}

/// Whether an allocation is asyncio's event loop's: made at a call that runs
/// the loop (`asyncio.run(main())`) and ran once, by the loop's own frozen
/// code, which mpprof runs unprofiled and charges to that call, while it
/// ran the tasks. An import there (asyncio's first use of a submodule) is
/// an import.
pub fn event_loop_site(cause: &Cause, opcode: Option<u8>, src: &str, executions: u64) -> bool {
    executions == 1
        && !matches!(cause, Cause::Import)
        && opcode.is_some_and(opcodes::is_call)
        && classify::runs_event_loop(src)
}

/// A site that allocated on fewer than one run in ten of its opcode: not a
/// cost of every pass, whatever the object. Growth has its own advice (a
/// list regrowing now and then is exactly that), and so does an exception
/// raised on some passes.
fn rare_fix(c: &SiteContext) -> Option<String> {
    let rare = c.executions >= 10 && c.count.saturating_mul(10) < c.executions;
    if !rare || matches!(c.cause, Cause::Growth | Cause::Exception | Cause::Import) || c.growth {
        return None;
    }
    Some(format!(
        "rare here: {} in {} runs of this line (made now and then: a table or buffer growing, a cache filling, a first-time set-up inside the call), not a cost of every pass; change it only if those moments matter (an interrupt handler, a timing-critical stretch)",
        c.count, c.executions
    ))
}

/// What asyncio's event loop allocates as it runs: per pass of the loop.
fn event_loop_fix(c: &SiteContext) -> String {
    if matches!(c.cause, Cause::Frame) {
        // Upstream's asyncio (core.py, the same v1.25 to master) calls
        // IOQueue.wait_io_event each time the loop polls, and its frame (a
        // `for` over poller.ipoll) is more state than fun_bc_call keeps on
        // the C stack: allocated and freed at once, at every poll.
        return "asyncio's event loop runs inside this call (frozen, so its lines are not shown): each time it polls, at least once per task resume, `IOQueue.wait_io_event` takes a heap frame (more state than a frame on the C stack holds) and frees it at once; asyncio's own cost: fewer awaits, more work per resume, make fewer".into();
    }
    "made by asyncio's event loop while it ran the tasks (frozen, so its lines are not shown): it repeats as tasks are resumed and end, not a one-off; what each task makes itself is on the task's own lines".into()
}

/// A frozen module run from a site that is no import statement: a
/// package's `__getattr__` importing a submodule the first time one of its
/// names is used.
fn lazy_import(c: &SiteContext) -> bool {
    !matches!(
        c.opcode,
        Some(opcodes::IMPORT_NAME | opcodes::IMPORT_FROM) | None
    )
}

/// Where a one-off line runs, in words.
fn once_where(c: &SiteContext) -> String {
    let top_level = c.source_line.is_some_and(|l| !l.starts_with([' ', '\t']));
    if c.code_name == "<module>" || top_level {
        "once, at module level".into()
    } else if c.code_name.starts_with(|ch: char| ch.is_uppercase()) {
        format!("once, in the body of class {}", c.code_name)
    } else if c.code_name == "__init__" {
        "once, in the one call of __init__".into()
    } else {
        format!("once, in the one call of {}", c.code_name)
    }
}

/// The fix for a site.
pub fn fix(c: &SiteContext) -> String {
    let src = src(c);
    if matches!(c.cause, Cause::Import) {
        if let Some(frozen) = c.frozen_module.filter(|_| lazy_import(c)) {
            let package = frozen.split('/').next().unwrap_or(frozen);
            let prefix = format!("{package}.");
            let name = classify::called_names(src)
                .into_iter()
                .chain(classify::attribute_values(src))
                .find(|a| a.starts_with(&prefix))
                .map_or_else(
                    || format!("this use of {package}"),
                    |a| format!("the first `{a}`"),
                );
            return format!(
                "{package} loads its parts on first use: {name} imported {frozen} (frozen bytecode, nothing compiled); these are that module's functions and classes, made once: a one-off"
            );
        }
        if let Some(frozen) = c.frozen_module {
            return format!(
                "{frozen} is frozen bytecode, built into the interpreter: nothing is compiled; these are the objects its top level makes (functions, classes, tables), a one-off at import"
            );
        }
        return classify::import_hint(src, c.module_file);
    }
    // Attributes first assigned outside __init__ grow the attribute table
    // every time the object is made, however often the line itself runs.
    if attribute_growth(c) && c.code_name != "__init__" {
        return "adding an attribute outside __init__ grows the object's attribute table: assign every attribute in `__init__`".into();
    }
    if c.event_loop {
        return event_loop_fix(c);
    }
    if c.executions == 1 {
        return one_off_fix(c, src);
    }
    if let Some(f) = rare_fix(c) {
        return f;
    }
    if attribute_growth(c) && c.executions > 1 {
        // In __init__, run for every new object.
        return "each new object grows its attribute table as __init__ assigns: keep one object and reset its attributes instead of making one per pass".into();
    }
    let definition =
        src.starts_with("def ") || src.starts_with("async def ") || src.starts_with("class ");
    let body_of_module_or_class =
        c.code_name == "<module>" || c.code_name.starts_with(|ch: char| ch.is_uppercase());
    if definition && body_of_module_or_class {
        return format!(
            "this definition runs each time its module or class body runs ({} times here: the module was imported, or the class statement run, again): import the module once and keep it",
            c.executions
        );
    }
    if let Some(h) = slice_target_hint(c, src) {
        return h;
    }
    if let Some(h) = returned_tuple_hint(c, src) {
        return h;
    }
    if let Some(h) = traceback_growth_hint(c, src) {
        return h;
    }
    let hint = classify::hint(c.cause, c.opcode, c.source_line);
    match (c.cause, c.type_name) {
        // A function object that captures nothing is no closure.
        (Cause::Closure, Some("function")) if hint == c.cause.fix() => {
            "a new function object is made on every pass: define the function once, outside the loop, and pass state as arguments".into()
        }
        _ => hint,
    }
}

/// The slice object of a slice assignment (`buf[:] = data`): on the heap,
/// except from 1.26 for a bytearray or memoryview (whose subscript's
/// slice the VM builds on the C stack); nothing is copied out of `buf`.
fn slice_target_hint(c: &SiteContext, src: &str) -> Option<String> {
    if !matches!(c.cause, Cause::Other(t) if t == "slice")
        || c.next_opcode != Some(opcodes::STORE_SUBSCR)
    {
        return None;
    }
    let target = classify::slice_target(src).unwrap_or("x[a:b]");
    Some(format!(
        "the slice assignment `{target} = ...` builds a slice object on every pass (MicroPython 1.26 and later build none when it is a bytearray or memoryview): otherwise (1.25, or a list or `array.array`) assign the items by index"
    ))
}

/// A block regrown at a call that an exception raised below passed
/// through: the exception's traceback taking this line, unless the line
/// grows a list itself.
fn traceback_growth(c: &SiteContext, src: &str) -> bool {
    let grows_a_list = ["append", "extend", "insert"]
        .iter()
        .any(|m| classify::find_method_call(src, m).is_some());
    let at_call = c.opcode.is_some_and(opcodes::is_call);
    c.growth && c.type_name.is_none() && at_call && c.exception_below && !grows_a_list
}

fn traceback_growth_hint(c: &SiteContext, src: &str) -> Option<String> {
    if !traceback_growth(c, src) {
        return None;
    }
    let callee = classify::callee_text(src);
    Some(format!(
        "an exception raised inside {callee} passes through this line: its traceback grows to take the line (each frame it passes adds one); raising on this path costs the exception, its traceback and a growth per frame every time: return a status value instead"
    ))
}

/// A tuple made at a call of a C function (no bytecode function of the
/// program is called on the line): the function's result, not `*args`.
fn returned_tuple_hint(c: &SiteContext, src: &str) -> Option<String> {
    let at_call = c
        .opcode
        .is_some_and(|o| opcodes::is_call(o) && !opcodes::is_star_call(o));
    if !matches!(c.cause, Cause::Tuple)
        || c.type_name != Some("tuple")
        || !at_call
        || c.calls_bytecode
    {
        return None;
    }
    if let Some(call) = classify::find_method_call(src, "unpack")
        .or_else(|| classify::find_method_call(src, "unpack_from"))
    {
        return Some(format!(
            "`{call}` returns a new tuple on every call: for a field or two, read the bytes directly (`buf[0] << 8 | buf[1]`, less 0x10000 when a signed value is 0x8000 or more); for a record, `uctypes.struct` over the buffer reads fields in place"
        ));
    }
    let callee = classify::callee_text(src);
    Some(format!(
        "{callee} returns a new tuple on every call (a built-in's result, not `*args`): call it less often, or keep the values it gives in variables"
    ))
}

/// An object's attribute table grown (rehashed into a bigger one, or
/// reallocated) by an attribute store.
fn attribute_growth(c: &SiteContext) -> bool {
    matches!(c.cause, Cause::Growth) && c.opcode == Some(opcodes::STORE_ATTR)
}

fn one_off_fix(c: &SiteContext, src: &str) -> String {
    let at = once_where(c);
    if src.starts_with("class ") {
        return format!(
            "the class statement runs {at}: building the class is a one-off, nothing to fix"
        );
    }
    if src.starts_with("def ") || src.starts_with("async def ") {
        return format!("this `def` runs {at}: making the function is a one-off, nothing to fix");
    }
    if let Some((name, value)) = module_constant(c, src) {
        return format!(
            "a module-level constant, run once: a one-off; `{name} = const({value})` (from micropython import const) makes it a compile-time constant, and named `_{name}` it takes no global at all"
        );
    }
    if attribute_growth(c) {
        return format!(
            "the attribute table grows {at} as attributes arrive: a one-off; assign every attribute in `__init__` so it is sized once"
        );
    }
    format!("runs {at}: a one-off (not a cost per pass); change it only to lower the heap's peak")
}

/// `NAME = 100` (an upper-case name given an int literal) at module level.
fn module_constant<'s>(c: &SiteContext, src: &'s str) -> Option<(&'s str, &'s str)> {
    if c.code_name != "<module>" {
        return None;
    }
    let (name, value) = src.split_once('=')?;
    let (name, value) = (name.trim(), value.trim());
    let constant_name = name.starts_with(|ch: char| ch.is_ascii_uppercase())
        && name
            .chars()
            .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_');
    let int_literal = !value.is_empty()
        && (value.chars().all(|ch| ch.is_ascii_digit() || ch == '_')
            || value.strip_prefix("0x").is_some_and(|h| {
                !h.is_empty() && h.chars().all(|ch| ch.is_ascii_hexdigit() || ch == '_')
            }));
    (constant_name && int_literal).then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(cause: &'a Cause, src: &'a str, executions: u64, code: &'a str) -> SiteContext<'a> {
        SiteContext {
            cause,
            opcode: None,
            type_name: None,
            growth: false,
            source_line: Some(src),
            companion_type: None,
            next_opcode: None,
            calls_bytecode: false,
            event_loop: false,
            exception_below: false,
            executions,
            count: 100,
            code_name: code,
            module_file: None,
            frozen_module: None,
        }
    }

    #[test]
    fn a_line_that_ran_once_gets_no_loop_advice() {
        let g = Cause::Growth;
        let f = fix(&ctx(&g, "name = 'x'", 1, "<module>"));
        assert!(f.contains("one-off") && f.contains("module level"), "{f}");
        let f = fix(&ctx(&g, "N = 100", 1, "<module>"));
        assert!(f.contains("`N = const(100)`"), "{f}");
        let f = fix(&ctx(&g, "    def a(self):", 1, "Sensor"));
        assert!(f.contains("class Sensor"), "{f}");
        assert!(!f.contains("[0] * n"), "{f}");
    }

    #[test]
    fn attribute_growth_says_assign_in_init() {
        let g = Cause::Growth;
        let mut c = ctx(&g, "        self._us = 0", 1, "start");
        c.opcode = Some(opcodes::STORE_ATTR);
        assert!(
            fix(&c).contains("assign every attribute in `__init__`"),
            "{}",
            fix(&c)
        );
        c.code_name = "__init__";
        assert!(fix(&c).contains("sized once"), "{}", fix(&c));
        c.executions = 40;
        assert!(fix(&c).contains("keep one object"), "{}", fix(&c));
    }

    #[test]
    fn imports_are_named_by_their_module() {
        let i = Cause::Import;
        let c = ctx(&i, "from drivers.bme import BME", 1, "<module>");
        assert_eq!(what(&c), "compiling drivers.bme at import");
        assert!(fix(&c).contains("mpy-cross drivers/bme.py"), "{}", fix(&c));
    }

    #[test]
    fn a_frozen_import_is_not_told_to_precompile() {
        let i = Cause::Import;
        let mut c = ctx(&i, "import asyncio", 1, "<module>");
        c.frozen_module = Some("asyncio/__init__.py");
        assert_eq!(what(&c), "running frozen asyncio at import");
        assert!(!fix(&c).contains("mpy-cross"), "{}", fix(&c));
        assert!(fix(&c).contains("nothing is compiled"), "{}", fix(&c));
    }

    #[test]
    fn tuples_are_told_apart() {
        let t = Cause::Tuple;
        let mut c = ctx(&t, "    return a, b", 10, "f");
        c.type_name = Some("tuple");
        c.opcode = Some(opcodes::BUILD_TUPLE);
        assert_eq!(what(&c), "returned tuple");
        assert!(fix(&c).contains("preallocated list"), "{}", fix(&c));
        c.opcode = Some(opcodes::CALL_FUNCTION);
        c.source_line = Some("    t += total(i, i)");
        c.calls_bytecode = true;
        assert_eq!(what(&c), "*args tuple");
        // A C function's tuple is its result.
        c.calls_bytecode = false;
        c.opcode = Some(opcodes::CALL_METHOD);
        c.source_line = Some("        v = struct.unpack('>h', raw)[0]");
        assert_eq!(what(&c), "returned tuple");
        let f = fix(&c);
        assert!(
            f.contains("`struct.unpack('>h', raw)` returns a new tuple"),
            "{f}"
        );
        assert!(!f.contains("*args"), "{f}");
        c.source_line = Some("        q, r = divmod(a, b)");
        let f = fix(&c);
        assert!(f.contains("`divmod` returns a new tuple"), "{f}");
    }

    #[test]
    fn a_traceback_growing_through_a_call_is_told_so() {
        let g = Cause::Growth;
        let mut c = ctx(&g, "            return f()", 100, "retry");
        c.growth = true;
        c.opcode = Some(opcodes::CALL_FUNCTION);
        assert!(!fix(&c).contains("traceback"), "{}", fix(&c));
        c.exception_below = true;
        let f = fix(&c);
        assert!(
            f.starts_with("an exception raised inside `f` passes through"),
            "{f}"
        );
        assert_eq!(what(&c), "traceback regrown");
        // A list growing at the call is the list.
        c.source_line = Some("            out.append(f())");
        assert!(fix(&c).contains("regrows"), "{}", fix(&c));
    }

    #[test]
    fn a_site_that_allocates_on_few_runs_is_told_rare() {
        let raw = Cause::Other("raw buffer".into());
        let mut c = ctx(&raw, "        await asyncio.sleep_ms(5)", 24, "sensor_task");
        c.count = 1;
        let f = fix(&c);
        assert!(f.starts_with("rare here: 1 in 24 runs"), "{f}");
        // Growth keeps its own advice: regrowing now and then is its nature.
        let g = Cause::Growth;
        let mut c = ctx(&g, "    out.append(x)", 300, "f");
        c.count = 7;
        assert!(fix(&c).contains("regrows"), "{}", fix(&c));
        // One allocation every other run is no rarity.
        let mut c = ctx(&raw, "    x = f(y)", 24, "g");
        c.count = 12;
        assert!(!fix(&c).contains("rare"), "{}", fix(&c));
    }

    #[test]
    fn a_slice_assignment_copies_out_of_its_value_not_its_target() {
        let b = Cause::Bytes;
        let mut c = ctx(
            &b,
            "        buf[:] = self.regs[reg:reg + len(buf)]",
            300,
            "f",
        );
        c.type_name = Some("bytearray");
        c.opcode = Some(opcodes::LOAD_SUBSCR);
        let f = fix(&c);
        assert!(f.contains("`self.regs[reg:reg + len(buf)]` copies"), "{f}");
        assert!(f.contains("memoryview(self.regs)"), "{f}");
        // The target's slice object (a 1.25 heap object) is no copy.
        let s = Cause::Other("slice".into());
        let mut c = ctx(
            &s,
            "        buf[:] = self.regs[reg:reg + len(buf)]",
            300,
            "f",
        );
        c.type_name = Some("slice");
        c.opcode = Some(opcodes::BUILD_SLICE);
        c.next_opcode = Some(opcodes::STORE_SUBSCR);
        let f = fix(&c);
        assert!(f.contains("slice assignment `buf[:] = ...`"), "{f}");
        assert!(!f.contains("copy"), "{f}");
        c.next_opcode = Some(opcodes::LOAD_SUBSCR);
        let f = fix(&c);
        assert!(
            f.contains("`self.regs[reg:reg + len(buf)]` builds a slice object"),
            "{f}"
        );
    }
}
