//! [`ProfileBuilder`]: a Profile put together piece by piece. Figures that
//! derive from others (exclusive ticks, function and node allocation totals,
//! lines' allocations and causes, the run's totals) are computed in
//! [`ProfileBuilder::build`], so a built profile is consistent by
//! construction and passes [`crate::Profile::validate`].

use std::collections::HashMap;

use crate::{
    AllocFailure, AllocKind, AllocSite, Asyncio, CallNode, Cause, CauseCount, FileId, Function,
    FunctionId, FunctionKind, GcSummary, Line, Marker, Meta, NodeId, OpcodeCount, Profile, Region,
    Scope, SourceFile, Task,
};

/// What makes two allocation sites the same site.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SiteKey {
    node: Option<NodeId>,
    function: FunctionId,
    offset: u32,
    type_name: Option<String>,
    kind: AllocKind,
    cause: Cause,
}

/// Builds a Profile, deduplicating files, functions, sites and failures.
#[derive(Debug)]
pub struct ProfileBuilder {
    profile: Profile,
    file_ids: HashMap<String, FileId>,
    function_ids: HashMap<(FileId, u32, String), FunctionId>,
    /// Opcodes per place and function: a line's function is the one that
    /// ran most of it.
    line_opcodes: HashMap<(FileId, u32), HashMap<FunctionId, u64>>,
    site_ids: HashMap<SiteKey, usize>,
    failure_ids: HashMap<(FunctionId, u32), usize>,
    opcode_mix: HashMap<String, u64>,
    /// Line time per place: inclusive and exclusive ticks (signed: exact
    /// per-offset values can be a tick below zero), and samples.
    line_time: HashMap<(FileId, u32), LineTimeAcc>,
}

#[derive(Debug, Default, Clone, Copy)]
struct LineTimeAcc {
    incl: i128,
    excl: i128,
    incl_samples: u64,
    excl_samples: u64,
}

impl Default for ProfileBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ProfileBuilder {
    pub fn new() -> Self {
        Self {
            profile: Profile::empty(),
            file_ids: HashMap::new(),
            function_ids: HashMap::new(),
            line_opcodes: HashMap::new(),
            site_ids: HashMap::new(),
            failure_ids: HashMap::new(),
            opcode_mix: HashMap::new(),
            line_time: HashMap::new(),
        }
    }

    pub fn meta_mut(&mut self) -> &mut Meta {
        &mut self.profile.meta
    }

    /// The heap summary. `alloc_count` and `alloc_bytes` are recomputed
    /// from the allocation sites by [`ProfileBuilder::build`]; failures are
    /// added with [`ProfileBuilder::add_alloc_failure`].
    pub fn gc_mut(&mut self) -> &mut GcSummary {
        &mut self.profile.gc
    }

    /// The file with this path (the same path returns the same id; the
    /// first source given is kept).
    pub fn add_file(&mut self, path: &str, source: Option<Vec<String>>) -> FileId {
        if let Some(&id) = self.file_ids.get(path) {
            return id;
        }
        let id = self.profile.files.len();
        self.profile.files.push(SourceFile {
            path: path.to_string(),
            source,
        });
        self.file_ids.insert(path.to_string(), id);
        id
    }

    /// The function with this name defined at file:line (the same function
    /// met again returns its id). `file` comes from [`ProfileBuilder::add_file`].
    pub fn add_function(
        &mut self,
        file: FileId,
        line: u32,
        name: &str,
        qualname: &str,
    ) -> FunctionId {
        let key = (file, line, name.to_string());
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let id = self.profile.functions.len();
        self.profile.functions.push(Function {
            id,
            name: name.to_string(),
            qualname: qualname.to_string(),
            file,
            line,
            ..Function::default()
        });
        self.function_ids.insert(key, id);
        id
    }

    /// Say what the function's frames run (bytecode unless said).
    pub fn set_function_kind(&mut self, id: FunctionId, kind: FunctionKind) {
        if let Some(f) = self.profile.functions.get_mut(id) {
            f.kind = kind;
        }
    }

    /// How many functions there are so far.
    pub fn function_count(&self) -> usize {
        self.profile.functions.len()
    }

    /// Add a call-tree node with its calls, inclusive ticks and own opcodes.
    /// Its `id` is assigned; `excl_ticks`, `alloc_count` and `alloc_bytes`
    /// are computed by `build`. The parent must have been added before: a
    /// node naming any other parent becomes a root, so the tree stays a tree.
    pub fn add_node(&mut self, node: CallNode) -> NodeId {
        let id = self.profile.call_tree.len();
        let parent = node.parent.filter(|&p| p < id);
        self.profile.call_tree.push(CallNode {
            id,
            parent,
            excl_ticks: 0,
            alloc_count: 0,
            alloc_bytes: 0,
            ..node
        });
        id
    }

