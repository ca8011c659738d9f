//! Why an allocation happened. One cause per allocation; the analysis in
//! `mpprof::analyse` assigns it, the catalogue here explains it and says what to
//! write instead.

use serde::{Deserialize, Serialize};

/// The reason a line allocated, from the allocating opcode and the object's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A float result boxed on the heap.
    Float,
    /// An int past the small-int range.
    Bigint,
    /// `obj.method` used as a value creates a bound-method object.
    BoundMethod,
    /// A tuple, including `*args` packing and multiple return values.
    Tuple,
    List,
    /// A dict, including `**kwargs`.
    Dict,
    Set,
    Str,
    /// bytes, bytearray, memoryview or array, including slice copies.
    Bytes,
    /// A closure or function object made at run time.
    Closure,
    Generator,
    /// An instance of a class defined in Python.
    Instance,
    Exception,
    /// The frame of a Python function too big for the C stack, allocated on
    /// the heap for every call.
    Frame,
    /// Compiling a module's source when it is imported (its parse tree,
    /// bytecode and constants), charged to the importing line.
    Import,
    /// A container grown past its capacity: a list or buffer reallocated
    /// larger, or a hash table (dict, set, namespace, attributes) rehashed.
    Growth,
    /// Anything else, with the type name (or `raw buffer` for a block with
    /// no object type that nothing explains).
    Other(String),
}

