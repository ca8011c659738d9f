//! What the profile's numbers mean: the bytecode's opcodes ([`opcodes`]) and
//! each allocation's cause and fix ([`classify`]).
pub mod advice;
pub mod classify;
pub mod opcodes;
