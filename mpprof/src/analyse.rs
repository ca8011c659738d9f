//! Allocation causes: why each allocation happened, from the allocated
//! object's type (exact where MicroPython names it) and the opcode that ran,
//! and what to write instead.

use mpprof_profile::Cause;

use crate::opcodes;

/// What is known about one allocation site.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocFacts<'a> {
    /// The object's type; `None` for a raw buffer.
    pub type_name: Option<&'a str>,
    /// Bit 0: a class defined in Python; bit 1: a BaseException subclass.
    pub type_flags: u32,
    /// A realloc that grew the block.
    pub growth: bool,
    /// The allocating opcode.
    pub opcode: Option<u8>,
    /// The cause of a typed object allocated just before at the same site:
    /// a raw buffer right after it is that object's storage.
    pub companion_of: Option<&'a Cause>,
}

/// The cause of an allocation.
pub fn classify(f: &AllocFacts) -> Cause {
    if f.growth {
        return Cause::Growth;
    }
    if f.type_flags & 2 != 0 {
        return Cause::Exception;
    }
    if f.type_flags & 1 != 0 {
        return Cause::Instance;
    }
    match f.type_name {
        Some("float") => Cause::Float,
        Some("int") => Cause::Bigint,
        Some("bound_method") => Cause::BoundMethod,
        Some("tuple") => Cause::Tuple,
        Some("list") => Cause::List,
        Some("dict") | Some("OrderedDict") => Cause::Dict,
        Some("set") | Some("frozenset") => Cause::Set,
        Some("str") => Cause::Str,
        Some("bytes") | Some("bytearray") | Some("memoryview") | Some("array") => Cause::Bytes,
        Some("closure") | Some("function") => Cause::Closure,
        Some("generator") => Cause::Generator,
        Some(other) => Cause::Other(other.to_string()),
        None => match (f.companion_of, f.opcode) {
            (Some(c), _) => c.clone(),
            (None, Some(op)) if opcodes::is_star_call(op) => Cause::Tuple,
            _ => Cause::Other("raw buffer".to_string()),
        },
    }
}

/// A specific one-line fix for a site, using its source text when that says
/// more than the cause alone.
pub fn hint(cause: &Cause, opcode: Option<u8>, source_line: Option<&str>) -> String {
    let src = source_line.map(str::trim).unwrap_or("");
    match cause {
        Cause::BoundMethod => {
            if let Some(attr) = bound_attribute(src) {
                return format!(
                    "cache `{attr}` once (e.g. `self._{name} = {attr}` in __init__, or a local before the loop) and pass that",
                    name = attr.rsplit('.').next().unwrap_or("cb")
                );
            }
        }
        Cause::Tuple if opcode.is_some_and(opcodes::is_star_call) => {
            return "this call packs *args into a new tuple each time: pass fixed arguments".into();
        }
        Cause::Dict if opcode.is_some_and(opcodes::is_star_call) => {
            return "this call packs **kwargs into a new dict each time: pass positional arguments"
                .into();
        }
        Cause::Str if src.contains('+') => {
            return "string concatenation makes a new str each time: write into a preallocated bytearray instead".into();
        }
        Cause::Bytes if src.contains('[') && src.contains(':') => {
            return "this slice copies: slice a memoryview of the buffer instead (`mv = memoryview(buf)` once)".into();
        }
        Cause::Closure if src.contains("lambda") => {
            return "the lambda is created on every pass: define it once outside the loop".into();
        }
        _ => {}
    }
    cause.fix().to_string()
}

/// The attribute read as a value in a line such as `register(self.cb)`:
/// `self.cb` not followed by `(`.
fn bound_attribute(src: &str) -> Option<&str> {
    let bytes = src.as_bytes();
    let mut i = 0;
    while let Some(p) = src[i..].find('.') {
        let dot = i + p;
        let start = src[..dot]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |s| s + 1);
        let end = src[dot + 1..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(src.len(), |e| dot + 1 + e);
        let called = bytes.get(end) == Some(&b'(');
        if start < dot && end > dot + 1 && !called {
            return Some(&src[start..end]);
        }
        i = dot + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(name: &str) -> Cause {
        classify(&AllocFacts {
            type_name: Some(name),
            ..AllocFacts::default()
        })
    }

    #[test]
    fn types_give_their_causes() {
        assert_eq!(typed("float"), Cause::Float);
        assert_eq!(typed("int"), Cause::Bigint);
        assert_eq!(typed("bound_method"), Cause::BoundMethod);
        assert_eq!(typed("tuple"), Cause::Tuple);
        assert_eq!(typed("closure"), Cause::Closure);
        assert_eq!(typed("generator"), Cause::Generator);
        assert_eq!(typed("bytearray"), Cause::Bytes);
        assert_eq!(typed("FileIO"), Cause::Other("FileIO".into()));
    }

    #[test]
    fn flags_growth_and_companions() {
        let exc = AllocFacts {
            type_name: Some("ValueError"),
            type_flags: 2,
            ..AllocFacts::default()
        };
        assert_eq!(classify(&exc), Cause::Exception);
        let inst = AllocFacts {
            type_name: Some("Led"),
            type_flags: 1,
            ..AllocFacts::default()
        };
        assert_eq!(classify(&inst), Cause::Instance);
        let grow = AllocFacts {
            growth: true,
            ..AllocFacts::default()
        };
        assert_eq!(classify(&grow), Cause::Growth);
        let items = AllocFacts {
            companion_of: Some(&Cause::List),
            ..AllocFacts::default()
        };
        assert_eq!(classify(&items), Cause::List);
        let bare = AllocFacts::default();
        assert_eq!(classify(&bare), Cause::Other("raw buffer".into()));
    }

    #[test]
    fn hints_use_the_source() {
        let h = hint(
            &Cause::BoundMethod,
            Some(opcodes::CALL_FUNCTION),
            Some("    register(self.cb)"),
        );
        assert!(h.contains("`self.cb`"), "{h}");
        assert_eq!(bound_attribute("self.led.on()"), Some("self.led"));
        assert_eq!(bound_attribute("x = a.b()"), None);
        let h = hint(&Cause::Bytes, None, Some("chunk = buf[2:6]"));
        assert!(h.contains("memoryview"));
        assert_eq!(hint(&Cause::Float, None, None), Cause::Float.fix());
    }
}
