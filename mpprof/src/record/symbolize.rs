//! Code objects → functions with qualified names. MicroPython 1.25 has no
//! `__qualname__`, so `Class.method` and `outer.<locals>.inner` are read from
//! the script's source: the `def` or `class` whose body holds the code's
//! first line, then the enclosing `def`/`class` lines found by indentation.
//!
//! MicroPython's first line of a function is the line of its first
//! statement (its body, or the `def` line itself for `def f(): return 1`;
//! decorators are not part of it); a class body's is its first statement
//! too; a lambda's or comprehension's is the line of the expression. Lines
//! inside strings (docstrings) and bracket or backslash continuations are not
//! statements, so a scan of the file marks where each logical line starts
//! before indentation is compared.

use std::collections::HashMap;

/// A source file read once: its lines and where its statements start.
#[derive(Debug)]
struct SourceText {
    lines: Vec<String>,
    /// For each line, the index of the line its logical line starts on.
    logical_start: Vec<usize>,
    /// Lines that start a logical line and hold code (not blank, not only
    /// a comment).
    statement: Vec<bool>,
}

/// Scanner state carried from one physical line to the next.
#[derive(Debug, Clone, Copy, Default)]
struct Carry {
    /// Inside a string: its quote character and whether it is triple-quoted.
    string: Option<(char, bool)>,
    /// Open brackets.
    depth: usize,
    /// The previous line ended with a backslash continuation.
    continued: bool,
}

impl SourceText {
    fn new(text: &str) -> Self {
        // `lines()` drops `\n` and `\r\n`; a lone `\r` left at the end of a
        // line (mixed endings) is trimmed too.
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect();
        let mut logical_start = Vec::with_capacity(lines.len());
        let mut statement = Vec::with_capacity(lines.len());
        let mut carry = Carry::default();
        for (i, line) in lines.iter().enumerate() {
            let begins = carry.string.is_none() && carry.depth == 0 && !carry.continued;
            let start = if begins || i == 0 {
                i
            } else {
                logical_start[i - 1]
            };
            logical_start.push(start);
            let code = line.trim_start();
            statement.push(begins && !code.is_empty() && !code.starts_with('#'));
            carry = scan_line(line, carry);
        }
        Self {
            lines,
            logical_start,
            statement,
        }
    }
}

/// Follow strings, brackets and continuations through one line.
fn scan_line(line: &str, mut carry: Carry) -> Carry {
    let chars: Vec<char> = line.chars().collect();
    let n = chars.len();
    let mut escaped_newline = false;
    let mut j = 0;
    carry.continued = false;
    while j < n {
        let c = chars[j];
        match carry.string {
            Some((quote, triple)) => {
                if c == '\\' {
                    escaped_newline = j + 1 == n;
                    j += 2;
                    continue;
                }
                if triple {
                    if chars[j..].starts_with(&[quote, quote, quote]) {
                        carry.string = None;
                        j += 3;
                        continue;
                    }
                } else if c == quote {
                    carry.string = None;
                }
                j += 1;
            }
            None => {
                match c {
                    '#' => break,
                    '\'' | '"' => {
                        if chars[j..].starts_with(&[c, c, c]) {
                            carry.string = Some((c, true));
                            j += 3;
                            continue;
                        }
                        carry.string = Some((c, false));
                    }
                    '(' | '[' | '{' => carry.depth += 1,
                    ')' | ']' | '}' => carry.depth = carry.depth.saturating_sub(1),
                    '\\' if j + 1 == n => carry.continued = true,
                    _ => {}
                }
                j += 1;
            }
        }
    }
    // A one-quote string ends with its line unless the newline is escaped
    // (an unterminated one is a syntax error: forget it).
    if matches!(carry.string, Some((_, false))) && !escaped_newline {
        carry.string = None;
    }
    carry
}

