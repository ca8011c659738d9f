//! The mpprof Profile model: one profile of one script run, the data every
//! report, export and the live view read. It is its own small library, apart
//! from recording (the `mpprof` crate builds profiles with [`ProfileBuilder`])
//! and from viewing (the `reports` crate renders them). Saved as JSON with a
//! versioned schema, see `docs/profile-schema.md`.
//!
//! Ids are indices: `functions[i].id == i`, `call_tree[i].id == i`, and every
//! `file`, `function`, `node` or `parent` field is an index into the matching
//! vector. [`Profile::validate`] checks that, and that the figures derived
//! from one another add up.

mod builder;
pub mod cause;
mod validate;

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

pub use builder::ProfileBuilder;
pub use cause::Cause;
pub use validate::InvalidProfile;

/// The `format` field of every profile file.
pub const FORMAT: &str = "mpprof-profile";
/// The schema version this library writes and the newest it reads.
pub const VERSION: u32 = 2;

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
    /// Sorted by (file, line), one per place.
    pub lines: Vec<Line>,
    /// Parents before their children.
    pub call_tree: Vec<CallNode>,
    pub alloc_sites: Vec<AllocSite>,
    /// The causes that occurred in the run, with their totals, most
    /// allocations first. Explanations and fixes are not stored: they come
    /// from [`Cause`]'s catalogue when a report is rendered.
    pub causes: Vec<CauseCount>,
    pub gc: GcSummary,
    pub markers: Vec<Marker>,
    pub regions: Vec<Region>,
    /// Most executed first.
    pub opcode_mix: Vec<OpcodeCount>,
    /// asyncio programs: their tasks and the event loop's time. Absent
    /// when the program has no task (additive: older files load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asyncio: Option<Asyncio>,
}

/// An asyncio program's tasks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Asyncio {
    /// Most time first.
    pub tasks: Vec<Task>,
    /// The call-tree nodes of the frames the event loop ran in (those that
    /// called `asyncio.run` or the like).
    pub loop_nodes: Vec<NodeId>,
    /// Their exclusive ticks: the loop's own work (frozen asyncio runs
    /// unprofiled, so it is its caller's), its waiting, and those frames'
    /// own code; time no task spent.
    pub loop_ticks: u64,
}

/// A task of an asyncio program: an `async def` function whose frames the
/// event loop resumes (its call-tree parent is not a coroutine: asyncio's
/// loop is frozen and runs unprofiled, so the frame that started the loop,
/// e.g. the one calling `asyncio.run`, is the parent). What the coroutine
/// awaits and calls is the task's too. Tasks made from the same coroutine
/// function are one entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Task {
    /// The coroutine function.
    pub function: FunctionId,
    /// Its call-tree nodes (one per frame that ran the event loop).
    pub nodes: Vec<NodeId>,
    /// Times the event loop resumed it (each resume is an entry; the first
    /// starts it).
    pub resumes: u64,
    /// Ticks in the coroutine and everything it awaited and called.
    pub ticks: u64,
    pub opcodes: u64,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
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
    /// What the profiler itself costs per unit, measured on the target at
    /// start-up and already taken out of every time here (docs/time.md).
    /// Absent in profiles from older runtimes, whose times include it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiler_cost: Option<ProfilerCost>,
    /// On a board: the script's modules copied to it before the run. On
    /// the emulated board (and our firmware on it driven as `--device`) by
    /// their paths under its `/rom`: as in the script's directory
    /// (`units.py`, `pkg/__init__.py`), or `lib/` and the path in a
    /// `--path` directory. On a board with a filesystem by their absolute
    /// paths there (`/units.py`, `/lib/util.py`), removed after the run
    /// unless they were there before. Absent when none were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copied_to_board: Vec<String>,
    /// How the lines' times were taken (`mpprof run --line-time`); absent
    /// when they were not, and then every line's time is `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_time: Option<LineTime>,
}