    /// Count opcodes executed by `function`, at a source line when known.
    pub fn add_opcodes(&mut self, function: FunctionId, place: Option<(FileId, u32)>, count: u64) {
        if let Some(f) = self.profile.functions.get_mut(function) {
            f.opcodes = f.opcodes.saturating_add(count);
        }
        if let Some(place) = place {
            let n = self
                .line_opcodes
                .entry(place)
                .or_default()
                .entry(function)
                .or_default();
            *n = n.saturating_add(count);
        }
    }

    /// Add measured time to a line: ticks with and without callees (exact
    /// per-offset values, which may be negative by a tick; the line's total
    /// is kept at 0 or more), and the samples they rest on when sampled.
    /// Lines never given time keep `None`.
    pub fn add_line_time(
        &mut self,
        place: (FileId, u32),
        incl: i64,
        excl: i64,
        samples: Option<(u64, u64)>,
    ) {
        let a = self.line_time.entry(place).or_default();
        a.incl += i128::from(incl);
        a.excl += i128::from(excl);
        if let Some((incl_samples, excl_samples)) = samples {
            a.incl_samples = a.incl_samples.saturating_add(incl_samples);
            a.excl_samples = a.excl_samples.saturating_add(excl_samples);
        }
    }

    /// Count executions of an opcode by name (`LOAD_FAST 2`, `BINARY_OP add`).
    pub fn add_opcode_mix(&mut self, opcode: &str, count: u64) {
        match self.opcode_mix.get_mut(opcode) {
            Some(n) => *n = n.saturating_add(count),
            None => {
                self.opcode_mix.insert(opcode.to_string(), count);
            }
        }
    }

    /// Add allocations at a site; a site equal in everything but its count
    /// and bytes (same node, function, offset, type, kind and cause) is
    /// merged into the earlier one. Its line (when not 0), function, node
    /// and the run's totals are counted by `build`.
    pub fn add_alloc(&mut self, site: AllocSite) {
        let key = SiteKey {
            node: site.node,
            function: site.function,
            offset: site.offset,
            type_name: site.type_name.clone(),
            kind: site.kind,
            cause: site.cause.clone(),
        };
        match self.site_ids.get(&key) {
            Some(&i) => {
                let s = &mut self.profile.alloc_sites[i];
                s.count = s.count.saturating_add(site.count);
                s.bytes = s.bytes.saturating_add(site.bytes);
                s.executions = s.executions.max(site.executions);
            }
            None => {
                self.site_ids.insert(key, self.profile.alloc_sites.len());
                self.profile.alloc_sites.push(site);
            }
        }
    }

    /// `count` requests the heap could not satisfy at a function's line,
    /// the largest of `bytes`; failures at the same function and line are
    /// counted together, keeping the largest request.
    pub fn add_alloc_failure(&mut self, function: FunctionId, line: u32, bytes: u64, count: u64) {
        match self.failure_ids.get(&(function, line)) {
            Some(&i) => {
                let f = &mut self.profile.gc.failures[i];
                f.count = f.count.saturating_add(count);
                f.bytes = f.bytes.max(bytes);
            }
            None => {
                self.failure_ids
                    .insert((function, line), self.profile.gc.failures.len());
                self.profile.gc.failures.push(AllocFailure {
                    function,
                    line,
                    bytes,
                    count,
                });
            }
        }
    }

    pub fn add_marker(&mut self, marker: Marker) {
        self.profile.markers.push(marker);
    }

    pub fn add_region(&mut self, region: Region) {
        self.profile.regions.push(region);
    }

