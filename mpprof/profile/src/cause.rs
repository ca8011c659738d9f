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
