//! Commits and tags for the shallow walks: read from the local repository when it has them
//! (no bytes down), else by range through [`Reader`]; and the commits reachable from the
//! refs `--shallow-exclude` names. Which commits are taken is `negotiate::shallow`'s rule
//! and the main walk's (`super`); the bytes of an entry are [`Reader`]'s.

use super::reader::{Object, Reader};
use super::{unparsable, Error, Local};
use gix::ObjectId;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The commits and tags among `ids` (content), and the kind of every other one (trees and
/// blobs, asked for by a lazy fetch or named by a tag), which is not read.
pub(super) async fn read(
    reader: &mut Reader<'_>,
    local: &dyn Local,
    ids: &[ObjectId],
) -> Result<
    (
        HashMap<ObjectId, Object>,
        Vec<(ObjectId, gix::object::Kind)>,
    ),
    Error,
> {
    let mut objects = HashMap::new();
    let mut remote = Vec::new();
    for id in ids {
        match local.commit(id) {
            Some(data) => {
                objects.insert(*id, Arc::new((gix::object::Kind::Commit, data)));
            }
            None => remote.push(*id),
        }
    }
    let kinds = reader.kinds(&remote).await?;
    let mut others = Vec::new();
    remote.retain(|id| match kinds[id] {
        kind @ (gix::object::Kind::Blob | gix::object::Kind::Tree) => {
            others.push((*id, kind));
            false
        }
        _ => true,
    });
    objects.extend(reader.objects(&remote).await?);
    Ok((objects, others))
}

/// The parents of a commit, as ids.
pub(super) fn parents(commit: &gix::objs::CommitRef<'_>) -> Vec<ObjectId> {
    commit.parents().collect()
}

/// Every commit reachable from `tips` (annotated tags peeled): the history
/// `--shallow-exclude` leaves out. One round of reads per generation; commits only, no trees.
pub(super) async fn reachable(
    reader: &mut Reader<'_>,
    local: &dyn Local,
    tips: &[ObjectId],
    repo_name: &str,
) -> Result<HashSet<ObjectId>, Error> {
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut reachable: HashSet<ObjectId> = HashSet::new();
    let mut todo: Vec<ObjectId> = tips.to_vec();
    while !todo.is_empty() {
        todo.retain(|id| seen.insert(*id));
        let (objects, _) = read(reader, local, &todo).await?;
        let mut next = Vec::new();
        for id in todo {
            let Some(object) = objects.get(&id) else {
                // A ref naming a tree or blob excludes no commit.
                continue;
            };
            match object.0 {
                gix::object::Kind::Commit => {
                    let commit = gix::objs::CommitRef::from_bytes(&object.1, gix::hash::Kind::Sha1)
                        .map_err(|_| unparsable(&id, repo_name, "commit"))?;
                    reachable.insert(id);
                    next.extend(parents(&commit));
                }
                gix::object::Kind::Tag => {
                    let tag = gix::objs::TagRef::from_bytes(&object.1, gix::hash::Kind::Sha1)
                        .map_err(|_| unparsable(&id, repo_name, "tag"))?;
                    let target = ObjectId::from_hex(tag.target)
                        .map_err(|_| unparsable(&id, repo_name, "tag"))?;
                    next.push(target);
                }
                _ => {}
            }
        }
        todo = next;
    }
    Ok(reachable)
}
