//! flaglog's read side: the subscription runner (checkpoints, catch-up, wake-ups) and the
//! projections it feeds. It reads the log only through `domain::log::EventLog`.
