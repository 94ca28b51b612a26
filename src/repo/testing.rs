//! What the unit tests of the parts, LFS parts and delta uploads share: a repository on local
//! disk that sends anything of 5 MiB or more in 5 MiB parts (S3's smallest part), and a part
//! landing the way a client's presigned `PUT` lands it. Test code only.

use super::upload::MultipartPolicy;
use super::{Repository, Store};
use crate::storage::{Backend, LocalDisk, PutMode};
use std::sync::Arc;

pub(crate) const MIB: u64 = 1024 * 1024;

/// Repository `ws/r` on a local disk in `dir`, in parts of 5 MiB from 5 MiB on.
pub(crate) fn repo_in_parts(dir: &std::path::Path) -> (Arc<dyn Backend>, Repository) {
    let disk = LocalDisk::new(dir, "http://localhost:1", b"k").expect("local disk");
    let backend: Arc<dyn Backend> = Arc::new(disk);
    let store = Store::new(backend.clone()).with_multipart(MultipartPolicy {
        threshold: 5 * MIB,
        part_size: 5 * MIB,
    });
    let repo = store.repo("ws", "r").expect("repo");
    (backend, repo)
}

/// Part `n` of local-disk upload `upload_id`, as its presigned `PUT` stores it.
pub(crate) async fn put_part(backend: &Arc<dyn Backend>, upload_id: &str, n: u32, bytes: &[u8]) {
    let key = format!(".hypha-multipart/{upload_id}/part-{n:05}");
    backend
        .put(&key, bytes.to_vec().into(), PutMode::Overwrite)
        .await
        .expect("put part");
}
