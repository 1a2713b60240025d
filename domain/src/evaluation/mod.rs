//! Flagsmith-exact flag evaluation (see ARCHITECTURE.md).
