//! The contract between the projector (writes) and its readers (query-service waits, realtime
//! resumes): which checkpoint row to read and which channel announces it.

/// The projection that maintains every `rm_*` table; its row in `projection_checkpoints`.
pub const READ_MODELS: &str = "read_models";

/// PostgreSQL NOTIFY channel on which the projector announces its new checkpoint position
/// (payload: the position text), delivered when the batch commits.
pub const NOTIFY_CHANNEL: &str = "meetings_projected";