/// Indentation width, tabs to the next multiple of 8 as Python counts them.
fn indent(s: &str) -> usize {
    let mut col = 0;
    for c in s.chars() {
        match c {
            ' ' => col += 1,
            '\t' => col = (col / 8 + 1) * 8,
            '\x0c' => col = 0,
            _ => break,
        }
    }
    col
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DefKind {
    Def,
    Class,
}

/// `def name` / `async def name` / `class name` at the start of a line, and
/// what follows the name.
fn definition(s: &str) -> Option<(DefKind, &str, &str)> {
    let t = s.trim_start();
    let (kind, rest) = if let Some(r) = t.strip_prefix("def") {
        (DefKind::Def, r)
    } else if let Some(r) = t
        .strip_prefix("async")
        .filter(|r| r.starts_with(char::is_whitespace))
        .and_then(|r| r.trim_start().strip_prefix("def"))
    {
        (DefKind::Def, r)
    } else if let Some(r) = t.strip_prefix("class") {
        (DefKind::Class, r)
    } else {
        return None;
    };
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let name = &rest[..end];
    if name.is_empty() {
        return None;
    }
    Some((kind, name, &rest[end..]))
}

/// Whether a signature (the text after a def's or class's name, through its
/// logical line) has a body after its colon: `(x): return x`.
fn has_inline_body(signature: &str) -> bool {
    let mut depth = 0usize;
    let mut string: Option<char> = None;
    let mut chars = signature.char_indices();
    while let Some((i, c)) = chars.next() {
        match string {
            Some(q) => {
                if c == '\\' {
                    chars.next();
                } else if c == q {
                    string = None;
                }
            }
            None => match c {
                '\'' | '"' => string = Some(c),
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                '#' => return false,
                ':' if depth == 0 => {
                    let body = signature[i + 1..].trim();
                    return !body.is_empty() && !body.starts_with('#');
                }
                _ => {}
            },
        }
    }
    false
}

/// Source files read once each, and qualified names found in them.
#[derive(Debug, Default)]
pub struct Sources {
    files: HashMap<String, Option<SourceText>>,
}

impl Sources {
    pub fn new() -> Self {
        Self::default()
    }

    fn text(&mut self, path: &str) -> Option<&SourceText> {
        if !self.files.contains_key(path) {
            // Unreadable or missing files are remembered as such: read once.
            let text = std::fs::read(path)
                .ok()
                .map(|bytes| SourceText::new(&String::from_utf8_lossy(&bytes)));
            self.files.insert(path.to_string(), text);
        }
        self.files.get(path).and_then(|t| t.as_ref())
    }

    /// The file's lines, if it can be read (lossy UTF-8, CRLF tolerated).
    pub fn lines(&mut self, path: &str) -> Option<&Vec<String>> {
        self.text(path).map(|t| &t.lines)
    }

    /// The qualified name of the code object `name` whose first line is
    /// `path:line`, and the line of its `def` or `class` (for a lambda or
    /// comprehension, and when the source does not show the definition: the
    /// first line itself). `<module>` is the module: line 1.
    pub fn qualname(&mut self, path: &str, line: u32, name: &str) -> (String, u32) {
        if name == "<module>" {
            return (name.to_string(), 1);
        }
        let plain = (name.to_string(), line);
        let Some(src) = self.text(path) else {
            return plain;
        };
        let Some(first) = (line as usize)
            .checked_sub(1)
            .filter(|&i| i < src.lines.len())
        else {
            return plain;
        };
        let stmt = src.logical_start[first];
        // Named code (a def or class body) is found by its definition;
        // `<lambda>`, `<listcomp>`, `<genexpr>`... live in the statement.
        let anchor = if name.starts_with('<') {
            stmt
        } else {
            match find_definition(src, stmt, name) {
                Some(d) => d,
                None => return plain,
            }
        };
        let mut parts = enclosing_scopes(src, anchor);
        parts.push(name.to_string());
        let def_line = if name.starts_with('<') {
            line
        } else {
            anchor as u32 + 1
        };
        (parts.join("."), def_line)
    }
}

/// The `def`/`class name` whose body holds the statement at line index
/// `stmt`: the statement's own line when it is a one-line definition,
/// else the nearest definition above it at a smaller indentation.
fn find_definition(src: &SourceText, stmt: usize, name: &str) -> Option<usize> {
    let is_named = |i: usize| definition(&src.lines[i]).filter(|d| d.1 == name);
    if is_named(stmt).is_some() && has_inline_body(&logical_line_after_name(src, stmt, name)) {
        return Some(stmt);
    }
    let level = indent(&src.lines[stmt]);
    (0..stmt)
        .rev()
        .filter(|&i| src.statement[i])
        .find(|&i| indent(&src.lines[i]) < level && is_named(i).is_some())
}

/// The text of a definition's logical line after its name (its signature
/// and any inline body), continuation lines joined.
fn logical_line_after_name(src: &SourceText, stmt: usize, name: &str) -> String {
    let mut text = definition(&src.lines[stmt])
        .filter(|d| d.1 == name)
        .map(|d| d.2.to_string())
        .unwrap_or_default();
    for i in stmt + 1..src.lines.len() {
        if src.logical_start[i] != stmt {
            break;
        }
        text.push('\n');
        text.push_str(&src.lines[i]);
    }
    text
}

/// `Class` and `func.<locals>` for each definition enclosing line index
/// `at`, outermost first.
fn enclosing_scopes(src: &SourceText, at: usize) -> Vec<String> {
    let mut level = indent(&src.lines[at]);
    let mut parts = Vec::new();
    for i in (0..at).rev() {
        if level == 0 {
            break;
        }
        if !src.statement[i] {
            continue;
        }
        let ind = indent(&src.lines[i]);
        if ind < level {
            match definition(&src.lines[i]) {
                Some((DefKind::Class, n, _)) => parts.push(n.to_string()),
                Some((DefKind::Def, n, _)) => parts.push(format!("{n}.<locals>")),
                // `if`, `for`, `try`, `with`...: not a scope.
                None => {}
            }
            level = ind;
        }
    }
    parts.reverse();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source file written to a fresh temporary directory.
    struct TempSource {
        dir: std::path::PathBuf,
        path: String,
    }

    impl TempSource {
        fn new(tag: &str, bytes: &[u8]) -> Self {
            let dir = std::env::temp_dir().join(format!("mpprof-sym-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join("s.py");
            std::fs::write(&path, bytes).expect("write source");
            let path = path.to_str().expect("utf-8 temp path").to_string();
            Self { dir, path }
        }
    }

    impl Drop for TempSource {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    // Line numbers below are those MicroPython v1.25 reports as the first
    // line of each code object (checked with the instrumented VM).
    const SCRIPT: &str = r#"# comment line
import micropython


def deco(f):
    return f


class Led:
    """A led.

def fake():
    """

    def __init__(self):
        self.on = False

    @deco
    def toggle(self):
        self.on = not self.on

    async def blink(self, n):
        for i in range(n):
            self.toggle()


def outer():
    def outer():
        return 1
    x = [i * 2.5 for i in range(3)]
    g = lambda: 2
    return outer() + g() + len(x)


def one(): return 3


def multi(a,
          b=(1,
2)):
    return a + b
if True:
    def in_if(): pass
"#;

    #[test]
    fn qualnames_of_methods_nested_functions_and_expressions() {
        let src = TempSource::new("names", SCRIPT.as_bytes());
        let p = src.path.as_str();
        let mut s = Sources::new();
        let q = |s: &mut Sources, line, name| s.qualname(p, line, name);
        assert_eq!(q(&mut s, 2, "<module>"), ("<module>".into(), 1));
        assert_eq!(q(&mut s, 6, "deco"), ("deco".into(), 5));
        // A class body starts at its docstring; the docstring's text looks
        // like a def at column 0 and must not end the class.
        assert_eq!(q(&mut s, 10, "Led"), ("Led".into(), 9));
        assert_eq!(q(&mut s, 16, "__init__"), ("Led.__init__".into(), 15));
        assert_eq!(q(&mut s, 20, "toggle"), ("Led.toggle".into(), 19));
        assert_eq!(q(&mut s, 23, "blink"), ("Led.blink".into(), 22));
        // The outer `outer` starts with the inner def's line.
        assert_eq!(q(&mut s, 28, "outer"), ("outer".into(), 27));
        assert_eq!(q(&mut s, 29, "outer"), ("outer.<locals>.outer".into(), 28));
        assert_eq!(
            q(&mut s, 30, "<listcomp>"),
            ("outer.<locals>.<listcomp>".into(), 30)
        );
        assert_eq!(
            q(&mut s, 31, "<lambda>"),
            ("outer.<locals>.<lambda>".into(), 31)
        );
        assert_eq!(q(&mut s, 35, "one"), ("one".into(), 35));
        // A signature over three lines, one of them at column 0.
        assert_eq!(q(&mut s, 41, "multi"), ("multi".into(), 38));
        // `if` is not a scope.
        assert_eq!(q(&mut s, 43, "in_if"), ("in_if".into(), 43));
    }

    #[test]
    fn missing_files_lines_and_definitions_keep_the_plain_name() {
        let src = TempSource::new("missing", b"def f():\n    pass\n");
        let mut s = Sources::new();
        assert_eq!(s.qualname("/no/such/file.py", 3, "f"), ("f".into(), 3));
        assert_eq!(s.qualname(&src.path, 999, "f"), ("f".into(), 999));
        assert_eq!(s.qualname(&src.path, 0, "f"), ("f".into(), 0));
        // The source changed since the run: no `def g` holds line 2.
        assert_eq!(s.qualname(&src.path, 2, "g"), ("g".into(), 2));
        assert!(s.lines("/no/such/file.py").is_none());
    }

    #[test]
    fn crlf_non_utf8_and_tabs() {
        let mut bytes = b"class A:\r\n\tdef m(self):\r\n\t\tx = '\xff'\r\n".to_vec();
        bytes.extend_from_slice(b"\t\treturn x\r\n");
        let src = TempSource::new("bytes", &bytes);
        let mut s = Sources::new();
        assert_eq!(s.qualname(&src.path, 3, "m"), ("A.m".into(), 2));
        let lines = s.lines(&src.path).expect("readable");
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2], "\t\tx = '\u{fffd}'");
        assert!(lines.iter().all(|l| !l.ends_with('\r')));
    }

    #[test]
    fn files_are_read_once() {
        let src = TempSource::new("once", b"def f():\n    pass\n");
        let mut s = Sources::new();
        assert_eq!(s.qualname(&src.path, 2, "f").1, 1);
        std::fs::write(&src.path, b"\n\n\ndef f():\n    pass\n").expect("rewrite");
        // The cached text still answers: the rewrite is not seen.
        assert_eq!(s.qualname(&src.path, 2, "f").1, 1);
        assert_eq!(s.lines(&src.path).map(Vec::len), Some(2));
    }

    #[test]
    fn strings_brackets_and_continuations_are_not_statements() {
        let t = SourceText::new(
            "a = (1,\n2)\nb = '''x\ndef y():\n'''\nc = 1 + \\\n  2\nd = 'it''s' # '''\ne = 1\n",
        );
        assert_eq!(
            t.statement,
            vec![true, false, true, false, false, true, false, true, true]
        );
        assert_eq!(t.logical_start, vec![0, 0, 2, 2, 2, 5, 5, 7, 8]);
    }

    #[test]
    fn inline_bodies() {
        assert!(has_inline_body("(): return 3"));
        assert!(has_inline_body("(x: int = {'a': 1}) -> int: return x"));
        assert!(!has_inline_body("(x: int) -> dict[str, int]:"));
        assert!(!has_inline_body("(x=lambda: 1):  # ok"));
        assert!(!has_inline_body("(a,\n b):"));
    }
}
