//! board-agent
