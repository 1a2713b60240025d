//! The SDK read path's cache of each environment's projected read model, in two bounded tiers
//! keyed by client key:
//!
//! - [`CachedEnvironment`]: the pre-serialised flags body (and, for local-evaluation SDKs, the
//!   document), what `GET /api/v1/flags/` and `/environment-document/` serve. Small (the flags
//!   of 200 features are ~35 KB), so every environment in use fits.
//! - [`Evaluable`]: the evaluation context and flag listing that identities and OFREP
//!   evaluate. Several times larger (a context holds up to
//!   [`CONTEXT_BYTES_PER_DOCUMENT_BYTE`] bytes per byte of document), so it has a bound of its
//!   own; one evicted is rebuilt from the projected row on the next identity request.
//!
//! Each tier is bounded by an estimate of the bytes its entries hold, not by a count of
//! environments ([`CacheBounds`]).
//!
//! Entries are dropped when the projection announces that an environment's document changed.
//! A request that read the old row just before the change and inserts it just after would leave
//! a stale entry, so every insert is checked against the newest version announced for that key
//! (`generations`): insert first, then check, so either the check or the announcement removes
//! it.
//!
//! In front of the flags tier each request thread keeps its last few hits ([`FRONT_ENTRIES`],
//! no lock, no shared cache line): `GET /api/v1/flags/` asks for the same few environments over
//! and over, and a moka lookup (hash, epoch pin, recorded read) was the largest cost of that
//! path left. A front entry is valid only while the cache's `front_generation` is the one it was
//! taken under: every invalidation and every insert into moka bumps it (an inserted row may be
//! newer than what is in front: it can be read before its change is announced), and a lookup
//! reads it before asking moka, so a front entry is never older than what moka would answer. A front
//! entry is the thread's own copy of the flags body and ETag, so serving it touches no cache
//! line another core writes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::http::HeaderValue;
use domain::document::FlagListing;
use domain::evaluation::{EvaluationContext, PreparedContext};
use domain::flagsmith::{CONTEXT_BYTES_PER_DOCUMENT_BYTE, EnvironmentDocument};
use moka::future::Cache;
use projections::environment_documents::{self, DocumentChanged, StoredEnvironment};
use projections::integrations::analytics::{ServedFeature, ServedFeatures};
use sqlx::AnyPool;

/// One environment as the flags and document endpoints serve it.
pub struct CachedEnvironment {
    pub environment_id: u64,
    /// The log position this version reflects.
    pub position: u64,
    pub client_key: String,
    pub updated_at_micros: i64,
    /// Changes whenever the document does.
    pub etag: String,
    /// `etag` as a header value, made once.
    pub etag_header: HeaderValue,
    /// The body of `GET /api/v1/flags/`.
    pub flags: Bytes,
    /// The body of `GET /api/v1/environment-document/`, kept only in entries made for a
    /// server-side key (local-evaluation SDKs); client-side SDKs never download it.
    pub document_bytes: Option<Bytes>,
}

impl CachedEnvironment {
    /// The entry of a stored read model; with the document's text if `with_document`.
    fn from_stored(stored: StoredEnvironment, with_document: bool) -> Self {
        let etag = etag(&stored);
        CachedEnvironment {
            environment_id: stored.environment_id,
            position: stored.position,
            // Quotes, digits and a dash: always a valid header value.
            etag_header: HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
            etag,
            client_key: stored.client_key,
            updated_at_micros: stored.updated_at_micros,
            flags: Bytes::from(stored.flags),
            document_bytes: with_document.then(|| Bytes::from(stored.document)),
        }
    }

    /// A copy whose flags body and ETag are this thread's own: handing out clones of a shared
    /// `Bytes` or `Arc` on every request moves their reference count's cache line between
    /// cores each time, where a thread's own copy stays in its core's cache.
    fn thread_copy(&self) -> Self {
        CachedEnvironment {
            environment_id: self.environment_id,
            position: self.position,
            client_key: self.client_key.clone(),
            updated_at_micros: self.updated_at_micros,
            etag: self.etag.clone(),
            etag_header: HeaderValue::from_bytes(self.etag_header.as_bytes())
                .unwrap_or_else(|_| self.etag_header.clone()),
            flags: Bytes::copy_from_slice(&self.flags),
            document_bytes: self.document_bytes.clone(),
        }
    }

