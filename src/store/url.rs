//! Object stores built from a table root's URL and options, with
//! object_store's own `parse_url_opts`: `s3://` (feature `aws`), `gs://`
//! (`gcp`), `az://`, `abfss://` (`azure`), `file://` and `memory://`.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use object_store::ObjectStore;
use url::Url;

use crate::error::{Error, Result};

/// The prefixes of the environment variables object_store's builders read
/// in their `from_env` (credentials, region, endpoint, …).
const ENV_PREFIXES: [&str; 3] = ["AWS_", "GOOGLE_", "AZURE_"];

/// The object store serving `url`'s scheme and bucket (the path is
/// ignored), configured from the process environment (`AWS_*`, `GOOGLE_*`,
/// `AZURE_*`, as object_store's `from_env` builders read it) and then
/// `options`, which win: object_store's configuration keys such as
/// `aws_access_key_id`, `aws_region`, `aws_endpoint`, `aws_allow_http`,
/// `google_service_account`, `azure_storage_account_name` (case does not
/// matter; unknown keys are ignored, as `parse_url_opts` does).
///
/// Building a store does no I/O. A scheme whose backend is not compiled in
/// (features `aws`, `gcp`, `azure`) is an error naming the URL.
///
/// ```
/// use lakefusion::store::object_store_for_url;
///
/// let store = object_store_for_url("memory:///lake/", [("unused", "option")]).unwrap();
/// assert!(store.to_string().contains("InMemory"));
/// ```
pub fn object_store_for_url<K, V>(
    url: &str,
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<Arc<dyn ObjectStore>>
where
    K: AsRef<str>,
    V: Into<String>,
{
    let parsed = parse(url)?;
    let mut config: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    for (k, v) in options {
        config.insert(k.as_ref().to_ascii_lowercase(), v.into());
    }
    let (store, _) =
        object_store::parse_url_opts(&parsed, config).map_err(|source| Error::ObjectStoreUrl {
            url: url.to_string(),
            source,
        })?;
    Ok(Arc::from(store))
}

/// Builds the store for `url` with [`object_store_for_url`] and registers
/// it in `runtime` for `url`'s scheme and bucket, so that tables under it
/// can be built and scanned.
///
/// ```
/// use datafusion::prelude::SessionContext;
/// use lakefusion::store::register_object_store_for;
///
/// let ctx = SessionContext::new();
/// register_object_store_for(ctx.runtime_env().as_ref(), "memory:///lake/", [("k", "v")]).unwrap();
/// ```
pub fn register_object_store_for<K, V>(
    runtime: &RuntimeEnv,
    url: &str,
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<Arc<dyn ObjectStore>>
where
    K: AsRef<str>,
    V: Into<String>,
{
    let store = object_store_for_url(url, options)?;
    runtime.register_object_store(&parse(url)?, Arc::clone(&store));
    Ok(store)
}

fn parse(url: &str) -> Result<Url> {
    Url::parse(url).map_err(|e| Error::InvalidUrl {
        url: url.to_string(),
        source: Box::new(datafusion::error::DataFusionError::External(Box::new(e))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_is_no_url_is_named() {
        let error = object_store_for_url("not a url", [("k", "v")]).unwrap_err();
        assert!(error.to_string().contains("not a url"), "{error}");
    }

    #[cfg(not(feature = "gcp"))]
    #[test]
    fn a_backend_not_compiled_in_is_named() {
        let error = object_store_for_url("gs://bucket/lake/", [("k", "v")]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("gs://bucket/lake/"), "{text}");
    }

    #[cfg(feature = "aws")]
    #[test]
    fn options_configure_the_store() {
        let store = object_store_for_url(
            "s3://bucket/lake/",
            [
                ("AWS_REGION", "eu-west-3"),
                ("aws_endpoint", "http://127.0.0.1:9"),
                ("aws_allow_http", "true"),
            ],
        )
        .unwrap();
        assert!(store.to_string().contains("bucket"), "{store}");
    }
}
