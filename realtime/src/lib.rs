//! `realtime`: the websocket gateway.
//!
//! Not built yet: it arrives with issue #4 (see `docs/architecture.md`). The crate exists
//! so that the workspace shows the architecture and the binary name of API.md is reserved.

/// Issue that builds this component.
pub const TRACKING_ISSUE: u32 = 4;