/// How a profile's per-line times were measured.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LineTime {
    pub mode: LineTimeMode,
    /// Sampled: nanoseconds of wall time between two samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_period_ns: Option<u64>,
    /// Sampled: samples taken while recording, and those of them that
    /// found no profiled frame running (outside every line).
    #[serde(default)]
    pub samples: u64,
    #[serde(default)]
    pub samples_outside: u64,
}

impl LineTime {
    pub fn is_sampled(&self) -> bool {
        self.mode == LineTimeMode::Sampled
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineTimeMode {
    /// The clock ticks between opcode dispatches, charged to the line
    /// running, the profiler's own cost taken out: exact.
    #[default]
    Exact,
    /// A profiling timer's samples of the running line: an estimate, with
    /// the samples it rests on.
    Sampled,
    #[serde(other)]
    Unknown,
}

/// Clock ticks the profiler costs where no clock read can bracket it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ProfilerCost {
    /// Per opcode counted.
    pub opcode_ticks: f64,
    /// Per call of a profiled function (and generator resume).
    pub call_ticks: f64,
    /// Per recorded allocation whose type is read from its first word (or
    /// that has none: a raw buffer).
    pub alloc_ticks: f64,
    /// Per recorded allocation mp_obj_malloc typed.
    #[serde(default)]
    pub typed_alloc_ticks: f64,
    /// Per call of a native function (of a viper function too, in profiles
    /// without `viper_call_ticks`).
    #[serde(default)]
    pub native_call_ticks: f64,
    /// Per call of a viper function.
    #[serde(default)]
    pub viper_call_ticks: f64,
    /// 0: measured at this run's start; n: the median of n earlier runs'
    /// measurements of the same binary on this machine (docs/time.md).
    #[serde(default)]
    pub from_runs: u32,
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
    /// The main script did not compile: a SyntaxError (or
    /// IndentationError) before any of it ran. (A MemoryError while
    /// compiling is `MemoryError`, its message says so.)
    SyntaxError,
    Timeout,
    Killed,
    /// The VM died of a signal of its own (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
    /// SIGABRT): [`Exit::signal`] names it.
    Crashed,
    /// Also what a reason this reader does not know (from a newer mpprof)
    /// loads as.
    #[default]
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Exit {
    pub reason: ExitReason,
    /// The process exit status, where there is one.
    pub status: Option<i32>,
    pub message: Option<String>,
    /// The signal that ended the process (`SIGSEGV`, ...), where one did
    /// (absent from profiles written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The records the profile holds from the stream: how far the run got
    /// before it crashed (set with `crashed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
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
    /// Events that named a code object, call-tree node or type no record
    /// described (its description was lost): their figures are kept under
    /// the `<unknown>` function.
    #[serde(default)]
    pub unknown_ids: u64,
    /// Allocations the target counted (its END record's totals) that are
    /// missing from the profile because records or frames were lost; 0
    /// when the stream has no END.
    #[serde(default)]
    pub lost_allocs: u64,
    #[serde(default)]
    pub lost_alloc_bytes: u64,
}

impl Dropped {
    /// Everything lost on the way (unknown ids and lost allocations are
    /// consequences of these losses, not losses of their own, so they are
    /// not added).
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

/// What a function's frames run. Only bytecode has opcodes and per-line
/// counts; the others are timed and allocate like any frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionKind {
    #[default]
    Bytecode,
    /// An `@micropython.native` function: machine code.
    Native,
    /// An `@micropython.viper` function: machine code.
    Viper,
    /// Compiling a source file at import (or exec/eval): `<compile x.py>`.
    Compile,
}

impl FunctionKind {
    pub fn is_bytecode(&self) -> bool {
        *self == FunctionKind::Bytecode
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Function {
    /// Its index in `functions`.
    pub id: FunctionId,
    pub name: String,
    /// `Class.method`, `outer.<locals>.inner`, or the name.
    pub qualname: String,
    pub file: FileId,
    /// The `def` line (0 for the runtime pseudo-functions).
    pub line: u32,
    /// Completed entries, generator resumes included.
    pub calls: u64,
    /// Ticks inside the function including callees; a recursive function's
    /// inner frames are inside its outermost one and are not added again.
    pub incl_ticks: u64,
    /// Ticks in its own frames.
    pub excl_ticks: u64,
    pub opcodes: u64,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
    /// Absent for bytecode (schema 2 files have no such field).
    #[serde(default, skip_serializing_if = "FunctionKind::is_bytecode")]
    pub kind: FunctionKind,
}

/// Per-cause figures of a line or a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CauseCount {
    pub cause: Cause,
    pub count: u64,
    pub bytes: u64,
}

/// One source line.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Line {
    pub file: FileId,
    pub line: u32,
    /// The function with the most opcodes on the line (a lambda can share
    /// its line with the code around it).
    pub function: FunctionId,
    /// Exact.
    pub opcodes: u64,
    /// Clock ticks spent on the line itself (without the functions it
    /// called), when line time was measured (`meta.line_time`): exact, or
    /// estimated from samples (`excl_samples` × the period). `None` when
    /// not measured: never 0 for "unknown".
    #[serde(default)]
    pub excl_ticks: Option<u64>,
    /// Clock ticks on the line including the functions it called (a line
    /// in a recursion counts each frame's time, as call-tree nodes do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incl_ticks: Option<u64>,
    /// Sampled line time: the samples that found the line running itself,
    /// and those that found it anywhere on the stack (once per sample).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excl_samples: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incl_samples: Option<u64>,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
    /// Largest count first.
    pub causes: Vec<CauseCount>,
    /// How many times the line ran: the largest opcode count of its
    /// allocating opcodes (version 2; `None` when unknown).
    #[serde(default)]
    pub executions: Option<u64>,
    /// Per pass, one-off or import (derived from its sites).
    #[serde(default)]
    pub scope: Scope,
    /// Its main site is asyncio's event loop's ([`AllocSite::event_loop`]):
    /// per pass of the loop, though the line ran once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub event_loop: bool,
    /// The exact object and the fix of its main site (the most allocations).
    #[serde(default)]
    pub what: Option<String>,
    #[serde(default)]
    pub fix: Option<String>,
}

impl Line {
    /// Allocations per execution of the line, when its executions are known.
    pub fn allocs_per_execution(&self) -> Option<f64> {
        self.executions
            .filter(|&n| n > 0)
            .map(|n| self.alloc_count as f64 / n as f64)
    }

    /// The main cause's label, or the exact object when the analysis named it.
    pub fn what_label(&self) -> Option<String> {
        self.what
            .clone()
            .filter(|w| !w.is_empty())
            .or_else(|| self.causes.first().map(|c| c.cause.label()))
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CallNode {
    /// Its index in `call_tree`.
    pub id: NodeId,
    /// `None` for a root (called from outside any bytecode).
    pub parent: Option<NodeId>,
    pub function: FunctionId,
    pub calls: u64,
    pub incl_ticks: u64,
    /// `incl_ticks` minus the children's (0 if they add up to more).
    pub excl_ticks: u64,
    /// Opcodes executed in this node's own frames.
    pub opcodes: u64,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
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
    /// 0 when the place has no source line (the runtime, unknown code).
    pub line: u32,
    /// Bytecode offset of the allocating opcode, from the start of the
    /// function's data.
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
    /// The exact object: `bytearray`, `closure`, `function`, `bound method`,
    /// `heap frame`, `*args tuple`, `returned tuple`, `compiling x.py`, …
    /// (version 2; a version 1 file gets the type name or the cause's name).
    #[serde(default)]
    pub what: String,
    /// What to write instead, specific to the line's source and opcode: the
    /// one hint every report shows (version 2; a version 1 file gets the
    /// cause's catalogue fix).
    #[serde(default)]
    pub fix: String,
    /// How many times the allocating opcode ran (its exact opcode count; 0
    /// when unknown, as in version 1 files).
    #[serde(default)]
    pub executions: u64,
    /// Made by asyncio's event loop (frozen, run unprofiled) inside the one
    /// call that runs it (`asyncio.run(main())`): the opcode ran once, but
    /// what the loop allocates repeats as the tasks run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub event_loop: bool,
}

/// When a line's allocations happen, for deciding what is worth changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The line ran more than once (a loop, a function called again and
    /// again), or how often is not known: the lines a user should change.
    #[default]
    PerPass,
    /// The line ran once: module level, a class body, a function called once.
    OneOff,
    /// The module compiled at import (charged to the importing line).
    Import,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Collection {
    pub at: u64,
    pub duration: u64,
    pub blocks_freed: u64,
    pub used_after: u64,
    pub free_after: u64,
    pub largest_free_after: u64,
    /// Allocations from the start of the run up to this collection (and
    /// their bytes), for the allocation rate between timeline events; 0 in
    /// files written before this field.
    #[serde(default)]
    pub allocs_before: u64,
    #[serde(default)]
    pub alloc_bytes_before: u64,
}

fn one() -> u64 {
    1
}

/// Requests the heap could not satisfy at one place.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AllocFailure {
    pub function: FunctionId,
    pub line: u32,
    /// The largest request that failed there.
    pub bytes: u64,
    /// How many requests failed there.
    #[serde(default = "one")]
    pub count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeapSample {
    pub at: u64,
    pub used: u64,
    /// Allocations from the start of the run up to this sample (and their
    /// bytes); 0 in files written before this field.
    #[serde(default)]
    pub allocs_before: u64,
    #[serde(default)]
    pub alloc_bytes_before: u64,
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
    /// Every allocation site's bytes and count added up.
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

/// One `with mpprof.region(label):` entry, or several of the same label
/// folded together (a region inside a long-running loop).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Region {
    pub label: String,
    /// When the (first) entry began.
    pub start: u64,
    /// When the (last) entry ended; `None` when it never closed.
    pub end: Option<u64>,
    /// How many entries this record stands for.
    #[serde(default = "one")]
    pub entries: u64,
    /// Ticks inside the closed entries, added up (with one entry:
    /// `end - start`).
    #[serde(default)]
    pub inside_ticks: u64,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
    pub opcodes: u64,
}

/// The function that opcodes and allocations of code the stream never
/// described are charged to; its opcodes have no line.
pub const UNKNOWN_FUNCTION: &str = "<unknown>";

/// The opcode-mix entry of opcodes whose byte the stream did not carry (a
/// damaged or truncated code description), so the mix still adds up.
pub const UNKNOWN_OPCODE: &str = "(unknown)";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpcodeCount {
    pub opcode: String,
    pub count: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read or write the profile: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the file is not valid JSON ({0}); give the `.json` file `mpprof run` wrote, complete"
    )]
    Json(serde_json::Error),
    #[error(
        "not an mpprof profile (its `format` is {0:?}, expected \"mpprof-profile\"); give a file written by `mpprof run`"
    )]
    NotAProfile(String),
    #[error("the profile has no valid `version` field ({0}); it was not written by mpprof")]
    NoVersion(String),
    #[error("the profile has schema version {found}, newer than this mpprof reads ({supported}): upgrade mpprof")]
    TooNew { found: u64, supported: u32 },
    #[error("the profile does not match schema version {version}: {source}")]
    Schema {
        version: u32,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Invalid(#[from] InvalidProfile),
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
            causes: Vec::new(),
            gc: GcSummary::default(),
            markers: Vec::new(),
            regions: Vec::new(),
            opcode_mix: Vec::new(),
            asyncio: None,
        }
    }

