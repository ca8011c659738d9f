//! Realistic programs (`fixtures/programs/`: a sensor driver, a protocol
//! parser, a display buffer, a main loop of generators, a program of
//! several modules) through the real instrumented MicroPython. For each:
//! the top lines of the summary with their object and fix are the ones
//! `expected.json` names; no one-off line is listed above a per-pass line;
//! and every line the summary names as allocating is confirmed on the
//! *plain* build (upstream's VM, no hooks) by running the program with that
//! statement under `micropython.heap_lock()`: it must raise MemoryError
//! there. A heap frame is invisible to heap_lock (the frame falls back to
//! the C stack), so a `heap frame` line is confirmed instead by
//! `gc.mem_alloc()` rising between the call and the callee's first line,
//! while with the heap locked over that same stretch nothing fails (so the
//! growth was the frame, not an argument).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use mpprof_profile::{Profile, Scope};

mod common;
use common::root;

/// What the helper module prints when the statement under test allocated.
const CONFIRMED: &str = "MPPROF-HEAP-CONFIRMED";

/// Installs the probes as builtins, so the program under test gains no
/// global name (a new global would change when its namespace grows).
const HELPER: &str = r#"import builtins
import gc
import micropython

_state = [0, 0, 0]


def lock():
    _state[0] = 1
    micropython.heap_lock()


def unlock():
    if _state[0]:
        _state[0] = 0
        micropython.heap_unlock()


def hit():
    unlock()
    print("MPPROF-HEAP-CONFIRMED")
    raise SystemExit(0)


def before():
    gc.collect()
    _state[2] = 0
    _state[1] = gc.mem_alloc()


def entry():
    if _state[2] == 0:
        _state[2] = gc.mem_alloc()


def after():
    if _state[2] > _state[1]:
        hit()


builtins._mpprof_lock = lock
builtins._mpprof_unlock = unlock
builtins._mpprof_hit = hit
builtins._mpprof_before = before
builtins._mpprof_entry = entry
builtins._mpprof_after = after
"#;

fn plain_vm() -> PathBuf {
    static VM: OnceLock<PathBuf> = OnceLock::new();
    VM.get_or_init(|| {
        vm_instrumented::build_host(
            &vm_instrumented::BuildOptions {
                flavour: vm_instrumented::Flavour::Plain,
                ..vm_instrumented::BuildOptions::default()
            },
            &mut |_| {},
        )
        .expect("building the plain host MicroPython")
        .micropython
    })
    .clone()
}

fn programs_dir() -> PathBuf {
    root().join("fixtures/programs")
}

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("corpus")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The code of a line: comments and the contents of strings blanked.
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in line.chars() {
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
                out.push(' ');
            }
            None if c == '#' => break,
            None => {
                if c == '"' || c == '\'' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out.trim_end().to_string()
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// For each line (0-based), the first line of the statement it belongs to,
/// and for each statement start its last line.
fn statements(lines: &[String]) -> (Vec<usize>, BTreeMap<usize, usize>) {
    let mut start_of = vec![0; lines.len()];
    let mut end_of = BTreeMap::new();
    let mut depth = 0i32;
    let mut start = 0;
    let mut continued = false;
    for (i, l) in lines.iter().enumerate() {
        if depth == 0 && !continued {
            start = i;
        }
        start_of[i] = start;
        let code = code_of(l);
        for c in code.chars() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
        }
        continued = code.ends_with('\\');
        if depth == 0 && !continued {
            end_of.insert(start, i);
        }
    }
    (start_of, end_of)
}

/// The last line of the block a compound statement's header opens.
fn block_end(lines: &[String], header_end: usize, indent: usize) -> usize {
    let mut end = header_end;
    for (i, l) in lines.iter().enumerate().skip(header_end + 1) {
        if code_of(l).trim().is_empty() {
            continue;
        }
        if indent_of(l) <= indent {
            break;
        }
        end = i;
    }
    end
}

