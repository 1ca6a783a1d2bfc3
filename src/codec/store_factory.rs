//! [`ObjectStoreFactory`]: how a decoding executor gets the object store a plan
//! names, without the plan ever carrying one.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::ObjectStore;

/// Creates the object store for a URL's scheme and authority (`s3://bucket`,
/// `memory://`, …) on the process that decodes a plan.
///
/// Plans carry URLs, never stores or credentials: each executor builds its own
/// store, with its own credentials, the first time a plan names it.
pub trait ObjectStoreFactory: Debug + Send + Sync {
    /// The store for `url`, or an error naming it.
    fn create(&self, url: &ObjectStoreUrl) -> Result<Arc<dyn ObjectStore>>;
}

/// Makes sure `runtime` can serve `url`: if its registry has no store for it,
/// one is created with `factory` and registered.
pub(crate) fn ensure_store(
    runtime: &RuntimeEnv,
    url: &ObjectStoreUrl,
    factory: Option<&Arc<dyn ObjectStoreFactory>>,
) -> Result<()> {
    if runtime.object_store(url).is_ok() {
        return Ok(());
    }
    let Some(factory) = factory else {
        return Err(crate::error::Error::NoObjectStore {
            url: url.as_str().to_string(),
        }
        .into());
    };
    let store = factory.create(url)?;
    runtime.register_object_store(url.as_ref(), store);
    Ok(())
}
