//! [`ReadModels`] on the SQLite files of embedded mode (filled in by the next step).