impl Cause {
    /// Every cause but `Other`, in display order.
    pub fn all() -> &'static [Cause] {
        &[
            Cause::Float,
            Cause::Bigint,
            Cause::BoundMethod,
            Cause::Tuple,
            Cause::List,
            Cause::Dict,
            Cause::Set,
            Cause::Str,
            Cause::Bytes,
            Cause::Closure,
            Cause::Generator,
            Cause::Instance,
            Cause::Exception,
            Cause::Frame,
            Cause::Import,
            Cause::Growth,
        ]
    }

    /// The snake_case name used in profiles, budgets and reports (the serde
    /// name; `other` for every `Other`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Cause::Float => "float",
            Cause::Bigint => "bigint",
            Cause::BoundMethod => "bound_method",
            Cause::Tuple => "tuple",
            Cause::List => "list",
            Cause::Dict => "dict",
            Cause::Set => "set",
            Cause::Str => "str",
            Cause::Bytes => "bytes",
            Cause::Closure => "closure",
            Cause::Generator => "generator",
            Cause::Instance => "instance",
            Cause::Exception => "exception",
            Cause::Frame => "frame",
            Cause::Import => "import",
            Cause::Growth => "growth",
            Cause::Other(_) => "other",
        }
    }

    /// The name with the type for `Other`: `other (FileIO)`.
    pub fn label(&self) -> String {
        match self {
            Cause::Other(t) => format!("other ({t})"),
            c => c.as_str().to_string(),
        }
    }

    /// The cause a name or label stands for: `float`, `bound_method`,
    /// `other (slice)`, `other`. `None` for anything else.
    pub fn from_name(name: &str) -> Option<Cause> {
        let name = name.trim();
        if let Some(c) = Cause::all().iter().find(|c| c.as_str() == name) {
            return Some(c.clone());
        }
        let rest = name.strip_prefix("other")?.trim();
        if rest.is_empty() {
            return Some(Cause::Other(String::new()));
        }
        let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
        Some(Cause::Other(inner.to_string()))
    }

    /// A short title.
    pub fn title(&self) -> &'static str {
        match self {
            Cause::Float => "float result boxed on the heap",
            Cause::Bigint => "int beyond the small-int range",
            Cause::BoundMethod => "bound method made by `obj.method` used as a value",
            Cause::Tuple => "tuple (including *args and multiple return values)",
            Cause::List => "new list",
            Cause::Dict => "new dict (including **kwargs)",
            Cause::Set => "new set",
            Cause::Str => "new string (concatenation, formatting, conversion)",
            Cause::Bytes => "bytes, bytearray, memoryview or array object (including slice copies)",
            Cause::Closure => "function or closure object made at run time",
            Cause::Generator => "generator object",
            Cause::Instance => "instance of a Python class",
            Cause::Exception => "exception object",
            Cause::Frame => "function frame allocated on the heap",
            Cause::Import => "module compiled from source at import",
            Cause::Growth => "list, dict, set or buffer grown past its capacity",
            Cause::Other(_) => "other heap object or untyped block",
        }
    }

    /// Why this allocates, one paragraph for a MicroPython developer.
    pub fn why(&self) -> &'static str {
        match self {
            Cause::Float => {
                "With MicroPython's default object representation a float does not fit in \
                an object pointer, so every float produced at run time (by arithmetic, \
                float(), math functions, or reading an element of an array('f')) is a new \
                heap object of one GC block (16 bytes on 32-bit builds). Float constants \
                written in the source are made once, by the compiler; it is the computed \
                results that allocate. Ports built with object representation C or D keep \
                floats in the pointer, but most boards use the default."
            }
            Cause::Bigint => {
                "An int that fits in the object pointer costs nothing: 31 bits signed on \
                32-bit builds (-2**30 to 2**30-1), 63 on 64-bit ones. Anything larger (a \
                32-bit register value, a CRC, `1 << 31`, a product of two large counts) is \
                an arbitrary-precision int: a heap object plus a buffer for its digits, \
                built again by every operation whose result is large."
            }
            Cause::BoundMethod => {
                "`obj.method()` called directly is free: the compiler emits LOAD_METHOD \
                and CALL_METHOD, which pass obj to the function without making anything. \
                Reading `obj.method` without calling it (to pass it as a callback, store \
                it, or call it later) builds a new bound-method object pairing the \
                function with obj, every time the expression runs. Registering \
                `self.tick` as a callback inside a loop or a handler allocates on each pass."
            }
            Cause::Tuple => {
                "A tuple is built whenever one is made from run-time values: `(a, b)`, \
                `return a, b`, a function collecting extra positional arguments into \
                `*args`, and the argument list a call builds to unpack `f(*seq)`. Tuples of \
                constants are built once by the compiler, and `a, b = b, a` swaps on the \
                VM stack without any tuple."
            }
            Cause::List => {
                "A list display `[a, b]`, a list comprehension, `list()`, `sorted()`, \
                `str.split()`, slicing a list, and `a, *rest = seq` each build a new list: \
                an object plus a separate block for its items. A comprehension also makes \
                a function object for its body every time it runs."
            }
            Cause::Dict => {
                "A dict display, a dict comprehension, `dict()`, and calling a function \
                defined with `**kwargs` each build a new dict with its own hash table. \
                Keyword arguments passed to ordinary named parameters do not allocate; \
                collecting them into **kwargs does."
            }
            Cause::Set => {
                "A set display `{a, b}`, a set comprehension or `set()` builds a new set \
                with its own hash table every time it runs, even when its items are \
                constants: `x in {1, 2, 3}` inside a loop rebuilds the set on each pass."
            }
            Cause::Str => {
                "Strings are immutable, so `a + b`, `'%d' % n`, `'{}'.format(n)`, \
                f-strings, `str(n)`, `join()` and `decode()` each build a new string: the \
                text in a buffer first, then the string object around it (a result equal \
                to an interned name reuses that name, but its buffer was still \
                allocated). Building a message piece by piece in a loop allocates at \
                every step."
            }
            Cause::Bytes => {
                "Slicing bytes or a bytearray (`buf[2:6]`) copies the bytes into a new \
                object; so do `bytes()`, `bytearray()`, `.read(n)`, `.encode()` and `+` on \
                bytes. A memoryview slice shares the data instead of copying it, but is \
                itself a small new object (and `[a:b]` builds a slice object), so a slice \
                taken on every pass still allocates."
            }
            Cause::Closure => {
                "`def` and `lambda` run like statements: each time one executes, \
                MicroPython makes a new function object, plus a closure object and cells \
                when it captures variables of the enclosing function. A lambda in a loop, \
                a nested def in a hot function, and every comprehension or generator \
                expression (each compiles to a hidden function) allocate this way on \
                every pass."
            }
            Cause::Generator => {
                "Calling a generator function, or evaluating a generator expression, \
                allocates a generator object that holds the function's whole frame \
                (locals and stack). A generator used briefly inside a loop, such as \
                `sum(x for x in items)` or `for v in readings():`, pays that allocation on \
                every pass."
            }
            Cause::Instance => {
                "Calling a class defined in Python creates an instance, and the first \
                attribute assigned to it creates its attribute table, which is replaced by \
                a bigger one as more attributes arrive. Short-lived objects made in a loop \
                (a result record, a point, a message) allocate on every pass and leave \
                garbage for the collector."
            }
            Cause::Exception => {
                "Raising allocates the exception object, a tuple for its arguments, and a \
                traceback buffer that gains an entry for each frame the exception passes \
                through; even re-raising a preallocated instance appends to its traceback. \
                In a hard interrupt handler the heap is locked: MicroPython falls back to \
                one static exception object, and the message and traceback are lost \
                unless `micropython.alloc_emergency_exception_buf()` reserved room for \
                them at start-up."
            }
            Cause::Frame => {
                "Calling a bytecode function needs a frame for its arguments, locals, \
                value stack and exception handlers. A frame that fits a few words is kept \
                on the C stack; a bigger one is allocated on the heap on every call and \
                freed when the call returns. Functions with many parameters or locals, \
                such as a hash round or a maths kernel called in a loop, allocate their \
                frame on each call. `micropython.heap_lock()` does not show it: with the \
                heap locked the frame quietly falls back to the C stack."
            }
            Cause::Import => {
                "Importing a module that is a `.py` file compiles it on the board: the \
                lexer, the parse tree, the scopes and the bytecode of every function are \
                built on the heap, and the module's float and big-int constants are boxed. \
                Most of it is garbage as soon as the import finishes, which fragments the \
                heap at start-up; it is paid once per import, not per pass."
            }
            Cause::Growth => {
                "Containers grow in steps. A list appended past its capacity is \
                reallocated to twice the size (its items copied when the block cannot \
                grow in place); a dict, set, namespace or attribute table that fills up is \
                rehashed into a new, bigger table. A container filled one item at a time \
                reallocates again and again and leaves holes that fragment the heap."
            }
            Cause::Other(_) => {
                "An object of a type with no specific rule (its type name is shown), or \
                a block with no object type: storage of an object allocated just before \
                it, the frame of a Python function too big for the C stack (frames over \
                11 words of locals, temporaries and exception handlers are heap-allocated \
                on every call), or a work buffer of a C function the line calls."
            }
        }
    }

    /// What to write instead, in one line.
    pub fn fix(&self) -> &'static str {
        match self {
            Cause::Float => {
                "keep running values as scaled ints (millivolts, not volts) so the loop makes no floats"
            }
            Cause::Bigint => {
                "keep values within 30 bits (split or mask wide ones), or keep them in an array('I')"
            }
            Cause::BoundMethod => {
                "cache the bound method once (`self._cb = self.cb` in __init__, or a local before the loop) and pass the cached object"
            }
            Cause::Tuple => {
                "give hot functions fixed parameters instead of *args, and return results through a preallocated list"
            }
            Cause::List => "create the list once, outside the loop, and overwrite its items",
            Cause::Dict => {
                "give hot functions named parameters instead of **kwargs; build dicts once and update their values"
            }
            Cause::Set => {
                "build the set once, outside the loop, or test membership against a constant tuple"
            }
            Cause::Str => {
                "format once outside the loop, or write the text into a bytearray allocated once"
            }
            Cause::Bytes => {
                "readinto() a buffer allocated once; take memoryview slices once, outside the loop"
            }
            Cause::Closure => {
                "define functions and lambdas once, outside the loop, and pass state as arguments"
            }
            Cause::Generator => {
                "iterate with a plain for loop over a list or buffer instead of a generator in hot code"
            }
            Cause::Instance => {
                "create the object once and update its attributes instead of making a new one each pass"
            }
            Cause::Exception => {
                "return a status value instead of raising on hot paths; in interrupt handlers allocate nothing"
            }
            Cause::Frame => {
                "fewer arguments and locals in this hot function, or make it @micropython.native"
            }
            Cause::Import => {
                "precompile the module with mpy-cross (a .mpy imports without compiling) or freeze it"
            }
            Cause::Growth => {
                "preallocate to the final size (`[0] * n`, bytearray(n)) and fill by index"
            }
            Cause::Other(_) => {
                "find the call on this line that allocates and use a variant that fills a buffer allocated once"
            }
        }
    }

    /// The fix at more length, with the techniques of "Writing fast and
    /// efficient MicroPython".
    pub fn fix_detail(&self) -> &'static str {
        match self {
            Cause::Float => {
                "Do the arithmetic in fixed point: scale once (`mv = raw * 3300 // 4095`) \
                and keep ints, which cost nothing while they stay below 2**30; convert to \
                float only where a person reads the value. An array('f') stores many \
                floats without an object each, but every element read or computed is still \
                boxed, so it saves memory rather than allocations. For numeric inner loops, \
                a @micropython.viper function works on machine ints and allocates nothing."
            }
            Cause::Bigint => {
                "Work on wide values in halves (16-bit words), or mask intermediate \
                results with `& 0x3FFFFFFF` where the algorithm allows. Keep 32-bit \
                register values in an array('I') and compare tick counts with \
                time.ticks_diff() rather than subtracting them. Constant expressions are \
                folded by the compiler (`MASK = const(0xFFFFFFFF)` costs nothing at run \
                time); it is arithmetic producing new large values that allocates. Viper \
                code handles full machine-word ints natively."
            }
            Cause::BoundMethod => {
                "Make the bound method once and reuse the object: in __init__ write \
                `self._tick = self.tick` and pass `self._tick` wherever the callback is \
                needed; before a loop, bind `on = led.on` and call `on()` inside. One \
                allocation up front and none per pass, and a local is also the fastest \
                way to reach the method."
            }
            Cause::Tuple => {
                "Give hot functions fixed parameters instead of *args, and call them with \
                the arguments written out rather than `f(*seq)`. To hand back several \
                values, write them into a list or attributes the caller created once. \
                Unpacking a sequence that already exists (`a, b = pair`) does not \
                allocate; building a new one in order to unpack it does."
            }
            Cause::List => {
                "Allocate working lists once, at start-up or in __init__ \
                (`buf = [0] * n`), then assign `buf[i] = v` in the loop and reset items \
                in place instead of building a fresh list. Replace comprehensions in hot \
                code with a plain loop writing into the preallocated list, and pass \
                indexes instead of slicing."
            }
            Cause::Dict => {
                "Replace `def configure(**options)` on hot paths with named parameters \
                (with defaults), so calls pass their values without a dict. Keep lookup \
                tables as module-level dicts built once at import, and update the values \
                of an existing dict instead of building a new one per pass: storing to a \
                key that already exists never allocates."
            }
            Cause::Set => {
                "Hoist sets out of loops into a name created once. For a few small ints or \
                strings, `x in (1, 2, 3)` tests against a constant tuple the compiler \
                builds once, with no allocation per test."
            }
            Cause::Str => {
                "Precompute fixed messages at start-up and call '{}'.format() outside hot \
                loops. To produce output piece by piece, write the pieces separately \
                (`uart.write(label)`, then the value) or fill a bytearray allocated once \
                and write that. Keep numbers as numbers until they are displayed."
            }
            Cause::Bytes => {
                "Allocate I/O buffers once (`buf = bytearray(64)`) and fill them with \
                `readinto(buf)` instead of `read()`. Create `mv = memoryview(buf)` once; \
                when the loop needs the same window every time, create that slice once too \
                (`header = mv[0:4]`) and reuse it. Pass offsets and lengths to functions \
                instead of slices of the data."
            }
            Cause::Closure => {
                "Move lambdas and nested functions to module level or make them methods, \
                created once, and give them the state they need as arguments or \
                attributes instead of capturing it. Replace comprehensions in hot code \
                with explicit loops. Create timer and interrupt callbacks once, during \
                set-up."
            }
            Cause::Generator => {
                "In hot loops iterate over a list or buffer directly (`for v in items:` \
                over a list uses no heap) or by index, and compute sums and maxima with an \
                explicit loop instead of `sum(genexpr)`. A long-lived generator created \
                once and resumed many times is fine: the cost is per generator, not per \
                value."
            }
            Cause::Instance => {
                "Keep one instance (or a small pool) and reset its attributes for each \
                use. Assign every attribute in __init__ so the attribute table is sized \
                once. For records of numbers, a preallocated list or array indexed by \
                const() field numbers avoids objects altogether."
            }
            Cause::Exception => {
                "Use exceptions for rare errors, not for control flow in loops: test the \
                condition first (`if key in d`) instead of catching KeyError, and return \
                status values from functions called per sample. In interrupt handlers \
                allocate nothing: call `micropython.alloc_emergency_exception_buf(100)` \
                once at start-up so a failure there can still be reported, and hand work \
                that needs the heap to `micropython.schedule`."
            }
            Cause::Frame => {
                "Count what the frame holds: parameters, locals, the deepest value stack \
                and one entry per active try block. Pass a list or an object instead of \
                eight separate values, split a long function into two, or keep its working \
                values in a preallocated array. @micropython.native and \
                @micropython.viper code keeps its state on the C stack and allocates no \
                frame per call."
            }
            Cause::Import => {
                "Run `mpy-cross module.py` on the host and copy the `.mpy` to the board: \
                importing bytecode skips the compiler and its garbage. Modules that never \
                change can be frozen into the firmware, where their bytecode and \
                constants live in flash and cost no heap at all. Importing everything \
                once at start-up, before the heap fills, also avoids fragmentation."
            }
            Cause::Growth => {
                "When the final size is known, allocate it at once (`items = [0] * n`, \
                `buf = bytearray(n)`) and write by index with a separate count; when only \
                a maximum is known, allocate the maximum once and reuse it. Create dicts \
                with all their keys up front and objects with all their attributes in \
                __init__, so later stores only replace values."
            }
            Cause::Other(_) => {
                "Look at the type name and at the calls on the line. Many built-ins have \
                variants that fill a buffer you pass (`readinto`, `struct.pack_into`) \
                instead of returning a new object. For an untyped block at a call into \
                your own function, count its parameters, locals and try blocks: a frame \
                over 11 words is heap-allocated on every call, so split the function or \
                slim it down, or make it @micropython.native."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names_and_parse_back() {
        for c in Cause::all() {
            let json = serde_json::to_string(c).expect("serialises");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(Cause::from_name(c.as_str()).as_ref(), Some(c));
            assert_eq!(Cause::from_name(&c.label()).as_ref(), Some(c));
        }
        let slice = Cause::Other("slice".into());
        assert_eq!(
            serde_json::to_string(&slice).expect("serialises"),
            r#"{"other":"slice"}"#
        );
        assert_eq!(slice.as_str(), "other");
        assert_eq!(slice.label(), "other (slice)");
        assert_eq!(Cause::from_name("other (slice)"), Some(slice));
        assert_eq!(Cause::from_name("other"), Some(Cause::Other(String::new())));
        assert_eq!(Cause::from_name("floats"), None);
        assert_eq!(Cause::from_name("other slice"), None);
    }

    #[test]
    fn all_lists_each_named_cause_once() {
        let all = Cause::all();
        assert_eq!(all.len(), 16);
        let mut names: Vec<&str> = all.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(!all.iter().any(|c| matches!(c, Cause::Other(_))));
    }

    #[test]
    fn every_cause_has_its_own_complete_entry() {
        let mut causes: Vec<Cause> = Cause::all().to_vec();
        causes.push(Cause::Other("raw buffer".into()));
        let mut seen = std::collections::HashSet::new();
        for c in &causes {
            for (what, text) in [
                ("title", c.title()),
                ("why", c.why()),
                ("fix", c.fix()),
                ("fix_detail", c.fix_detail()),
            ] {
                assert!(!text.trim().is_empty(), "{} has no {what}", c.label());
                assert!(
                    seen.insert(text),
                    "{}'s {what} repeats another entry",
                    c.label()
                );
                // Continuation lines in the source must not leak indentation.
                assert!(
                    !text.contains("  "),
                    "{}'s {what} has a double space",
                    c.label()
                );
            }
            assert!(
                !c.fix().contains('\n') && c.fix().len() <= 120,
                "{}: fix is one short line",
                c.label()
            );
            assert!(
                c.why().len() > c.fix().len(),
                "{}: why is a paragraph",
                c.label()
            );
            assert!(
                c.fix_detail().len() > c.fix().len(),
                "{}: the detail says more",
                c.label()
            );
        }
    }
}
