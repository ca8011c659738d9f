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
    /// bytes/bytearray, including slice copies.
    Bytes,
    /// A closure or function object made at run time.
    Closure,
    Generator,
    /// An instance of a class defined in Python.
    Instance,
    Exception,
    /// A list, dict or buffer grown by realloc.
    Growth,
    /// Anything else, with the type name (or `raw buffer`).
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
            Cause::Growth,
        ]
    }

    /// The snake_case name used in profiles, budgets and reports.
    pub fn as_str(&self) -> &str {
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

    pub fn title(&self) -> &'static str {
        match self {
            Cause::Float => "float result boxed on the heap",
            Cause::Bigint => "int past the small-int range",
            Cause::BoundMethod => "bound method made by `obj.method` used as a value",
            Cause::Tuple => "tuple (including *args and multiple return values)",
            Cause::List => "new list",
            Cause::Dict => "new dict (including **kwargs)",
            Cause::Set => "new set",
            Cause::Str => "new string (concatenation, formatting, conversion)",
            Cause::Bytes => "new bytes or bytearray (including slice copies)",
            Cause::Closure => "function or closure object made at run time",
            Cause::Generator => "generator object",
            Cause::Instance => "instance of a Python class",
            Cause::Exception => "exception object",
            Cause::Growth => "list, dict or buffer grown by realloc",
            Cause::Other(_) => "other heap object or raw buffer",
        }
    }

    /// Why this allocates, for a MicroPython developer.
    pub fn why(&self) -> &'static str {
        match self {
            Cause::Float => {
                "On most ports a float is an object on the heap: every arithmetic result, \
                conversion or float literal computed at run time allocates a new one (12-16 bytes, \
                one GC block)."
            }
            Cause::Bigint => {
                "Ints that fit in 31 bits (63 on 64-bit builds) are stored in the \
                pointer itself; anything larger, such as a 32-bit register value or a millisecond \
                timestamp product, becomes a heap-allocated big int."
            }
            Cause::BoundMethod => {
                "Reading `self.cb` without calling it creates a bound-method \
                object pairing the function with `self`, every time. Passing a method as a \
                callback in a loop or an interrupt allocates on each pass."
            }
            Cause::Tuple => {
                "Calling with `*args`, returning several values, or writing `(a, b)` \
                builds a tuple on the heap."
            }
            Cause::List => {
                "A list display, a list comprehension or `list()` allocates the list \
                object and its item array."
            }
            Cause::Dict => {
                "A dict display, `dict()`, or a call with `**kwargs` (or keyword \
                arguments to a function taking **kwargs) allocates a dict and its table."
            }
            Cause::Set => "A set display or `set()` allocates the set and its table.",
            Cause::Str => {
                "Strings are immutable: `a + b`, `%`/`format`, `str(x)` and f-strings \
                allocate a new string each time."
            }
            Cause::Bytes => {
                "Slicing bytes or a bytearray (`buf[2:6]`) copies into a new object; \
                `bytes(...)`, `.read()` and `.decode()` allocate too."
            }
            Cause::Closure => {
                "A `lambda`, a nested `def` or a comprehension inside a loop creates \
                a new function object (and closure cells) every time it is reached."
            }
            Cause::Generator => {
                "Calling a generator function or evaluating a generator \
                expression allocates the generator and its frame state."
            }
            Cause::Instance => {
                "Creating an instance of a class allocates the object (and its \
                attribute dict as attributes are added)."
            }
            Cause::Exception => {
                "Raising an exception allocates the exception object and its \
                traceback; in an interrupt handler this fails outright."
            }
            Cause::Growth => {
                "Appending to a list or adding to a dict past its capacity reallocates \
                its storage, copying it to a bigger block."
            }
            Cause::Other(_) => {
                "An object of another type, or a raw buffer allocated by C code \
                called from this line."
            }
        }
    }

    /// What to write instead, in one line.
    pub fn fix(&self) -> &'static str {
        match self {
            Cause::Float => "keep running values as scaled ints, or store floats into a preallocated array('f')",
            Cause::Bigint => "keep values under 2**30 (mask or split them), or use array('I')/memoryview slots",
            Cause::BoundMethod => "cache the bound method once (`self._cb = self.cb` in __init__) and pass the cached object",
            Cause::Tuple => "avoid *args and multiple returns in hot calls: pass fixed arguments, write results into a preallocated list",
            Cause::List => "preallocate the list once outside the loop and overwrite its items",
            Cause::Dict => "avoid **kwargs in hot calls; build the dict once and update it in place",
            Cause::Set => "build the set once outside the loop and reuse it",
            Cause::Str => "format into a preallocated bytearray, or build the string once outside the loop",
            Cause::Bytes => "use a memoryview slice, or readinto() a preallocated bytearray",
            Cause::Closure => "define the function once outside the loop (or as a method) and reuse it",
            Cause::Generator => "use a plain for loop over range or a preallocated buffer instead of a generator",
            Cause::Instance => "create the object once and reset its fields instead of making a new one",
            Cause::Exception => "preallocate the exception (or use return codes) on hot and interrupt paths",
            Cause::Growth => "preallocate to the final size (`[0] * n`, bytearray(n)) and fill by index",
            Cause::Other(_) => "look at the C function this line calls; preallocate what it returns if it has an `into` variant",
        }
    }

    /// A longer explanation of the fix, with the talk's techniques.
    pub fn fix_detail(&self) -> &'static str {
        match self {
            Cause::Float => {
                "Floats are boxed unless the port uses object representation C or D. \
                Work in fixed point (e.g. millivolts as an int), keep float samples in an \
                array('f') so the loop writes into existing storage, or move the maths into a \
                @micropython.viper function working on ints."
            }
            Cause::Bigint => {
                "Small ints are free; big ints are not. Keep counters and masks \
                within 30 bits, use const() for constants, and keep 32-bit register values in an \
                array('I') or a bytearray read through a memoryview."
            }
            Cause::BoundMethod => {
                "`timer.callback(self.cb)` allocates a bound method each call. \
                Create it once: `self._cb = self.cb` in __init__ and pass `self._cb`; in a hot \
                loop, cache `f = obj.method` in a local before the loop."
            }
            Cause::Tuple => {
                "Give the function fixed parameters instead of *args, return results \
                through a preallocated list or attributes, and avoid tuple unpacking of freshly \
                built tuples in the loop."
            }
            Cause::List => {
                "Allocate buffers once: `buf = [0] * n` before the loop, then assign \
                `buf[i] = ...`. Comprehensions allocate a new list every time."
            }
            Cause::Dict => {
                "Pass keyword values as positional arguments in hot calls and keep \
                lookup tables as module-level constants."
            }
            Cause::Set => {
                "Hoist constant sets out of the loop (or use a tuple of small ints for \
                membership tests)."
            }
            Cause::Str => {
                "Write text into a preallocated bytearray with memoryview slices, or \
                precompute messages; only format strings outside the hot path."
            }
            Cause::Bytes => {
                "`uart.readinto(buf)` and `mv = memoryview(buf); mv[2:6]` avoid \
                copies; slices of a memoryview share the storage."
            }
            Cause::Closure => {
                "Move lambdas, nested defs and comprehensions out of loops and \
                interrupt handlers; bind needed state as default arguments or attributes."
            }
            Cause::Generator => {
                "Generators are convenient but each call allocates; in hot code \
                use an index loop or a callback with preallocated state."
            }
            Cause::Instance => {
                "Reuse objects: keep a pool or a single instance and update its \
                attributes; give classes __slots__-like fixed attributes set in __init__."
            }
            Cause::Exception => {
                "Raising allocates; in an ISR use \
                micropython.alloc_emergency_exception_buf() and schedule work with \
                micropython.schedule; on hot paths prefer return codes."
            }
            Cause::Growth => {
                "Grow-by-append reallocates and copies repeatedly and fragments the \
                heap. Preallocate to the final size and keep an index."
            }
            Cause::Other(_) => {
                "Check which built-in the line calls; many have preallocating \
                variants (readinto, into=, memoryview) that avoid the allocation."
            }
        }
    }
}
