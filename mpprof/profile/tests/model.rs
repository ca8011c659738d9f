//! The model on its own: the builder's derived figures, validation of every
//! kind of inconsistency, and the JSON file format with its errors.

use mpprof_profile::{
    AllocKind, AllocSite, CallNode, Cause, Exit, ExitReason, Marker, Profile, ProfileBuilder,
    ProfileError, Region, FORMAT, VERSION,
};

fn site(
    function: usize,
    file: usize,
    line: u32,
    node: Option<usize>,
    cause: Cause,
    count: u64,
    bytes: u64,
) -> AllocSite {
    AllocSite {
        function,
        file,
        line,
        offset: 7,
        opcode: Some(0x2b),
        opcode_name: Some("BUILD_LIST".into()),
        node,
        type_name: Some("list".into()),
        kind: AllocKind::New,
        what: "list".into(),
        fix: cause.fix().to_string(),
        cause,
        count,
        bytes,
        executions: 3,
        event_loop: false,
    }
}

/// main → work → work (recursion) and main → helper; a lambda sharing
/// main's line 3.
fn sample() -> Profile {
    let mut b = ProfileBuilder::new();
    let runtime = b.add_file("", None);
    let file = b.add_file(
        "app.py",
        Some(vec!["def main():".into(), "    pass".into()]),
    );
    assert_eq!(b.add_file("app.py", None), file, "files are deduplicated");
    let rt = b.add_function(runtime, 0, "<runtime>", "<runtime>");
    let main = b.add_function(file, 1, "main", "main");
    let work = b.add_function(file, 10, "work", "Job.work");
    let helper = b.add_function(file, 20, "helper", "helper");
    let lambda = b.add_function(file, 3, "<lambda>", "main.<locals>.<lambda>");
    assert_eq!(b.add_function(file, 10, "work", "Job.work"), work);
    let n_main = b.add_node(CallNode {
        function: main,
        calls: 1,
        incl_ticks: 1000,
        opcodes: 50,
        // Derived by build: whatever is given here is replaced.
        excl_ticks: 12345,
        alloc_count: 99,
        ..CallNode::default()
    });
    let n_work = b.add_node(CallNode {
        parent: Some(n_main),
        function: work,
        calls: 2,
        incl_ticks: 600,
        opcodes: 30,
        ..CallNode::default()
    });
    let n_work2 = b.add_node(CallNode {
        parent: Some(n_work),
        function: work,
        calls: 3,
        incl_ticks: 200,
        opcodes: 20,
        ..CallNode::default()
    });
    let n_helper = b.add_node(CallNode {
        parent: Some(n_main),
        function: helper,
        calls: 5,
        incl_ticks: 300,
        opcodes: 10,
        ..CallNode::default()
    });
    assert_eq!((n_main, n_work, n_work2, n_helper), (0, 1, 2, 3));
    b.add_opcodes(main, Some((file, 3)), 40);
    b.add_opcodes(lambda, Some((file, 3)), 7);
    b.add_opcodes(main, Some((file, 2)), 10);
    b.add_opcodes(work, Some((file, 11)), 50);
    b.add_opcodes(helper, Some((file, 21)), 10);
    b.add_opcode_mix("BUILD_LIST", 4);
    b.add_opcode_mix("RETURN_VALUE", 98);
    b.add_opcode_mix("LOAD_FAST 0", 9);
    b.add_opcode_mix("BUILD_LIST", 6);
    b.add_alloc(site(work, file, 11, Some(n_work), Cause::List, 2, 32));
    // The same site again merges.
    b.add_alloc(site(work, file, 11, Some(n_work), Cause::List, 1, 16));
    b.add_alloc(site(work, file, 11, Some(n_work2), Cause::List, 4, 64));
    b.add_alloc(site(main, file, 3, Some(n_main), Cause::Float, 1, 16));
    b.add_alloc(site(lambda, file, 3, None, Cause::Tuple, 3, 48));
    b.add_alloc(site(
        rt,
        runtime,
        0,
        None,
        Cause::Other("raw buffer".into()),
        2,
        200,
    ));
    b.add_alloc_failure(helper, 21, 4000, 1);
    b.add_alloc_failure(helper, 21, 9000, 2);
    b.add_marker(Marker {
        at: 5,
        label: "go".into(),
        ..Marker::default()
    });
    b.add_region(Region {
        label: "r".into(),
        start: 1,
        end: Some(9),
        entries: 1,
        inside_ticks: 8,
        ..Region::default()
    });
    b.gc_mut().peak_used_bytes = 2048;
    b.meta_mut().target = "host".into();
    b.build()
}