    /// Finish: exclusive ticks from inclusive ones, function figures from
    /// the call tree, allocation totals and causes from the sites, lines
    /// sorted by place.
    pub fn build(self) -> Profile {
        let Self {
            mut profile,
            line_opcodes,
            opcode_mix,
            line_time,
            ..
        } = self;
        let p = &mut profile;

        // Call tree: exclusive = inclusive less the children's.
        let mut child_incl = vec![0u64; p.call_tree.len()];
        for n in &p.call_tree {
            if let Some(c) = n.parent.and_then(|parent| child_incl.get_mut(parent)) {
                *c = c.saturating_add(n.incl_ticks);
            }
        }
        for (n, c) in p.call_tree.iter_mut().zip(child_incl) {
            n.excl_ticks = n.incl_ticks.saturating_sub(c);
        }

        // Functions from their nodes. A recursive function's inner frames
        // are inside its outermost one: their inclusive ticks are not added
        // again.
        for f in p.functions.iter_mut() {
            f.calls = 0;
            f.incl_ticks = 0;
            f.excl_ticks = 0;
            f.alloc_count = 0;
            f.alloc_bytes = 0;
        }
        let recursive_node = recursive_nodes(&p.call_tree);
        for (n, &recursive) in p.call_tree.iter().zip(&recursive_node) {
            if let Some(f) = p.functions.get_mut(n.function) {
                f.calls = f.calls.saturating_add(n.calls);
                f.excl_ticks = f.excl_ticks.saturating_add(n.excl_ticks);
                if !recursive {
                    f.incl_ticks = f.incl_ticks.saturating_add(n.incl_ticks);
                }
            }
        }

        // Lines: opcodes, then allocations and causes from the sites.
        let mut lines: HashMap<(FileId, u32), Line> = HashMap::new();
        // (opcodes, allocations) per function on each line, to name its function.
        let mut weight: HashMap<(FileId, u32), HashMap<FunctionId, (u64, u64)>> = HashMap::new();
        for (place, per_function) in line_opcodes {
            let l = lines.entry(place).or_insert_with(|| new_line(place));
            let w = weight.entry(place).or_default();
            for (function, n) in per_function {
                l.opcodes = l.opcodes.saturating_add(n);
                w.entry(function).or_default().0 = n;
            }
        }
        let sampled = p.meta.line_time.is_some_and(|t| t.is_sampled());
        let clamp = |v: i128| u64::try_from(v.max(0)).unwrap_or(u64::MAX);
        for (place, t) in line_time {
            let l = lines.entry(place).or_insert_with(|| new_line(place));
            l.incl_ticks = Some(clamp(t.incl));
            l.excl_ticks = Some(clamp(t.excl));
            if sampled {
                l.incl_samples = Some(t.incl_samples);
                l.excl_samples = Some(t.excl_samples);
            }
        }
        if p.meta.line_time.is_some() {
            // Measured, and found (about) nothing: 0, not unknown.
            for l in lines.values_mut().filter(|l| l.opcodes > 0) {
                l.incl_ticks.get_or_insert(0);
                l.excl_ticks.get_or_insert(0);
                if sampled {
                    l.incl_samples.get_or_insert(0);
                    l.excl_samples.get_or_insert(0);
                }
            }
        }
        let mut line_causes: HashMap<(FileId, u32), HashMap<Cause, (u64, u64)>> = HashMap::new();
        let mut run_causes: HashMap<Cause, (u64, u64)> = HashMap::new();
        for n in p.call_tree.iter_mut() {
            n.alloc_count = 0;
            n.alloc_bytes = 0;
        }
        let mut total = (0u64, 0u64);
        for s in &p.alloc_sites {
            add_pair(&mut total, s);
            add_pair(run_causes.entry(s.cause.clone()).or_default(), s);
            if let Some(f) = p.functions.get_mut(s.function) {
                f.alloc_count = f.alloc_count.saturating_add(s.count);
                f.alloc_bytes = f.alloc_bytes.saturating_add(s.bytes);
            }
            if let Some(n) = s.node.and_then(|n| p.call_tree.get_mut(n)) {
                n.alloc_count = n.alloc_count.saturating_add(s.count);
                n.alloc_bytes = n.alloc_bytes.saturating_add(s.bytes);
            }
            if s.line != 0 {
                let place = (s.file, s.line);
                let l = lines.entry(place).or_insert_with(|| new_line(place));
                l.alloc_count = l.alloc_count.saturating_add(s.count);
                l.alloc_bytes = l.alloc_bytes.saturating_add(s.bytes);
                let w = weight
                    .entry(place)
                    .or_default()
                    .entry(s.function)
                    .or_default();
                w.1 = w.1.saturating_add(s.count);
                add_pair(
                    line_causes
                        .entry(place)
                        .or_default()
                        .entry(s.cause.clone())
                        .or_default(),
                    s,
                );
            }
        }
        (p.gc.alloc_count, p.gc.alloc_bytes) = total;
        p.causes = cause_counts(run_causes);
        for (place, l) in lines.iter_mut() {
            if let Some(w) = weight.get(place) {
                // Most opcodes, then most allocations, then the lowest id.
                if let Some((&f, _)) = w.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))) {
                    l.function = f;
                }
            }
            if let Some(c) = line_causes.remove(place) {
                l.causes = cause_counts(c);
            }
        }
        p.lines = lines.into_values().collect();
        p.lines.sort_by_key(|l| (l.file, l.line));
        derive_line_advice(p);
        p.asyncio = asyncio_of(p);

        let mut mix: Vec<OpcodeCount> = opcode_mix
            .into_iter()
            .map(|(opcode, count)| OpcodeCount { opcode, count })
            .collect();
        mix.sort_by(|a, b| b.count.cmp(&a.count).then(a.opcode.cmp(&b.opcode)));
        p.opcode_mix = mix;
        profile
    }
}

