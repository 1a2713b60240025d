//! The SDK read path's cache: each environment's projected read model, pre-serialised, keyed by
//! client key, with the evaluation context identity requests evaluate and the little of the
//! document their answers list (features in order, and whether disabled flags are hidden).
//!
//! The cache is bounded by an estimate of the bytes its entries hold
//! ([`DEFAULT_MAX_BYTES`] unless configured), not by a count of environments.
//!
//! Entries are dropped when the projection announces that an environment's document changed.
//! A request that read the old row just before the change and inserts it just after would leave
//! a stale entry, so every insert is checked against the newest version announced for that key
//! (`generations`): insert first, then check, so either the check or the announcement removes
//! it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use domain::document::FlagListing;
use domain::evaluation::EvaluationContext;
use domain::flagsmith::EnvironmentDocument;
use projections::environment_documents::{self, DocumentChanged, StoredEnvironment};
use sqlx::AnyPool;

/// One environment as the SDK endpoints serve it.
pub struct CachedEnvironment {
    pub environment_id: u64,
    /// The log position this version reflects.
    pub position: u64,
    pub client_key: String,
    pub updated_at_micros: i64,
    /// Changes whenever the document does.
    pub etag: String,
    /// The body of `GET /api/v1/flags/`.
    pub flags: Bytes,
    /// The body of `GET /api/v1/environment-document/`.
    pub document_bytes: Bytes,
    /// What listing the flags needs of the document, and where each default flag is in `flags`.
    pub listing: FlagListing,
    /// The document's evaluation context (segments and identity overrides included), shared
    /// with `listing`.
    pub context: Arc<EvaluationContext>,
}

/// The cache's default bound on the bytes its entries hold (an estimate: see
/// [`CachedEnvironment::weight`]).
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

impl CachedEnvironment {
    fn from_stored(stored: StoredEnvironment) -> Option<Self> {
        let document: EnvironmentDocument = serde_json::from_str(&stored.document).ok()?;
        let context = Arc::new(document.to_evaluation_context());
        Some(CachedEnvironment {
            environment_id: stored.environment_id,
            position: stored.position,
            etag: format!("\"{}-{}\"", stored.environment_id, stored.position),
            client_key: stored.client_key,
            updated_at_micros: stored.updated_at_micros,
            listing: FlagListing::of(&document, context.clone(), stored.flags.as_bytes()),
            flags: Bytes::from(stored.flags),
            document_bytes: Bytes::from(stored.document),
            context,
        })
    }

    /// Roughly the bytes this entry holds: both bodies, the listing, and the evaluation context,
    /// counted as 3.5 times the document's text (the context holds the document's features,
    /// segments and overrides parsed; measured at 3.2–3.3 times on the conformance seeds).
    pub fn weight(&self) -> u64 {
        let text = self.flags.len() + self.document_bytes.len() + self.client_key.len();
        let context = self.document_bytes.len() * 7 / 2;
        (std::mem::size_of::<Self>() + text + context + self.listing.heap_size()) as u64
    }
}

pub struct EnvironmentCache {
    pool: AnyPool,
    by_client_key: moka::future::Cache<String, Arc<CachedEnvironment>>,
    /// SHA-256 of a server-side key → its environment's client key (keys are never reassigned).
    server_keys: moka::future::Cache<String, String>,
    generations: Mutex<HashMap<String, u64>>,
}

impl EnvironmentCache {
    /// A cache bounded to [`DEFAULT_MAX_BYTES`].
    pub fn new(pool: AnyPool) -> Self {
        Self::with_max_bytes(pool, DEFAULT_MAX_BYTES)
    }

    /// A cache whose entries hold at most about `max_bytes` (see [`CachedEnvironment::weight`]).
    pub fn with_max_bytes(pool: AnyPool, max_bytes: u64) -> Self {
        EnvironmentCache {
            pool,
            by_client_key: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_key: &String, entry: &Arc<CachedEnvironment>| {
                    u32::try_from(entry.weight()).unwrap_or(u32::MAX)
                })
                .build(),
            server_keys: moka::future::Cache::builder().max_capacity(100_000).build(),
            generations: Mutex::new(HashMap::new()),
        }
    }

    fn newest_announced(&self, client_key: &str) -> Option<u64> {
        self.generations
            .lock()
            .ok()
            .and_then(|g| g.get(client_key).copied())
    }

    async fn cache(&self, stored: StoredEnvironment) -> Option<Arc<CachedEnvironment>> {
        let entry = Arc::new(CachedEnvironment::from_stored(stored)?);
        let key = entry.client_key.clone();
        self.by_client_key.insert(key.clone(), entry.clone()).await;
        if self
            .newest_announced(&key)
            .is_some_and(|newest| newest > entry.position)
        {
            self.by_client_key.invalidate(&key).await;
        }
        Some(entry)
    }

    pub async fn by_client_key(
        &self,
        client_key: &str,
    ) -> Result<Option<Arc<CachedEnvironment>>, projections::Error> {
        if let Some(entry) = self.by_client_key.get(client_key).await {
            return Ok(Some(entry));
        }
        match environment_documents::by_client_key(&self.pool, client_key).await? {
            Some(stored) => Ok(self.cache(stored).await),
            None => Ok(None),
        }
    }

    pub async fn by_server_key_hash(
        &self,
        key_hash: &str,
    ) -> Result<Option<Arc<CachedEnvironment>>, projections::Error> {
        if let Some(client_key) = self.server_keys.get(key_hash).await {
            return self.by_client_key(&client_key).await;
        }
        match environment_documents::by_server_key_hash(&self.pool, key_hash).await? {
            Some(stored) => {
                self.server_keys
                    .insert(key_hash.to_string(), stored.client_key.clone())
                    .await;
                Ok(self.cache(stored).await)
            }
            None => Ok(None),
        }
    }

    /// Drops what a projection change made stale.
    pub async fn changed(&self, change: &DocumentChanged) {
        if let Ok(mut generations) = self.generations.lock() {
            let newest = generations.entry(change.client_key.clone()).or_default();
            *newest = (*newest).max(change.position);
        }
        self.by_client_key.invalidate(&change.client_key).await;
    }

    /// Drops everything (when announcements were missed).
    pub fn clear(&self) {
        self.by_client_key.invalidate_all();
    }
}
