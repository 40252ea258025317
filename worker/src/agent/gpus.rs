//! The GPUs a program trial runs with on this worker: the ones its lease names, held by it
//! until it ends (the coordinator hands a GPU to one attempt at a time; this is the worker's
//! own check of that, e.g. against an attempt whose lease expired but whose program is still
//! ending here).

use std::collections::HashSet;
use std::sync::Mutex;

use crate::gpus::Gpu;

/// GPUs of this worker that running trials hold, by id.
#[derive(Debug, Default)]
pub(super) struct Busy(Mutex<HashSet<String>>);

/// What a trial holds until dropped.
#[derive(Debug)]
pub(super) struct Hold<'a> {
    busy: &'a Busy,
    ids: Vec<String>,
    /// The GPUs, as this worker registered them.
    pub gpus: Vec<Gpu>,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut b = self.busy.0.lock().unwrap_or_else(|p| p.into_inner());
        for id in &self.ids {
            b.remove(id);
        }
    }
}

impl Busy {
    /// Holds the GPUs `ids` (a lease's) of `mine` (this worker's); why not, when one is not
    /// this worker's or another trial here still holds it.
    pub(super) fn hold<'a>(&'a self, mine: &[Gpu], ids: &[String]) -> Result<Hold<'a>, String> {
        let mut gpus = Vec::with_capacity(ids.len());
        for id in ids {
            let g = mine.iter().find(|g| &g.id == id).ok_or_else(|| {
                let have: Vec<&str> = mine.iter().map(|g| g.id.as_str()).collect();
                format!(
                    "the lease names GPU {id:?}, which this worker does not have (it has {})",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                )
            })?;
            gpus.push(g.clone());
        }
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = ids.iter().find(|id| b.contains(*id)) {
            return Err(format!(
                "GPU {id} is still held by another trial on this worker (one whose program is still ending)"
            ));
        }
        b.extend(ids.iter().cloned());
        Ok(Hold {
            busy: self,
            ids: ids.to_vec(),
            gpus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_is_held_by_one_trial_at_a_time_and_only_if_the_worker_has_it() {
        let mine: Vec<Gpu> = ["0", "1"]
            .iter()
            .map(|id| Gpu {
                id: id.to_string(),
                ..Gpu::default()
            })
            .collect();
        let busy = Busy::default();
        let a = busy.hold(&mine, &["0".into()]).unwrap();
        assert_eq!(a.gpus[0].id, "0");
        let err = busy.hold(&mine, &["1".into(), "0".into()]).unwrap_err();
        assert!(err.starts_with("GPU 0 is still held"), "{err}");
        // Nothing was held by the refused one.
        drop(busy.hold(&mine, &["1".into()]).unwrap());
        let err = busy.hold(&mine, &["7".into()]).unwrap_err();
        assert!(
            err.contains("\"7\", which this worker does not have (it has 0, 1)"),
            "{err}"
        );
        drop(a);
        assert!(busy.hold(&mine, &["0".into(), "1".into()]).is_ok());
    }
}