/// Each allocating line's executions, scope, object and fix, from its sites:
/// the executions, object and fix of its main site (of the line's main
/// cause, a typed object before raw storage, then the most allocations,
/// then bytes, then the first; the most executions of any of its
/// allocating opcodes when the main site's are unknown).
/// A line whose main cause is compiling at import is an import; one that
/// ran once a one-off, unless what it allocated is asyncio's event loop's
/// (which repeats as the tasks run); anything else (or unknown) allocates
/// per pass.
pub(crate) fn derive_line_advice(p: &mut Profile) {
    let mut advice = line_advice(p);
    for l in p.lines.iter_mut() {
        if let Some(a) = advice.remove(&(l.file, l.line)) {
            (l.executions, l.scope, l.what, l.fix, l.event_loop) = a;
        }
    }
}

/// What [`derive_line_advice`] gives each allocating line: executions,
/// scope, object and fix.
pub(crate) type LineAdvice = (Option<u64>, Scope, Option<String>, Option<String>, bool);

pub(crate) fn line_advice(p: &Profile) -> HashMap<(FileId, u32), LineAdvice> {
    // Most executions of any site, per place: for a main site that has
    // none.
    let mut executions: HashMap<(FileId, u32), u64> = HashMap::new();
    for s in p.alloc_sites.iter().filter(|s| s.line != 0) {
        let e = executions.entry((s.file, s.line)).or_default();
        *e = (*e).max(s.executions);
    }
    // The main site: of the line's main cause, a typed object before raw
    // storage, then the most allocations, then bytes, then the first.
    let main_cause: HashMap<(FileId, u32), &Cause> = p
        .lines
        .iter()
        .filter_map(|l| l.causes.first().map(|c| ((l.file, l.line), &c.cause)))
        .collect();
    let rank = |x: &AllocSite| (x.type_name.is_some(), x.count, x.bytes);
    let mut main: HashMap<(FileId, u32), usize> = HashMap::new();
    for (i, s) in p.alloc_sites.iter().enumerate() {
        let place = (s.file, s.line);
        if s.line == 0 || main_cause.get(&place) != Some(&&s.cause) {
            continue;
        }
        let best = main.entry(place).or_insert(i);
        if rank(s) > rank(&p.alloc_sites[*best]) {
            *best = i;
        }
    }
    main.into_iter()
        .map(|(place, i)| {
            let s = &p.alloc_sites[i];
            // The main site's count, whose object and fix the line shows
            // (`results = await gather(...)`: the call ran once, its await
            // twice); the most of any site when it has none.
            let runs = Some(s.executions)
                .filter(|&n| n > 0)
                .or_else(|| executions.get(&place).copied().filter(|&n| n > 0));
            let scope = if s.cause == Cause::Import {
                Scope::Import
            } else if runs == Some(1) && !s.event_loop {
                // asyncio's loop allocates as it runs the tasks, inside the
                // one call that runs it.
                Scope::OneOff
            } else {
                Scope::PerPass
            };
            let what = (!s.what.is_empty()).then(|| s.what.clone());
            let fix = (!s.fix.is_empty()).then(|| s.fix.clone());
            (place, (runs, scope, what, fix, s.event_loop))
        })
        .collect()
}

fn new_line((file, line): (FileId, u32)) -> Line {
    Line {
        file,
        line,
        ..Line::default()
    }
}

fn add_pair(acc: &mut (u64, u64), s: &AllocSite) {
    acc.0 = acc.0.saturating_add(s.count);
    acc.1 = acc.1.saturating_add(s.bytes);
}

/// Per-cause totals, most allocations first (ties in catalogue order).
fn cause_counts(m: HashMap<Cause, (u64, u64)>) -> Vec<CauseCount> {
    let mut v: Vec<CauseCount> = m
        .into_iter()
        .map(|(cause, (count, bytes))| CauseCount {
            cause,
            count,
            bytes,
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.cause.cmp(&b.cause)));
    v
}