/// The program's files copied to a fresh directory, `file` rewritten by
/// `edit` (its lines, 0-based), the helper beside them; the plain VM's
/// output of running `main`.
fn run_rewritten(
    program: &Path,
    main: &str,
    file: &str,
    name: &str,
    edit: impl FnOnce(&mut Vec<String>) -> Result<(), String>,
) -> Result<String, String> {
    let dir = tmp(name);
    for entry in std::fs::read_dir(program).expect("the program's folder") {
        let p = entry.expect("entry").path();
        if p.extension().and_then(|e| e.to_str()) == Some("py") {
            std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy");
        }
    }
    std::fs::write(dir.join("_mpprof_heaplock.py"), HELPER).expect("helper");
    let text = std::fs::read_to_string(program.join(file)).expect("the file");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    edit(&mut lines)?;
    // An expression statement: imports the helper without binding a name.
    lines.insert(0, "__import__(\"_mpprof_heaplock\")".to_string());
    std::fs::write(dir.join(file), lines.join("\n") + "\n").expect("rewritten file");
    let out = Command::new(plain_vm())
        .arg(main)
        .current_dir(&dir)
        .output()
        .expect("the plain MicroPython runs");
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The statement at `line` (1-based) of `file` run under heap_lock: whether
/// it raised MemoryError there, and the program's output.
fn heap_lock_allocates(
    program: &Path,
    main: &str,
    file: &str,
    line: usize,
) -> Result<(bool, String), String> {
    let name = format!("lock-{}-{file}-{line}", program_name(program));
    let out = run_rewritten(program, main, file, &name, |lines| {
        let (start_of, end_of) = statements(lines);
        let s = start_of[line - 1];
        let mut e = end_of[&s];
        let header = code_of(&lines[s]);
        let header = header.trim();
        let indent = indent_of(&lines[s]);
        if header.ends_with(':') {
            let definition = ["def ", "async def ", "class "]
                .iter()
                .any(|k| header.starts_with(k));
            if !definition {
                return Err(format!(
                    "{file}:{line}: `{header}` is the header of a compound statement; only simple statements and definitions can be run alone under heap_lock"
                ));
            }
            e = block_end(lines, e, indent);
        }
        let pad = " ".repeat(indent);
        let mut wrapped = vec![format!("{pad}_mpprof_lock()"), format!("{pad}try:")];
        wrapped.extend(lines[s..=e].iter().map(|l| format!("    {l}")));
        wrapped.extend([
            format!("{pad}except MemoryError:"),
            format!("{pad}    _mpprof_hit()"),
            format!("{pad}finally:"),
            format!("{pad}    _mpprof_unlock()"),
        ]);
        lines.splice(s..=e, wrapped);
        Ok(())
    })?;
    Ok((out.contains(CONFIRMED), out))
}

/// A call at `line` whose callee `callee` gets a heap frame: the heap grows
/// between the statement's start and the callee's first line.
fn frame_allocates(
    program: &Path,
    main: &str,
    file: &str,
    line: usize,
    callee: &str,
) -> Result<(bool, String), String> {
    let name = format!("frame-{}-{file}-{line}", program_name(program));
    let text = std::fs::read_to_string(program.join(file)).expect("the file");
    if !text
        .lines()
        .any(|l| l.trim_start().starts_with(&format!("def {callee}(")))
    {
        return Err(format!(
            "{file}:{line}: no `def {callee}(` in {file}; the probe handles a callee in the calling file"
        ));
    }
    let out = run_rewritten(program, main, file, &name, |lines| {
        let (start_of, end_of) = statements(lines);
        let s = start_of[line - 1];
        let e = end_of[&s];
        let def = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("def {callee}(")))
            .ok_or("no def")?;
        let def_end = end_of.get(&def).copied().unwrap_or(def);
        let body = (def_end + 1..lines.len())
            .find(|&i| !code_of(&lines[i]).trim().is_empty())
            .ok_or("the def has no body")?;
        let pad = " ".repeat(indent_of(&lines[s]));
        let body_pad = " ".repeat(indent_of(&lines[body]));
        // Inserted from the bottom up, so each index still holds.
        let mut inserts = vec![
            (e + 1, format!("{pad}_mpprof_after()")),
            (s, format!("{pad}_mpprof_before()")),
            (body, format!("{body_pad}_mpprof_entry()")),
        ];
        inserts.sort_by_key(|x| std::cmp::Reverse(x.0));
        for (at, text) in inserts {
            lines.insert(at, text);
        }
        Ok(())
    })?;
    Ok((out.contains(CONFIRMED), out))
}

