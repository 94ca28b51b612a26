//! Translation between the API's wire types ([`crate::api`]) and the store's own request and
//! outcome types ([`crate::storage`]): the one place where the two meet.
//!
//! Pure field-for-field mapping, no rule and no I/O: the rules are `storage`'s, the JSON shapes
//! are `api`'s. What the wire carries that the store does not need (an update's push options,
//! which the server only logs) stays with the route.

use crate::api;
use crate::repo::{
    Compacted, Compaction, PackUpload, RefOutcome, RefStatus, RefUpdate, Update, UpdateOutcome,
    UploadUrls,
};
use crate::storage::s3::multipart::UploadPlan;
use crate::storage::PresignedTransfer;

impl From<&api::UpdateRequest> for Update {
    fn from(req: &api::UpdateRequest) -> Update {
        Update {
            packs: req.packs.clone(),
            updates: req.updates.iter().map(RefUpdate::from).collect(),
            atomic: req.atomic,
            set_head_if_missing: req.set_head_if_missing.clone(),
            // Only the server's own inline checks fill these (`routes`).
            stored: Default::default(),
            inline: Vec::new(),
        }
    }
}

impl From<&api::RefUpdate> for RefUpdate {
    fn from(update: &api::RefUpdate) -> RefUpdate {
        RefUpdate {
            name: update.name.clone(),
            old: update.old.clone(),
            new: update.new.clone(),
        }
    }
}

impl From<UpdateOutcome> for api::UpdateResponse {
    fn from(outcome: UpdateOutcome) -> api::UpdateResponse {
        api::UpdateResponse {
            results: outcome
                .results
                .into_iter()
                .map(api::RefResult::from)
                .collect(),
        }
    }
}

impl From<RefOutcome> for api::RefResult {
    fn from(outcome: RefOutcome) -> api::RefResult {
        api::RefResult {
            name: outcome.name,
            status: outcome.status.into(),
            current: outcome.current,
            detail: outcome.detail,
        }
    }
}

impl From<RefStatus> for api::RefStatus {
    fn from(status: RefStatus) -> api::RefStatus {
        match status {
            RefStatus::Ok => api::RefStatus::Ok,
            RefStatus::Stale => api::RefStatus::Stale,
            RefStatus::Rejected => api::RefStatus::Rejected,
        }
    }
}

impl From<&api::CompactRequest> for Compaction {
    fn from(req: &api::CompactRequest) -> Compaction {
        Compaction {
            pack: req.pack.clone(),
            retire: req.retire.clone(),
        }
    }
}

impl From<Compacted> for api::CompactResponse {
    fn from(done: Compacted) -> api::CompactResponse {
        api::CompactResponse {
            retired: done.retired,
            deleted: done.deleted,
            grace_secs: done.grace.as_secs(),
        }
    }
}

impl From<&api::UploadSpec> for PackUpload {
    fn from(spec: &api::UploadSpec) -> PackUpload {
        PackUpload {
            name: spec.name.clone(),
            pack_size: spec.pack_size,
            idx_size: spec.idx_size,
            upload_id: spec.upload_id.clone(),
            resume: spec.resume,
        }
    }
}

impl From<UploadUrls> for api::Upload {
    fn from(urls: UploadUrls) -> api::Upload {
        api::Upload {
            name: urls.name,
            idx: urls.idx.into(),
            pack: urls.pack.map(api::PresignedRequest::from),
            multipart: urls.multipart.map(api::MultipartUpload::from),
        }
    }
}

impl From<UploadPlan> for api::MultipartUpload {
    fn from(plan: UploadPlan) -> api::MultipartUpload {
        api::MultipartUpload {
            upload_id: plan.upload_id,
            part_size: plan.part_size,
            parts: plan
                .parts
                .into_iter()
                .map(api::PresignedRequest::from)
                .collect(),
            stored: plan.stored,
            resumable: plan.resumable,
        }
    }
}

impl From<PresignedTransfer> for api::PresignedRequest {
    fn from(transfer: PresignedTransfer) -> api::PresignedRequest {
        api::PresignedRequest {
            method: transfer.method,
            url: transfer.url,
            headers: transfer.headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    fn update_outcome_keeps_its_wire_shape() {
        let outcome = UpdateOutcome {
            results: vec![
                RefOutcome {
                    name: "refs/heads/a".into(),
                    status: RefStatus::Stale,
                    current: None,
                    detail: None,
                },
                RefOutcome {
                    name: "refs/heads/b".into(),
                    status: RefStatus::Rejected,
                    current: None,
                    detail: Some("atomic push failed".into()),
                },
            ],
        };
        let wire = serde_json::to_string(&api::UpdateResponse::from(outcome)).expect("json");
        assert_eq!(
            wire,
            r#"{"results":[{"ref":"refs/heads/a","status":"stale"},{"ref":"refs/heads/b","status":"rejected","detail":"atomic push failed"}]}"#
        );
    }

    #[test]
    fn update_request_drops_only_push_options() {
        let req: api::UpdateRequest = serde_json::from_str(
            r#"{"packs":["p"],"updates":[{"ref":"refs/heads/a","old":null,"new":"n"}],"atomic":true,"set_head_if_missing":"refs/heads/a","push_options":["x"]}"#,
        )
        .expect("json");
        assert_eq!(
            Update::from(&req),
            Update {
                packs: vec!["p".into()],
                updates: vec![RefUpdate {
                    name: "refs/heads/a".into(),
                    old: None,
                    new: Some("n".into()),
                }],
                atomic: true,
                set_head_if_missing: Some("refs/heads/a".into()),
                stored: Default::default(),
                inline: Vec::new(),
            }
        );
    }

    #[test]
    fn compaction_answers_grace_in_seconds() {
        let done = Compacted {
            retired: vec!["a".into()],
            deleted: vec![],
            grace: Duration::from_millis(90_500),
        };
        assert_eq!(api::CompactResponse::from(done).grace_secs, 90);
    }

    #[test]
    fn upload_urls_keep_their_wire_shape() {
        let put = |url: &str| PresignedTransfer {
            method: "PUT".into(),
            url: url.into(),
            headers: BTreeMap::from([("Content-Length".into(), "9".into())]),
        };
        let urls = UploadUrls {
            name: "pack-x".into(),
            idx: put("u1"),
            pack: None,
            multipart: Some(UploadPlan {
                upload_id: "id".into(),
                part_size: 5,
                parts: vec![put("p1")],
                stored: Vec::new(),
                resumable: false,
            }),
        };
        assert_eq!(
            serde_json::to_string(&api::Upload::from(urls)).expect("json"),
            r#"{"name":"pack-x","idx":{"method":"PUT","url":"u1","headers":{"Content-Length":"9"}},"multipart":{"upload_id":"id","part_size":5,"parts":[{"method":"PUT","url":"p1","headers":{"Content-Length":"9"}}]}}"#
        );
    }
}