/// For each node, whether its function also appears above it in the tree
/// (an inner frame of a recursion). One walk of the tree with a count of
/// the functions on the current path, so a damaged stream's deep chains
/// cost linear time. A parent that does not come before its node is
/// treated as no parent, as everywhere else.
pub(crate) fn recursive_nodes(tree: &[CallNode]) -> Vec<bool> {
    let mut children: Vec<Vec<NodeId>> = vec![Vec::new(); tree.len()];
    let mut roots = Vec::new();
    for (i, n) in tree.iter().enumerate() {
        match n.parent.filter(|&p| p < i) {
            Some(p) => children[p].push(i),
            None => roots.push(i),
        }
    }
    let mut recursive = vec![false; tree.len()];
    let mut on_path: HashMap<FunctionId, u32> = HashMap::new();
    // (node, entering): entering pushes the node's function on the path,
    // leaving pops it.
    let mut stack: Vec<(NodeId, bool)> = roots.into_iter().rev().map(|r| (r, true)).collect();
    while let Some((i, entering)) = stack.pop() {
        let f = tree[i].function;
        if entering {
            let depth = on_path.entry(f).or_default();
            recursive[i] = *depth > 0;
            *depth += 1;
            stack.push((i, false));
            stack.extend(children[i].iter().rev().map(|&c| (c, true)));
        } else if let Some(depth) = on_path.get_mut(&f) {
            *depth = depth.saturating_sub(1);
        }
    }
    recursive
}

/// Whether `f` is an `async def` (read from its embedded source).
fn is_coroutine(p: &Profile, f: &Function) -> bool {
    let Some(lines) = p.files.get(f.file).and_then(|file| file.source.as_ref()) else {
        return false;
    };
    f.line > 0
        && lines
            .get(f.line as usize - 1)
            .is_some_and(|l| l.trim_start().starts_with("async def "))
}

/// The tasks of an asyncio program ([`Task`]), most time first.
fn asyncio_of(p: &Profile) -> Option<Asyncio> {
    let coroutine: Vec<bool> = p.functions.iter().map(|f| is_coroutine(p, f)).collect();
    let node_is_coroutine = |n: &CallNode| coroutine.get(n.function).copied().unwrap_or(false);
    // Subtree sums, children after their parents: walk backwards.
    let mut opcodes: Vec<u64> = p.call_tree.iter().map(|n| n.opcodes).collect();
    let mut allocs: Vec<(u64, u64)> = p
        .call_tree
        .iter()
        .map(|n| (n.alloc_count, n.alloc_bytes))
        .collect();
    for (i, n) in p.call_tree.iter().enumerate().rev() {
        if let Some(parent) = n.parent.filter(|&q| q < i) {
            opcodes[parent] = opcodes[parent].saturating_add(opcodes[i]);
            allocs[parent].0 = allocs[parent].0.saturating_add(allocs[i].0);
            allocs[parent].1 = allocs[parent].1.saturating_add(allocs[i].1);
        }
    }
    let mut by_function: HashMap<FunctionId, Task> = HashMap::new();
    let mut loop_nodes: HashMap<FunctionId, Vec<NodeId>> = HashMap::new();
    for (i, n) in p.call_tree.iter().enumerate() {
        if !node_is_coroutine(n) {
            continue;
        }
        let parent = n.parent.and_then(|q| p.call_tree.get(q));
        if parent.is_some_and(&node_is_coroutine) {
            continue;
        }
        let t = by_function.entry(n.function).or_insert_with(|| Task {
            function: n.function,
            ..Task::default()
        });
        t.nodes.push(i);
        t.resumes = t.resumes.saturating_add(n.calls);
        t.ticks = t.ticks.saturating_add(n.incl_ticks);
        t.opcodes = t.opcodes.saturating_add(opcodes[i]);
        t.alloc_count = t.alloc_count.saturating_add(allocs[i].0);
        t.alloc_bytes = t.alloc_bytes.saturating_add(allocs[i].1);
        if let Some(q) = n.parent {
            loop_nodes.entry(n.function).or_default().push(q);
        }
    }
    // The frames the loop ran in, each counted once for all tasks.
    let mut loop_frames: Vec<NodeId> = loop_nodes.values().flatten().copied().collect();
    loop_frames.sort_unstable();
    loop_frames.dedup();
    let loop_ticks = loop_frames
        .iter()
        .filter_map(|&q| p.call_tree.get(q))
        .fold(0u64, |a, n| a.saturating_add(n.excl_ticks));
    let mut tasks: Vec<Task> = by_function.into_values().collect();
    tasks.sort_by(|a, b| b.ticks.cmp(&a.ticks).then(a.function.cmp(&b.function)));
    (!tasks.is_empty()).then_some(Asyncio {
        tasks,
        loop_nodes: loop_frames,
        loop_ticks,
    })
}
