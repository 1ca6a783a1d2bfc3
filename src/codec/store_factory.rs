//! [`ObjectStoreFactory`]: how a decoding executor gets the object store a plan
//! names, without the plan ever carrying one.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::ObjectStore;

use crate::store::object_store_for_url;

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

/// An [`ObjectStoreFactory`] that builds each store from its URL with
/// [`object_store_for_url`] (object_store's `parse_url_opts`: `s3://`,
/// `gs://`, `az://` with the matching feature), configured by the
/// executor's environment and the options given for that URL here.
///
/// ```
/// use std::sync::Arc;
/// use lakefusion::codec::{LakefusionPhysicalCodec, UrlStoreFactory};
///
/// let factory = UrlStoreFactory::new()
///     .with_options("s3://warehouse", [("aws_region", "eu-west-3")]);
/// let codec = LakefusionPhysicalCodec::new().with_object_store_factory(Arc::new(factory));
/// ```
#[derive(Clone, Default)]
pub struct UrlStoreFactory {
    /// Options by the URL of the bucket they apply to.
    options: Vec<(String, Vec<(String, String)>)>,
}

impl UrlStoreFactory {
    /// A factory that configures stores from the environment only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options for the store of `url`'s scheme and bucket (e.g.
    /// `s3://warehouse`; a path after the bucket is ignored, as a store
    /// serves a whole bucket). They apply to that bucket only, never to
    /// `s3://warehouse2`; given twice for one bucket, the later wins.
    pub fn with_options<K: Into<String>, V: Into<String>>(
        mut self,
        url: impl Into<String>,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let options = options
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.options.push((url.into(), options));
        self
    }
}

impl Debug for UrlStoreFactory {
    /// The URLs only: options carry credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlStoreFactory")
            .field(
                "urls",
                &self.options.iter().map(|(u, _)| u).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The scheme and bucket (authority) of `url`, the bucket lower-cased as
/// bucket names are; `None` if it is not a URL.
fn bucket_of(url: &str) -> Option<(String, String)> {
    let parsed = url::Url::parse(url).ok()?;
    // `url` lower-cases the host of special schemes (http) only.
    Some((
        parsed.scheme().to_string(),
        parsed.authority().to_ascii_lowercase(),
    ))
}

impl ObjectStoreFactory for UrlStoreFactory {
    fn create(&self, url: &ObjectStoreUrl) -> Result<Arc<dyn ObjectStore>> {
        let wanted = bucket_of(url.as_str());
        // The last options given for the store's scheme and bucket.
        let options = self
            .options
            .iter()
            .rev()
            .find(|(configured, _)| wanted.is_some() && bucket_of(configured) == wanted)
            .map(|(_, options)| options.clone())
            .unwrap_or_default();
        Ok(object_store_for_url(url.as_str(), options)?)
    }
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use super::*;

    /// Options given for `s3://warehouse` apply to that bucket only, not to
    /// `s3://warehouse2` or `s3://warehouse-dev` (a URL prefix is not a bucket).
    #[test]
    fn options_apply_to_their_bucket_only() {
        // An invalid value shows where the options were applied: the store
        // cannot be built with them.
        let factory = UrlStoreFactory::new()
            .with_options("s3://warehouse", [("allow_http", "maybe")])
            .with_options("s3://other/lake", [("allow_http", "perhaps")]);
        let url = |u: &str| ObjectStoreUrl::parse(u).unwrap();
        let error = factory
            .create(&url("s3://warehouse"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("maybe"), "{error}");
        for elsewhere in ["s3://warehouse2", "s3://warehouse-dev", "gs://warehouse"] {
            if let Err(e) = factory.create(&url(elsewhere)) {
                panic!("{elsewhere} got another bucket's options: {e}");
            }
        }
        // Options given with a path apply to the whole bucket.
        assert!(factory.create(&url("s3://other")).is_err());
    }
}
