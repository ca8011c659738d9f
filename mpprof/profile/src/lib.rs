//! The mpprof Profile model: one profile of one script run, the data every
//! report, export and the live view read. It is its own small library, apart
//! from recording (the `mpprof` crate builds profiles) and from viewing (the
//! `reports` crate renders them). Saved as JSON with a versioned schema, see
//! `docs/profile-schema.md`.

pub mod cause;

use std::collections::HashMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

pub use cause::Cause;

/// The `format` field of every profile file.
pub const FORMAT: &str = "mpprof-profile";
/// The schema version this library writes and the newest it reads.
pub const VERSION: u32 = 1;

pub type FileId = usize;
pub type FunctionId = usize;
pub type NodeId = usize;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub format: String,
    pub version: u32,
    pub meta: Meta,
    pub files: Vec<SourceFile>,
    pub functions: Vec<Function>,
    pub lines: Vec<Line>,
    pub call_tree: Vec<CallNode>,
    pub alloc_sites: Vec<AllocSite>,
    pub gc: GcSummary,
    pub markers: Vec<Marker>,
    pub regions: Vec<Region>,
    pub opcode_mix: Vec<OpcodeCount>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Meta {
    pub mpprof_version: String,
    /// `host`, `qemu`, or a board.
    pub target: String,
    pub micropython_version: String,
    pub platform: String,
    pub word_bits: u32,
    pub gc_block_bytes: u32,
    pub small_int_bits: u32,
    pub heap_bytes: u64,
    pub clock: Clock,
    pub script: String,
    pub args: Vec<String>,
    /// From the start of profiling to its end, in clock ticks.
    pub duration_ticks: u64,
    pub exit: Exit,
    /// True when the stream ended without its END record (timeout, crash,
    /// lost link): figures cover what was collected until then.
    pub partial: bool,
    pub dropped: Dropped,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Clock {
    /// The target's clock source: `ns`, `timer0`, `dwt`, ...
    pub name: String,
    /// Ticks per second (0 if unknown).
    pub hz: u64,
    /// `ns` (wall time on the host), `cycles`, or `ticks`.
    pub unit: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    Finished,
    Exception,
    KeyboardInterrupt,
    SystemExit,
    Stopped,
    MemoryError,
    Timeout,
    Killed,
    #[default]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Exit {
    pub reason: ExitReason,
    /// The process exit status, where there is one.
    pub status: Option<i32>,
    pub message: Option<String>,
}

/// Everything lost on the way, counted exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dropped {
    /// Records the target discarded (ring buffer full).
    pub records: u64,
    /// Frames the target discarded or that never arrived.
    pub frames: u64,
    pub crc_errors: u64,
    pub bad_frames: u64,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.records + self.frames + self.crc_errors + self.bad_frames
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SourceFile {
    pub path: String,
    /// The file's lines, when it could be read at profiling time.
    pub source: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Function {
    pub name: String,
    /// `Class.method`, `outer.<locals>.inner`, or the name.
    pub qualname: String,
    pub file: FileId,
    /// The `def` line (0 for the runtime pseudo-function).
    pub line: u32,
    pub calls: u64,
    /// Ticks inside the function including callees.
    pub incl_ticks: u64,
    /// Ticks in its own frames.
    pub excl_ticks: u64,
    pub opcodes: u64,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
}

/// Per-cause figures of a line or a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CauseCount {
    pub cause: Cause,
    pub count: u64,
    pub bytes: u64,
}

/// One source line. There is no per-line time: ticks are stamped at frame
/// entry and exit, not per opcode; opcodes are exact per line.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Line {
    pub file: FileId,
    pub line: u32,
    pub function: FunctionId,
    pub opcodes: u64,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
    /// Largest count first.
    pub causes: Vec<CauseCount>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallNode {
    pub parent: Option<NodeId>,
    pub function: FunctionId,
    pub calls: u64,
    pub incl_ticks: u64,
    /// `incl_ticks` minus the children's.
    pub excl_ticks: u64,
    /// Opcodes executed in this node's own frames.
    pub opcodes: u64,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocKind {
    #[default]
    New,
    /// A realloc that grew a list, dict or buffer.
    Growth,
}

/// Allocations of one kind at one place (call path, bytecode offset, type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocSite {
    pub function: FunctionId,
    pub file: FileId,
    pub line: u32,
    /// Bytecode offset of the allocating opcode.
    pub offset: u32,
    pub opcode: Option<u8>,
    pub opcode_name: Option<String>,
    pub node: Option<NodeId>,
    /// The allocated object's type; `None` for a raw buffer.
    pub type_name: Option<String>,
    pub kind: AllocKind,
    pub cause: Cause,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Collection {
    pub at: u64,
    pub duration: u64,
    pub blocks_freed: u64,
    pub used_after: u64,
    pub free_after: u64,
    pub largest_free_after: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AllocFailure {
    pub function: FunctionId,
    pub line: u32,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeapSample {
    pub at: u64,
    pub used: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GcSummary {
    /// The collections' timeline. A long run's timeline is bounded: past a
    /// few thousand entries, neighbours are merged (times add up, the heap
    /// figures are those after the later one), so memory does not grow with
    /// the run's length. `collection_count` is the real number.
    pub collections: Vec<Collection>,
    /// How many collections ran (0 in files written before this field).
    #[serde(default)]
    pub collection_count: u64,
    pub total_ticks: u64,
    pub peak_used_bytes: u64,
    pub alloc_bytes: u64,
    pub alloc_count: u64,
    pub failures: Vec<AllocFailure>,
    pub heap_samples: Vec<HeapSample>,
}

impl GcSummary {
    /// How many collections ran.
    pub fn count(&self) -> u64 {
        self.collection_count.max(self.collections.len() as u64)
    }

    /// The largest free block after the last collection (fragmentation).
    pub fn largest_free_after_last(&self) -> Option<u64> {
        self.collections.last().map(|c| c.largest_free_after)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Marker {
    pub at: u64,
    pub label: String,
    /// Totals from the start of the run up to this mark (counters are
    /// flushed at every mark, so the difference between two marks is exact).
    #[serde(default)]
    pub allocs_before: u64,
    #[serde(default)]
    pub alloc_bytes_before: u64,
    #[serde(default)]
    pub opcodes_before: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Region {
    pub label: String,
    pub start: u64,
    /// `None` when the region never closed.
    pub end: Option<u64>,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
    pub opcodes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpcodeCount {
    pub opcode: String,
    pub count: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read the profile: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a JSON file ({0}): is it an mpprof profile?")]
    Json(serde_json::Error),
    #[error("not an mpprof profile (its `format` is {0:?}, expected \"mpprof-profile\")")]
    NotAProfile(String),
    #[error("the profile has schema version {found}, newer than this mpprof reads ({supported}): upgrade mpprof")]
    TooNew { found: u64, supported: u32 },
    #[error("the profile does not match schema version {version}: {source}")]
    Schema {
        version: u32,
        source: serde_json::Error,
    },
    #[error("the profile is inconsistent: {0}")]
    Invalid(String),
}

impl Profile {
    /// An empty profile (no run yet).
    pub fn empty() -> Self {
        Self {
            format: FORMAT.to_string(),
            version: VERSION,
            meta: Meta::default(),
            files: Vec::new(),
            functions: Vec::new(),
            lines: Vec::new(),
            call_tree: Vec::new(),
            alloc_sites: Vec::new(),
            gc: GcSummary::default(),
            markers: Vec::new(),
            regions: Vec::new(),
            opcode_mix: Vec::new(),
        }
    }

    /// Read a profile, checking that it is one and that we can read its version.
    pub fn from_json_reader(r: impl Read) -> Result<Self, ProfileError> {
        let value: serde_json::Value = serde_json::from_reader(r).map_err(ProfileError::Json)?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != FORMAT {
            return Err(ProfileError::NotAProfile(format.to_string()));
        }
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version > VERSION as u64 {
            return Err(ProfileError::TooNew {
                found: version,
                supported: VERSION,
            });
        }
        let p: Profile = serde_json::from_value(value).map_err(|source| ProfileError::Schema {
            version: VERSION,
            source,
        })?;
        p.validate().map_err(ProfileError::Invalid)?;
        Ok(p)
    }

    pub fn from_json_file(path: &std::path::Path) -> Result<Self, ProfileError> {
        let f = std::fs::File::open(path)?;
        Self::from_json_reader(std::io::BufReader::new(f))
    }

    pub fn to_json_writer(&self, w: impl Write) -> Result<(), ProfileError> {
        serde_json::to_writer_pretty(w, self).map_err(ProfileError::Json)
    }

    /// Check that every id refers to something that exists.
    pub fn validate(&self) -> Result<(), String> {
        let nf = self.files.len();
        let nfun = self.functions.len();
        let nn = self.call_tree.len();
        for (i, f) in self.functions.iter().enumerate() {
            if f.file >= nf {
                return Err(format!("function {i} names file {} of {nf}", f.file));
            }
        }
        for l in &self.lines {
            if l.file >= nf || l.function >= nfun {
                return Err(format!(
                    "line {}:{} refers to a missing file or function",
                    l.file, l.line
                ));
            }
        }
        for (i, n) in self.call_tree.iter().enumerate() {
            if n.function >= nfun || n.parent.is_some_and(|p| p >= i) {
                return Err(format!(
                    "call-tree node {i} refers to a missing function or a later parent"
                ));
            }
        }
        for s in &self.alloc_sites {
            if s.function >= nfun || s.file >= nf || s.node.is_some_and(|n| n >= nn) {
                return Err("an allocation site refers to a missing function, file or node".into());
            }
        }
        for f in &self.gc.failures {
            if f.function >= nfun {
                return Err("an allocation failure refers to a missing function".into());
            }
        }
        Ok(())
    }

    /// The function's display name with its place: `qualname (file:line)`.
    pub fn function_label(&self, id: FunctionId) -> String {
        match self.functions.get(id) {
            Some(f) => {
                let file = self
                    .files
                    .get(f.file)
                    .map(|s| s.path.as_str())
                    .unwrap_or("");
                if file.is_empty() {
                    f.qualname.clone()
                } else {
                    let short = file.rsplit('/').next().unwrap_or(file);
                    format!("{} ({short}:{})", f.qualname, f.line)
                }
            }
            None => format!("<function {id}>"),
        }
    }

    /// The text of a source line, when the profile carries the file.
    pub fn source_line(&self, file: FileId, line: u32) -> Option<&str> {
        let src = self.files.get(file)?.source.as_ref()?;
        src.get((line as usize).checked_sub(1)?).map(|s| s.as_str())
    }

    /// Total ticks of the run's profiled code (the root nodes' inclusive sum).
    pub fn total_ticks(&self) -> u64 {
        self.call_tree
            .iter()
            .filter(|n| n.parent.is_none())
            .map(|n| n.incl_ticks)
            .sum()
    }

    pub fn total_opcodes(&self) -> u64 {
        self.functions.iter().map(|f| f.opcodes).sum()
    }

    /// Function ids sorted by a key, largest first (ties by id).
    pub fn top_functions(&self, key: impl Fn(&Function) -> u64) -> Vec<FunctionId> {
        let mut ids: Vec<FunctionId> = (0..self.functions.len()).collect();
        ids.sort_by(|&a, &b| {
            key(&self.functions[b])
                .cmp(&key(&self.functions[a]))
                .then(a.cmp(&b))
        });
        ids
    }

    /// Lines that allocate, most allocations first.
    pub fn allocating_lines(&self) -> Vec<&Line> {
        let mut v: Vec<&Line> = self.lines.iter().filter(|l| l.alloc_count > 0).collect();
        v.sort_by(|a, b| {
            b.alloc_count
                .cmp(&a.alloc_count)
                .then(b.alloc_bytes.cmp(&a.alloc_bytes))
                .then((a.file, a.line).cmp(&(b.file, b.line)))
        });
        v
    }

    /// Find a line's record.
    pub fn line(&self, file: FileId, line: u32) -> Option<&Line> {
        self.lines.iter().find(|l| l.file == file && l.line == line)
    }

    /// Root-to-node function paths of every call-tree node, for flame graphs.
    pub fn stacks(&self) -> Vec<(Vec<FunctionId>, NodeId)> {
        let mut paths: Vec<Vec<FunctionId>> = Vec::with_capacity(self.call_tree.len());
        let mut out = Vec::with_capacity(self.call_tree.len());
        for (i, n) in self.call_tree.iter().enumerate() {
            let mut p = match n.parent {
                Some(parent) if parent < paths.len() => paths[parent].clone(),
                _ => Vec::new(),
            };
            p.push(n.function);
            out.push((p.clone(), i));
            paths.push(p);
        }
        out
    }

    /// Functions whose name or qualified name matches `name`.
    pub fn find_functions(&self, name: &str) -> Vec<FunctionId> {
        (0..self.functions.len())
            .filter(|&i| self.functions[i].qualname == name || self.functions[i].name == name)
            .collect()
    }
}

/// Builds a Profile piece by piece, deduplicating files and functions.
#[derive(Debug)]
pub struct ProfileBuilder {
    profile: Profile,
    file_ids: HashMap<String, FileId>,
    function_ids: HashMap<(FileId, u32, String), FunctionId>,
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
        }
    }

    pub fn meta_mut(&mut self) -> &mut Meta {
        &mut self.profile.meta
    }

    pub fn gc_mut(&mut self) -> &mut GcSummary {
        &mut self.profile.gc
    }

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

    /// The function with this name defined at file:line (one per code object
    /// place; the same function met again returns its id).
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
            name: name.to_string(),
            qualname: qualname.to_string(),
            file,
            line,
            ..Function::default()
        });
        self.function_ids.insert(key, id);
        id
    }

    pub fn function_mut(&mut self, id: FunctionId) -> Option<&mut Function> {
        self.profile.functions.get_mut(id)
    }

    /// Add a call-tree node; parents must be added before their children.
    pub fn add_node(&mut self, node: CallNode) -> NodeId {
        self.profile.call_tree.push(node);
        self.profile.call_tree.len() - 1
    }

    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut CallNode> {
        self.profile.call_tree.get_mut(id)
    }

    pub fn add_line(&mut self, line: Line) {
        self.profile.lines.push(line);
    }

    pub fn add_alloc_site(&mut self, site: AllocSite) {
        self.profile.alloc_sites.push(site);
    }

    pub fn add_marker(&mut self, marker: Marker) {
        self.profile.markers.push(marker);
    }

    pub fn add_region(&mut self, region: Region) {
        self.profile.regions.push(region);
    }

    pub fn set_opcode_mix(&mut self, mix: Vec<OpcodeCount>) {
        self.profile.opcode_mix = mix;
    }

    /// Finish: exclusive ticks from inclusive ones, function totals from the
    /// call tree, lines sorted.
    pub fn build(mut self) -> Profile {
        let p = &mut self.profile;
        let mut child_incl = vec![0u64; p.call_tree.len()];
        for n in &p.call_tree {
            if let Some(parent) = n.parent {
                if let Some(c) = child_incl.get_mut(parent) {
                    *c += n.incl_ticks;
                }
            }
        }
        for (n, c) in p.call_tree.iter_mut().zip(child_incl) {
            n.excl_ticks = n.incl_ticks.saturating_sub(c);
        }
        // A recursive function's inclusive time counts each outermost frame
        // once: skip nodes with an ancestor of the same function.
        for f in p.functions.iter_mut() {
            f.calls = 0;
            f.incl_ticks = 0;
            f.excl_ticks = 0;
        }
        for i in 0..p.call_tree.len() {
            let n = &p.call_tree[i];
            let fid = n.function;
            let mut recursive = false;
            let mut a = n.parent;
            while let Some(ai) = a {
                if p.call_tree[ai].function == fid {
                    recursive = true;
                    break;
                }
                a = p.call_tree[ai].parent;
            }
            let (calls, incl, excl) = (n.calls, n.incl_ticks, n.excl_ticks);
            if let Some(f) = p.functions.get_mut(fid) {
                f.calls += calls;
                f.excl_ticks += excl;
                if !recursive {
                    f.incl_ticks += incl;
                }
            }
        }
        p.lines.sort_by_key(|l| (l.file, l.line));
        self.profile
    }
}