#[test]
fn the_builder_derives_every_total() {
    let p = sample();
    p.validate().expect("a built profile is consistent");
    assert_eq!((p.format.as_str(), p.version), (FORMAT, VERSION));

    // Ids are indices.
    assert!(p.functions.iter().enumerate().all(|(i, f)| f.id == i));
    assert!(p.call_tree.iter().enumerate().all(|(i, n)| n.id == i));

    let excl: Vec<u64> = p.call_tree.iter().map(|n| n.excl_ticks).collect();
    assert_eq!(excl, [100, 400, 200, 300]);
    let n_alloc: Vec<(u64, u64)> = p
        .call_tree
        .iter()
        .map(|n| (n.alloc_count, n.alloc_bytes))
        .collect();
    assert_eq!(n_alloc, [(1, 16), (3, 48), (4, 64), (0, 0)]);

    let f: Vec<[u64; 6]> = p
        .functions
        .iter()
        .map(|f| {
            [
                f.calls,
                f.incl_ticks,
                f.excl_ticks,
                f.opcodes,
                f.alloc_count,
                f.alloc_bytes,
            ]
        })
        .collect();
    assert_eq!(
        f,
        [
            [0, 0, 0, 0, 2, 200],
            [1, 1000, 100, 50, 1, 16],
            // Recursive: the inner node's inclusive time is inside the outer's.
            [5, 600, 600, 50, 7, 112],
            [5, 300, 300, 10, 0, 0],
            [0, 0, 0, 7, 3, 48],
        ]
    );

    // Lines sorted by place; line 3's function is the one with most opcodes.
    let lines: Vec<(usize, u32, usize, u64, u64, u64)> = p
        .lines
        .iter()
        .map(|l| {
            (
                l.file,
                l.line,
                l.function,
                l.opcodes,
                l.alloc_count,
                l.alloc_bytes,
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (1, 2, 1, 10, 0, 0),
            (1, 3, 1, 47, 4, 64),
            (1, 11, 2, 50, 7, 112),
            (1, 21, 3, 10, 0, 0)
        ]
    );
    let line3: Vec<(Cause, u64, u64)> = p.lines[1]
        .causes
        .iter()
        .map(|c| (c.cause.clone(), c.count, c.bytes))
        .collect();
    assert_eq!(line3, [(Cause::Tuple, 3, 48), (Cause::Float, 1, 16)]);
    assert!(p.lines.iter().all(|l| l.excl_ticks.is_none()));

    // Sites: merged when equal but for their figures.
    assert_eq!(p.alloc_sites.len(), 5);
    assert_eq!((p.alloc_sites[0].count, p.alloc_sites[0].bytes), (3, 48));

    let causes: Vec<(Cause, u64, u64)> = p
        .causes
        .iter()
        .map(|c| (c.cause.clone(), c.count, c.bytes))
        .collect();
    assert_eq!(
        causes,
        [
            (Cause::List, 7, 112),
            (Cause::Tuple, 3, 48),
            (Cause::Other("raw buffer".into()), 2, 200),
            (Cause::Float, 1, 16),
        ]
    );
    assert_eq!(
        (p.gc.alloc_count, p.gc.alloc_bytes, p.gc.peak_used_bytes),
        (13, 376, 2048)
    );
    assert_eq!(p.gc.failures.len(), 1);
    let fail = &p.gc.failures[0];
    assert_eq!(
        (fail.function, fail.line, fail.bytes, fail.count),
        (3, 21, 9000, 3)
    );

    let mix: Vec<(&str, u64)> = p
        .opcode_mix
        .iter()
        .map(|o| (o.opcode.as_str(), o.count))
        .collect();
    assert_eq!(
        mix,
        [("RETURN_VALUE", 98), ("BUILD_LIST", 10), ("LOAD_FAST 0", 9)]
    );
}

#[test]
fn read_helpers() {
    let p = sample();
    assert_eq!(p.top_functions_by_excl(), [2, 3, 1, 0, 4]);
    assert_eq!(p.top_functions_by_incl(), [1, 2, 3, 0, 4]);
    assert_eq!(p.top_functions(|f| f.alloc_count), [2, 4, 0, 1, 3]);
    let allocating: Vec<u32> = p.allocating_lines().iter().map(|l| l.line).collect();
    assert_eq!(allocating, [11, 3]);
    assert_eq!(p.line(1, 3).map(|l| l.opcodes), Some(47));
    assert!(p.line(1, 4).is_none());
    assert_eq!(p.total_ticks(), 1000);
    assert_eq!(p.total_opcodes(), 117);
    let stacks: Vec<(Vec<usize>, usize)> = p.stacks();
    assert_eq!(
        stacks,
        [
            (vec![1], 0),
            (vec![1, 2], 1),
            (vec![1, 2, 2], 2),
            (vec![1, 3], 3)
        ]
    );
    assert_eq!(p.children(), [vec![1, 3], vec![2], vec![], vec![]]);
    assert_eq!(p.find_functions("Job.work"), [2]);
    assert_eq!(p.find_functions("work"), [2]);
    assert_eq!(p.function_label(2), "Job.work (app.py:10)");
    assert_eq!(p.function_label(0), "<runtime>");
    assert_eq!(p.function_label(99), "<function 99>");
    assert_eq!(p.source_line(1, 2), Some("    pass"));
    assert_eq!(p.source_line(1, 0), None);
    assert_eq!(p.source_line(0, 1), None);
}

#[test]
fn a_node_naming_a_later_parent_becomes_a_root() {
    let mut b = ProfileBuilder::new();
    let file = b.add_file("a.py", None);
    let f = b.add_function(file, 1, "f", "f");
    let n = b.add_node(CallNode {
        parent: Some(5),
        function: f,
        ..CallNode::default()
    });
    let m = b.add_node(CallNode {
        parent: Some(1),
        function: f,
        ..CallNode::default()
    });
    let p = b.build();
    assert_eq!((p.call_tree[n].parent, p.call_tree[m].parent), (None, None));
    p.validate().unwrap();
}

/// A change that breaks a sample profile.
type Breakage = Box<dyn FnOnce(&mut Profile)>;

fn invalid(mutate: impl FnOnce(&mut Profile)) -> String {
    let mut p = sample();
    mutate(&mut p);
    match p.validate() {
        Ok(()) => panic!("the change was not detected"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn validation_finds_each_inconsistency() {
    let cases: Vec<(Breakage, &str)> = vec![
        (Box::new(|p| p.format = "x".into()), "format"),
        (Box::new(|p| p.version = VERSION + 1), "version"),
        (
            Box::new(|p| p.functions[1].id = 7),
            "function 1 says its id is 7",
        ),
        (
            Box::new(|p| p.functions[1].file = 9),
            "function 1 names file 9",
        ),
        (
            Box::new(|p| p.lines[0].function = 50),
            "names file 1 of 2 or function 50",
        ),
        (Box::new(|p| p.lines.swap(0, 1)), "out of order"),
        (
            Box::new(|p| {
                let l = p.lines.iter_mut().find(|l| l.alloc_count > 0).unwrap();
                l.fix = Some("a fix no site has".into());
            }),
            "its sites give",
        ),
        (
            Box::new(|p| {
                let l = p.lines.iter_mut().find(|l| l.alloc_count > 0).unwrap();
                l.scope = mpprof_profile::Scope::OneOff;
            }),
            "executions/scope/object/fix",
        ),
        (
            Box::new(|p| p.call_tree[2].id = 0),
            "node 2 says its id is 0",
        ),
        (
            Box::new(|p| p.call_tree[1].parent = Some(3)),
            "does not come before it",
        ),
        (
            Box::new(|p| p.call_tree[0].function = 40),
            "names function 40",
        ),
        (
            Box::new(|p| p.alloc_sites[0].node = Some(17)),
            "allocation site 0",
        ),
        (
            Box::new(|p| p.gc.failures[0].function = 17),
            "allocation failure 0",
        ),
        (
            Box::new(|p| p.call_tree[0].excl_ticks += 1),
            "exclusive ticks",
        ),
        (
            Box::new(|p| p.functions[3].calls += 1),
            "function 3 (helper)",
        ),
        (
            Box::new(|p| p.functions[2].incl_ticks = 800),
            "function 2 (Job.work)",
        ),
        (
            Box::new(|p| p.gc.alloc_count += 1),
            "the run has 14 allocations",
        ),
        (Box::new(|p| p.functions[4].alloc_bytes = 1), "function 4"),
        (
            Box::new(|p| p.call_tree[2].alloc_count = 0),
            "call-tree node 2 has 0 allocations",
        ),
        (
            Box::new(|p| p.lines[2].alloc_count = 1),
            "line 11 of file 1 has 1 allocations",
        ),
        (
            Box::new(|p| {
                p.lines[1].causes.pop();
            }),
            "causes add up",
        ),
        // The runtime's site (no line) moved to a line nothing else has.
        (
            Box::new(|p| p.alloc_sites[4].line = 30),
            "line 30 of file 0, which has no line record",
        ),
        (
            Box::new(|p| {
                p.causes.pop();
            }),
            "do not list",
        ),
        (
            Box::new(|p| {
                let c = p.causes[0].clone();
                p.causes.push(c);
            }),
            "listed twice",
        ),
        (
            Box::new(|p| p.causes[1].bytes = 0),
            "cause tuple has 3 allocations of 0 bytes",
        ),
    ];
    for (mutate, expected) in cases {
        let msg = invalid(mutate);
        assert!(
            msg.contains(expected),
            "{msg:?} should mention {expected:?}"
        );
        assert!(msg.starts_with("the profile is inconsistent: "), "{msg}");
    }
}

#[test]
fn the_opcode_mix_lines_and_functions_count_the_same_opcodes() {
    let msg = invalid(|p| p.opcode_mix[0].count -= 1);
    assert!(
        msg.contains("opcode mix adds up to 116 opcodes, its functions to 117"),
        "{msg}"
    );
    let msg = invalid(|p| p.lines[0].opcodes += 5);
    assert!(
        msg.contains("lines add up to 122 opcodes, its functions to 117"),
        "{msg}"
    );
    // Opcodes of code never described have no line: only the unknown
    // function may have them.
    let msg = invalid(|p| {
        p.functions[3].opcodes += 4;
        p.opcode_mix[0].count += 4;
    });
    assert!(msg.contains("lines add up to 117 opcodes"), "{msg}");
    let mut p = sample();
    p.functions[0].name = mpprof_profile::UNKNOWN_FUNCTION.into();
    p.functions[0].qualname = mpprof_profile::UNKNOWN_FUNCTION.into();
    p.functions[0].opcodes += 4;
    p.opcode_mix[0].count += 4;
    p.validate().unwrap();
}

#[test]
fn absurd_figures_are_inconsistencies_not_overflows() {
    let msg = invalid(|p| {
        p.call_tree[1].incl_ticks = u64::MAX;
        p.call_tree[2].incl_ticks = u64::MAX;
        p.alloc_sites[0].count = u64::MAX;
    });
    assert!(msg.contains("the profile is inconsistent"), "{msg}");
}

#[test]
fn json_round_trip_is_pretty_and_exact() {
    let p = sample();
    let mut out = Vec::new();
    p.to_json_writer(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("{\n  \"format\": \"mpprof-profile\",\n  \"version\": 2,"),
        "{}",
        &text[..60]
    );
    let back = Profile::from_json_reader(text.as_bytes()).unwrap();
    assert_eq!(back, p);

    // An empty profile is a valid one.
    let mut empty = Vec::new();
    Profile::empty().to_json_writer(&mut empty).unwrap();
    assert_eq!(
        Profile::from_json_reader(empty.as_slice()).unwrap(),
        Profile::empty()
    );
}

#[test]
fn fields_added_later_default_when_missing() {
    let p = sample();
    let mut v = serde_json::to_value(&p).unwrap();
    v["regions"][0].as_object_mut().unwrap().remove("entries");
    v["regions"][0]
        .as_object_mut()
        .unwrap()
        .remove("inside_ticks");
    v["gc"]["failures"][0]
        .as_object_mut()
        .unwrap()
        .remove("count");
    v["meta"]["dropped"]
        .as_object_mut()
        .unwrap()
        .remove("unknown_ids");
    v["lines"][0].as_object_mut().unwrap().remove("excl_ticks");
    let back = Profile::from_json_reader(v.to_string().as_bytes()).unwrap();
    assert_eq!(
        (back.regions[0].entries, back.regions[0].inside_ticks),
        (1, 0)
    );
    assert_eq!(back.gc.failures[0].count, 1);
    assert_eq!(back.meta.dropped.unknown_ids, 0);
    assert_eq!(back.lines[0].excl_ticks, None);
}

#[test]
fn a_crash_round_trips_and_older_or_newer_exit_reasons_load() {
    let mut p = sample();
    p.meta.exit = Exit {
        reason: ExitReason::Crashed,
        status: None,
        message: Some("ended by signal 11".into()),
        signal: Some("SIGSEGV".into()),
        events: Some(171),
    };
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["meta"]["exit"]["reason"], "crashed");
    assert_eq!(v["meta"]["exit"]["signal"], "SIGSEGV");
    let back = Profile::from_json_reader(v.to_string().as_bytes()).unwrap();
    assert_eq!(back.meta.exit, p.meta.exit);

    // A file from before: no signal, no events.
    let mut old = v.clone();
    old["meta"]["exit"] = serde_json::json!({"reason": "killed", "status": null, "message": null});
    let back = Profile::from_json_reader(old.to_string().as_bytes()).unwrap();
    assert_eq!(back.meta.exit.reason, ExitReason::Killed);
    assert_eq!((back.meta.exit.signal, back.meta.exit.events), (None, None));
    // A reason from a newer mpprof.
    let mut newer = v;
    newer["meta"]["exit"]["reason"] = "eaten_by_a_grue".into();
    let back = Profile::from_json_reader(newer.to_string().as_bytes()).unwrap();
    assert_eq!(back.meta.exit.reason, ExitReason::Unknown);
}

fn load_err(text: &str) -> ProfileError {
    match Profile::from_json_reader(text.as_bytes()) {
        Ok(_) => panic!("{text:?} loaded"),
        Err(e) => e,
    }
}

#[test]
fn files_that_are_not_ours_or_too_new_are_clear_errors() {
    let e = load_err("this is not json");
    assert!(matches!(e, ProfileError::Json(_)), "{e:?}");
    assert!(e.to_string().contains("not valid JSON"), "{e}");

    let e = load_err(r#"{"format": "speedscope", "version": 1}"#);
    assert!(
        matches!(&e, ProfileError::NotAProfile(f) if f == "speedscope"),
        "{e:?}"
    );
    assert!(e.to_string().contains("expected \"mpprof-profile\""), "{e}");

    let e = load_err(r#"{"traceEvents": []}"#);
    assert!(
        matches!(&e, ProfileError::NotAProfile(f) if f == "missing"),
        "{e:?}"
    );
    let e = load_err("[1, 2]");
    assert!(matches!(e, ProfileError::NotAProfile(_)), "{e:?}");

    let e = load_err(r#"{"format": "mpprof-profile", "version": 99}"#);
    assert!(
        matches!(
            e,
            ProfileError::TooNew {
                found: 99,
                supported: VERSION
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("upgrade mpprof"), "{e}");

    for bad in [
        r#"{"format": "mpprof-profile"}"#,
        r#"{"format": "mpprof-profile", "version": 0}"#,
        r#"{"format": "mpprof-profile", "version": "1"}"#,
        r#"{"format": "mpprof-profile", "version": -3}"#,
    ] {
        let e = load_err(bad);
        assert!(matches!(e, ProfileError::NoVersion(_)), "{bad}: {e:?}");
    }

    let e = load_err(r#"{"format": "mpprof-profile", "version": 1, "meta": 5}"#);
    assert!(
        matches!(e, ProfileError::Schema { version: 1, .. }),
        "{e:?}"
    );

    // Truncated: a JSON error, not a panic.
    let mut out = Vec::new();
    sample().to_json_writer(&mut out).unwrap();
    let e = load_err(std::str::from_utf8(&out[..out.len() / 2]).unwrap());
    assert!(matches!(e, ProfileError::Json(_)), "{e:?}");

    // Inconsistent content.
    let mut p = sample();
    p.gc.alloc_count = 0;
    let mut out = Vec::new();
    p.to_json_writer(&mut out).unwrap();
    let e = Profile::from_json_reader(out.as_slice()).unwrap_err();
    assert!(matches!(e, ProfileError::Invalid(_)), "{e:?}");
}

#[test]
fn a_missing_file_is_an_io_error() {
    let e =
        Profile::from_json_file(std::path::Path::new("/nonexistent/mpprof/p.json")).unwrap_err();
    assert!(matches!(e, ProfileError::Io(_)), "{e:?}");
}

#[test]
fn a_deep_mutual_recursion_counts_each_function_once() {
    // a → b → a → b … 100,000 deep, as a damaged stream could claim: inner
    // frames of either function are inside its outermost one.
    let mut b = ProfileBuilder::new();
    let file = b.add_file("deep.py", None);
    let fa = b.add_function(file, 1, "a", "a");
    let fb = b.add_function(file, 5, "b", "b");
    let depth = 100_000u64;
    let mut parent = None;
    for i in 0..depth {
        let id = b.add_node(CallNode {
            parent,
            function: if i % 2 == 0 { fa } else { fb },
            calls: 1,
            incl_ticks: depth - i,
            ..CallNode::default()
        });
        parent = Some(id);
    }
    let p = b.build();
    p.validate().unwrap();
    let (a, bb) = (&p.functions[fa], &p.functions[fb]);
    assert_eq!((a.calls, a.incl_ticks), (depth / 2, depth));
    assert_eq!((bb.calls, bb.incl_ticks), (depth / 2, depth - 1));
    // Each node's own time is 1 tick.
    assert_eq!(a.excl_ticks + bb.excl_ticks, depth);
    // The sixth node's path, walked up its parents (`stacks()` would spell
    // out all 100,000 paths: 5·10⁹ entries).
    let mut path = Vec::new();
    let mut at = Some(5);
    while let Some(n) = at {
        path.push(p.call_tree[n].function);
        at = p.call_tree[n].parent;
    }
    path.reverse();
    assert_eq!(path, [fa, fb, fa, fb, fa, fb]);
}

#[test]
fn a_version_1_file_loads_with_the_catalogue_advice() {
    let p = sample();
    let mut v: serde_json::Value = serde_json::to_value(&p).unwrap();
    v["version"] = 1.into();
    for s in v["alloc_sites"].as_array_mut().unwrap() {
        let s = s.as_object_mut().unwrap();
        for k in ["what", "fix", "executions"] {
            s.remove(k);
        }
    }
    for l in v["lines"].as_array_mut().unwrap() {
        let l = l.as_object_mut().unwrap();
        for k in ["what", "fix", "executions", "scope"] {
            l.remove(k);
        }
    }
    let back = Profile::from_json_reader(v.to_string().as_bytes()).unwrap();
    assert_eq!(back.version, VERSION);
    for s in &back.alloc_sites {
        assert_eq!(s.fix, s.cause.fix());
        assert_eq!(s.what, "list");
        assert_eq!(s.executions, 0);
    }
    for l in back.lines.iter().filter(|l| l.alloc_count > 0) {
        assert_eq!(l.executions, None, "unknown in version 1");
        assert_eq!(l.scope, mpprof_profile::Scope::PerPass);
        assert_eq!(
            l.fix.as_deref(),
            Some(l.causes[0].cause.fix()),
            "line {}",
            l.line
        );
    }
}

#[test]
fn lines_take_their_main_sites_advice_and_scope() {
    let p = sample();
    for l in p.lines.iter().filter(|l| l.alloc_count > 0) {
        assert_eq!(l.executions, Some(3));
        assert_eq!(l.scope, mpprof_profile::Scope::PerPass);
        assert_eq!(l.what.as_deref(), Some("list"));
    }
    let mut b = ProfileBuilder::new();
    let file = b.add_file("m.py", None);
    let f = b.add_function(file, 1, "<module>", "<module>");
    let mut once = site(f, file, 2, None, Cause::Growth, 4, 64);
    once.executions = 1;
    b.add_alloc(once);
    let mut import = site(f, file, 1, None, Cause::Import, 40, 900);
    import.executions = 1;
    b.add_alloc(import);
    let mut hot = site(f, file, 5, None, Cause::Float, 2, 32);
    hot.executions = 100;
    b.add_alloc(hot);
    // asyncio's event loop, run by a line that ran once, allocates as it
    // runs the tasks: per pass.
    let mut event_loop = site(f, file, 9, None, Cause::Frame, 30, 2160);
    event_loop.executions = 1;
    event_loop.event_loop = true;
    b.add_alloc(event_loop);
    let p = b.build();
    let order: Vec<u32> = p.allocating_lines_ranked().iter().map(|l| l.line).collect();
    assert_eq!(order, [9, 5, 2, 1], "per pass, then one-off, then imports");
    let run = p.lines.iter().find(|l| l.line == 9).unwrap();
    assert!(run.event_loop && run.scope == mpprof_profile::Scope::PerPass);
    assert_eq!(run.executions, Some(1));
}