    /// Roughly the bytes this entry holds.
    pub fn weight(&self) -> u64 {
        let document = self.document_bytes.as_ref().map_or(0, Bytes::len);
        let held = std::mem::size_of::<Self>()
            + self.flags.len()
            + document
            + self.client_key.len()
            + self.etag.len();
        held as u64
    }
}

/// What evaluating an environment for an identity needs: its evaluation context (segments and
/// identity overrides included), prepared for evaluating it many times, and the listing that
/// writes the evaluated flags, which holds the flags body it copies from, all of one version.
pub struct Evaluable {
    /// The log position this version reflects.
    pub position: u64,
    pub prepared: PreparedContext,
    pub listing: FlagListing,
    /// The listing's features as identity analytics name them, made on first use and shared
    /// by every identity served from this version.
    served_features: OnceLock<Arc<ServedFeatures>>,
    /// The length of the document's text, which the context's size follows.
    document_len: usize,
}

impl Evaluable {
    /// The entry of a stored read model, asked for by `env`: when the row is `env`'s version it
    /// shares `env`'s flags body instead of holding a second copy.
    fn from_stored(stored: StoredEnvironment, env: &CachedEnvironment) -> Option<Self> {
        let document: EnvironmentDocument = serde_json::from_str(&stored.document).ok()?;
        let context = Arc::new(document.to_evaluation_context());
        let flags = if stored.position == env.position && stored.flags.as_bytes() == env.flags {
            env.flags.clone()
        } else {
            Bytes::from(stored.flags)
        };
        Some(Evaluable {
            position: stored.position,
            listing: FlagListing::of(&document, context.clone(), flags),
            prepared: PreparedContext::new(context),
            served_features: OnceLock::new(),
            document_len: stored.document.len(),
        })
    }

    /// The evaluable of a read model made on request and cached nowhere (time travel's past
    /// documents).
    pub fn uncached(stored: StoredEnvironment) -> Option<Self> {
        let env = CachedEnvironment::from_stored(stored.clone(), false);
        Self::from_stored(stored, &env)
    }

    pub fn context(&self) -> &EvaluationContext {
        self.prepared.context()
    }

    /// The listing's features (index for index) as identity analytics name them, with their
    /// own states.
    pub fn served_features(&self) -> Arc<ServedFeatures> {
        self.served_features
            .get_or_init(|| {
                self.listing
                    .features
                    .iter()
                    .map(|listed| {
                        let name = self.listing.feature_ref(listed).map(|f| f.name.to_owned());
                        let own = self.listing.own_state(listed);
                        ServedFeature::new(
                            listed.id,
                            name.unwrap_or_default(),
                            listed.feature_type.to_string(),
                            own.map(|(enabled, value)| (enabled, value.clone())),
                        )
                    })
                    .collect::<ServedFeatures>()
                    .into()
            })
            .clone()
    }

    /// Roughly the bytes this entry holds: the context, counted as
    /// [`CONTEXT_BYTES_PER_DOCUMENT_BYTE`] times its document's text, its preparation, the
    /// listing and the flags body (counted though it is usually the environment entry's own:
    /// erring high).
    pub fn weight(&self) -> u64 {
        let context = (self.document_len as f64 * CONTEXT_BYTES_PER_DOCUMENT_BYTE) as usize;
        let flags = self.listing.body().len();
        let held = std::mem::size_of::<Self>()
            + context
            + self.prepared.heap_size()
            + self.listing.heap_size()
            + flags;
        held as u64
    }
}

fn etag(stored: &StoredEnvironment) -> String {
    format!("\"{}-{}\"", stored.environment_id, stored.position)
}

/// How many bytes (estimated) each tier may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBounds {
    /// Flags bodies and documents ([`CachedEnvironment`]).
    pub environments: u64,
    /// Evaluation contexts and listings ([`Evaluable`]).
    pub evaluables: u64,
}