/// The statement at `line` run with the heap locked until `callee`'s first
/// line: whether anything raised MemoryError in between. A heap frame does
/// not (it falls back to the C stack); arguments that allocate would.
fn allocates_before_callee(
    program: &Path,
    main: &str,
    file: &str,
    line: usize,
    callee: &str,
) -> Result<(bool, String), String> {
    let name = format!("frame-locked-{}-{file}-{line}", program_name(program));
    let out = run_rewritten(program, main, file, &name, |lines| {
        let (start_of, end_of) = statements(lines);
        let s = start_of[line - 1];
        let e = end_of[&s];
        let def = lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("def {callee}(")))
            .ok_or("no def")?;
        let def_end = end_of.get(&def).copied().unwrap_or(def);
        let body = (def_end + 1..lines.len())
            .find(|&i| !code_of(&lines[i]).trim().is_empty())
            .ok_or("the def has no body")?;
        let indent = indent_of(&lines[s]);
        let pad = " ".repeat(indent);
        let body_pad = " ".repeat(indent_of(&lines[body]));
        let mut wrapped = vec![format!("{pad}_mpprof_lock()"), format!("{pad}try:")];
        wrapped.extend(lines[s..=e].iter().map(|l| format!("    {l}")));
        wrapped.extend([
            format!("{pad}except MemoryError:"),
            format!("{pad}    _mpprof_hit()"),
            format!("{pad}finally:"),
            format!("{pad}    _mpprof_unlock()"),
        ]);
        // The callee's unlock first (it is below or above the statement:
        // inserting at the higher index first keeps the other valid).
        if body > e {
            lines.insert(body, format!("{body_pad}_mpprof_unlock()"));
            lines.splice(s..=e, wrapped);
        } else {
            lines.splice(s..=e, wrapped);
            lines.insert(body, format!("{body_pad}_mpprof_unlock()"));
        }
        Ok(())
    })?;
    let raised = out.contains(CONFIRMED) || out.contains("MemoryError");
    Ok((raised, out))
}

fn program_name(program: &Path) -> String {
    program
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("program")
        .trim_end_matches(".py")
        .to_string()
}

/// `mpprof run` on the program: its summary (stderr) and profile.
fn profile(program_dir: &Path, main: &str, name: &str) -> (String, Profile) {
    let out_dir = tmp(&format!("profile-{name}"));
    let json = out_dir.join("profile.json");
    let out = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-o"])
        .arg(&json)
        .arg(program_dir.join(main))
        .output()
        .expect("mpprof runs");
    let summary = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "mpprof run {name}: {summary}");
    (
        summary,
        Profile::from_json_file(&json).expect("a valid profile"),
    )
}

struct Named {
    file: String,
    line: u32,
    place: String,
    what: String,
    /// The line's main cause.
    cause: String,
    fix: String,
    scope: Scope,
}

/// The lines the summary names, in its order (the same lists it prints:
/// the top 10 of each scope).
fn named_lines(p: &Profile) -> Vec<Named> {
    let mut out = Vec::new();
    for scope in [Scope::PerPass, Scope::OneOff, Scope::Import] {
        for l in p.allocating_lines_in(scope).into_iter().take(10) {
            let path = &p.files[l.file].path;
            let file = path.rsplit('/').next().unwrap_or(path).to_string();
            out.push(Named {
                place: format!("{file}:{}", l.line),
                file,
                line: l.line,
                what: l.what.clone().unwrap_or_default(),
                cause: l
                    .causes
                    .first()
                    .map(|c| c.cause.label())
                    .unwrap_or_default(),
                fix: l.fix.clone().unwrap_or_default(),
                scope,
            });
        }
    }
    out
}

