//! [`Profile::validate`]: every id in range, and every derived figure equal
//! to what it derives from. Loaders run it, so a hand-edited or damaged file
//! is refused with the first problem found instead of misleading a report.
//! Sums saturate at `u64::MAX`, as the builder's do, so absurd figures in a
//! file are an inconsistency, never an overflow.

use std::collections::HashMap;

use crate::builder::recursive_nodes;
use crate::{Cause, FileId, Profile, FORMAT, UNKNOWN_FUNCTION, VERSION};

/// The first inconsistency found in a profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the profile is inconsistent: {0}; write it again with `mpprof run` or `mpprof decode`")]
pub struct InvalidProfile(pub String);

fn add(acc: &mut (u64, u64), count: u64, bytes: u64) {
    acc.0 = acc.0.saturating_add(count);
    acc.1 = acc.1.saturating_add(bytes);
}

fn fail<T>(msg: String) -> Result<T, InvalidProfile> {
    Err(InvalidProfile(msg))
}

impl Profile {
    /// Check that every id refers to something that exists and that the
    /// figures add up: nodes' exclusive ticks, functions' calls and ticks
    /// from their nodes, allocation totals of functions, nodes, lines, causes
    /// and the run from the allocation sites.
    pub fn validate(&self) -> Result<(), InvalidProfile> {
        if self.format != FORMAT {
            return fail(format!("its format is {:?}, not {FORMAT:?}", self.format));
        }
        if self.version == 0 || self.version > VERSION {
            return fail(format!(
                "its version is {}, this mpprof knows 1..={VERSION}",
                self.version
            ));
        }
        self.validate_ids()?;
        self.validate_tree()?;
        self.validate_allocations()?;
        self.validate_opcodes()?;
        self.validate_line_advice()
    }

    fn validate_ids(&self) -> Result<(), InvalidProfile> {
        let nf = self.files.len();
        let nfun = self.functions.len();
        let nn = self.call_tree.len();
        for (i, f) in self.functions.iter().enumerate() {
            if f.id != i {
                return fail(format!("function {i} says its id is {}", f.id));
            }
            if f.file >= nf {
                return fail(format!("function {i} names file {} of {nf}", f.file));
            }
        }
        let mut previous: Option<(FileId, u32)> = None;
        for l in &self.lines {
            if l.file >= nf || l.function >= nfun {
                return fail(format!(
                    "line {} of file {} names file {} of {nf} or function {} of {nfun}",
                    l.line, l.file, l.file, l.function
                ));
            }
            if previous.is_some_and(|p| p >= (l.file, l.line)) {
                return fail(format!(
                    "line {} of file {} is out of order or repeated (lines are sorted by file, then line)",
                    l.line, l.file
                ));
            }
            previous = Some((l.file, l.line));
        }
        for (i, n) in self.call_tree.iter().enumerate() {
            if n.id != i {
                return fail(format!("call-tree node {i} says its id is {}", n.id));
            }
            if n.function >= nfun {
                return fail(format!(
                    "call-tree node {i} names function {} of {nfun}",
                    n.function
                ));
            }
            if let Some(p) = n.parent.filter(|&p| p >= i) {
                return fail(format!(
                    "call-tree node {i} has parent {p}, which does not come before it"
                ));
            }
        }
        for (i, s) in self.alloc_sites.iter().enumerate() {
            if s.function >= nfun || s.file >= nf || s.node.is_some_and(|n| n >= nn) {
                return fail(format!(
                    "allocation site {i} names a missing function ({} of {nfun}), file ({} of {nf}) or node ({:?} of {nn})",
                    s.function, s.file, s.node
                ));
            }
        }
        for (i, f) in self.gc.failures.iter().enumerate() {
            if f.function >= nfun {
                return fail(format!(
                    "allocation failure {i} names function {} of {nfun}",
                    f.function
                ));
            }
        }
        Ok(())
    }

    fn validate_tree(&self) -> Result<(), InvalidProfile> {
        let mut child_incl = vec![0u64; self.call_tree.len()];
        for n in &self.call_tree {
            if let Some(c) = n.parent.and_then(|p| child_incl.get_mut(p)) {
                *c = c.saturating_add(n.incl_ticks);
            }
        }
        // (calls, inclusive, exclusive) per function.
        let mut per_function = vec![(0u64, 0u64, 0u64); self.functions.len()];
        let recursive = recursive_nodes(&self.call_tree);
        for (i, n) in self.call_tree.iter().enumerate() {
            let expected = n.incl_ticks.saturating_sub(child_incl[i]);
            if n.excl_ticks != expected {
                return fail(format!(
                    "call-tree node {i} has {} exclusive ticks, but {} inclusive less its children's {} is {expected}",
                    n.excl_ticks, n.incl_ticks, child_incl[i]
                ));
            }
            if let Some(f) = per_function.get_mut(n.function) {
                f.0 = f.0.saturating_add(n.calls);
                if !recursive[i] {
                    f.1 = f.1.saturating_add(n.incl_ticks);
                }
                f.2 = f.2.saturating_add(n.excl_ticks);
            }
        }
        for (f, &(calls, incl, excl)) in self.functions.iter().zip(&per_function) {
            if (f.calls, f.incl_ticks, f.excl_ticks) != (calls, incl, excl) {
                return fail(format!(
                    "function {} ({}) has calls/inclusive/exclusive ticks {}/{}/{}, its call-tree nodes add up to {calls}/{incl}/{excl}",
                    f.id, f.qualname, f.calls, f.incl_ticks, f.excl_ticks
                ));
            }
        }
        Ok(())
    }

