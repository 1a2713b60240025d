//! The Flagsmith environment document: its serde model.
