//! What the profile's numbers mean: the bytecode's opcodes ([`opcodes`]),
//! each allocation's cause and the source-aware hint rules ([`classify`]),
//! and the advice stored with each allocation site: its exact object and
//! the one fix every report shows ([`advice`]).
pub mod advice;
pub mod classify;
pub mod opcodes;
