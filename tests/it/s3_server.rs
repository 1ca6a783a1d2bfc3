//! An S3-compatible server on loopback, started in-process: `s3s-fs` (an S3
//! API over a temporary directory) served by hyper. Tests and the `s3`
//! example talk to it with object_store's own `AmazonS3` client, exactly as
//! they would to S3. Stopped when dropped.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use lakefusion::store::object_store_for_url;
use object_store::ObjectStore;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const ACCESS_KEY: &str = "lakefusion-test";
const SECRET_KEY: &str = "lakefusion-test-secret";

/// A running server with one bucket.
pub struct S3Server {
    endpoint: String,
    bucket: String,
    /// The directory the server stores the bucket in (removed on drop).
    _dir: tempfile::TempDir,
    server: JoinHandle<()>,
}

impl S3Server {
    /// Starts a server on a free loopback port with an empty `bucket`.
    pub async fn start(bucket: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join(bucket)).expect("the bucket directory");
        let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs over the directory");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
        let server = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let connection = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        });
        Self {
            endpoint,
            bucket: bucket.to_string(),
            _dir: dir,
            server,
        }
    }

    /// `s3://<bucket>`: the URL of the bucket, for tables and stores.
    pub fn url(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    /// object_store's options for this server: credentials, endpoint, plain
    /// HTTP, path-style requests.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_access_key_id", ACCESS_KEY),
            ("aws_secret_access_key", SECRET_KEY),
            ("aws_region", "us-east-1"),
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_virtual_hosted_style_request", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// object_store's `AmazonS3` client for the bucket, on its defaults
    /// otherwise (no conditional copy configured: S3 has no rename).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        object_store_for_url(&self.url(), self.options()).expect("an AmazonS3 client")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.server.abort();
    }
}