impl Default for CacheBounds {
    /// 256 MiB of bodies (~7,000 environments of 200 features), 64 MiB of contexts (~250 of
    /// them).
    fn default() -> Self {
        CacheBounds {
            environments: 256 * 1024 * 1024,
            evaluables: 64 * 1024 * 1024,
        }
    }
}

pub struct EnvironmentCache {
    pool: AnyPool,
    environments: Cache<String, Arc<CachedEnvironment>>,
    evaluables: Cache<String, Arc<Evaluable>>,
    /// SHA-256 of a server-side key → its environment's client key (keys are never reassigned).
    server_keys: Cache<String, String>,
    generations: Mutex<HashMap<String, u64>>,
    /// Tells this cache's front entries apart from other caches' in the same thread.
    id: u64,
    /// Bumped by every invalidation: front entries taken under an older one are not used.
    front_generation: AtomicU64,
}

/// How many hits each thread keeps in front of the flags tier.
pub const FRONT_ENTRIES: usize = 8;

struct FrontEntry {
    cache: u64,
    generation: u64,
    entry: Arc<CachedEnvironment>,
}

thread_local! {
    static FRONT: RefCell<Vec<FrontEntry>> = const { RefCell::new(Vec::new()) };
}

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

impl EnvironmentCache {
    pub fn new(pool: AnyPool, bounds: CacheBounds) -> Self {
        EnvironmentCache {
            pool,
            environments: Cache::builder()
                .max_capacity(bounds.environments)
                .weigher(|_key: &String, entry: &Arc<CachedEnvironment>| {
                    u32::try_from(entry.weight()).unwrap_or(u32::MAX)
                })
                .build(),
            evaluables: Cache::builder()
                .max_capacity(bounds.evaluables)
                .weigher(|_key: &String, entry: &Arc<Evaluable>| {
                    u32::try_from(entry.weight()).unwrap_or(u32::MAX)
                })
                .build(),
            server_keys: Cache::builder().max_capacity(100_000).build(),
            generations: Mutex::new(HashMap::new()),
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            front_generation: AtomicU64::new(0),
        }
    }

    /// This thread's front entry for `client_key`, if taken under `generation`.
    fn front_get(&self, client_key: &str, generation: u64) -> Option<Arc<CachedEnvironment>> {
        FRONT.with_borrow(|front| {
            front
                .iter()
                .find(|f| {
                    f.cache == self.id
                        && f.generation == generation
                        && f.entry.client_key == client_key
                })
                .map(|f| f.entry.clone())
        })
    }

    /// Keeps `entry` (a moka hit under `generation`) in this thread's front, the oldest out.
    fn front_put(&self, entry: &Arc<CachedEnvironment>, generation: u64) {
        FRONT.with_borrow_mut(|front| {
            front.retain(|f| {
                f.cache != self.id
                    || (f.generation == generation && f.entry.client_key != entry.client_key)
            });
            if front.len() >= FRONT_ENTRIES {
                front.remove(0);
            }
            front.push(FrontEntry {
                cache: self.id,
                generation,
                entry: Arc::new(entry.thread_copy()),
            });
        });
    }

    /// After removing entries from moka: front entries taken before are not used any more.
    fn bump_front(&self) {
        self.front_generation.fetch_add(1, Ordering::AcqRel);
    }

    fn newest_announced(&self, client_key: &str) -> Option<u64> {
        self.generations
            .lock()
            .ok()
            .and_then(|g| g.get(client_key).copied())
    }

    /// Whether an entry of `position` for `client_key` is older than an announced change: then
    /// it must not stay cached.
    fn is_stale(&self, client_key: &str, position: u64) -> bool {
        self.newest_announced(client_key)
            .is_some_and(|newest| newest > position)
    }