fn expected() -> serde_json::Map<String, serde_json::Value> {
    let text =
        std::fs::read_to_string(programs_dir().join("expected.json")).expect("expected.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("expected.json is JSON");
    v.as_object().expect("an object").clone()
}

/// (program folder, main script) of an expected.json key: `x.py` in the
/// programs folder, or `dir/main.py` for a program of several modules.
fn locate(key: &str) -> (PathBuf, String) {
    match key.split_once('/') {
        Some((dir, main)) => (programs_dir().join(dir), main.to_string()),
        None => (programs_dir(), key.to_string()),
    }
}

#[test]
fn the_corpus_summaries_name_the_lines_to_change_and_heap_lock_confirms_every_one() {
    let mut confirmed = 0;
    let mut failures = Vec::new();
    for (key, e) in &expected() {
        let (dir, main) = locate(key);
        let name = key.replace('/', "-");
        let (summary, p) = profile(&dir, &main, &name);
        let named = named_lines(&p);

        // The lines to change come first, as expected.json says: place,
        // object and a part of the fix.
        let top: Vec<&Named> = named.iter().filter(|n| n.scope == Scope::PerPass).collect();
        let want = e["top"].as_array().expect("top");
        assert!(
            top.len() >= want.len(),
            "{key}: per-pass lines {:?}",
            top.iter().map(|n| &n.place).collect::<Vec<_>>()
        );
        for (i, w) in want.iter().enumerate() {
            let n = top[i];
            assert_eq!(
                n.place,
                w["place"].as_str().expect("place"),
                "{key}: top line {i}"
            );
            assert_eq!(
                n.what,
                w["what"].as_str().expect("what"),
                "{key}: {}",
                n.place
            );
            assert_eq!(
                n.cause,
                w["cause"].as_str().expect("cause"),
                "{key}: {}",
                n.place
            );
            let part = w["fix"].as_str().expect("fix");
            assert!(
                n.fix.contains(part),
                "{key}: {}: {:?} lacks {part:?}",
                n.place,
                n.fix
            );
        }
        if let Some(imports) = e.get("imports").and_then(|i| i.as_array()) {
            let got: Vec<&str> = named
                .iter()
                .filter(|n| n.scope == Scope::Import)
                .map(|n| n.what.as_str())
                .collect();
            let want: Vec<&str> = imports.iter().filter_map(|i| i.as_str()).collect();
            assert_eq!(got, want, "{key}: imports");
            for n in named.iter().filter(|n| n.scope == Scope::Import) {
                assert!(n.fix.contains("mpy-cross"), "{key}: {}: {}", n.place, n.fix);
                assert!(
                    summary.contains(&format!("{}: ", n.what)) && summary.contains(&n.fix),
                    "{key}: the summary's import line for {}",
                    n.place
                );
            }
        }

        // The summary prints them in that order: every per-pass line above
        // every one-off line, imports last; each with its fix.
        let mut last_rank = 0;
        let mut last_pos = 0;
        for n in &named {
            let row = format!("  {}", n.place);
            let pos = summary[last_pos..]
                .find(&format!("{row} "))
                .map(|p| p + last_pos)
                .unwrap_or_else(|| {
                    panic!(
                        "{key}: {} is not in the summary in order:\n{summary}",
                        n.place
                    )
                });
            let rank = match n.scope {
                Scope::PerPass => 0,
                Scope::OneOff => 1,
                Scope::Import => 2,
            };
            assert!(
                rank >= last_rank,
                "{key}: {} is listed after a later scope",
                n.place
            );
            assert!(summary[pos..].contains(&n.fix), "{key}: {}'s fix", n.place);
            last_rank = rank;
            last_pos = pos;
        }

        // Every named line, confirmed on the plain build.
        for n in &named {
            let file = if dir == programs_dir() {
                main.clone()
            } else {
                n.file.clone()
            };
            let result = if n.what == "heap frame" {
                let src = p
                    .lines
                    .iter()
                    .find(|l| l.line == n.line && p.files[l.file].path.ends_with(&n.file))
                    .and_then(|l| p.source_line(l.file, l.line))
                    .unwrap_or("");
                let callee = callee_of(src);
                frame_allocates(&dir, &main, &file, n.line as usize, &callee).and_then(
                    |(grew, out)| {
                        if !grew {
                            return Ok((false, out));
                        }
                        // And the growth is the frame: with the heap locked
                        // up to the callee's first line nothing fails.
                        let (raised, locked) =
                            allocates_before_callee(&dir, &main, &file, n.line as usize, &callee)?;
                        Ok((!raised, format!("{out}\n{locked}")))
                    },
                )
            } else {
                heap_lock_allocates(&dir, &main, &file, n.line as usize)
            };
            match result {
                Ok((true, _)) => confirmed += 1,
                Ok((false, out)) => failures.push(format!(
                    "{key}: {} ({}) did not allocate on the plain build:\n{out}",
                    n.place, n.what
                )),
                Err(e) => failures.push(format!("{key}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    println!("{confirmed} named lines confirmed on the plain build");
    assert!(confirmed >= 20, "only {confirmed} lines confirmed");
}

/// The function a line calls: `x = mix(a, b)` gives `mix`, `d.bar(1)` gives
/// `bar`, `main()` gives `main`.
fn callee_of(src: &str) -> String {
    let code = code_of(src);
    let open = code.find('(').unwrap_or(code.len());
    let before = &code[..open];
    before
        .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn the_rewriter_isolates_statements() {
    let lines: Vec<String> = [
        "X = (1,",
        "     2)",
        "def f(a):",
        "    return a",
        "",
        "class K:",
        "    def m(self): pass",
        "y = f(3)  # (",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (start_of, end_of) = statements(&lines);
    assert_eq!(start_of[1], 0);
    assert_eq!(end_of[&0], 1);
    assert_eq!(block_end(&lines, 2, 0), 3);
    assert_eq!(block_end(&lines, 5, 0), 6);
    assert_eq!(start_of[7], 7, "a bracket in a comment opens nothing");
    assert_eq!(callee_of("        d.bar(level * 2)"), "bar");
    assert_eq!(callee_of("x = mix(a, (b))"), "mix");
}

/// The line of `file` whose code is `text` (1-based).
fn line_of(dir: &Path, file: &str, text: &str) -> usize {
    let src = std::fs::read_to_string(dir.join(file)).expect("the file");
    src.lines()
        .position(|l| l.trim() == text)
        .unwrap_or_else(|| panic!("{file} has no line `{text}`"))
        + 1
}

#[test]
fn the_probes_tell_a_quiet_line_from_an_allocating_one() {
    let dir = programs_dir();
    // The checksum's loop body allocates nothing: heap_lock passes.
    let quiet = line_of(&dir, "protocol_parser.py", "c ^= line[i]");
    let (hit, out) = heap_lock_allocates(&dir, "protocol_parser.py", "protocol_parser.py", quiet)
        .expect("rewritten");
    assert!(!hit, "a quiet line confirmed as allocating:\n{out}");
    assert!(
        out.contains("100"),
        "the program ran to its end under the probe:\n{out}"
    );
    // A call of a two-argument function keeps its frame on the C stack.
    let call = line_of(&dir, "sensor_driver.py", "self.on_sample(t, h)");
    let (grew, out) = frame_allocates(&dir, "sensor_driver.py", "sensor_driver.py", call, "record")
        .expect("rewritten");
    assert!(!grew, "a small frame confirmed as a heap frame:\n{out}");
    assert!(
        out.contains("samples 200"),
        "the program ran to its end:\n{out}"
    );
    // Locked up to the callee's first line: an argument that allocates
    // fails there, a call with plain arguments does not.
    let (raised, out) =
        allocates_before_callee(&dir, "sensor_driver.py", "sensor_driver.py", call, "record")
            .expect("rewritten");
    assert!(!raised, "plain arguments allocated:\n{out}");
    let formatted = line_of(&dir, "display_buffer.py", "d.text(\"%d%%\" % level, 0)");
    let (raised, out) = allocates_before_callee(
        &dir,
        "display_buffer.py",
        "display_buffer.py",
        formatted,
        "text",
    )
    .expect("rewritten");
    assert!(raised, "a formatted argument did not allocate:\n{out}");
}