    /// Read a profile, checking that it is one, that we can read its version
    /// and that it is consistent ([`Profile::validate`]).
    pub fn from_json_reader(r: impl Read) -> Result<Self, ProfileError> {
        let value: serde_json::Value = serde_json::from_reader(r).map_err(|e| {
            if e.is_io() {
                ProfileError::Io(e.into())
            } else {
                ProfileError::Json(e)
            }
        })?;
        let format = value.get("format").and_then(|f| f.as_str());
        if format != Some(FORMAT) {
            let shown = match value.get("format") {
                None => "missing".to_string(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            return Err(ProfileError::NotAProfile(shown));
        }
        let version = match value.get("version") {
            Some(v) => v.as_u64().filter(|&v| v >= 1).ok_or_else(|| {
                ProfileError::NoVersion(format!("it is {v}, expected a whole number from 1"))
            })?,
            None => return Err(ProfileError::NoVersion("it is missing".into())),
        };
        if version > u64::from(VERSION) {
            return Err(ProfileError::TooNew {
                found: version,
                supported: VERSION,
            });
        }
        let mut p: Profile =
            serde_json::from_value(value).map_err(|source| ProfileError::Schema {
                version: version as u32,
                source,
            })?;
        if version < 2 {
            p.upgrade_from_v1();
        }
        p.validate()?;
        Ok(p)
    }

    /// A version 1 file has no per-site advice: each site gets its cause's
    /// catalogue fix and its type (or cause) as the object, lines their main
    /// site's; executions stay unknown (so every line counts as per pass).
    fn upgrade_from_v1(&mut self) {
        for s in &mut self.alloc_sites {
            if s.fix.is_empty() {
                s.fix = s.cause.fix().to_string();
            }
            if s.what.is_empty() {
                s.what = s.type_name.clone().unwrap_or_else(|| s.cause.label());
            }
        }
        builder::derive_line_advice(self);
        self.version = VERSION;
    }

    pub fn from_json_file(path: &std::path::Path) -> Result<Self, ProfileError> {
        let f = std::fs::File::open(path)?;
        Self::from_json_reader(std::io::BufReader::new(f))
    }

    /// Write the profile as pretty-printed JSON.
    pub fn to_json_writer(&self, w: impl Write) -> Result<(), ProfileError> {
        serde_json::to_writer_pretty(w, self).map_err(|e| {
            if e.is_io() {
                ProfileError::Io(e.into())
            } else {
                ProfileError::Json(e)
            }
        })
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
            .fold(0u64, |acc, n| acc.saturating_add(n.incl_ticks))
    }

    /// A line's own time as a percentage of the run's: with sampled line
    /// time, of the samples taken (each sample is one share of the run,
    /// whatever the call tree's total), else of the run's ticks. `None`
    /// without line time.
    pub fn line_time_percent(&self, l: &Line) -> Option<f64> {
        let t = self.meta.line_time?;
        if t.is_sampled() {
            let n = l.excl_samples?;
            return Some(if t.samples == 0 {
                0.0
            } else {
                n as f64 * 100.0 / t.samples as f64
            });
        }
        let total = self.total_ticks();
        Some(if total == 0 {
            0.0
        } else {
            l.excl_ticks? as f64 * 100.0 / total as f64
        })
    }

    /// Opcodes executed in all functions.
    pub fn total_opcodes(&self) -> u64 {
        self.functions
            .iter()
            .fold(0u64, |acc, f| acc.saturating_add(f.opcodes))
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

    /// Function ids, most exclusive ticks first.
    pub fn top_functions_by_excl(&self) -> Vec<FunctionId> {
        self.top_functions(|f| f.excl_ticks)
    }

    /// Function ids, most inclusive ticks first.
    pub fn top_functions_by_incl(&self) -> Vec<FunctionId> {
        self.top_functions(|f| f.incl_ticks)
    }

    /// Allocating lines of one scope, most allocations first.
    pub fn allocating_lines_in(&self, scope: Scope) -> Vec<&Line> {
        let mut v = self.allocating_lines();
        v.retain(|l| l.scope == scope);
        v
    }

    /// The allocating lines in the order a user should read them: lines
    /// that allocate on every pass first, then one-off lines, then imports;
    /// most allocations first within each.
    pub fn allocating_lines_ranked(&self) -> Vec<&Line> {
        let mut v = self.allocating_lines();
        let rank = |s: Scope| match s {
            Scope::PerPass => 0,
            Scope::OneOff => 1,
            Scope::Import => 2,
        };
        v.sort_by_key(|l| rank(l.scope));
        v
    }

    /// Lines that allocate, most allocations first (then most bytes, then
    /// by place).
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

    /// Lines with a measured time, most exclusive ticks first (then most
    /// inclusive, then by place). Empty without line time.
    pub fn lines_by_time(&self) -> Vec<&Line> {
        let mut v: Vec<&Line> = self
            .lines
            .iter()
            .filter(|l| l.excl_ticks.is_some())
            .collect();
        v.sort_by(|a, b| {
            b.excl_ticks
                .cmp(&a.excl_ticks)
                .then(b.incl_ticks.cmp(&a.incl_ticks))
                .then((a.file, a.line).cmp(&(b.file, b.line)))
        });
        v
    }

    /// A call-tree node's exclusive ticks split over its function's lines
    /// by their own (exclusive) line time, for line frames (`function:line`)
    /// in flame graphs and exports: `(line, ticks)`, adding up to the
    /// node's `excl_ticks`. Line time is kept per code object, not per call
    /// path: for a function with one node (called from one place) the split
    /// is its lines' own measure; for one called from several places, each
    /// node gets the function's overall shares. Empty without line time.
    pub fn node_line_ticks(&self, node: NodeId) -> Vec<(u32, u64)> {
        let Some(n) = self.call_tree.get(node) else {
            return Vec::new();
        };
        let Some(f) = self.functions.get(n.function) else {
            return Vec::new();
        };
        let weights: Vec<(u32, u64)> = self
            .lines
            .iter()
            .filter(|l| l.file == f.file)
            .filter(|l| l.function == n.function || l.line == f.line)
            .filter_map(|l| l.excl_ticks.filter(|&t| t > 0).map(|t| (l.line, t)))
            .collect();
        let total: u128 = weights.iter().map(|&(_, t)| t as u128).sum();
        if total == 0 || n.excl_ticks == 0 {
            return Vec::new();
        }
        let mut out: Vec<(u32, u64)> = weights
            .iter()
            .map(|&(line, t)| (line, (n.excl_ticks as u128 * t as u128 / total) as u64))
            .collect();
        // What rounding left goes to the largest share, so the split adds up.
        let given: u64 = out.iter().map(|&(_, t)| t).sum();
        if let Some(top) = out.iter_mut().max_by_key(|(_, t)| *t) {
            top.1 += n.excl_ticks - given;
        }
        out.retain(|&(_, t)| t > 0);
        out
    }

    /// A line's record (lines are sorted by place).
    pub fn line(&self, file: FileId, line: u32) -> Option<&Line> {
        self.lines
            .binary_search_by(|l| (l.file, l.line).cmp(&(file, line)))
            .ok()
            .and_then(|i| self.lines.get(i))
    }

    /// Root-to-node function paths of every call-tree node, indexed by node
    /// id, for flame graphs.
    pub fn stacks(&self) -> Vec<(Vec<FunctionId>, NodeId)> {
        let mut out: Vec<(Vec<FunctionId>, NodeId)> = Vec::with_capacity(self.call_tree.len());
        for (i, n) in self.call_tree.iter().enumerate() {
            // Parents come first (validated); anything else starts a new path.
            let mut path = match n.parent {
                Some(parent) if parent < i => out[parent].0.clone(),
                _ => Vec::new(),
            };
            path.push(n.function);
            out.push((path, i));
        }
        out
    }

    /// The children of each call-tree node, by node id.
    pub fn children(&self) -> Vec<Vec<NodeId>> {
        let mut children = vec![Vec::new(); self.call_tree.len()];
        for (i, n) in self.call_tree.iter().enumerate() {
            if let Some(c) = n.parent.and_then(|p| children.get_mut(p)) {
                c.push(i);
            }
        }
        children
    }

    /// Functions whose name or qualified name matches `name`.
    pub fn find_functions(&self, name: &str) -> Vec<FunctionId> {
        (0..self.functions.len())
            .filter(|&i| self.functions[i].qualname == name || self.functions[i].name == name)
            .collect()
    }
}