    async fn cache(
        &self,
        stored: StoredEnvironment,
        with_document: bool,
    ) -> Arc<CachedEnvironment> {
        let entry = Arc::new(CachedEnvironment::from_stored(stored, with_document));
        let key = entry.client_key.clone();
        self.environments.insert(key.clone(), entry.clone()).await;
        if self.is_stale(&key, entry.position) {
            self.environments.invalidate(&key).await;
        }
        // The row read may be newer than what other threads hold in front (it can be read
        // before its change is announced): whoever is served after this must not be served
        // what was there before.
        self.bump_front();
        entry
    }

    pub async fn by_client_key(
        &self,
        client_key: &str,
    ) -> Result<Option<Arc<CachedEnvironment>>, projections::Error> {
        // Read before asking moka: an invalidation after it makes what is put in front unused.
        let generation = self.front_generation.load(Ordering::Acquire);
        if let Some(entry) = self.front_get(client_key, generation) {
            return Ok(Some(entry));
        }
        if let Some(entry) = self.environments.get(client_key).await {
            self.front_put(&entry, generation);
            return Ok(Some(entry));
        }
        match environment_documents::by_client_key(&self.pool, client_key).await? {
            Some(stored) => Ok(Some(self.cache(stored, false).await)),
            None => Ok(None),
        }
    }

    /// The environment with the document's text (for local-evaluation SDKs): an entry without
    /// it is replaced by one made with it, so that its weight counts it.
    async fn with_document(
        &self,
        client_key: &str,
    ) -> Result<Option<Arc<CachedEnvironment>>, projections::Error> {
        if let Some(entry) = self.environments.get(client_key).await
            && entry.document_bytes.is_some()
        {
            return Ok(Some(entry));
        }
        match environment_documents::by_client_key(&self.pool, client_key).await? {
            Some(stored) => Ok(Some(self.cache(stored, true).await)),
            None => Ok(None),
        }
    }

    pub async fn by_server_key_hash(
        &self,
        key_hash: &str,
    ) -> Result<Option<Arc<CachedEnvironment>>, projections::Error> {
        if let Some(client_key) = self.server_keys.get(key_hash).await {
            return self.with_document(&client_key).await;
        }
        match environment_documents::by_server_key_hash(&self.pool, key_hash).await? {
            Some(stored) => {
                self.server_keys
                    .insert(key_hash.to_string(), stored.client_key.clone())
                    .await;
                Ok(Some(self.cache(stored, true).await))
            }
            None => Ok(None),
        }
    }

    /// What evaluating `env` for an identity needs, of its version or a newer one (a newer row
    /// means `env` itself is about to be dropped). `None` if the environment is gone or its
    /// document does not parse.
    pub async fn evaluable(
        &self,
        env: &CachedEnvironment,
    ) -> Result<Option<Arc<Evaluable>>, projections::Error> {
        if let Some(entry) = self.evaluables.get(&env.client_key).await
            && entry.position >= env.position
        {
            return Ok(Some(entry));
        }
        let Some(stored) =
            environment_documents::by_client_key(&self.pool, &env.client_key).await?
        else {
            return Ok(None);
        };
        let Some(entry) = Evaluable::from_stored(stored, env).map(Arc::new) else {
            return Ok(None);
        };
        self.evaluables
            .insert(env.client_key.clone(), entry.clone())
            .await;
        if self.is_stale(&env.client_key, entry.position) {
            self.evaluables.invalidate(&env.client_key).await;
        }
        Ok(Some(entry))
    }

    /// Drops what a projection change made stale.
    pub async fn changed(&self, change: &DocumentChanged) {
        if let Ok(mut generations) = self.generations.lock() {
            let newest = generations.entry(change.client_key.clone()).or_default();
            *newest = (*newest).max(change.position);
        }
        self.environments.invalidate(&change.client_key).await;
        self.evaluables.invalidate(&change.client_key).await;
        self.bump_front();
    }

    /// Drops one environment's entries (when whether it changed is unknown).
    pub async fn forget(&self, client_key: &str) {
        self.environments.invalidate(client_key).await;
        self.evaluables.invalidate(client_key).await;
        self.bump_front();
    }

    /// Drops everything (when announcements were missed).
    pub fn clear(&self) {
        self.environments.invalidate_all();
        self.evaluables.invalidate_all();
        self.bump_front();
    }
}