    /// Each allocating line's executions, scope, object and fix are its
    /// main site's (see `derive_line_advice`).
    fn validate_line_advice(&self) -> Result<(), InvalidProfile> {
        let advice = crate::builder::line_advice(self);
        for l in &self.lines {
            let Some((executions, scope, what, fix, event_loop)) = advice.get(&(l.file, l.line))
            else {
                continue;
            };
            if (&l.executions, &l.scope, &l.what, &l.fix, &l.event_loop)
                != (executions, scope, what, fix, event_loop)
            {
                return fail(format!(
                    "line {} of file {} has executions/scope/object/fix/event loop {:?}/{:?}/{:?}/{:?}/{}, its sites give {executions:?}/{scope:?}/{what:?}/{fix:?}/{event_loop}",
                    l.line, l.file, l.executions, l.scope, l.what, l.fix, l.event_loop
                ));
            }
        }
        Ok(())
    }

    /// The opcode mix, the lines and the functions count the same opcodes
    /// (the lines all but those of the unknown function, which have none).
    fn validate_opcodes(&self) -> Result<(), InvalidProfile> {
        let sum = |it: &mut dyn Iterator<Item = u64>| it.fold(0u64, u64::saturating_add);
        let functions = sum(&mut self.functions.iter().map(|f| f.opcodes));
        let unplaced = sum(&mut self
            .functions
            .iter()
            .filter(|f| f.name == UNKNOWN_FUNCTION)
            .map(|f| f.opcodes));
        let lines = sum(&mut self.lines.iter().map(|l| l.opcodes));
        let mix = sum(&mut self.opcode_mix.iter().map(|o| o.count));
        if mix != functions {
            return fail(format!(
                "its opcode mix adds up to {mix} opcodes, its functions to {functions}"
            ));
        }
        if lines != functions.saturating_sub(unplaced) {
            return fail(format!(
                "its lines add up to {lines} opcodes, its functions to {functions} ({unplaced} of them in unknown code)"
            ));
        }
        Ok(())
    }

    fn validate_allocations(&self) -> Result<(), InvalidProfile> {
        let mut per_function = vec![(0u64, 0u64); self.functions.len()];
        let mut per_node = vec![(0u64, 0u64); self.call_tree.len()];
        let mut per_line: HashMap<(FileId, u32), (u64, u64)> = HashMap::new();
        let mut per_cause: HashMap<&Cause, (u64, u64)> = HashMap::new();
        let mut total = (0u64, 0u64);
        for s in &self.alloc_sites {
            add(&mut total, s.count, s.bytes);
            add(per_cause.entry(&s.cause).or_default(), s.count, s.bytes);
            if let Some(f) = per_function.get_mut(s.function) {
                add(f, s.count, s.bytes);
            }
            if let Some(n) = s.node.and_then(|n| per_node.get_mut(n)) {
                add(n, s.count, s.bytes);
            }
            if s.line != 0 {
                add(
                    per_line.entry((s.file, s.line)).or_default(),
                    s.count,
                    s.bytes,
                );
            }
        }
        if (self.gc.alloc_count, self.gc.alloc_bytes) != total {
            return fail(format!(
                "the run has {} allocations of {} bytes, its sites add up to {} of {}",
                self.gc.alloc_count, self.gc.alloc_bytes, total.0, total.1
            ));
        }
        for (f, sum) in self.functions.iter().zip(&per_function) {
            if (f.alloc_count, f.alloc_bytes) != *sum {
                return fail(format!(
                    "function {} ({}) has {} allocations of {} bytes, its sites add up to {} of {}",
                    f.id, f.qualname, f.alloc_count, f.alloc_bytes, sum.0, sum.1
                ));
            }
        }
        for (n, sum) in self.call_tree.iter().zip(&per_node) {
            if (n.alloc_count, n.alloc_bytes) != *sum {
                return fail(format!(
                    "call-tree node {} has {} allocations of {} bytes, its sites add up to {} of {}",
                    n.id, n.alloc_count, n.alloc_bytes, sum.0, sum.1
                ));
            }
        }
        for l in &self.lines {
            let sum = per_line.remove(&(l.file, l.line)).unwrap_or_default();
            if (l.alloc_count, l.alloc_bytes) != sum {
                return fail(format!(
                    "line {} of file {} has {} allocations of {} bytes, its sites add up to {} of {}",
                    l.line, l.file, l.alloc_count, l.alloc_bytes, sum.0, sum.1
                ));
            }
            let mut causes = (0u64, 0u64);
            for c in &l.causes {
                add(&mut causes, c.count, c.bytes);
            }
            if causes != sum {
                return fail(format!(
                    "line {} of file {}: its causes add up to {} allocations of {} bytes, not {} of {}",
                    l.line, l.file, causes.0, causes.1, sum.0, sum.1
                ));
            }
        }
        if let Some(((file, line), _)) = per_line.into_iter().next() {
            return fail(format!(
                "allocation sites name line {line} of file {file}, which has no line record"
            ));
        }
        for c in &self.causes {
            let Some(sum) = per_cause.remove(&c.cause) else {
                return fail(format!(
                    "cause {} is listed twice, or no allocation site has it",
                    c.cause.label()
                ));
            };
            if (c.count, c.bytes) != sum {
                return fail(format!(
                    "cause {} has {} allocations of {} bytes, its sites add up to {} of {}",
                    c.cause.label(),
                    c.count,
                    c.bytes,
                    sum.0,
                    sum.1
                ));
            }
        }
        if let Some((cause, _)) = per_cause.into_iter().next() {
            return fail(format!(
                "allocation sites have cause {}, which the run's causes do not list",
                cause.label()
            ));
        }
        Ok(())
    }
}
