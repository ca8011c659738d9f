//! Code objects → functions with qualified names. MicroPython 1.25 has no
//! `__qualname__`, so `Class.method` and `outer.<locals>.inner` are read from
//! the script's source: the `def` at the function's first line and the
//! enclosing `def`/`class` lines found by indentation.

use std::collections::HashMap;

/// Source files read once each.
#[derive(Debug, Default)]
pub struct Sources {
    files: HashMap<String, Option<Vec<String>>>,
}

fn indent(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

/// `def name` / `async def name` / `class name` at the start of a line.
fn definition(s: &str) -> Option<(&'static str, &str)> {
    let t = s.trim_start();
    let (kind, rest) = if let Some(r) = t.strip_prefix("def ") {
        ("def", r)
    } else if let Some(r) = t.strip_prefix("async def ") {
        ("def", r)
    } else if let Some(r) = t.strip_prefix("class ") {
        ("class", r)
    } else {
        return None;
    };
    let name = rest
        .trim_start()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .filter(|n| !n.is_empty())?;
    Some((kind, name))
}

impl Sources {
    pub fn new() -> Self {
        Self::default()
    }

    /// The file's lines, if it can be read (lossy UTF-8, CRLF tolerated).
    pub fn lines(&mut self, path: &str) -> Option<&Vec<String>> {
        self.files
            .entry(path.to_string())
            .or_insert_with(|| {
                let bytes = std::fs::read(path).ok()?;
                let text = String::from_utf8_lossy(&bytes);
                Some(
                    text.lines()
                        .map(|l| l.trim_end_matches('\r').to_string())
                        .collect(),
                )
            })
            .as_ref()
    }

    /// The qualified name of `name` whose code starts at `path:line`, and the
    /// line of its `def` (MicroPython's first line of a function is its first
    /// statement, or a decorator).
    pub fn qualname(&mut self, path: &str, line: u32, name: &str) -> (String, u32) {
        if name == "<module>" {
            return (name.to_string(), line);
        }
        let Some(lines) = self.lines(path) else {
            return (name.to_string(), line);
        };
        let Some(start) = (line as usize).checked_sub(1).filter(|&i| i < lines.len()) else {
            return (name.to_string(), line);
        };
        let is_def = |i: usize| definition(&lines[i]).is_some_and(|(_, n)| n == name);
        // A decorated function's code starts at its first decorator: look
        // down past the decorators; otherwise the code starts at the first
        // statement of the body, below its `def`: look up.
        let mut down = start;
        while down < lines.len() && lines[down].trim_start().starts_with('@') {
            down += 1;
        }
        let at = if down > start && down < lines.len() && is_def(down) {
            down
        } else {
            (0..=start).rev().find(|&i| is_def(i)).unwrap_or(start)
        };
        let mut prefix: Vec<String> = Vec::new();
        let mut level = indent(&lines[at]);
        for i in (0..at).rev() {
            let l = &lines[i];
            if l.trim().is_empty() || l.trim_start().starts_with('#') {
                continue;
            }
            let ind = indent(l);
            if ind < level {
                if let Some((kind, n)) = definition(l) {
                    prefix.push(if kind == "def" {
                        format!("{n}.<locals>")
                    } else {
                        n.to_string()
                    });
                }
                level = ind;
                if level == 0 {
                    break;
                }
            }
        }
        prefix.reverse();
        prefix.push(name.to_string());
        (prefix.join("."), at as u32 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualnames_from_source() {
        let dir = std::env::temp_dir().join(format!("mpprof-sym-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.py");
        std::fs::write(
            &path,
            "class Led:\r\n    def toggle(self):\r\n        pass\r\n\n    @staticmethod\n    def make():\n        def inner():\n            return lambda: 1\n        return inner\n\ndef top():\n    pass\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let mut s = Sources::new();
        assert_eq!(s.qualname(p, 3, "toggle"), ("Led.toggle".to_string(), 2));
        assert_eq!(s.qualname(p, 5, "make"), ("Led.make".to_string(), 6));
        assert_eq!(s.qualname(p, 8, "inner").0, "Led.make.<locals>.inner");
        assert_eq!(
            s.qualname(p, 8, "<lambda>"),
            ("Led.make.<locals>.inner.<locals>.<lambda>".to_string(), 8)
        );
        assert_eq!(s.qualname(p, 12, "top"), ("top".to_string(), 11));
        assert_eq!(s.qualname(p, 1, "<module>").0, "<module>");
        assert_eq!(s.qualname("/no/such/file.py", 3, "f"), ("f".to_string(), 3));
        assert_eq!(s.qualname(p, 999, "f").0, "f");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
